"""Review-text models on the PyTorch recommender tutorial's protocol (issue 19), and epoch times against the
tutorial's own DataLoader + collate loop.

    RECFORGE_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/bench_text.py [--quick] [--out FILE]

Part 1 -- accuracy. Amazon Musical Instruments 2014 5-core and All Beauty 2018 5-core, split as the tutorial does
(every 8th line of the file held out, the first half of the held-out lines validation, the second half test:
the ``tutorial_every_8th`` preset). Train / valid / test MSE of the global training mean, ClassicMF, BiasedMF,
TextRating, TextProfileRating, TextMF, TextBiasedMF and HybridNeuMF fed with the text profile of the training
reviews (tf-idf, truncated SVD). Every model's hyper-parameters are chosen on the validation MSE from the small
grid below (the test part is read once, for the chosen setting). Then the nearest words of the three most
reviewed training items (TextItem and TextBiasedMF).

Part 2 -- speed. One training epoch at the tutorial's batch size (16) on the Instruments training part: the
tutorial's loop (a list of ``(user, item, words, rating)`` tuples, ``DataLoader(shuffle=True,
collate_fn=...)``, a Python dict lookup per word and a padded tensor per batch; its ClassicMF with SGD and its
``RatingPred`` EmbeddingBag with Adam) against recforge's ClassicMF (SGD; also lazy Adam, for information) and
TextRating (lazy Adam) through the Trainer, interleaved in the same process, several rounds; the median epoch of
each is reported. recforge's steps there write their gradient out (no autograd, only the batch's rows updated). Only the
training loop is timed on both sides (the tutorial's epoch also runs its validation and test loops).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from recforge.data.datasets import load_dataset
from recforge.data.interactions import Interactions
from recforge.data.splits import Split, every_nth_split
from recforge.data.text import item_text_embeddings, write_item_embeddings
from recforge.models.mf import BiasedMF, ClassicMF
from recforge.models.ncf import HybridNeuMF
from recforge.models.text import TextBiasedMF, TextItem, TextMF, TextProfileRating, TextRating
from recforge.training.callbacks import Callback
from recforge.training.options import TrainingOptions

DATASETS = ("amazon-instruments", "amazon-beauty")


def tutorial_split(name: str) -> Split:
    raw = load_dataset(name, download=False)
    frame = raw.interactions.assign(source_row=np.arange(len(raw.interactions)))
    data = Interactions.from_frame(frame, extra_cols=("review_text", "source_row"), duplicates="keep")
    return every_nth_split(data, n=8, assign="halves", order="file")


def mse(model: Any, events: Interactions) -> float:
    if isinstance(model, float):
        pred = np.full(len(events), model)
    elif hasattr(model, "predict_events"):
        pred = model.predict_events(events)
    else:
        pred = model.predict_indices(events.user_idx, events.item_idx).numpy()
    return float(np.mean((pred - events.values) ** 2))


def grid(split: Split, tmp: Path, quick: bool) -> dict[str, list[tuple[str, Any]]]:
    """Candidate settings of every model, as (label, factory)."""
    out: dict[str, list[tuple[str, Any]]] = {
        "ClassicMF": [
            (f"l2={l2}", lambda l2=l2: ClassicMF(embedding_dim=25, l2=l2, learning_rate=0.01, patience=10))
            for l2 in (0.1, 0.5, 2.0)
        ],
        "BiasedMF": [
            (f"l2={l2}, bias_l2={b}", lambda l2=l2, b=b: BiasedMF(embedding_dim=25, l2=l2, bias_l2=b))
            for l2, b in ((0.1, 0.005), (1.0, 0.05))
        ],
        "TextRating": [("embedding_dim=50", lambda: TextRating(embedding_dim=50))],
        "TextProfileRating": [
            (f"l2={l2}", lambda l2=l2: TextProfileRating(embedding_dim=50, profile_dim=25, l2=l2))
            for l2 in (0.0, 1.0, 10.0)
        ],
        "TextMF": [
            (f"l2={l2}", lambda l2=l2: TextMF(l2=l2, learning_rate=0.01, patience=10, skip_most_common=100))
            for l2 in (0.5, 2.0)
        ],
        "TextBiasedMF": [
            (
                f"l2={l2}, bias_l2={b}",
                lambda l2=l2, b=b: TextBiasedMF(l2=l2, bias_l2=b, skip_most_common=100),
            )
            for l2, b in ((0.1, 0.005), (1.0, 0.05))
        ],
    }
    table, known, _ = item_text_embeddings(split.train, dim=32, skip_most_common=100)
    path = write_item_embeddings(tmp / "text_profile.npz", split.train.items, table, known)
    out["HybridNeuMF+text"] = [
        (f"l2={l2}", lambda l2=l2: HybridNeuMF(item_embeddings=str(path), embedding_dim=16, layers=(32, 16), l2=l2))
        for l2 in (0.0, 0.01)
    ]
    if quick:
        out = {k: v[:1] for k, v in out.items()}
    return out


def accuracy(name: str, quick: bool) -> dict[str, Any]:
    split = tutorial_split(name)
    parts = {"train": split.train, "valid": split.valid.target, "test": split.test.target}
    mean = float(split.train.values.mean())
    rows = {"global mean": {"setting": "", **{p: mse(mean, e) for p, e in parts.items()}}}
    print(f"== {name}: {json.dumps(split.summary())}", flush=True)
    print(f"global mean  {rows['global mean']}", flush=True)
    fitted: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, settings in grid(split, Path(tmp), quick).items():
            best = None
            for label, make in settings:
                t0 = time.perf_counter()
                model = make().fit(split.train, valid=split.valid)
                valid = mse(model, parts["valid"])
                print(f"  {model_name:18s} {label:24s} valid {valid:.4f} ({time.perf_counter() - t0:.1f}s)", flush=True)
                if best is None or valid < best[0]:
                    best = (valid, label, model)
            assert best is not None
            _, label, model = best
            rows[model_name] = {"setting": label, **{p: mse(model, e) for p, e in parts.items()}}
            fitted[model_name] = model
            print(f"{model_name:18s} {rows[model_name]}", flush=True)
    text_item = TextItem(skip_most_common=100).fit(split.train, valid=split.valid)
    top = np.argsort(-split.train.item_counts(), kind="stable")[:3]
    words = {}
    for i in top:
        item = str(split.train.items.ids[i])
        words[item] = {
            "reviews": int(split.train.item_counts()[i]),
            "TextItem": [w for w, _ in text_item.most_similar_words(item, 8)],
            "TextMF": [w for w, _ in fitted["TextMF"].most_similar_words(item, 8)],
            "TextBiasedMF": [w for w, _ in fitted["TextBiasedMF"].most_similar_words(item, 8)],
        }
        print(item, words[item], flush=True)
    return {"summary": split.summary(), "mse": rows, "words": words}


# ====================================================================== the tutorial's loop (throw-away copy)
class TutorialClassicMF(nn.Module):
    def __init__(self, nb_users: int, nb_items: int, latent_size: int):
        super().__init__()
        self.users = nn.Embedding(nb_users, latent_size)
        self.items = nn.Embedding(nb_items, latent_size)
        self.mean = nn.Parameter(torch.FloatTensor(1).fill_(3))
        nn.init.normal_(self.users.weight, 0, 0.01)
        nn.init.normal_(self.items.weight, 0, 0.01)

    def forward(self, user, item):
        embed_u, embed_i = self.users(user).squeeze(1), self.items(item).squeeze(1)
        return torch.sum(embed_u * embed_i, 1) + self.mean, embed_u, embed_i, self.mean


class TutorialRatingPred(nn.Module):
    def __init__(self, dic_size: int, word_latent_size: int):
        super().__init__()
        self.text_emb = nn.EmbeddingBag(dic_size, word_latent_size)
        self.to_rating = nn.Linear(word_latent_size, 1)

    def forward(self, text):
        return self.to_rating(self.text_emb(text)).squeeze(1)


def tutorial_data(split: Split, max_words: int = 10_000) -> tuple[list[tuple], dict[str, int]]:
    """``prep_train`` and ``word_dic`` as the tutorial builds them (user/item keys, ``text.split(" ")``)."""
    u_dic: dict[Any, int] = {}
    i_dic: dict[Any, int] = {}
    word_count: Counter = Counter()
    prep = []
    texts = split.train.extra["review_text"]
    for u, i, text, r in zip(split.train.user_idx, split.train.item_idx, texts, split.train.values, strict=True):
        uk = u_dic.setdefault(u, len(u_dic))
        ik = i_dic.setdefault(i, len(i_dic))
        ptext = str(text).split(" ")
        word_count.update(ptext)
        prep.append((uk, ik, ptext, float(r)))
    word_dic = {k: i for i, (k, v) in enumerate(word_count.most_common(max_words), 2)}
    return prep, word_dic


def tutorial_epoch_mf(prep: list[tuple], model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
    def tuple_batch(batch):
        users, items, _, ratings = zip(*batch, strict=True)
        return torch.LongTensor(users), torch.LongTensor(items), torch.FloatTensor(ratings)

    loader = DataLoader(prep, batch_size=16, shuffle=True, num_workers=0, collate_fn=tuple_batch)
    t0 = time.perf_counter()
    for users_t, items_t, ratings_t in loader:
        model.train()
        model.zero_grad()
        pred, *params = model(users_t, items_t)
        loss = F.mse_loss(pred, ratings_t, reduction="sum") / pred.size(0)
        loss = loss + 0.001 * sum(torch.mean(p.norm(2, -1)) for p in params)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def tutorial_epoch_text(prep: list[tuple], word_dic: dict[str, int], model: nn.Module, optimizer: Any) -> float:
    def tuple_batch_text(batch):
        users, items, reviews, ratings = zip(*batch, strict=True)
        max_len = max(len(r) for r in reviews)
        reviews_t = torch.LongTensor(len(reviews), max_len).fill_(0)
        for i, rev in enumerate(reviews):
            rev_words = [word_dic.get(w, 1) for w in rev]
            reviews_t[i, : len(rev_words)] = torch.LongTensor(rev_words)
        return torch.LongTensor(users), torch.LongTensor(items), reviews_t, torch.FloatTensor(ratings)

    loader = DataLoader(prep, batch_size=16, shuffle=True, num_workers=0, collate_fn=tuple_batch_text)
    t0 = time.perf_counter()
    for _, _, reviews_t, ratings_t in loader:
        model.train()
        model.zero_grad()
        loss = F.mse_loss(model(reviews_t), ratings_t)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


class EpochTimes(Callback):
    """Wall time of every training epoch (no validation runs here)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._mark = 0.0

    def on_fit_start(self, trainer: Any) -> None:
        self._mark = time.perf_counter()

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        self.times.append(now - self._mark)
        self._mark = now


def recforge_epoch(model: Any, train: Interactions, epochs: int = 4) -> float:
    """The median epoch of a fit of ``epochs`` epochs (after the first, which includes start-up)."""
    timer = EpochTimes()
    model.set_params(max_epochs=epochs).fit(train, options=TrainingOptions(callbacks=(timer,), progress_bar=False))
    return statistics.median(timer.times[1:] or timer.times)


def speed(rounds: int) -> dict[str, Any]:
    split = tutorial_split("amazon-instruments")
    prep, word_dic = tutorial_data(split)
    n_users, n_items = split.train.n_users, split.train.n_items
    names = ("tutorial MF", "recforge MF", "recforge MF lazy Adam", "tutorial text", "recforge text")
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        torch.manual_seed(r)
        mf = TutorialClassicMF(n_users, n_items, 25)
        times["tutorial MF"].append(tutorial_epoch_mf(prep, mf, torch.optim.SGD(mf.parameters(), lr=0.01)))
        ours = ClassicMF(embedding_dim=25, optimizer="sgd", learning_rate=0.01, l2=0.001, batch_size=16, seed=r)
        times["recforge MF"].append(recforge_epoch(ours, split.train))
        adam_mf = ClassicMF(
            embedding_dim=25, optimizer="lazy_adam", learning_rate=0.01, l2=0.001, batch_size=16, seed=r
        )
        times["recforge MF lazy Adam"].append(recforge_epoch(adam_mf, split.train))
        text = TutorialRatingPred(len(word_dic) + 2, 50)
        times["tutorial text"].append(
            tutorial_epoch_text(prep, word_dic, text, torch.optim.Adam(text.parameters(), lr=0.001))
        )
        ours_text = TextRating(embedding_dim=50, batch_size=16, tokenizer="whitespace", seed=r)
        times["recforge text"].append(recforge_epoch(ours_text, split.train))
        print({k: round(v[-1], 3) for k, v in times.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return {
        "events": len(split.train),
        "rounds": rounds,
        "median_seconds": med,
        "min_seconds": best,
        "speedup_mf": med["tutorial MF"] / med["recforge MF"],
        "speedup_text": med["tutorial text"] / med["recforge text"],
        "speedup_mf_min": best["tutorial MF"] / best["recforge MF"],
        "speedup_text_min": best["tutorial text"] / best["recforge text"],
        # each round's two loops ran back to back under the same load: the ratio within a round is the fairest
        "speedup_mf_per_round": [t / o for t, o in zip(times["tutorial MF"], times["recforge MF"], strict=True)],
        "speedup_text_per_round": [t / o for t, o in zip(times["tutorial text"], times["recforge text"], strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one setting per model, fewer timing rounds")
    parser.add_argument("--part", choices=("all", "accuracy", "speed"), default="all")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    if args.part in ("all", "speed"):
        results["speed"] = speed(3 if args.quick else 5)
        print(json.dumps(results["speed"], indent=1), flush=True)
    if args.part in ("all", "accuracy"):
        results["accuracy"] = {name: accuracy(name, args.quick) for name in DATASETS}
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
