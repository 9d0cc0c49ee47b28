"""Gibbs sampling of (biased) matrix factorisation: the conditionals against dense formulas, the Wishart draw's
moments, the posterior-mean tables, and BiasedMF(inference="gibbs") on MovieLens 100K."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.evaluation.evaluate import evaluate_ratings
from recforge.metrics import RMSE
from recforge.models import gibbs
from recforge.models.mf import BiasedMF
from tests.models.test_mf import fold_in_ndcg, tiny, u1  # noqa: F401  (fixtures: hand-made ratings, ML-100K u1)


def random_ratings(n_rows: int = 6, n_cols: int = 5, seed: int = 0) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < 0.6
    mask[:, 0] = True  # every row has a rating
    dense = np.where(mask, rng.integers(1, 6, (n_rows, n_cols)) - 3.0, 0.0)
    return sp.csr_array(dense)


@pytest.mark.parametrize("biases", [True, False])
def test_conditional_means_solve_each_rows_normal_equations(biases):
    centred = random_ratings()
    rng = np.random.default_rng(1)
    d = 3
    other = torch.from_numpy(rng.normal(size=(centred.shape[1], d)))
    prior_mean = torch.from_numpy(rng.normal(size=d))
    a = rng.normal(size=(d, d))
    prior_precision = torch.from_numpy(a @ a.T + d * np.eye(d))
    alpha = 1.7
    blocks = gibbs.RatingBlocks.build(centred, d, torch.device("cpu"))
    got = gibbs.sample_rows(blocks, other, biases, prior_mean, prior_precision, alpha, generator=None, draw=False)
    for u in range(centred.shape[0]):
        cols = centred.indices[centred.indptr[u] : centred.indptr[u + 1]]
        r = torch.from_numpy(centred.data[centred.indptr[u] : centred.indptr[u + 1]])
        z = other[cols].clone()
        if biases:  # feature [1, q], the other side's bias b = other[:, 0] moves to the target
            r = r - z[:, 0]
            z[:, 0] = 1.0
        lhs = prior_precision + alpha * z.T @ z
        rhs = prior_precision @ prior_mean + alpha * z.T @ r
        torch.testing.assert_close(got[u], torch.linalg.solve(lhs, rhs))


def test_draws_centre_on_the_conditional_mean():
    centred = random_ratings(n_rows=2)
    other = torch.from_numpy(np.random.default_rng(2).normal(size=(centred.shape[1], 3)))
    blocks = gibbs.RatingBlocks.build(centred, 3, torch.device("cpu"))
    args = (blocks, other, True, torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64), 2.0)
    mean = gibbs.sample_rows(*args, generator=None, draw=False)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([gibbs.sample_rows(*args, generator=generator) for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), mean, atol=0.03, rtol=0)
    precision = torch.eye(3, dtype=torch.float64) + 2.0 * _gram(centred, other, row=0)
    torch.testing.assert_close(torch.cov(draws[:, 0].T), torch.linalg.inv(precision), atol=0.02, rtol=0)


def _gram(centred, other, row):
    cols = centred.indices[centred.indptr[row] : centred.indptr[row + 1]]
    z = other[cols].clone()
    z[:, 0] = 1.0
    return z.T @ z


def test_wishart_draws_have_mean_dof_times_scale():
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    draws = torch.stack([gibbs.sample_wishart(scale, 5.0, generator=generator) for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), 5.0 * scale, atol=0.15, rtol=0)


def test_tables_hold_the_average_of_the_kept_samples():
    module = gibbs.SampledFactorModule(
        3, 4, 2, 5, biases=True, mean=3.0, init_std=1.0, generator=torch.Generator().manual_seed(0)
    )
    samples = []
    for _ in range(3):  # kept samples, as after burn-in
        module.user_rows.normal_()
        module.item_rows.normal_()
        module._record(keep=True)
        samples.append((module.user_rows.clone(), module.item_rows.clone()))
    users, items = torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3)
    expected = torch.stack(
        [3.0 + u[users, 0] + i[items, 0] + (u[users, 1:] * i[items, 1:]).sum(1) for u, i in samples]
    ).mean(0)
    torch.testing.assert_close(module(users, items).double(), expected, atol=1e-5, rtol=0)


def test_sweeps_draw_from_the_generator_passed_down_only(tiny):  # noqa: F811
    model = BiasedMF(inference="gibbs", embedding_dim=2, max_epochs=4, burn_in=1).fit(tiny)
    assert isinstance(model.inference_strategy, gibbs.GibbsInference)
    data = model.inference_strategy.prepare(model, tiny)
    start = {k: v.clone() for k, v in model.module_.state_dict().items()}

    def sweep(generator_seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        model.module_.load_state_dict(start)
        torch.manual_seed(global_seed)  # the global generator must play no part
        model.module_.sweep(data, keep=False, generator=torch.Generator().manual_seed(generator_seed))
        return {k: v.clone() for k, v in model.module_.state_dict().items()}

    first, again, other = sweep(7, global_seed=1), sweep(7, global_seed=2), sweep(8, global_seed=1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["user_rows"], other["user_rows"])
    with pytest.raises(ValueError, match="generator"):
        gibbs.sample_rows(data.by_user, model.module_.item_rows, True, *_prior(3), 1.0, generator=None)


def _prior(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)


def test_alpha_and_gamma_draws_come_from_the_generator():
    draws = [gibbs.sample_alpha(50.0, 100, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert draws[0] == draws[1] != draws[2]
    shape = torch.tensor(4.0, dtype=torch.float64).expand(20000)
    gamma = gibbs.sample_gamma(shape, 2.0, generator=torch.Generator().manual_seed(0))
    assert float(gamma.mean()) == pytest.approx(2.0, abs=0.03) and float(gamma.var()) == pytest.approx(1.0, abs=0.05)


def test_burn_in_must_leave_sweeps_to_average(tiny):  # noqa: F811
    with pytest.raises(ValueError, match="burn_in"):
        BiasedMF(inference="gibbs", max_epochs=10, burn_in=10).fit(tiny)


# ---------------------------------------------------------------------- MovieLens 100K
GIBBS = {"inference": "gibbs", "embedding_dim": 10, "max_epochs": 120, "burn_in": 30}


@pytest.fixture(scope="module")
def u1_gibbs(u1):  # noqa: F811
    return BiasedMF(**GIBBS).fit(u1.train)


def test_gibbs_beats_the_map_estimate_on_ml100k_u1(u1, u1_gibbs):  # noqa: F811
    rmse = evaluate_ratings(u1_gibbs, u1.test, [RMSE()]).metrics["rmse"]
    assert rmse < 0.912, f"BiasedMF(inference='gibbs') u1 RMSE {rmse:.4f}"  # MAP: ~0.93 on u1


def test_gibbs_fold_in_recommends_as_well_as_training_the_user(u1, u1_gibbs):  # noqa: F811
    ndcg = fold_in_ndcg(u1, u1_gibbs, lambda: BiasedMF(**GIBBS))
    assert ndcg["folded"] >= 0.9 * ndcg["trained"], ndcg
