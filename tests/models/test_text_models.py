"""Review-text models: the recommender contract for TextMF, TextBiasedMF and TextItem (planted data whose reviews
use their item block's words), the negative-sampling loss by hand, TextRating and TextProfileRating learning a
planted sentiment, save/load, word inspection against a shuffled-item control, and real-data checks (slow)."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.splits import every_nth_split
from recforge.data.text import review_texts
from recforge.models.registry import load_model
from recforge.models.text import TextBiasedMF, TextItem, TextMF, TextProfileRating, TextRating
from recforge.models.text.common import negative_sampling_loss
from recforge.testing import Planted, RecommenderContract
from recforge.training.trainer import StepContext

COMMON = ["the", "it", "and", "is", "good"]


def block_words(group: int) -> list[str]:
    return [f"g{group}w{j}" for j in range(8)]


def with_reviews(planted: Planted, seed: int = 0) -> Planted:
    """Explicit planted data (own-block items rated 5, noise 1) whose reviews use the item block's words."""
    rng = np.random.default_rng(seed)
    t = planted.train
    groups = planted.item_group[t.item_idx]
    own = groups == planted.user_group[t.user_idx]
    texts = np.array(
        [" ".join([*rng.choice(block_words(g), 4), *rng.choice(COMMON, 3)]) for g in groups],
        dtype=object,
    )
    train = replace(t.with_values(np.where(own, 5.0, 1.0), explicit=True), extra={"review_text": texts})
    return replace(planted, train=train)


class TextContract(RecommenderContract):
    @pytest.fixture
    def planted(self, planted):
        return with_reviews(planted)


INVALID = ({"embedding_dim": 0}, {"n_words": 0}, {"max_words": 0}, {"tokenizer": "chars"})


class TestTextMFContract(TextContract):
    invalid_params = (*INVALID, {"text_weight": -1.0}, {"optimizer": "sparse_adam"})

    def make_model(self):
        return TextMF(
            embedding_dim=8, word_dim=8, l2=0.01, learning_rate=0.05, batch_size=64, max_epochs=25, skip_most_common=0
        )


class TestTextBiasedMFContract(TextContract):
    invalid_params = (*INVALID, {"bias_l2": -0.1})

    def make_model(self):
        return TextBiasedMF(
            embedding_dim=8, word_dim=8, l2=0.01, learning_rate=0.05, batch_size=64, max_epochs=25, skip_most_common=0
        )


class TestTextItemContract(TextContract):
    invalid_params = (*INVALID, {"cosine_scale": 0.0})

    def make_model(self):
        return TextItem(
            embedding_dim=8, learning_rate=0.05, batch_size=32, max_epochs=15, skip_most_common=0, cosine_scale=5.0
        )


# ---------------------------------------------------------------------- the loss by hand
def test_negative_sampling_loss_exact():
    words = nn.Embedding(4, 2)
    with torch.no_grad():
        words.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0], [0.0, 2.0]]))
    query = torch.tensor([[1.0, 0.0]])
    real = torch.tensor([[2, 0]])  # one real word and one pad
    fake = torch.tensor([[[3, 1], [3, 3]]])
    s = 2.0
    sig = torch.sigmoid
    expected = -(
        torch.log(sig(torch.tensor(s * 1.0)))
        + torch.log(sig(torch.tensor(-s * 0.0)))
        + torch.log(sig(torch.tensor(-s * 2**-0.5)))
    )
    got = negative_sampling_loss(query, words, real, fake, scale=s).detach()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


# ---------------------------------------------------------------------- rating from text
def sentiment_data(n: int = 600, seed: int = 0) -> Interactions:
    """Reviews whose words say the rating: 'awful' (1), 'meh' (3), 'superb' (5), with filler words."""
    rng = np.random.default_rng(seed)
    ratings = rng.choice([1.0, 3.0, 5.0], n)
    word = {1.0: "awful", 3.0: "meh", 5.0: "superb"}
    texts = [f"{word[r]} {' '.join(rng.choice(COMMON, 4))}" for r in ratings]
    frame = pd.DataFrame(
        {"user": rng.integers(0, 50, n), "item": rng.integers(0, 30, n), "rating": ratings, "review_text": texts}
    )
    return Interactions.from_frame(frame, extra_cols=("review_text",), duplicates="keep")


@pytest.mark.parametrize("cls", [TextRating, TextProfileRating])
def test_text_rating_reads_the_sentiment(cls, tmp_path):
    data = sentiment_data()
    model = cls(learning_rate=0.05, max_epochs=15, batch_size=32, embedding_dim=8).fit(data)
    pred = model.predict_reviews(
        ["superb the it and is", "awful and is the it", "meh good the it and"],  # shaped like the training reviews
        user_ids=data.users.ids[:3],
        item_ids=data.items.ids[:3],
    )
    assert np.abs(pred - [5.0, 1.0, 3.0]).max() < 0.6  # the profiles (random users here) add a little noise
    err = model.predict_events(data) - data.values
    assert np.sqrt(np.mean(err**2)) < 0.3
    model.save(tmp_path / "m")
    back = cls.load(tmp_path / "m")
    assert back.vocabulary_ == model.vocabulary_
    assert np.array_equal(back.predict_events(data), model.predict_events(data))
    with pytest.raises(TypeError, match="review"):
        model.recommend([data.users.ids[0]])


def test_text_rating_needs_texts():
    data = Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, 5.0]}))
    with pytest.raises(ValueError, match="review_text"):
        TextRating(max_epochs=1).fit(data)


# ---------------------------------------------------------------------- words of an item
def distinctive_overlap(model, data: Interactions, items: np.ndarray, k: int = 10) -> float:
    """Mean share of an item's top-k words that are distinctive of its training reviews: used at least twice
    there, and at least twice as often (per token) as in all the training reviews."""
    vocab = model.vocabulary_
    tokens = vocab.encode(review_texts(data))
    rows = np.repeat(data.item_idx, tokens.lengths)
    keep = tokens.tokens > 1
    counts = np.zeros((data.n_items, len(vocab)))
    np.add.at(counts, (rows[keep], tokens.tokens[keep]), 1.0)
    overall = counts.sum(0) / counts.sum()
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    distinctive = (counts >= 2) & (share >= 2 * overall[None, :])
    hits = []
    for i in items:
        words = vocab.index([w for w, _ in model.most_similar_words(data.items.ids[i], k)])
        hits.append(distinctive[i, words].mean())
    return float(np.mean(hits))


@pytest.mark.parametrize(
    "make",
    [
        lambda: TextItem(
            embedding_dim=8, learning_rate=0.05, batch_size=32, max_epochs=15, skip_most_common=5, cosine_scale=5.0
        ),
        lambda: TextMF(
            embedding_dim=8,
            word_dim=8,
            l2=0.01,
            learning_rate=0.05,
            batch_size=64,
            max_epochs=25,
            skip_most_common=5,
            cosine_scale=5.0,
        ),
    ],
)
def test_most_similar_words_are_the_items_words(planted, make):
    # the 5 filler words of every review are the 5 most common: skipped, as the tutorial skips its 1,000
    data = with_reviews(planted).train
    model = make().fit(data)
    words = model.most_similar_words(data.items.ids[0], k=8)
    assert len(words) == 8 and all(isinstance(w, str) and w not in ("<pad>", "<unk>") for w, _ in words)
    assert [c for _, c in words] == sorted((c for _, c in words), reverse=True)
    own = set(block_words(planted.item_group[0]))
    assert len(own & {w for w, _ in words}) >= 6
    items = np.arange(data.n_items)
    real = distinctive_overlap(model, data, items, k=8)
    shuffled = replace(data, item_idx=np.random.default_rng(1).permutation(data.n_items)[data.item_idx])
    control = distinctive_overlap(model, shuffled, items, k=8)
    assert real > 0.5 and real > 3 * control
    with pytest.raises(ValueError, match="k must"):
        model.most_similar_words(data.items.ids[0], k=0)


def test_textmf_saves_vocabulary_and_loads_by_registry(planted, tmp_path):
    data = with_reviews(planted).train
    model = TextMF(embedding_dim=4, word_dim=4, max_epochs=2, skip_most_common=0).fit(data)
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back, TextMF) and back.vocabulary_ == model.vocabulary_
    item = data.items.ids[3]
    assert back.most_similar_words(item, 5) == model.most_similar_words(item, 5)
    assert "text_loss" in model.training_log_[-1] or "train_text_loss" in model.training_log_[-1]


def test_text_weight_zero_is_classic_mf(planted):
    """With text_weight=0 the text term is off: the rating predictions equal ClassicMF's on the same seed."""
    from recforge.models.mf import ClassicMF

    data = with_reviews(planted).train
    params = {"embedding_dim": 4, "l2": 0.01, "learning_rate": 0.05, "batch_size": 64, "max_epochs": 3}
    text = TextMF(**params, word_dim=4, text_weight=0.0, skip_most_common=0).fit(data)
    assert all("train_text_loss" not in row for row in text.training_log_)
    classic = ClassicMF(**params).fit(data)
    users, items = data.user_idx[:50], data.item_idx[:50]
    # the two draw their batches differently (TextMF also samples words), so compare learning, not numbers
    for model in (text, classic):
        err = model.predict_indices(data.user_idx, data.item_idx).numpy() - data.values
        assert np.sqrt(np.mean(err**2)) < 1.0
    assert text.predict_indices(users, items).shape == (50,)


# ---------------------------------------------------------------------- real data (slow)
DATA = os.environ.get("RECFORGE_DATA")
INSTRUMENTS = Path(DATA or "") / "amazon-2014-5core-musical-instruments" / "reviews_Musical_Instruments_5.json"


@pytest.fixture(scope="module")
def instruments():
    if not DATA or not INSTRUMENTS.is_file():
        pytest.skip("set RECFORGE_DATA to the folder holding amazon-2014-5core-musical-instruments/")
    from recforge.data.readers import read_amazon_reviews

    frame = read_amazon_reviews(INSTRUMENTS).interactions
    frame = frame.assign(source_row=np.arange(len(frame)))
    data = Interactions.from_frame(frame, extra_cols=("review_text", "source_row"))
    return every_nth_split(data, n=8, assign="halves", order="file")


@pytest.mark.slow
def test_real_text_rating_beats_the_global_mean(instruments):
    split = instruments
    mean = float(split.train.values.mean())
    target = split.test.target
    baseline = float(np.mean((mean - target.values) ** 2))
    model = TextRating(max_epochs=8).fit(split.train, valid=split.valid)
    mse = float(np.mean((model.predict_events(target) - target.values) ** 2))
    assert mse < baseline - 0.1


@pytest.mark.slow
def test_real_item_words_beat_a_shuffled_control(instruments):
    train = instruments.train
    model = TextItem(max_epochs=10, skip_most_common=100, cosine_scale=5.0).fit(train, valid=instruments.valid)
    items = np.flatnonzero(train.item_counts() >= 15)[:40]
    real = distinctive_overlap(model, train, items)
    shuffled = replace(train, item_idx=np.random.default_rng(0).permutation(train.n_items)[train.item_idx])
    control = distinctive_overlap(model, shuffled, items)
    assert real > 3 * control and real > 0.2  # measured: 0.43 against 0.08 (0.34 against 0.05 at scale 1)


# ---------------------------------------------------------------------- the command line
def amazon_file(path: Path, planted: Planted, bad_line: bool = False) -> Path:
    """The planted reviews as an Amazon JSON lines file (gzipped), optionally with one broken line."""
    data = with_reviews(planted).train
    lines = [
        json.dumps(
            {
                "reviewerID": str(data.users.ids[u]),
                "asin": str(data.items.ids[i]),
                "overall": float(r),
                "reviewText": t,
                "unixReviewTime": 1000 + n,
            }
        )
        for n, (u, i, r, t) in enumerate(
            zip(data.user_idx, data.item_idx, data.values, review_texts(data), strict=True)
        )
    ]
    if bad_line:
        lines.insert(4, '{"reviewerID": "u0-00", "asin": ')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_cli_run_on_a_json_file_and_words(planted, tmp_path, monkeypatch, capsys):
    from tests.cli_runner import cli

    source = amazon_file(tmp_path / "reviews_Planted_5.json.gz", planted)
    args = ["run", "--dataset", str(source), "--model", "textmf", "--split", "tutorial_every_8th"]
    params = ["model.max_epochs=10", "model.skip_most_common=5", "model.embedding_dim=8", "model.word_dim=8"]
    params += ["model.learning_rate=0.05", "model.batch_size=64", "model.cosine_scale=5.0"]
    code, out, err = cli(
        monkeypatch, capsys, *args, "--output-dir", str(tmp_path / "runs"), *[a for p in params for a in ("--set", p)]
    )
    assert code == 0, err
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if (p / "config.json").is_file())
    item = str(planted.train.items.ids[0])
    code, out, err = cli(monkeypatch, capsys, "words", str(run_dir), item, "-k", "5", "--json")
    assert code == 0, err
    words = [w["word"] for w in json.loads(out)["words"]]
    assert len(words) == 5 and len(set(words) & set(block_words(planted.item_group[0]))) >= 3
    code, out, err = cli(monkeypatch, capsys, "words", str(run_dir), "no-such-item")
    assert code == 2 and "no-such-item" in err

    broken = amazon_file(tmp_path / "broken.json.gz", planted, bad_line=True)
    code, out, err = cli(
        monkeypatch,
        capsys,
        "run",
        "--dataset",
        str(broken),
        "--model",
        "textmf",
        "--output-dir",
        str(tmp_path / "runs2"),
    )
    assert code == 2 and "line 5" in err and "not valid JSON" in err
    code, out, err = cli(
        monkeypatch,
        capsys,
        "run",
        "--dataset",
        str(broken),
        "--model",
        "textmf",
        "--output-dir",
        str(tmp_path / "runs2"),
        "--set",
        "data.bad_lines=skip",
        "--set",
        "model.max_epochs=1",
        "--set",
        "model.skip_most_common=0",
    )
    assert code == 0, err
    assert "skipped 1 bad line(s): line 5" in err


def test_cli_hybridneumf_takes_the_text_profile_of_the_training_reviews(planted, tmp_path, monkeypatch, capsys):
    """``--set model.item_embeddings=text``: the profile is built in the run from the training split's reviews only
    (the saved table equals the one of the training part built by hand, and differs from the one of all reviews)."""
    from recforge.data.readers import read_amazon_reviews
    from recforge.data.text import item_text_embeddings
    from recforge.models.ncf import HybridNeuMF
    from tests.cli_runner import cli

    source = amazon_file(tmp_path / "reviews_Planted_5.json.gz", planted)
    params = ["model.item_embeddings=text", "model.item_embedding_dim=6", "model.embedding_dim=4", "model.max_epochs=2"]
    code, _, err = cli(
        monkeypatch,
        capsys,
        *["run", "--dataset", str(source), "--model", "hybridneumf", "--split", "tutorial_every_8th"],
        *["--output-dir", str(tmp_path / "runs"), *[a for p in params for a in ("--set", p)]],
    )
    assert code == 0, err
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if (p / "config.json").is_file())
    model = load_model(run_dir / "model")
    frame = read_amazon_reviews(source).interactions
    frame = frame.assign(source_row=np.arange(len(frame)))  # file lines, for the tutorial's file-order split
    events = Interactions.from_frame(frame, extra_cols=("review_text", "source_row"), duplicates="keep")
    split = every_nth_split(events, n=8, assign="halves", order="file")
    assert list(model.items_.ids) == list(split.train.items.ids)
    table, known, _ = item_text_embeddings(split.train, dim=6, seed=0)
    np.testing.assert_allclose(model.module_.item_features.cpu().numpy(), table, rtol=1e-5, atol=1e-6)
    assert model.item_embedding_coverage_ == pytest.approx(known.mean())
    leaked, _, _ = item_text_embeddings(events, dim=6, seed=0)  # every review, held-out ones too
    leaked = leaked[events.items.index(list(split.train.items.ids))]
    assert not np.allclose(np.abs(leaked), np.abs(table), atol=1e-3)  # the held-out reviews would change it
    with pytest.raises(ValueError, match=r"item_embeddings='text'.*review_text"):
        HybridNeuMF(item_embeddings="text", max_epochs=1).fit(planted.train)  # events without review text


def test_text_profiles_as_hybrid_neumf_item_embeddings(planted, tmp_path):
    from recforge.data.text import item_text_embeddings, write_item_embeddings
    from recforge.models.ncf import HybridNeuMF

    data = with_reviews(planted).train
    table, known, _ = item_text_embeddings(data, dim=6, skip_most_common=5)
    # the text profile separates the item blocks: each item's nearest other item is in its own block
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    assert (planted.item_group[sim.argmax(1)] == planted.item_group).mean() > 0.95
    path = write_item_embeddings(tmp_path / "text.npz", data.items, table, known)
    model = HybridNeuMF(item_embeddings=str(path), embedding_dim=4, layers=(8, 4), max_epochs=2).fit(data)
    assert model.item_embedding_coverage_ == 1.0
    assert torch.allclose(model.module_.item_features.cpu(), torch.from_numpy(table))


def test_lazy_adam_step_equals_autograd_and_adam():
    """From fresh moments one hand-written step equals autograd + torch's Adam (rows without gradient do not move
    under Adam's first step either), for the text, the profiles and the L2 term."""
    import copy

    data = sentiment_data(n=200)
    model = TextProfileRating(embedding_dim=6, profile_dim=3, l2=0.5, batch_size=16, max_epochs=1).fit(data)
    model._prepare(data)
    batch = next(iter(model.batches(np.random.default_rng(3), torch.device("cpu"))))
    lazy, ref = copy.deepcopy(model.module_), copy.deepcopy(model.module_)
    model.__dict__.pop("moments_", None)
    with torch.no_grad():
        out = model._lazy_adam_step(lazy, batch, step=1)
    model.optimizer = "adam"
    optimizer = torch.optim.Adam(ref.parameters(), lr=model.learning_rate)
    losses = model.training_step(ref, batch, StepContext())
    losses["loss"].backward()
    optimizer.step()
    assert float(out["mse"]) == pytest.approx(float(losses["mse"]), rel=1e-5)
    for name, param in lazy.named_parameters():
        torch.testing.assert_close(param, dict(ref.named_parameters())[name], rtol=1e-5, atol=1e-7, msg=name)
    moved = (lazy.words.weight != model.module_.words.weight).any(1)
    assert 0 < int(moved.sum()) < len(moved)  # only the batch's words moved
