"""Optimiser schedules of the Trainer: a GAN-style 1:3 task, alternating epochs, an optimiser switch, AMP updates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.training.callbacks import Callback, History
from recforge.training.options import TrainingOptions
from recforge.training.schedules import Cycle, EveryOptimizer, SwitchAt
from recforge.training.trainer import StepContext, Trainer

CPU = TrainingOptions(device="cpu")


class TinyGAN:
    """Generator maps noise to 1-D samples, discriminator tells them from N(3, 0.5^2) draws.

    Optimiser 0 trains the discriminator, optimiser 1 the generator; every step records its index.
    """

    def __init__(self, n_batches: int = 12, batch_size: int = 64):
        self.n_batches, self.batch_size = n_batches, batch_size
        self.steps: list[tuple[int, int]] = []  # (global step, optimiser index)

    def build_module(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.ModuleDict(
            {
                "g": nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1)),
                "d": nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1)),
            }
        )

    def configure_optimizers(self, module):
        return [
            torch.optim.Adam(module["d"].parameters(), lr=1e-2),
            torch.optim.Adam(module["g"].parameters(), lr=1e-2),
        ]

    def batches(self, rng, device):
        for _ in range(self.n_batches):
            real = torch.from_numpy(rng.normal(3.0, 0.5, size=(self.batch_size, 1))).float()
            noise = torch.from_numpy(rng.normal(size=(self.batch_size, 2))).float()
            yield real.to(device), noise.to(device)

    def training_step(self, module, batch, ctx: StepContext):
        real, noise = batch
        self.steps.append((ctx.global_step, ctx.optimizer_index))
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = module["g"](noise)
        if ctx.optimizer_index == 0:
            d_real, d_fake = module["d"](real), module["d"](fake.detach())
            loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        else:
            d_fake = module["d"](fake)
            loss = bce(d_fake, torch.ones_like(d_fake))
        return {"loss": loss}


def test_gan_with_one_generator_step_per_three_discriminator_steps():
    task = TinyGAN()
    history = History()
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = float(task.build_module()["g"](noise).mean())
    module = Trainer(max_epochs=25, seed=0, options=CPU, schedule=Cycle.ratio(3, 1), callbacks=[history]).fit(task)
    by_step = dict(task.steps)
    assert [by_step[s] for s in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert len(task.steps) == 25 * 12  # one optimiser per batch
    # both losses are logged under their optimiser's index, averaged over the batches where it stepped
    assert {"train_loss[0]", "train_loss[1]"} <= set(history.epochs[0])
    # and it learns: the generated samples move towards the real mean 3 (a GAN oscillates around it)
    with torch.no_grad():
        end = float(module["g"](noise).mean())
    assert abs(end - 3.0) < 0.5 * abs(start - 3.0), (start, end)


def test_alternating_epochs_step_one_optimiser_per_epoch():
    task = TinyGAN(n_batches=3)
    Trainer(max_epochs=4, options=CPU, schedule=Cycle([(0,), (1,)], unit="epoch")).fit(task)
    per_epoch = [sorted({i for s, i in task.steps if s // 3 == e}) for e in range(4)]
    assert per_epoch == [[0], [1], [0], [1]]


def test_every_optimizer_is_the_default_and_schedules_check_their_indices():
    assert list(EveryOptimizer()(0, 0, 2)) == [0, 1]
    with pytest.raises(ValueError, match="out of range"):
        Cycle([(2,)])(0, 0, 2)
    with pytest.raises(ValueError, match="once per batch"):
        Cycle([(0, 0)])(0, 0, 1)
    with pytest.raises(ValueError, match="increasing"):
        SwitchAt(0)
    assert [SwitchAt(1, 3)(e, 0, 3)[0] for e in range(5)] == [0, 1, 1, 2, 2]


class AdamThenSGD:
    """The Goodreads notebook's schedule: Adam in the first epoch, SGD at 5e-4 after it, over the same weights."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(128, 4, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def build_module(self):
        torch.manual_seed(0)
        return nn.Linear(4, 1)

    def configure_optimizers(self, module):
        return [torch.optim.Adam(module.parameters(), lr=0.05), torch.optim.SGD(module.parameters(), lr=5e-4)]

    def batches(self, rng, device):
        order = rng.permutation(len(self.x))
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            yield self.x[idx], self.y[idx]

    def training_step(self, module, batch, ctx):
        x, y = batch
        return ((module(x).squeeze(1) - y) ** 2).mean()


class StopAt(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_step_start(self, trainer, ctx):
        if ctx.epoch == self.epoch:
            raise KeyboardInterrupt


def test_optimiser_switch_is_resumable(tmp_path):
    def trainer(callbacks=(), options=CPU):
        return Trainer(max_epochs=4, seed=2, options=options, schedule=SwitchAt(1), callbacks=callbacks)

    full = trainer().fit(AdamThenSGD())
    options = TrainingOptions(device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        trainer([StopAt(2)], options).fit(AdamThenSGD())
    resumed = trainer([StopAt(-1)], options).fit(AdamThenSGD())
    assert torch.equal(full.weight, resumed.weight) and torch.equal(full.bias, resumed.bias)


def test_resuming_with_other_optimisers_is_a_clear_error(tmp_path):
    options = TrainingOptions(device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Trainer(max_epochs=3, options=options, schedule=SwitchAt(1), callbacks=[StopAt(1)]).fit(AdamThenSGD())

    class SGDThenAdam(AdamThenSGD):
        def configure_optimizers(self, module):
            return [torch.optim.SGD(module.parameters(), lr=0.1), torch.optim.Adam(module.parameters(), lr=0.05)]

    with pytest.raises(ValueError, match=r"optimiser\(s\) \['Adam', 'SGD'\], this training uses \['SGD', 'Adam'\]"):
        Trainer(max_epochs=3, options=options, schedule=SwitchAt(1), callbacks=[StopAt(-1)]).fit(SGDThenAdam())


def test_amp_scaler_updates_once_per_batch_with_several_optimisers(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.amp.GradScaler, "update", lambda self, new_scale=None: calls.append(1))
    task = TinyGAN(n_batches=5)
    Trainer(max_epochs=2, options=TrainingOptions(device="cpu", amp=True)).fit(task)
    assert len(task.steps) == 2 * 5 * 2  # both optimisers on every batch
    assert len(calls) == 2 * 5  # but one scaler update per batch
