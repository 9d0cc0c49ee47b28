"""recforge.data.text: tokenizer, vocabulary pruning (the tutorial's), token arrays and batches, word sampling,
item text profiles; the tutorial's split (every 8th line, halves); review text carried through the split; no
word of a test review reaches a vocabulary or profile built on the training part."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.readers import DataFormatError, read_amazon_reviews
from recforge.data.splits import PRESETS, every_nth_split
from recforge.data.text import (
    TokenArrays,
    Vocabulary,
    item_text_embeddings,
    item_text_profiles,
    review_texts,
    tokenize,
    write_item_embeddings,
)

TEXTS = ["Great strings, don't break!", None, "great great sound", "bad", ""]


def test_tokenize_words_and_whitespace():
    assert tokenize(TEXTS) == [["great", "strings", "don't", "break"], [], ["great", "great", "sound"], ["bad"], []]
    assert tokenize(["a  b"], "whitespace") == [["a", "", "b"]]  # the tutorial's split(" ") as written
    assert tokenize(["Great strings,"], "whitespace") == [["Great", "strings,"]]
    with pytest.raises(ValueError, match="tokenizer"):
        tokenize(["x"], "chars")  # type: ignore[arg-type]


def test_vocabulary_matches_the_tutorials_pruning():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    texts = [
        " ".join(rng.choice(words, size=rng.integers(1, 30), p=np.r_[np.full(20, 0.04), np.full(20, 0.01)]))
        for _ in range(200)
    ]
    count = Counter()
    for t in texts:
        count.update(t.split(" "))
    # word_dic = {k: i for i, (k, v) in enumerate(word_count.most_common(max_words)[skip:], 2)}
    expected = {k: i for i, (k, _) in enumerate(count.most_common(25)[5:], 2)}
    vocab = Vocabulary.build(texts, max_words=20, skip_most_common=5, tokenizer="whitespace")
    assert {w: i for i, w in enumerate(vocab.words, 2)} == expected
    assert len(vocab) == 22  # + pad and unknown


def test_encode_padded_bag():
    vocab = Vocabulary.build(TEXTS)
    assert vocab.words == ["great", "strings", "don't", "break", "sound", "bad"]  # ties: first seen first
    tokens = vocab.encode([*TEXTS[:4], "unseen great"])
    assert tokens.indptr.tolist() == [0, 4, 4, 7, 8, 10]
    assert tokens.tokens.tolist() == [2, 3, 4, 5, 2, 2, 6, 7, 1, 2]
    assert tokens.padded().tolist() == [[2, 3, 4, 5], [0, 0, 0, 0], [2, 2, 6, 0], [7, 0, 0, 0], [1, 2, 0, 0]]
    assert tokens.padded([2, 0], max_len=2).tolist() == [[2, 2], [2, 3]]
    flat, offsets = tokens.bag(np.array([4, 1, 0]))
    assert flat.tolist() == [1, 2, 2, 3, 4, 5] and offsets.tolist() == [0, 2, 2]
    assert vocab.word([0, 1, 2]) == ["<pad>", "<unk>", "great"]


def test_sample_without_replacement_and_padding():
    tokens = TokenArrays(np.array([0, 6, 8, 8, 9]), np.array([2, 3, 4, 5, 6, 7, 8, 1, 9]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = tokens.sample(np.array([0, 1, 2, 3, 0]), 3, rng)
        assert out.shape == (5, 3)
        for row in (0, 4):
            assert len(set(out[row])) == 3 and set(out[row]) <= {2, 3, 4, 5, 6, 7}
        assert out[1].tolist() == [8, 0, 0]  # the unknown word (1) is skipped; padding fills the rest
        assert out[2].tolist() == [0, 0, 0] and out[3].tolist() == [9, 0, 0]
    # every word of a long review gets drawn (uniform positions)
    seen = np.concatenate([tokens.sample(np.array([0]), 1, rng)[0] for _ in range(300)])
    assert set(seen) == {2, 3, 4, 5, 6, 7}
    # same seed, same words
    a = tokens.sample(np.arange(4), 2, np.random.default_rng(5))
    assert np.array_equal(a, tokens.sample(np.arange(4), 2, np.random.default_rng(5)))


def test_vocabulary_json_round_trip(tmp_path):
    vocab = Vocabulary.build(TEXTS, tokenizer="whitespace")
    vocab.save(tmp_path / "vocab.json")
    back = Vocabulary.load(tmp_path / "vocab.json")
    assert back == vocab and back.tokenizer == "whitespace"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match=r"bad\.json"):
        Vocabulary.load(tmp_path / "bad.json")


def test_item_text_profiles_exact():
    vocab = Vocabulary.build(["a b", "b c"])  # a=2? counts: b=2, a=1, c=1 -> b:2, a:3, c:4
    assert vocab.words == ["b", "a", "c"]
    tokens = vocab.encode(["a b", "b c", "b zz"])
    counts = item_text_profiles(np.array([0, 1, 1]), tokens, 2, len(vocab), weighting="count", normalize=False)
    assert counts.toarray().tolist() == [[0, 0, 1, 1, 0], [0, 0, 2, 0, 1]]
    tfidf = item_text_profiles(np.array([0, 1, 1]), tokens, 2, len(vocab), weighting="tfidf", normalize=False)
    idf_b, idf_rare = 1.0, np.log(3 / 2) + 1.0
    assert tfidf.toarray() == pytest.approx(np.array([[0, 0, idf_b, idf_rare, 0], [0, 0, 2 * idf_b, 0, idf_rare]]))
    unit = item_text_profiles(np.array([0, 1, 1]), tokens, 2, len(vocab))
    assert np.linalg.norm(unit.toarray(), axis=1) == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------------- the tutorial's split, text carried
@pytest.fixture
def reviews() -> Interactions:
    n = 40
    frame = pd.DataFrame(
        {
            "user": [f"u{i % 7}" for i in range(n)],
            "item": [f"i{i % 5}" for i in range(n)],
            "rating": np.float32(np.arange(n) % 5 + 1),
            "review_text": [f"line{i} common words" for i in range(n)],
            "source_row": np.arange(n),
        }
    )
    return Interactions.from_frame(frame, extra_cols=("review_text", "source_row"), duplicates="keep")


def test_every_8th_halves_in_file_order(reviews):
    split = every_nth_split(reviews, n=8, assign="halves", order="file")
    # lines 0, 8, 16, 24, 32 held out: cutout = 5 // 2 = 2 -> valid lines 0, 8; test lines 16, 24, 32
    assert sorted(split.valid.target.extra["source_row"].tolist()) == [0, 8]
    assert sorted(split.test.target.extra["source_row"].tolist()) == [16, 24, 32]
    assert len(split.train) == 35 and not (split.train.extra["source_row"] % 8 == 0).any()
    # the text of each event travels with it
    for part in (split.train, split.valid.target, split.test.target):
        rows, texts = part.extra["source_row"], review_texts(part)
        assert all(t.startswith(f"line{r} ") for r, t in zip(rows, texts, strict=True))
    alternate = every_nth_split(reviews, n=8, order="file")
    assert sorted(alternate.valid.target.extra["source_row"].tolist()) == [0, 16, 32]
    assert PRESETS["tutorial_every_8th"] == ("every_nth", {"n": 8, "assign": "halves", "order": "file"})
    with pytest.raises(ValueError, match="assign"):
        every_nth_split(reviews, assign="blocks")
    with pytest.warns(UserWarning, match="source_row"):
        no_lines = every_nth_split(
            Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 2]})), order="file"
        )
    assert no_lines.params["order"] == "events"


def test_no_word_of_a_test_review_reaches_the_vocabulary_or_profiles(reviews):
    texts = review_texts(reviews).copy()
    rows = reviews.extra["source_row"]
    texts[rows == 24] = "zyzzyva only in a test review"  # line 24: held out, second half -> test
    data = Interactions(
        reviews.user_idx,
        reviews.item_idx,
        reviews.values,
        reviews.users,
        reviews.items,
        extra={"review_text": texts, "source_row": rows},
    )
    split = every_nth_split(data, n=8, assign="halves", order="file")
    assert any("zyzzyva" in t for t in review_texts(split.test.target))
    vocab = Vocabulary.build(review_texts(split.train), max_words=1000)
    assert "zyzzyva" not in vocab and "common" in vocab
    full = Vocabulary.build(texts, max_words=1000)  # the control: built on everything it would be there
    assert "zyzzyva" in full
    profiles = item_text_profiles(
        split.train.item_idx, vocab.encode(review_texts(split.train)), data.n_items, len(vocab)
    )
    assert profiles.shape == (data.n_items, len(vocab)) and profiles[:, vocab.index(["common"])].sum() > 0


def test_review_texts_missing_column_is_explained():
    data = Interactions.from_frame(pd.DataFrame({"user": [1], "item": [1]}))
    with pytest.raises(ValueError, match="review_text"):
        review_texts(data)


# ---------------------------------------------------------------------- review files: bad lines, Instant Video
def review_line(user: str, item: str, rating, text: str | None = "fine product", t: int = 1) -> str:
    record = {"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": t, "summary": "s"}
    if text is not None:
        record["reviewText"] = text
    return json.dumps(record)


BAD_FILE = [
    review_line("a", "x", 5.0),
    review_line("a", "y", 4.0, text=None),  # line 2: no reviewText
    '{"reviewerID": "b", "asin": ',  # line 3: not JSON
    review_line("b", "x", 7.0),  # line 4: a rating outside 1-5
    review_line("b", "y", "five"),  # line 5: not a number
    review_line("c", "x", 3.0),
]


def test_review_file_bad_lines_rejected_with_line_numbers(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("\n".join(BAD_FILE) + "\n")
    with pytest.raises(DataFormatError, match=r"line 2, field 'reviewText': missing value"):
        read_amazon_reviews(path, require_text=True)
    with pytest.raises(DataFormatError, match=r"line 3: not valid JSON"):
        read_amazon_reviews(path, bad_lines="error", ratings=(1, 2, 3, 4, 5))
    path.write_text("\n".join([BAD_FILE[0], BAD_FILE[3]]) + "\n")
    with pytest.raises(DataFormatError, match=r"line 2, field 'overall': unknown rating 7.0"):
        read_amazon_reviews(path, ratings=(1, 2, 3, 4, 5))
    assert len(read_amazon_reviews(path).interactions) == 2  # without a rating scale 7 is a rating


def test_review_file_bad_lines_skipped_with_a_count(tmp_path):
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(("\n".join(BAD_FILE) + "\n").encode()))
    with pytest.warns(UserWarning, match=r"skipped 4 bad line\(s\): line 2 \(reviewText: missing value\); line 3"):
        raw = read_amazon_reviews(path, bad_lines="skip", require_text=True, ratings=(1, 2, 3, 4, 5))
    frame = raw.interactions
    assert frame["user"].tolist() == ["a", "c"] and frame["rating"].tolist() == [5.0, 3.0]
    assert frame.attrs["skipped_lines"] == [2, 3, 4, 5]
    assert frame["review_text"].tolist() == ["fine product", "fine product"]
    with pytest.warns(UserWarning, match="skipped 2"):  # texts not required, no scale: lines 3 and 5 only
        kept = read_amazon_reviews(path, bad_lines="skip").interactions
    assert kept["review_text"].tolist() == ["fine product", "", "fine product", "fine product"]
    with pytest.raises(ValueError, match="bad_lines"):
        read_amazon_reviews(path, bad_lines="ignore")  # type: ignore[arg-type]


INSTANT_VIDEO = [  # the 2014 5-core layout of reviews_Amazon_Instant_Video_5.json.gz
    {
        "reviewerID": "A11N155CW1UV02",
        "asin": "B000H00VBQ",
        "reviewerName": "AdrianaM",
        "helpful": [0, 0],
        "reviewText": "I had big expectations because I love English TV, in particular Investigative and detective "
        "stuff but this guy is really boring. It didn't appeal to me at all.",
        "overall": 2.0,
        "summary": "A little bit boring for me",
        "unixReviewTime": 1399075200,
        "reviewTime": "05 3, 2014",
    },
    {
        "reviewerID": "A3BC8O2KCL29V2",
        "asin": "B000H00VBQ",
        "reviewerName": "Carol T",
        "helpful": [0, 0],
        "reviewText": "I highly recommend this series. It is a must for anyone who is yearning to watch a grown up "
        "television series.",
        "overall": 5.0,
        "summary": "Excellent Grown Up TV",
        "unixReviewTime": 1346630400,
        "reviewTime": "09 3, 2012",
    },
]


def test_instant_video_registered_and_read_from_its_file(tmp_path):
    from recforge.data.datasets import get_spec, load_dataset

    spec = get_spec("amazon-instant-video")
    assert spec.url.endswith("reviews_Amazon_Instant_Video_5.json.gz")
    folder = tmp_path / spec.folder
    folder.mkdir()
    (folder / "reviews_Amazon_Instant_Video_5.json.gz").write_bytes(
        gzip.compress("".join(json.dumps(r) + "\n" for r in INSTANT_VIDEO).encode())
    )
    raw = load_dataset("amazon-instant-video", data_dir=tmp_path, download=False)
    frame = raw.interactions
    assert frame["user"].tolist() == ["A11N155CW1UV02", "A3BC8O2KCL29V2"]
    assert frame["rating"].tolist() == [2.0, 5.0] and frame["timestamp"].tolist() == [1399075200, 1346630400]
    assert frame["review_text"].iloc[1].startswith("I highly recommend")


def test_item_text_embeddings_train_only_and_written_for_hybrid(reviews, tmp_path):
    from recforge.data.embeddings import read_item_embeddings

    texts = review_texts(reviews).copy()
    rows = reviews.extra["source_row"]
    texts[rows == 24] = "zyzzyva zyzzyva zyzzyva"  # a test review's own word
    texts[rows == 1] = "cable cable strings"
    data = Interactions(
        reviews.user_idx,
        reviews.item_idx,
        reviews.values,
        reviews.users,
        reviews.items,
        extra={"review_text": texts, "source_row": rows},
    )
    split = every_nth_split(data, n=8, assign="halves", order="file")
    table, known, vocab = item_text_embeddings(split.train, dim=3)
    assert table.shape == (data.n_items, 3) and known.all() and "zyzzyva" not in vocab
    # the leak control: the same embeddings built on every review do see the word
    _, _, leaky = item_text_embeddings(data, dim=3)
    assert "zyzzyva" in leaky
    # rows are the SVD coordinates U_d S_d (up to the signs of the columns)
    profiles = item_text_profiles(
        split.train.item_idx, vocab.encode(review_texts(split.train)), data.n_items, len(vocab)
    ).toarray()
    u, s, _ = np.linalg.svd(profiles, full_matrices=False)
    assert s[1] > s[2] + 0.1  # the third singular value is tied (symmetric data): compare the first two columns
    assert np.abs(table[:, :2]) == pytest.approx(np.abs(u[:, :2] * s[:2]), abs=1e-4)
    path = write_item_embeddings(tmp_path / "text.npz", split.train.items, table, known)
    back, found = read_item_embeddings(path, split.train.items)
    assert found.all() and back == pytest.approx(table)
