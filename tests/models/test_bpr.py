"""BPR: the contract, the hand-written gradient, the epoch's triples, the optimisers, fold-in, and ML-100K."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from recforge.models.bpr import BPR, BPRLoss, BPRModule
from recforge.testing import RecommenderContract, recall_at_k


def small(**kw) -> BPR:
    params = {
        "embedding_dim": 4,
        "l2": 1e-2,
        "learning_rate": 0.05,
        "batch_size": 64,
        "max_epochs": 30,
        "fold_in_steps": 30,
        **kw,
    }
    return BPR(**params)


class TestBPRContract(RecommenderContract):
    invalid_params = (
        {"embedding_dim": 0},
        {"l2": -1.0},
        {"learning_rate": 0.0},
        {"optimizer": "rmsprop"},
        {"fold_in_steps": -1},
        {"fold_in_l2": -0.1},
        {"monitor": "nonsense@10"},
    )

    def make_model(self) -> BPR:
        return small()


def test_hand_written_gradient_equals_autograd():
    gen = torch.Generator().manual_seed(0)
    pu, qi, qj = (torch.randn(17, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    bi, bj = (torch.randn(17, generator=gen, dtype=torch.float64) for _ in range(2))
    l2 = 0.3
    ours = [t.clone().requires_grad_(True) for t in (pu, qi, qj, bi, bj)]
    loss, nll = BPRLoss.apply(*ours, l2)
    loss.backward()
    ref = [t.clone().requires_grad_(True) for t in (pu, qi, qj, bi, bj)]
    x = (ref[0] * (ref[1] - ref[2])).sum(-1) + ref[3] - ref[4]
    ref_nll = F.softplus(-x).mean()
    ref_loss = ref_nll + l2 * sum(t.square().sum() for t in ref) / len(x)
    ref_loss.backward()
    assert torch.allclose(loss, ref_loss) and torch.allclose(nll, ref_nll)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.grad, b.grad)


def test_an_epoch_is_one_triple_per_observed_pair_with_unseen_negatives(planted):
    model = small()
    model.fit(planted.train)  # sets the id maps; _prepare again to read the epoch
    model._prepare(planted.train)
    batches = list(model.batches(np.random.default_rng(3), torch.device("cpu")))
    users, pos, neg = (torch.cat(parts).numpy().copy() for parts in zip(*batches, strict=True))
    seen = planted.train.binary
    assert len(users) == seen.nnz
    pairs = set(zip(users.tolist(), pos.tolist(), strict=True))
    assert pairs == set(zip(*seen.nonzero(), strict=True))  # every observed pair once
    assert not seen[users, neg].any()  # negatives are unseen items
    again = list(model.batches(np.random.default_rng(3), torch.device("cpu")))
    assert all(torch.equal(a[2], b[2]) for a, b in zip(batches, again, strict=True))  # seeded by the epoch's rng


@pytest.mark.parametrize(("optimizer", "lr"), [("sparse_adam", 0.05), ("sgd", 20.0)])
def test_sparse_optimisers_learn(planted, optimizer, lr):
    model = small(optimizer=optimizer, learning_rate=lr).fit(planted.train)
    assert model.module_.item_factors.sparse
    recall = recall_at_k(model, planted.train, planted.heldout, 10)
    assert recall > 0.5, recall


def test_fold_in_leaves_the_module_alone_and_ranks_like_the_learned_vectors(planted):
    model = small().fit(planted.train)
    before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    history = planted.train.matrix
    folded = model.score(history, None)
    assert all(torch.equal(v, model.module_.state_dict()[k]) for k, v in before.items())
    assert torch.equal(folded, model.score(history, None))  # deterministic
    known = model.score(history, np.arange(planted.train.n_users))
    top_f = torch.topk(folded, 10).indices
    top_k = torch.topk(known, 10).indices
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top_f, top_k, strict=True)])
    assert overlap > 0.6, overlap


def test_module_forward_matches_the_scores():
    module = BPRModule(4, 6, 3, init_std=0.5, sparse=False)
    with torch.no_grad():
        module.item_bias.weight.normal_()
        users, items = torch.tensor([0, 3, 2]), torch.tensor([5, 1, 1])
        full = module.scores_of_vectors(module.user_factors.weight)
        assert torch.allclose(module(users, items), full[users, items])


def test_ml100k_liang_beats_popularity_clearly(ml100k_frame):
    from recforge.data.splits import liang2018
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG
    from recforge.models.popularity import Popularity

    split = liang2018(ml100k_frame, heldout_users=100)
    pop = evaluate_ranking(Popularity().fit(split.train), split.test, [NDCG(100)]).metrics["ndcg@100"]
    model = BPR(max_epochs=15).fit(split.train)
    ndcg = evaluate_ranking(model, split.test, [NDCG(100)]).metrics["ndcg@100"]
    assert ndcg > 1.4 * pop, (ndcg, pop)  # measured 0.43 (with validation) against 0.26
