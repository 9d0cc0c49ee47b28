"""RecVAE: the contract, the alternating schedule and the prior's refresh, the composite prior and the loss against
hand computations, determinism, resuming, saving without the prior copy, and ML-100K (skipped without
RECFORGE_DATA)."""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.stats import norm

from recforge.data.interactions import Interactions
from recforge.data.splits import EvalPart
from recforge.models.autoencoders import RecVAE, SparseRows, composite_prior_log_density, multinomial_nll
from recforge.models.autoencoders.recvae import gaussian_log_density
from recforge.testing import RecommenderContract
from recforge.training.callbacks import Callback
from recforge.training.options import TrainingOptions
from recforge.training.trainer import StepContext

SMALL = {"hidden_dim": 32, "latent_dim": 8, "encoder_layers": 2, "batch_size": 16, "learning_rate": 1e-2, "seed": 3}
BATCHES = 6  # 90 planted users in batches of 16


class TestRecVAEContract(RecommenderContract):
    invalid_params = (
        {"prior_weights": (0.5, 0.5, 0.5)},
        {"prior_weights": (0.0, 0.9, 0.1)},
        {"n_enc_epochs": 0},
        {"n_dec_epochs": 0},
        {"gamma": -0.1},
        {"encoder_layers": 0},
        {"wide_logvar": float("inf")},
    )

    def make_model(self) -> RecVAE:
        return RecVAE(max_epochs=20, **SMALL)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


class Snapshots(Callback):
    """The encoder, the prior's copy and the decoder after every epoch (after the model's own callbacks)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, dict[str, torch.Tensor]]] = []

    def on_epoch_end(self, trainer, logs):
        net = trainer.module
        self.epochs.append({name: snapshot(getattr(net, name)) for name in ("encoder", "prior_encoder", "decoder")})


# ====================================================================== schedule and prior refresh
@pytest.mark.parametrize(("n_enc", "n_dec"), [(3, 1), (1, 2)])
def test_encoder_and_decoder_epochs_alternate_and_the_prior_follows(planted, n_enc, n_dec):
    model = RecVAE(max_epochs=2 * (n_enc + n_dec), n_enc_epochs=n_enc, n_dec_epochs=n_dec, **SMALL)
    steps: Counter[tuple[int, int]] = Counter()
    original = model.training_step

    def step(module, batch, ctx):
        steps[ctx.epoch, ctx.optimizer_index] += 1
        return original(module, batch, ctx)

    model.training_step = step
    snaps = Snapshots()
    model.fit(planted.train, options=TrainingOptions(device="cpu", callbacks=[snaps], progress_bar=False))
    cycle = n_enc + n_dec
    encoder_epochs = [e for e in range(2 * cycle) if e % cycle < n_enc]
    expected = {(e, 0 if e in encoder_epochs else 1): BATCHES for e in range(2 * cycle)}
    assert dict(steps) == expected
    log = model.training_log_
    assert all(("train_loss[0]" in log[e]) == (e in encoder_epochs) for e in range(2 * cycle))
    assert all(("train_loss[1]" in log[e]) == (e not in encoder_epochs) for e in range(2 * cycle))
    assert all(log[e]["train_kl[0]"] > 0 for e in encoder_epochs)
    for e, now in enumerate(snaps.epochs):
        before = snaps.epochs[e - 1] if e else None
        if before is not None:  # an encoder epoch leaves the decoder alone, a decoder epoch the encoder
            assert same(now["decoder"], before["decoder"]) == (e in encoder_epochs)
            assert same(now["encoder"], before["encoder"]) == (e not in encoder_epochs)
        # the prior is refreshed after the cycle's last encoder epoch and stays frozen until the next one
        last_enc = e - (e % cycle) + n_enc - 1
        if e >= last_enc:
            assert same(now["prior_encoder"], now["encoder"])
        else:
            assert same(
                now["prior_encoder"], snaps.epochs[last_enc - cycle]["encoder"] if e >= cycle else before0(model)
            )


def before0(model: RecVAE) -> dict[str, torch.Tensor]:
    """The initial encoder, i.e. the prior's copy of a freshly built network with the model's seed."""
    with torch.random.fork_rng():
        torch.manual_seed(model.seed)
        return snapshot(model.build_module().encoder)


# ====================================================================== densities and the loss
def test_composite_prior_log_density_by_hand():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, generator=gen, dtype=torch.float64) * 3
    z[0, 0] = 60.0  # far in the tail: only the wide component is left, and the log-sum-exp stays finite
    mu = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    weights = (0.2, 0.5, 0.3)
    got = composite_prior_log_density(z, mu, logvar, weights, wide_logvar=4.0).numpy()
    zn, mn, sn = z.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy())
    expected = np.log(
        weights[0] * norm.pdf(zn) + weights[1] * norm.pdf(zn, mn, sn) + weights[2] * norm.pdf(zn, 0.0, math.exp(2.0))
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(gaussian_log_density(z, mu, logvar).numpy(), norm.logpdf(zn, mn, sn), rtol=1e-12)
    # the defaults are the paper's: weights 3/20, 3/4, 1/10 and a wide component of log-variance 10
    default = composite_prior_log_density(z[1:], mu[1:], logvar[1:]).numpy()
    wide = np.exp(5.0)
    by_hand = np.log(
        0.15 * norm.pdf(zn[1:]) + 0.75 * norm.pdf(zn[1:], mn[1:], sn[1:]) + 0.1 * norm.pdf(zn[1:], 0, wide)
    )
    np.testing.assert_allclose(default, by_hand, rtol=1e-12)


def test_training_step_is_the_paper_objective(planted):
    """One encoder step and one decoder step against the formula, with the same draws from the generator."""
    model = RecVAE(max_epochs=4, dropout=0.5, gamma=0.02, **SMALL).fit(planted.train)
    net = model.module_
    with torch.no_grad():  # a prior that differs from the encoder
        for p in net.prior_encoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    rows = planted.train.matrix[:7].copy()
    rows.data = np.arange(1, rows.nnz + 1, dtype=np.float32) % 3 + 1  # unequal row sums and values
    batch = SparseRows.from_scipy(rows)
    ctx = StepContext(optimizer_index=0, generator=torch.Generator().manual_seed(5))
    out = model.training_step(net, batch, ctx)

    gen = torch.Generator().manual_seed(5)
    x = torch.from_numpy(rows.toarray())
    normed = x / x.norm(dim=1, keepdim=True)
    keep = torch.rand(batch.values.shape, generator=gen) >= 0.5
    values = normed[batch.row, batch.col] * keep / 0.5
    with torch.no_grad():
        mu, logvar = net.encoder(batch, values)
        z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
        nll = -(x * torch.log_softmax(net.decoder(z), dim=1)).sum(1).mean()
        pmu, plogvar = net.prior_encoder(batch, normed[batch.row, batch.col])
        log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
        comps = torch.stack(
            [
                torch.distributions.Normal(0.0, 1.0).log_prob(z) + math.log(0.15),
                torch.distributions.Normal(pmu, torch.exp(0.5 * plogvar)).log_prob(z) + math.log(0.75),
                torch.distributions.Normal(0.0, math.exp(5.0)).log_prob(z) + math.log(0.1),
            ]
        )
        log_p = torch.logsumexp(comps, dim=0).sum(1)
        kl = (0.02 * x.sum(1) * (log_q - log_p)).mean()  # beta_u = gamma * |x_u|
    assert float(out["nll"]) == pytest.approx(float(nll), rel=1e-5)
    assert float(out["kl"]) == pytest.approx(float(kl), rel=1e-4)
    assert float(out["loss"].detach()) == pytest.approx(float(nll + kl), rel=1e-5)

    # the decoder step: reconstruction only, at z sampled from q(z | x) without dropout, no gradient to the encoder
    net.zero_grad(set_to_none=True)
    ctx = StepContext(optimizer_index=1, generator=torch.Generator().manual_seed(6))
    out = model.training_step(net, batch, ctx)
    out["loss"].backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        mu, logvar = net.encode(batch)
        z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
        expected = multinomial_nll(net.decoder(z), batch)
    assert set(out) == {"loss", "nll"}
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-6)


# ====================================================================== determinism, resuming, saving
def test_results_depend_on_the_seed_only(planted):
    def fit(global_seed: int, seed: int = 3) -> torch.Tensor:
        torch.manual_seed(global_seed)
        model = RecVAE(max_epochs=4, **{**SMALL, "seed": seed}).fit(planted.train)
        return model.score(planted.train.matrix)

    a = fit(1)
    assert torch.equal(a, fit(2))  # the noise comes from the Trainer's seeded generator, not the global RNG
    assert not torch.equal(a, fit(1, seed=4))


def test_interrupted_fit_resumes_to_the_same_model(planted, tmp_path):
    heldout = Interactions.from_csr(planted.heldout, users=planted.train.users, items=planted.train.items)
    valid = EvalPart(planted.train, heldout, known_users=True)

    def make():
        return RecVAE(max_epochs=10, patience=50, **SMALL)

    checkpoints = TrainingOptions(checkpoint_dir=tmp_path, progress_bar=False)
    full = make().fit(planted.train, valid=valid)

    interrupted = make()
    original = interrupted.training_step

    def step(module, batch, ctx):
        # epoch 4, third batch: the first encoder epoch of the second cycle, whose prior was refreshed after epoch 2
        if ctx.global_step == 4 * BATCHES + 2:
            raise KeyboardInterrupt
        return original(module, batch, ctx)

    interrupted.training_step = step
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(planted.train, valid=valid, options=checkpoints)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["epoch"] == 3 and any(k.startswith("prior_encoder.") for k in saved["module"])
    resumed = make().fit(planted.train, valid=valid, options=checkpoints)
    assert not tmp_path.exists()
    history = planted.train.matrix
    assert torch.equal(resumed.score(history), full.score(history))
    assert resumed.training_log_ == full.training_log_


def test_saved_model_leaves_out_the_prior_copy(planted, tmp_path):
    model = RecVAE(max_epochs=2, **SMALL).fit(planted.train)
    model.save(tmp_path / "m")
    keys = set(load_file(tmp_path / "m" / "weights.safetensors"))
    assert keys and not any("prior_encoder" in k for k in keys)
    loaded = RecVAE.load(tmp_path / "m")
    assert same(snapshot(loaded.module_.prior_encoder), snapshot(loaded.module_.encoder))
    assert torch.equal(loaded.latent(planted.train.matrix), model.latent(planted.train.matrix))


def test_bad_weights_name_the_parameter():
    with pytest.raises(ValueError, match="prior_weights"):
        RecVAE.validate_params({"prior_weights": (0.2, 0.2, 0.2)})
    assert RecVAE.validate_params({"prior_weights": [0.25, 0.5, 0.25]})["prior_weights"] == (0.25, 0.5, 0.25)


# ====================================================================== real data
def test_ml100k_beats_popularity_clearly():
    if not os.environ.get("RECFORGE_DATA"):
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ to run real-data tests")
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG
    from recforge.models.popularity import Popularity

    split = liang2018(load_dataset("ml-100k", download=False).interactions, heldout_users=100)
    pop = evaluate_ranking(Popularity().fit(split.train), split.test, [NDCG(100)]).metrics["ndcg@100"]
    model = RecVAE(hidden_dim=200, batch_size=100, learning_rate=1e-3, max_epochs=24).fit(split.train)
    ndcg = evaluate_ranking(model, split.test, [NDCG(100)]).metrics["ndcg@100"]
    assert ndcg >= 1.5 * pop, f"RecVAE {ndcg:.4f} vs popularity {pop:.4f}"
