"""The Trainer on a tiny regression task: it learns, is seeded, resumes exactly, alternates optimisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recforge.training.callbacks import Callback, Checkpoint, EarlyStopping, History
from recforge.training.options import TrainingOptions
from recforge.training.trainer import StepContext, Trainer

CPU = TrainingOptions(device="cpu")


def CPU_CHECKPOINTS(folder):
    return TrainingOptions(device="cpu", checkpoint_dir=folder)


class Regression:
    """y = X w* + noise, mini-batches of 16, MSE; dropout so that the torch RNG matters."""

    def __init__(self, n: int = 256, d: int = 8, n_optimizers: int = 1):
        gen = np.random.default_rng(0)
        self.x = torch.from_numpy(gen.normal(size=(n, d))).float()
        self.y = self.x @ torch.arange(1.0, d + 1) + 0.1 * torch.from_numpy(gen.normal(size=n)).float()
        self.n_optimizers = n_optimizers
        self.seen_indices: list[int] = []

    def build_module(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Dropout(0.1), nn.Linear(self.x.shape[1], 1))

    def configure_optimizers(self, module):
        params = list(module.parameters())
        if self.n_optimizers == 1:
            return [torch.optim.Adam(params, lr=0.05)]
        return [torch.optim.SGD([params[0]], lr=0.01), torch.optim.SGD([params[1]], lr=0.01)]

    def batches(self, rng, device):
        order = rng.permutation(len(self.x))
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            yield self.x[idx].to(device), self.y[idx].to(device)

    def training_step(self, module, batch, ctx: StepContext):
        x, y = batch
        self.seen_indices.append(ctx.optimizer_index)
        mse = ((module(x).squeeze(1) - y) ** 2).mean()
        return {"loss": mse, "mse": mse.detach()}


def validate_mse(task):
    return lambda module: {"mse": float(((module(task.x).squeeze(1) - task.y) ** 2).mean())}


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_learns_and_logs_history():
    task = Regression()
    history = History()
    module = Trainer(max_epochs=30, seed=1, callbacks=[history], validate=validate_mse(task), options=CPU).fit(task)
    assert history.column("valid_mse")[-1] < 0.05 * history.column("valid_mse")[0]
    assert set(history.epochs[0]) >= {"epoch", "train_loss", "train_mse", "valid_mse"}
    assert not module.training


def test_same_seed_same_weights_other_seed_differs():
    def run(seed):
        return weights(Trainer(max_epochs=3, seed=seed, options=CPU).fit(Regression()))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


class Interrupt(Callback):
    """Ctrl-C in the middle of epoch ``at_epoch`` (after some of its steps)."""

    def __init__(self, at_epoch: int):
        self.at_epoch = at_epoch

    def on_step_start(self, trainer, ctx):
        if ctx.epoch == self.at_epoch and ctx.global_step % 16 == 5:
            raise KeyboardInterrupt


def test_resume_after_interruption_gives_the_uninterrupted_result(tmp_path):
    def callbacks():
        return [EarlyStopping("valid_mse", mode="min", patience=50), Checkpoint("valid_mse", mode="min"), History()]

    task = Regression()
    full_cbs = callbacks()
    full = Trainer(max_epochs=6, seed=3, callbacks=full_cbs, validate=validate_mse(task), options=CPU).fit(task)

    interrupted = [*callbacks(), Interrupt(at_epoch=3)]
    with pytest.raises(KeyboardInterrupt):
        Trainer(
            max_epochs=6,
            seed=3,
            callbacks=interrupted,
            validate=validate_mse(task),
            options=CPU_CHECKPOINTS(tmp_path),
        ).fit(Regression())
    resumed_cbs = [*callbacks(), Interrupt(at_epoch=-1)]
    resumed = Trainer(
        max_epochs=6, seed=3, callbacks=resumed_cbs, validate=validate_mse(task), options=CPU_CHECKPOINTS(tmp_path)
    ).fit(Regression())
    assert torch.equal(weights(full), weights(resumed))
    assert full_cbs[2].epochs == resumed_cbs[2].epochs  # the history survives the restart


def test_two_optimisers_alternate_per_batch():
    task = Regression(n_optimizers=2)
    Trainer(max_epochs=1, options=CPU).fit(task)
    assert task.seen_indices[:4] == [0, 1, 0, 1] and len(task.seen_indices) == 2 * 16


def test_non_finite_loss_is_reported():
    class Exploding(Regression):
        def training_step(self, module, batch, ctx):
            return torch.tensor(float("nan"), requires_grad=True)

    with pytest.raises(FloatingPointError, match="epoch 0"):
        Trainer(max_epochs=1, options=CPU).fit(Exploding())


def test_grad_clipping_bounds_the_update():
    task = Regression()
    module = task.build_module()
    before = weights(module).clone()

    class OneBatch(Regression):
        def batches(self, rng, device):
            yield self.x[:16] * 1e3, self.y[:16] * 1e3

        def configure_optimizers(self, module):
            return [torch.optim.SGD(module.parameters(), lr=1.0)]

    Trainer(max_epochs=1, options=CPU, grad_clip=1.0).fit(OneBatch(), module)
    assert float((weights(module) - before).norm()) <= 1.0 + 1e-5


def test_bfloat16_autocast_on_cpu_runs():
    task = Regression()
    history = History()
    Trainer(max_epochs=2, options=TrainingOptions(device="cpu", amp=True), callbacks=[history]).fit(task)
    assert np.isfinite(history.column("train_loss")).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="max_epochs"):
        Trainer(max_epochs=0)


class NoisyLeastSquares(Regression):
    """An optimiser-free task: each batch moves the weights by a hand-computed gradient step, plus noise from the
    torch RNG (a stand-in for a Gibbs sweep or an alternating least-squares step)."""

    def configure_optimizers(self, module):
        return []

    def training_step(self, module, batch, ctx):
        x, y = batch
        assert not torch.is_grad_enabled()
        linear = module[1]
        residual = x @ linear.weight[0] + linear.bias - y
        linear.weight.sub_(0.1 * (residual @ x) / len(y) + 1e-3 * torch.randn_like(linear.weight))
        linear.bias.sub_(0.1 * residual.mean())
        return {"mse": residual.square().mean()}


def test_optimiser_free_task_updates_itself_seeded_and_resumable(tmp_path):
    task = NoisyLeastSquares()
    history = History()
    with torch.no_grad():
        start_mse = validate_mse(task)(task.build_module())["mse"]
    full = Trainer(max_epochs=5, seed=3, callbacks=[history], validate=validate_mse(task), options=CPU).fit(task)
    assert history.column("valid_mse")[-1] < 1e-3 * start_mse
    assert "train_mse" in history.epochs[0]
    assert torch.equal(weights(full), weights(Trainer(max_epochs=5, seed=3, options=CPU).fit(NoisyLeastSquares())))

    with pytest.raises(KeyboardInterrupt):
        Trainer(max_epochs=5, seed=3, callbacks=[Interrupt(at_epoch=2)], options=CPU_CHECKPOINTS(tmp_path)).fit(
            NoisyLeastSquares()
        )
    resumed = Trainer(max_epochs=5, seed=3, callbacks=[Interrupt(at_epoch=-1)], options=CPU_CHECKPOINTS(tmp_path)).fit(
        NoisyLeastSquares()
    )
    assert torch.equal(weights(full), weights(resumed))


# ------------------------------------------------------------------------------ issue 20: time budget, stop reason
class SlowEpochs(Callback):
    """Makes every epoch take ``seconds`` (a fake clock would miss the Trainer's own timing)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_epoch_end(self, trainer, logs):
        import time

        time.sleep(self.seconds)


def test_max_time_stops_before_the_next_epoch_and_says_so():
    task, lines = Regression(), []
    options = TrainingOptions(device="cpu", max_time=0.25, log=lines.append, callbacks=[SlowEpochs(0.1)])
    history = History()
    trainer = Trainer(max_epochs=50, options=options, callbacks=[history])
    trainer.fit(task)
    assert 2 <= len(history.epochs) <= 4 and trainer.stop_reason == "max_time"
    assert any("time budget of 0.25s (training.max_time) is spent" in line for line in lines), lines
    with pytest.raises(ValueError, match="max_time must be a number of seconds > 0"):
        TrainingOptions(max_time=0)


def test_running_out_of_epochs_while_improving_is_reported():
    task, lines = Regression(), []
    options = TrainingOptions(device="cpu", log=lines.append)
    trainer = Trainer(
        max_epochs=3, options=options, validate=validate_mse(task), callbacks=[EarlyStopping("valid_mse", mode="min")]
    )
    trainer.fit(task)  # the regression still improves after 3 epochs
    assert trainer.stop_reason == "max_epochs"
    assert any("stopped at max_epochs while improving: epoch 3/3" in line for line in lines), lines
    lines.clear()
    stopping = EarlyStopping("valid_mse", mode="min", patience=0)
    trainer = Trainer(max_epochs=200, options=options, validate=validate_mse(task), callbacks=[stopping])
    trainer.fit(task)
    assert trainer.stop_reason == "early_stopping" and not any("while improving" in line for line in lines)
