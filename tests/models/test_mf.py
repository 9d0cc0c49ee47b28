"""CoFiMF, ClassicMF, BiasedMF: the contract on explicit ratings, hand-computed costs and predictions, the ridge
fold-in, early stopping on RMSE, and learning on MovieLens 100K (with RECFORGE_DATA).

The rating models rank by predicted rating, so the contract runs on an explicit version of the planted data:
own-block items rated 5, the noise items rated 1 (the implicit planted data has only 1.0 values, from which a
rating model can learn nothing but a constant).
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recforge.data.ids import UnknownIdError
from recforge.data.interactions import Interactions
from recforge.data.readers import read_movielens_100k_fold
from recforge.data.splits import predefined_split, random_split
from recforge.evaluation.evaluate import evaluate_ratings
from recforge.evaluation.ranking import exclude_items_, top_k
from recforge.metrics import RMSE, ndcg_at_k
from recforge.models.cofi import CoFiMF, cofi_cost
from recforge.models.factors import FactorModule
from recforge.models.gibbs import GibbsInference, SampledFactorModule
from recforge.models.inference import MapInference
from recforge.models.mf import BiasedMF, ClassicMF
from recforge.models.ncf import NeuMF
from recforge.testing import Planted, RecommenderContract
from recforge.training.options import TrainingOptions


def explicit_planted(planted: Planted) -> Planted:
    """The planted data with ratings: 5 for the user's own-block items, 1 for the noise items."""
    t = planted.train
    own = planted.item_group[t.item_idx] == planted.user_group[t.user_idx]
    return replace(planted, train=t.with_values(np.where(own, 5.0, 1.0), explicit=True))


class ExplicitContract(RecommenderContract):
    @pytest.fixture
    def planted(self, planted):  # the session fixture of conftest, with ratings
        return explicit_planted(planted)


INVALID = (
    {"embedding_dim": 0},
    {"l2": -1.0},
    {"learning_rate": 0.0},
    {"max_epochs": 0},
)


class TestCoFiMFContract(ExplicitContract):
    invalid_params = (*INVALID, {"steps_per_epoch": 0})

    def make_model(self) -> CoFiMF:
        return CoFiMF(embedding_dim=8, l2=1.0, learning_rate=0.1, max_epochs=10, steps_per_epoch=5)


class TestClassicMFContract(ExplicitContract):
    invalid_params = (*INVALID, {"optimizer": "rmsprop"}, {"init_std": 0.0})

    def make_model(self) -> ClassicMF:
        return ClassicMF(embedding_dim=8, l2=0.01, learning_rate=0.05, batch_size=64, max_epochs=25)


class TestBiasedMFContract(ExplicitContract):
    invalid_params = (*INVALID, {"bias_l2": -0.1}, {"batch_size": 0})

    def make_model(self) -> BiasedMF:
        return BiasedMF(embedding_dim=8, l2=0.01, learning_rate=0.05, batch_size=64, max_epochs=25)


class TestBiasedMFGibbsContract(ExplicitContract):
    invalid_params = (*INVALID, {"inference": "variational"}, {"burn_in": -1})

    def make_model(self) -> BiasedMF:
        return BiasedMF(inference="gibbs", embedding_dim=4, max_epochs=40, burn_in=10, init_std=1.0)


class TestClassicMFGibbsContract(ExplicitContract):
    def make_model(self) -> ClassicMF:
        # without biases, a 4-dimensional chain on the planted ratings finds the block structure for a third of the
        # seeds only (own-block precision@10 >= 0.8 for 5 of seeds 0-15, with the former global-RNG draws as with
        # the generator's); with 32 dimensions for 15 of them (13 with the former draws), at 0.2 s a fit
        return ClassicMF(inference="gibbs", embedding_dim=32, max_epochs=40, burn_in=10, init_std=1.0)


# ---------------------------------------------------------------------- small hand-made data
@pytest.fixture
def tiny() -> Interactions:
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b", "b", "c", "c", "d"],
            "item": [1, 2, 3, 1, 3, 2, 3, 1],
            "rating": [5.0, 3.0, 4.0, 4.0, 1.0, 2.0, 5.0, 3.0],
        }
    )
    return Interactions.from_frame(frame)


def test_cofi_cost_on_a_2x3_example():
    # 2 users x 3 items, n = 2 features; user 0 rated items 0 and 2, user 1 rated items 1 and 2
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])  # items x features
    w = torch.tensor([[1.0, 1.0], [-1.0, 0.5]])  # users x features
    b = torch.tensor([0.5, -0.5])
    users, items = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 2])
    y = torch.tensor([4.0, 2.0, 1.0, 3.0])
    # predictions: u0,i0 = 1+2+0.5 = 3.5; u0,i2 = 2+0+0.5 = 2.5; u1,i1 = -0.5-0.5-0.5 = -1.5; u1,i2 = -2+0-0.5 = -2.5
    fit = 0.5 * ((3.5 - 4) ** 2 + (2.5 - 2) ** 2 + (-1.5 - 1) ** 2 + (-2.5 - 3) ** 2)
    reg = 0.5 * 2.0 * ((1 + 1 + 1 + 0.25) + (1 + 4 + 0.25 + 1 + 4 + 0))
    cost = cofi_cost(x, w, b, users, items, y, l2=2.0)
    assert float(cost) == pytest.approx(fit + reg)
    # the dense formula of the reference notebook, J = 1/2 sum R * (X W^T + b - Y)^2 + reg, agrees
    r = torch.zeros(3, 2)
    yy = torch.zeros(3, 2)
    r[items, users] = 1.0
    yy[items, users] = y
    dense = 0.5 * (((x @ w.T + b - yy) ** 2) * r).sum() + 0.5 * 2.0 * (w.square().sum() + x.square().sum())
    assert float(cost) == pytest.approx(float(dense))


def test_cofimf_loss_is_the_cost_of_its_parameters(tiny):
    model = CoFiMF(embedding_dim=3, l2=0.7, mean_normalization=False, max_epochs=1, steps_per_epoch=1)
    model.fit(tiny)
    m = model.module_
    x, w, b = m.item_features.detach(), m.user_weights.detach(), m.user_bias.detach()
    pred = np.einsum("uk,ik->ui", w.numpy(), x.numpy()) + b.numpy()[:, None]
    dense = tiny.matrix.toarray()
    mask = dense != 0
    expected = 0.5 * (((pred - dense) ** 2) * mask).sum() + 0.35 * (w.square().sum() + x.square().sum()).item()
    users, items, ratings = (torch.from_numpy(a) for a in (tiny.user_idx, tiny.item_idx, tiny.values))
    got = cofi_cost(m.item_features, m.user_weights, m.user_bias, users, items, ratings, 0.7)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    # predictions are w . x + b, unclipped with clip=False
    model.set_params(clip=False)
    np.testing.assert_allclose(model.predict(["a", "c"], [2, 1]), [pred[0, 1], pred[2, 0]], rtol=1e-5)


def test_cofimf_mean_normalization_adds_item_means_back(tiny):
    model = CoFiMF(embedding_dim=2, max_epochs=1, steps_per_epoch=1).fit(tiny)
    offset = model.module_.item_offset.numpy()
    np.testing.assert_allclose(offset, [4.0, 2.5, 10.0 / 3.0], rtol=1e-6)  # items 1, 2, 3
    m = model.module_
    raw = (m.user_weights @ m.item_features.T + m.user_bias[:, None]).detach() + m.item_offset
    model.set_params(clip=False)
    np.testing.assert_allclose(model.predict_indices([0, 3], [2, 1]).numpy(), [raw[0, 2], raw[3, 1]], rtol=1e-5)


def test_biasedmf_prediction_is_mu_plus_biases_plus_dot(tiny):
    model = BiasedMF(embedding_dim=4, learning_rate=0.05, batch_size=4, max_epochs=5, clip=False)
    model.fit(tiny)
    m = model.module_
    u, i = tiny.users.index(["b", "d"]), tiny.items.index([3, 2])
    expected = (
        m.global_mean
        + m.user_bias.weight[u, 0]
        + m.item_bias.weight[i, 0]
        + (m.user_factors.weight[u] * m.item_factors.weight[i]).sum(-1)
    ).detach()
    np.testing.assert_allclose(model.predict(["b", "d"], [3, 2]), expected.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(["b", "d"], [3, 2]), model.predict_indices(u, i).numpy())
    scores = model.score(tiny.matrix[u], u)
    np.testing.assert_allclose(scores[[0, 1], i].numpy(), expected.numpy(), rtol=1e-6)
    assert float(m.global_mean.detach()) != pytest.approx(float(tiny.values.mean()), abs=1e-6)  # mu is learned


def test_hand_written_gradient_matches_autograd():
    torch.manual_seed(0)
    module = FactorModule(7, 5, 3, biases=True, mean=3.0, init_std=0.5, sparse=False).double()
    with torch.no_grad():
        module.user_bias.weight.normal_()
        module.item_bias.weight.normal_()
    users, items = torch.tensor([0, 1, 1, 6, 3]), torch.tensor([4, 0, 0, 2, 1])
    ratings = torch.tensor([1.0, 5.0, 4.0, 3.0, 2.0], dtype=torch.float64)
    loss, mse = module.loss(users, items, ratings, 0.3, 0.1)
    pred, penalty = module.predict_and_penalty(users, items, 0.3, 0.1)
    reference = (pred - ratings).square().mean() + penalty
    assert float(loss.detach()) == pytest.approx(float(reference.detach()))
    assert float(mse) == pytest.approx(float((pred - ratings).square().mean().detach()))
    for got, expected in zip(
        torch.autograd.grad(loss, list(module.parameters())),
        torch.autograd.grad(reference, list(module.parameters())),
        strict=True,
    ):
        torch.testing.assert_close(got, expected)


def _tiny_factor_batch(biases: bool) -> tuple[FactorModule, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    module = FactorModule(7, 5, 3, biases=biases, mean=3.0, init_std=0.5, sparse=False).double()
    if biases:
        with torch.no_grad():
            module.user_bias.weight.normal_()
            module.item_bias.weight.normal_()
    users, items = torch.tensor([0, 1, 1, 6, 3]), torch.tensor([4, 0, 0, 2, 1])  # repeated user 1 and item 0
    return module, (users, items, torch.tensor([1.0, 5.0, 4.0, 3.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("biases", [True, False], ids=["biasedmf", "classicmf"])
def test_written_out_gradient_rows_sum_to_the_autograd_gradient(biases):
    module, (users, items, ratings) = _tiny_factor_batch(biases)
    with torch.no_grad():
        losses, grads = module.row_gradients(users, items, ratings, 0.3, 0.1)
    pred, penalty = module.predict_and_penalty(users, items, 0.3, 0.1)
    reference = (pred - ratings).square().mean() + penalty
    assert float(losses["loss"]) == pytest.approx(float(reference.detach()))
    assert float(losses["mse"]) == pytest.approx(float((pred - ratings).square().mean().detach()))
    names = [name for name, _ in module.named_parameters()]
    expected = dict(zip(names, torch.autograd.grad(reference, list(module.parameters())), strict=True))
    assert {f"{name}.weight" for name, *_ in grads} == set(expected)
    for name, table, rows, grad in grads:
        dense = grad if rows is None else torch.zeros_like(table).index_add_(0, rows, grad)
        torch.testing.assert_close(dense, expected[f"{name}.weight"], msg=name)


@pytest.mark.parametrize("biases", [True, False], ids=["biasedmf", "classicmf"])
@pytest.mark.parametrize(("optimizer", "full"), [("lazy_adam", True), ("lazy_adam", False), ("sgd", False)])
def test_written_out_steps_equal_autograd_and_the_torch_optimiser(biases, optimizer, full):
    """Three written-out steps give the parameters of autograd + torch's optimiser: SGD on sparse gradients; Adam
    when every row has a gradient at every step (``full``: lazy Adam is then Adam); on a batch that leaves rows
    out, the first step still equals Adam's (fresh moments do not move a row) and later steps leave them alone."""
    model = (BiasedMF if biases else ClassicMF)(optimizer=optimizer, l2=0.3, bias_l2=0.1, learning_rate=0.05)
    model.inference_data_ = MapInference().prepare(model, None)  # type: ignore[arg-type]
    written, batch = _tiny_factor_batch(biases)
    if full:  # every user (7) and item (5), with repeats
        batch = (torch.tensor([0, 1, 1, 2, 3, 4, 5, 6]), torch.tensor([4, 0, 0, 1, 2, 3, 4, 1]), batch[2].repeat(2)[:8])
    reference = FactorModule(7, 5, 3, biases=biases, mean=3.0, init_std=0.5, sparse=optimizer == "sgd").double()
    reference.load_state_dict(written.state_dict())
    start = copy.deepcopy(written)
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    torch_opt = make(reference.parameters(), lr=0.05)
    for step in range(1, 4):
        with torch.no_grad():
            MapInference._written_step(model, written, *batch, step)
        torch_opt.zero_grad()
        reference.loss(*batch, 0.3, 0.1)[0].backward()
        torch_opt.step()
        if full or step == 1 or optimizer == "sgd":
            for name, param in written.named_parameters():
                torch.testing.assert_close(param, dict(reference.named_parameters())[name], msg=f"{name}, step {step}")
    untouched = torch.ones(7, dtype=torch.bool)
    untouched[batch[0]] = False
    assert torch.equal(written.user_factors.weight[untouched], start.user_factors.weight[untouched])
    assert full == (not untouched.any())


def test_inference_picks_the_strategy_the_model_delegates_to(tiny):
    assert isinstance(BiasedMF().inference_strategy, MapInference)
    gibbs_model = ClassicMF(inference="gibbs", embedding_dim=2, max_epochs=3, burn_in=1)
    assert isinstance(gibbs_model.inference_strategy, GibbsInference)
    assert gibbs_model.early_stopping_patience() is None and BiasedMF(patience=4).early_stopping_patience() == 4
    gibbs_model.fit(tiny)
    assert isinstance(gibbs_model.module_, SampledFactorModule) and gibbs_model.n_items == 3
    assert gibbs_model.configure_optimizers(gibbs_model.module_) == []
    assert not hasattr(gibbs_model, "inference_data_")  # the sweep's data is dropped after training


def test_classicmf_has_no_biases(tiny):
    model = ClassicMF(embedding_dim=4, max_epochs=2, batch_size=4, clip=False).fit(tiny)
    m = model.module_
    assert not hasattr(m, "user_bias") and not hasattr(m, "item_bias")
    expected = (m.global_mean + (m.user_factors.weight[0] * m.item_factors.weight[1]).sum()).detach()
    assert float(model.predict_indices([0], [1])[0]) == pytest.approx(float(expected))


@pytest.mark.parametrize(
    ("optimizer", "learning_rate", "batch_size"), [("sparse_adam", 0.05, 64), ("lazy_adam", 0.05, 64), ("sgd", 0.3, 8)]
)
def test_sparse_gradient_optimisers_learn(planted, optimizer, learning_rate, batch_size):
    data = explicit_planted(planted).train
    model = BiasedMF(
        embedding_dim=8, l2=0.01, learning_rate=learning_rate, batch_size=batch_size, max_epochs=15, optimizer=optimizer
    )
    model.fit(data)
    # sparse gradients for torch's SparseAdam; the written-out steps (lazy_adam, sgd) need no autograd at all
    assert model.module_.user_factors.sparse == (optimizer == "sparse_adam")
    assert (model.configure_optimizers(model.module_) == []) == (optimizer != "sparse_adam")
    log = model.training_log_
    assert log[-1]["train_mse"] < 0.5 * log[0]["train_mse"]
    pred = model.predict_indices(data.user_idx, data.item_idx).numpy()
    assert np.sqrt(np.mean((pred - data.values) ** 2)) < 0.8


def test_predictions_are_clipped_to_the_training_range(tiny):
    model = BiasedMF(embedding_dim=4, learning_rate=0.5, batch_size=2, max_epochs=30).fit(tiny)
    pred = model.predict_indices(np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4))
    assert float(pred.min()) >= 1.0 and float(pred.max()) <= 5.0


def test_unknown_ids_and_bad_pairs(tiny):
    model = BiasedMF(embedding_dim=2, max_epochs=1).fit(tiny)
    with pytest.raises(UnknownIdError, match="zz"):
        model.predict(["a", "zz"], [1, 2])
    with pytest.raises(UnknownIdError, match="99"):
        model.predict(["a"], [99])
    with pytest.raises(ValueError, match="user ids"):
        model.predict(["a", "b"], [1])
    with pytest.raises(IndexError, match="item index"):
        model.predict_indices([0], [3])


def test_biasedmf_fold_in_solves_the_users_ridge_problem(tiny):
    model = BiasedMF(embedding_dim=3, l2=0.2, bias_l2=0.05, max_epochs=3, batch_size=4).fit(tiny)
    m = model.module_
    row = sp.csr_array(([5.0, 1.0], [0, 2], [0, 2]), shape=(1, 3))
    scores = model.score(row, None)[0].numpy()
    q = m.item_factors.weight.detach().double().numpy()
    bi = m.item_bias.weight[:, 0].detach().double().numpy()
    mu = float(m.global_mean)
    a = np.hstack([q[[0, 2]], np.ones((2, 1))])
    t = np.array([5.0, 1.0]) - mu - bi[[0, 2]]
    x = np.linalg.solve(a.T @ a + 2 * np.diag([0.2, 0.2, 0.2, 0.05]), a.T @ t)  # n_u = 2 ratings
    np.testing.assert_allclose(scores, mu + bi + q @ x[:3] + x[3], rtol=1e-4)


def test_recommend_for_history_uses_ratings(planted):
    data = explicit_planted(planted)
    model = BiasedMF(embedding_dim=8, l2=0.01, learning_rate=0.05, batch_size=64, max_epochs=25)
    model.fit(data.train)
    block0 = data.train.items.ids[planted.item_group == 0][:4]
    block1 = data.train.items.ids[planted.item_group == 1][:4]
    items = [*block0, *block1]
    likes0 = model.recommend_for_history(items, k=5, values=[5.0] * 4 + [1.0] * 4)
    likes1 = model.recommend_for_history(items, k=5, values=[1.0] * 4 + [5.0] * 4)
    group = dict(zip(data.train.items.ids.tolist(), planted.item_group.tolist(), strict=True))
    assert np.mean([group[i] == 0 for i, _ in likes0]) >= 0.8
    assert np.mean([group[i] == 1 for i, _ in likes1]) >= 0.8
    with pytest.raises(ValueError, match="ratings"):
        model.recommend_for_history(items, values=[5.0])


def test_early_stopping_on_validation_rmse_keeps_the_best_epoch(planted):
    data = explicit_planted(planted).train
    split = random_split(data, test=0.2, seed=0)
    model = BiasedMF(embedding_dim=8, l2=0.0, learning_rate=0.1, batch_size=32, max_epochs=40, patience=2).fit(
        split.train, valid=split.test
    )
    log = model.training_log_
    assert {"valid_rmse", "valid_mae", "train_mse"} <= set(log[0])
    best = min(e["valid_rmse"] for e in log)
    assert evaluate_ratings(model, split.test, [RMSE()]).metrics["rmse"] == pytest.approx(best, rel=1e-5)
    assert len(log) < 40  # stopped early: no L2 and a large step overfit quickly


# ---------------------------------------------------------------------- MovieLens 100K
def _ml100k_dir() -> Path:
    root = os.environ.get("RECFORGE_DATA")
    if not root or not (Path(root) / "ml-100k" / "u1.base").exists():
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ (with u1.base) to run real-data tests")
    return Path(root) / "ml-100k"


@pytest.fixture(scope="module")
def u1():
    train, test = read_movielens_100k_fold(_ml100k_dir(), "u1")
    return predefined_split(train, test)


ML_PARAMS = {"embedding_dim": 64, "max_epochs": 25}


@pytest.fixture(scope="module")
def u1_biasedmf(u1):
    return BiasedMF(**ML_PARAMS).fit(u1.train)


def test_biasedmf_on_ml100k_u1_beats_mean_baselines(u1, u1_biasedmf):
    target = u1.test.target
    truth = torch.from_numpy(target.values).double()
    rmse = evaluate_ratings(u1_biasedmf, u1.test, [RMSE()]).metrics["rmse"]
    global_mean = float(u1.train.values.mean())
    rmse_global = float(torch.sqrt(((truth - global_mean) ** 2).mean()))
    sums = np.bincount(u1.train.item_idx, weights=u1.train.values, minlength=u1.train.n_items)
    counts = np.bincount(u1.train.item_idx, minlength=u1.train.n_items)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), global_mean)[target.item_idx]
    rmse_item = float(np.sqrt(np.mean((item_mean - target.values) ** 2)))
    assert rmse < 0.95, f"BiasedMF RMSE {rmse:.4f}"
    assert rmse < rmse_item - 0.05 and rmse < rmse_global - 0.1, (rmse, rmse_item, rmse_global)


def fold_in_ndcg(u1, trained, make_model) -> dict[str, float]:
    """NDCG@10 on u1.test of 40 users with enough ratings, scored by ``trained`` (the users known) and by a model
    from ``make_model()`` fitted without them, which folds them in from their ratings."""
    train, target = u1.train, u1.test.target
    candidates = np.flatnonzero((train.user_counts() >= 40) & (target.user_counts() >= 10))
    users = np.sort(np.random.default_rng(0).choice(candidates, 40, replace=False))
    without = make_model().fit(train.select(~np.isin(train.user_idx, users)))
    history = train.matrix[users]
    truth = torch.from_numpy(target.matrix[users].toarray() > 0).float()
    ndcg = {}
    for name, model, rows in (("trained", trained, users), ("folded", without, None)):
        _, top = top_k(exclude_items_(model.score(history, rows), history), 10)
        ndcg[name] = float(ndcg_at_k(top, truth, 10).mean())
    return ndcg


def test_fold_in_recommends_as_well_as_training_the_user(u1, u1_biasedmf):
    """Removed from training and folded in, users keep their NDCG@10 within 10% of being trained normally."""
    ndcg = fold_in_ndcg(u1, u1_biasedmf, lambda: BiasedMF(**ML_PARAMS))
    assert ndcg["folded"] >= 0.9 * ndcg["trained"], ndcg


# ---------------------------------------------------------------------- resuming
@pytest.mark.parametrize(
    "make",
    [
        lambda: BiasedMF(embedding_dim=4, batch_size=64, max_epochs=6),
        lambda: ClassicMF(embedding_dim=4, batch_size=64, max_epochs=6, optimizer="lazy_adam"),
        lambda: BiasedMF(inference="gibbs", embedding_dim=4, max_epochs=8, burn_in=2),
        lambda: NeuMF(embedding_dim=4, layers=(8, 4), batch_size=64, max_epochs=6),
    ],
    ids=["biasedmf-adam", "classicmf-lazy-adam", "biasedmf-gibbs", "neumf"],
)
def test_interrupted_fit_resumes_to_the_same_model(planted, tmp_path, make):
    train = explicit_planted(planted).train
    checkpoints = TrainingOptions(checkpoint_dir=tmp_path)
    full = make().fit(train)
    interrupted = make()
    original = interrupted.training_step

    def step(module, batch, ctx):
        if ctx.epoch == 4:
            raise KeyboardInterrupt
        return original(module, batch, ctx)

    interrupted.training_step = step
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(train, options=checkpoints)
    assert (tmp_path / "last.pt").exists()
    resumed = make().fit(train, options=checkpoints)
    assert torch.equal(
        resumed.score(train.matrix, np.arange(train.n_users)), full.score(train.matrix, np.arange(train.n_users))
    )
    assert resumed.training_log_ == full.training_log_
