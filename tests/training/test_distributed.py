"""Data-parallel training and evaluation on 2 CPU processes (gloo): the same result as one process.

Each test spawns two fresh interpreters joined by a file rendezvous in ``tmp_path``; rank 0 writes what it
computed, and the test compares it with the same computation in this process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.training.test_schedules import TinyGAN
from torch import nn

from recforge import distributed
from recforge.data.interactions import Interactions
from recforge.data.splits import EvalPart
from recforge.evaluation.evaluate import evaluate_ranking
from recforge.metrics import NDCG, Recall
from recforge.models.linear import EASE
from recforge.training.callbacks import EarlyStopping, History
from recforge.training.options import TrainingOptions
from recforge.training.schedules import Cycle
from recforge.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch without torch.distributed")

CPU = TrainingOptions(device="cpu")


class LinearRegression:
    """y = X w* + noise, shuffled mini-batches, MSE (no dropout: one process and two must agree exactly)."""

    def __init__(self, batch_size: int, n: int = 256, d: int = 6):
        gen = np.random.default_rng(0)
        self.x = torch.from_numpy(gen.normal(size=(n, d))).float()
        self.y = self.x @ torch.arange(1.0, d + 1) + 0.1 * torch.from_numpy(gen.normal(size=n)).float()
        self.batch_size = batch_size
        self.validated_on: list[int] = []

    def build_module(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Linear(self.x.shape[1], 1)

    def configure_optimizers(self, module):
        return [torch.optim.Adam(module.parameters(), lr=0.05)]

    def batches(self, rng, device):
        order = rng.permutation(len(self.x))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def training_step(self, module, batch, ctx):
        x, y = batch
        assert isinstance(module, nn.Linear)  # the step sees the model's own module, not the DDP wrapper
        mse = ((module(x).squeeze(1) - y) ** 2).mean()
        return {"loss": mse}

    def validate(self, module):
        self.validated_on.append(distributed.world().rank)
        # a validation curve that stops improving after epoch 3, the same on every rank
        return {"score": float(min(len(self.validated_on), 3))}


def _train(task: LinearRegression, max_epochs: int = 6) -> tuple[nn.Module, History]:
    history = History()
    callbacks = [EarlyStopping("valid_score", mode="max", patience=1), history]
    trainer = Trainer(max_epochs=max_epochs, seed=4, options=CPU, callbacks=callbacks, validate=task.validate)
    return trainer.fit(task), history


def _worker(rank: int, size: int, init_file: str, out: str, job: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        if job == "train":
            task = LinearRegression(batch_size=16)
            module, history = _train(task)
            result = {"weight": module.weight.detach(), "epochs": len(history.epochs), "validated": task.validated_on}
        elif job == "gan":
            gan = TinyGAN(n_batches=6)
            module = Trainer(max_epochs=2, options=CPU, schedule=Cycle.ratio(3, 1)).fit(gan)
            result = {"weights": [p.detach() for p in module.parameters()], "steps": gan.steps}
        else:
            data = _evaluation_data()
            res = evaluate_ranking(
                EASE(l2=5.0).fit(data.history), data, [NDCG(10), Recall(5)], batch_size=7, world=distributed.world()
            )
            result = {"metrics": res.metrics, "per_user": res.per_user.to_dict("list"), "n_users": res.n_users}
        all_results = distributed.gather(result)
        if rank == 0:
            torch.save(all_results, out)
    finally:
        distributed.shutdown()


def _spawn(tmp_path, job: str) -> list[dict]:
    out = tmp_path / "out.pt"
    mp.start_processes(_worker, args=(2, str(tmp_path / "rendezvous"), str(out), job), nprocs=2, start_method="spawn")
    return torch.load(out, weights_only=False)


def _evaluation_data() -> EvalPart:
    gen = np.random.default_rng(3)
    history = (gen.random((40, 30)) < 0.2).astype(np.float32)
    target = ((gen.random((40, 30)) < 0.1) & (history == 0)).astype(np.float32)
    target[::9] = 0  # some users without targets
    h = Interactions.from_csr(history)
    return EvalPart(h, Interactions.from_csr(target, users=h.users, items=h.items), known_users=True)


def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    ranks = _spawn(tmp_path, "train")
    single, history = _train(LinearRegression(batch_size=32))
    for r in ranks:
        torch.testing.assert_close(r["weight"], single.weight.detach(), rtol=1e-5, atol=1e-6)
        assert r["epochs"] == len(history.epochs) < 6  # early stopping decided alike on every rank
    assert ranks[0]["validated"] == [0] * ranks[0]["epochs"] and ranks[1]["validated"] == []  # rank 0 validates


def test_sharded_evaluation_equals_one_process(tmp_path):
    ranks = _spawn(tmp_path, "evaluate")
    data = _evaluation_data()
    single = evaluate_ranking(EASE(l2=5.0).fit(data.history), data, [NDCG(10), Recall(5)], batch_size=7)
    for r in ranks:
        assert r["metrics"] == single.metrics and r["n_users"] == single.n_users
        pd.testing.assert_frame_equal(pd.DataFrame(r["per_user"]), single.per_user)


def test_two_optimisers_on_a_schedule_stay_in_sync_across_ranks(tmp_path):
    first, second = _spawn(tmp_path, "gan")
    assert first["steps"] == second["steps"] and len(first["steps"]) == 2 * 3  # 6 batches = 3 groups an epoch
    assert [i for _, i in first["steps"]] == [0, 0, 0, 1, 0, 0]
    for a, b in zip(first["weights"], second["weights"], strict=True):
        assert torch.equal(a, b)


def test_uneven_last_group_is_reweighted():
    trainer = Trainer(max_epochs=1, options=CPU)
    trainer.world = distributed.World(rank=1, size=3)
    assert list(trainer._shard(iter("abcde"))) == [("b", 1.0), ("e", 1.5)]
    trainer.world = distributed.World(rank=2, size=3)
    assert list(trainer._shard(iter("abcde"))) == [("c", 1.0), ("d", 0.0)]  # no batch left: a zero-weighted step
