"""The song models: the contract, their latent-space API (history lists, encode/reparametrize/decode, latent z), the
BCE and beta x KL losses, the run name, saving, and real-data checks on HetRec Last.fm 2K (skipped without
RECFORGE_DATA)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.models.autoencoders import SongMLP, SongVAE
from recforge.models.autoencoders.losses import SparseRows, bernoulli_nll, gaussian_kl
from recforge.models.registry import create_model, load_model
from recforge.testing import RecommenderContract, recall_at_k
from recforge.training.trainer import StepContext

SMALL = {"max_epochs": 20, "batch_size": 16, "learning_rate": 1e-2, "seed": 3}


class TestSongMLPContract(RecommenderContract):
    invalid_params = ({"dims": ()}, {"dims": (8, 0)}, {"dropout": 1.0}, {"input_weighting": "sqrt"})

    def make_model(self) -> SongMLP:
        return SongMLP(dims=(32, 8), dropout=0.5, **SMALL)


class TestSongVAEContract(RecommenderContract):
    invalid_params = ({"beta": -0.1}, {"anneal_steps": -1}, {"dims": (8, -2)})

    def make_model(self) -> SongVAE:
        # input dropout, as AE's contract: without it the 90 planted rows are overfitted (own-block precision 0.78)
        return SongVAE(dims=(32, 8), beta=0.2, anneal_steps=50, dropout=0.5, **SMALL)


@pytest.fixture(scope="module")
def song_vae(planted):
    return SongVAE(dims=(32, 4), beta=0.2, **SMALL).fit(planted.train)


def test_registered_and_named_by_their_parameters():
    assert type(create_model("songmlp")) is SongMLP and type(create_model("SongVAE")) is SongVAE
    assert SongMLP(dims=[64, 2]).run_name() == "songmlp_bce_dims-64-2"
    assert SongVAE(dims=[600, 200], beta=0.5).run_name() == "songvae_bce-kld_dims-600-200_beta-0.5"
    assert create_model("songvae", dims=[8, 3]).dims == (8, 3)  # a list of layer sizes, the last is the latent size


def test_a_new_user_is_a_list_of_song_ids(song_vae, planted):
    ids = planted.train.items.ids[:3].tolist()
    row = song_vae.history_row(ids)
    assert row.shape == (1, planted.train.n_items) and row.nnz == 3
    z = song_vae.latent(ids)
    assert z.shape == (1, 4)
    assert torch.allclose(z, song_vae.latent(row))
    assert torch.allclose(song_vae.decode(z), song_vae.score(row), atol=1e-5)
    proba = song_vae.predict_proba(ids)
    assert ((proba > 0) & (proba < 1)).all()


def test_latent_is_the_mean_or_a_sample(song_vae, planted):
    rows = planted.train.matrix[:5]
    mu, logvar = song_vae.encode(rows)
    assert logvar is not None and torch.equal(song_vae.latent(rows), mu)
    a = song_vae.latent(rows, sample=True, seed=1)
    assert not torch.allclose(a, mu) and torch.equal(a, song_vae.latent(rows, sample=True, seed=1))
    assert torch.equal(SongVAE.reparametrize(mu, None), mu)


def test_mlp_code_has_no_variance(planted):
    mlp = SongMLP(dims=(16, 3), **{**SMALL, "max_epochs": 2}).fit(planted.train)
    mu, logvar = mlp.encode(planted.train.matrix[:4])
    assert logvar is None and torch.equal(mlp.latent(planted.train.matrix[:4], sample=True), mu)
    with pytest.raises(ValueError, match="latent space has 3"):
        mlp.decode(torch.zeros(1, 5))


def test_loss_is_bce_plus_beta_kl_on_binary_targets(planted):
    model = SongVAE(dims=(8, 2), beta=0.7, input_weighting="log", **{**SMALL, "max_epochs": 1}).fit(planted.train)
    counts = sp.csr_array(planted.train.matrix[:6] * 5.0)  # play counts: the target stays 0/1
    batch = SparseRows.from_scipy(counts)
    torch.manual_seed(0)
    out = model.training_step(model.module_, batch, StepContext(values={"beta": 0.7}))
    ones = SparseRows.from_scipy(sp.csr_array((counts > 0).astype(np.float32)))
    torch.manual_seed(0)
    logits, mu, logvar = model.module_(model._inputs(batch), noise=True)
    expected = bernoulli_nll(logits, ones) + 0.7 * gaussian_kl(mu, logvar)
    assert torch.allclose(out["loss"], expected, rtol=1e-5)
    assert set(out) == {"loss", "bce", "kl"}
    assert torch.allclose(model._inputs(batch).values, torch.log1p(batch.values))


def test_kl_weight_is_annealed_and_logged(planted):
    model = SongVAE(dims=(8, 2), beta=0.5, anneal_steps=10, **{**SMALL, "max_epochs": 3}).fit(planted.train)
    betas = [e["beta"] for e in model.training_log_]
    assert betas == sorted(betas) and 0 < betas[0] < 0.5 and betas[-1] == 0.5
    assert all("train_kl" in e and "train_bce" in e for e in model.training_log_)


def test_saved_model_keeps_its_latent_space(song_vae, planted, tmp_path):
    song_vae.save(tmp_path / "m")
    again = load_model(tmp_path / "m", device="cpu")
    rows = planted.train.matrix[:7]
    assert torch.allclose(again.latent(rows), song_vae.latent(rows))
    assert torch.allclose(again.decode(torch.ones(1, 4)), song_vae.decode(torch.ones(1, 4)))


def test_learns_the_blocks_with_a_small_latent(planted):
    model = SongVAE(dims=(32, 2), **SMALL).fit(planted.train)
    assert recall_at_k(model, planted.train, planted.heldout, 10) > 0.5


def test_resumed_training_logs_every_epoch_once(planted, tmp_path):
    """Loss parts, beta and patience per epoch come back whole after an interrupted training resumes: what the
    training-curve figure reads."""
    from recforge.data.interactions import Interactions
    from recforge.data.splits import EvalPart
    from recforge.training.options import TrainingOptions

    heldout = Interactions.from_csr(planted.heldout, users=planted.train.users, items=planted.train.items)
    valid = EvalPart(planted.train, heldout, known_users=True)

    def make():
        return SongVAE(dims=(16, 4), beta=0.5, anneal_steps=30, patience=50, **{**SMALL, "max_epochs": 6})

    full = make().fit(planted.train, valid=valid)
    interrupted = make()
    original = interrupted.training_step

    def step(module, batch, ctx):
        if ctx.global_step == 3 * 6 + 1:  # epoch 3 (6 batches an epoch)
            raise KeyboardInterrupt
        return original(module, batch, ctx)

    interrupted.training_step = step
    options = TrainingOptions(checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(planted.train, valid=valid, options=options)
    resumed = make().fit(planted.train, valid=valid, options=options)
    assert [e["epoch"] for e in resumed.training_log_] == list(range(6))
    assert resumed.training_log_ == full.training_log_
    assert {"train_loss", "train_bce", "train_kl", "beta", "patience", "valid_ndcg@100"} <= set(
        resumed.training_log_[0]
    )


# ====================================================================== real data: HetRec Last.fm 2K
STYLES = ("metal", "hip-hop", "electronic", "punk")


@pytest.fixture(scope="module")
def lastfm():
    """A SongVAE trained on every Last.fm 2K listener (artists with 5+ listeners), with the play counts and tags."""
    import os
    from pathlib import Path

    from recforge.data.datasets import load_dataset
    from recforge.data.interactions import Interactions

    root = os.environ.get("RECFORGE_DATA")
    if not root or not (Path(root) / "hetrec2011-lastfm-2k" / "user_artists.dat").is_file():
        pytest.skip("set RECFORGE_DATA to the folder holding hetrec2011-lastfm-2k/ to run real-data tests")
    raw = load_dataset("lastfm-2k", data_dir=root, download=False)
    frame = raw.interactions
    listeners = frame.groupby("item").size()
    frame = frame[frame["item"].isin(listeners.index[listeners >= 5])]
    plays = Interactions.from_frame(frame, item_info=raw.item_info)
    data = plays.with_values(np.ones(len(plays), dtype=np.float32), explicit=False)
    torch.manual_seed(0)
    model = SongVAE(
        dims=(256, 32), beta=0.1, anneal_steps=500, max_epochs=40, batch_size=100, learning_rate=2e-3, seed=0
    ).fit(data)
    return model, plays


def test_lastfm_history_of_one_style_returns_mostly_that_style(lastfm):
    from recforge.data import tags as T

    model, plays = lastfm
    listeners = plays.item_counts()
    top = T.item_top_tags(plays.item_info, plays.n_items)
    tags = plays.item_info["tags"]
    shares = {}
    for style in STYLES:  # the 5 most listened artists whose top tag is the style, as a new listener's history
        of_style = np.flatnonzero(top == style)
        history = plays.items.ids[of_style[np.argsort(-listeners[of_style], kind="stable")[:5]]].tolist()
        recs = model.recommend_for_history(history, k=10)
        # an artist of the style: one of its 3 top tags names it ("nu metal", "punk rock", "hip-hop"...)
        shares[style] = np.mean(
            [any(style in t for t in tags.iloc[i][:3]) for i in model.items_.index([r for r, _ in recs])]
        )
    assert min(shares.values()) >= 0.5 and np.mean(list(shares.values())) >= 0.6, shares


def test_lastfm_steering_toward_a_tag_raises_its_share_in_the_top_20(lastfm):
    from recforge.analysis.latent import class_stats, latent_codes, steer
    from recforge.data import tags as T

    model, plays = lastfm
    top = T.item_top_tags(plays.item_info, plays.n_items)
    classes = T.class2idx(top, top=20)
    labels = T.user_top_tags(plays.matrix, top, classes)
    stats = class_stats(latent_codes(model, plays.binary), labels, classes)
    rng = np.random.default_rng(0)
    for tag in ("hip-hop", "electronic", "punk"):  # among the 20 classes (metal's top tags split 5 ways)
        tagged = top == tag
        others = rng.choice(np.flatnonzero((labels != tag) & (labels != None)), 40, replace=False)  # noqa: E711
        shares = {0.0: [], 0.5: [], 1.0: []}  # factor 0: the user's own list
        for u in others:
            for factor in (0.5, 1.0):
                result = steer(model, plays.binary[[u]], stats, tag, factor, k=20)
                shares[factor].append(tagged[model.items_.index([i for i, _ in result["recommendations"]])].mean())
            shares[0.0].append(tagged[model.items_.index([i for i, _ in result["before"]])].mean())
        before, half, full = (np.array(shares[f]) for f in (0.0, 0.5, 1.0))
        assert half.mean() > before.mean() + 0.1 and full.mean() > half.mean(), (tag, before.mean(), half.mean())
        assert (half > before).mean() >= 0.75 and (full > before).mean() >= 0.9, tag
