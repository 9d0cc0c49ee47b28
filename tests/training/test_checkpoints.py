"""Resume that cannot lie: a checkpoint is resumed only by the training it belongs to, never collides, never stays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.models.autoencoders import MultiVAE
from recforge.training.checkpoints import CheckpointMismatch, CheckpointStore
from recforge.training.options import TrainingOptions


def _store(folder, fingerprint="a", **kwargs):
    store = CheckpointStore(folder, fingerprint, **kwargs)
    store.acquire()
    return store


def test_store_round_trip_fingerprint_and_cleanup(tmp_path):
    lines: list[str] = []
    store = _store(tmp_path, "a", log=lines.append)
    store.save({"epoch": 3, "w": torch.ones(2)})
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    assert store.load(torch.device("cpu"))["epoch"] == 3
    store.release()

    other = _store(tmp_path, "b", log=lines.append)
    assert other.load(torch.device("cpu")) is None
    assert "other training data or settings: starting afresh" in lines[-1]
    other.release()

    with pytest.raises(CheckpointMismatch, match="other training data or settings"):
        _store(tmp_path, "b", resume="strict").load(torch.device("cpu"))
    assert _store(tmp_path, "a", resume="never").load(torch.device("cpu")) is None

    again = _store(tmp_path, "a")
    again.finish()
    assert not tmp_path.exists()  # the checkpoint, the lock and the emptied folder are gone


def test_unreadable_checkpoint_starts_afresh(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    lines: list[str] = []
    assert _store(tmp_path, log=lines.append).load(torch.device("cpu")) is None
    assert "cannot be read" in lines[-1]


def test_a_second_training_on_the_folder_runs_without_checkpoints(tmp_path):
    first = _store(tmp_path)
    lines: list[str] = []
    second = CheckpointStore(tmp_path, "a", log=lines.append)
    assert not second.acquire() and "in use by another training" in lines[-1]
    second.save({"epoch": 1})  # a no-op: it does not own the folder
    assert not (tmp_path / "last.pt").exists()
    first.release()
    assert CheckpointStore(tmp_path, "a").acquire()


def test_killed_trainings_temporary_files_are_removed(tmp_path):
    (tmp_path / ".last.pt.12345.deadbeef.tmp").write_bytes(b"half")
    _store(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------- the reproductions, at model level
def _interrupted_fit(model, train, folder, at_step=5):
    original = model.training_step

    def step(module, batch, ctx):
        if ctx.global_step == at_step:
            raise KeyboardInterrupt
        return original(module, batch, ctx)

    model.training_step = step
    with pytest.raises(KeyboardInterrupt):
        model.fit(train, options=TrainingOptions(checkpoint_dir=folder))
    assert (folder / "last.pt").exists()


def _vae(**params):
    return MultiVAE(hidden_dims=(16, 4), max_epochs=4, batch_size=30, anneal_steps=10, seed=1, **params)


def _scores(model, train):
    return model.score(train.matrix, np.arange(train.n_users))


def test_folder_reused_with_other_hyper_parameters_trains_the_new_model(planted, tmp_path):
    train = planted.train
    _interrupted_fit(_vae(learning_rate=1e-2), train, tmp_path)
    lines: list[str] = []
    reused = _vae(learning_rate=3e-3).fit(train, options=TrainingOptions(checkpoint_dir=tmp_path, log=lines.append))
    assert any("starting afresh" in line for line in lines)
    assert torch.equal(_scores(reused, train), _scores(_vae(learning_rate=3e-3).fit(train), train))
    assert len(reused.training_log_) == 4  # every epoch trained, none taken from the other model


def test_folder_reused_strictly_with_other_hyper_parameters_is_refused(planted, tmp_path):
    _interrupted_fit(_vae(learning_rate=1e-2), planted.train, tmp_path)
    with pytest.raises(CheckpointMismatch, match="remove it or use resume='auto'"):
        _vae(learning_rate=3e-3).fit(planted.train, options=TrainingOptions(checkpoint_dir=tmp_path, resume="strict"))


@pytest.mark.parametrize("change", ["other shape", "same shape"])
def test_data_changed_between_interrupted_run_and_rerun(planted, tmp_path, change):
    train = planted.train
    _interrupted_fit(_vae(), train, tmp_path)
    if change == "other shape":  # a user fewer: a size mismatch before fingerprints
        changed = train.restrict_users(np.arange(1, train.n_users))
    else:  # the same users and items, one interaction moved: would have resumed silently on stale weights
        values = train.values.copy()
        values[0] = 2.0
        changed = train.with_values(values, explicit=False)
    resumed = _vae().fit(changed, options=TrainingOptions(checkpoint_dir=tmp_path))
    assert torch.equal(_scores(resumed, changed), _scores(_vae().fit(changed), changed))


def test_interactions_digest_sees_values_ids_and_times():
    base = Interactions.from_csr(np.eye(3, dtype=np.float32))
    assert base.digest() == Interactions.from_csr(np.eye(3, dtype=np.float32)).digest()
    assert base.digest() != base.with_values(base.values * 2, explicit=False).digest()
    assert base.digest() != Interactions.from_csr(np.eye(3, dtype=np.float32)[::-1].copy()).digest()
