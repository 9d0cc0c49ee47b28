"""Training options stay out of saved models: a model trained anywhere loads and recommends anywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recforge.models.autoencoders import MultiVAE
from recforge.models.linear import EASE
from recforge.models.registry import MODELS, load_model
from recforge.training.options import TrainingOptions, resolve_device

TRAINING_OPTION_NAMES = {"device", "checkpoint_dir", "amp", "callbacks", "resume", "strategy"}


def _models():
    return [EASE(l2=5.0), MultiVAE(hidden_dims=(16, 4), max_epochs=3, batch_size=30)]


def test_no_model_takes_a_training_option_as_hyper_parameter():
    for name, cls in MODELS.items():
        assert not TRAINING_OPTION_NAMES & set(cls.param_specs()), name


@pytest.mark.parametrize("model", _models(), ids=["ease", "multivae"])
def test_saved_config_holds_no_device_or_path(planted, tmp_path, model):
    model.fit(planted.train, options=TrainingOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt"))
    model.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert not TRAINING_OPTION_NAMES & set(config["params"])
    assert "ckpt" not in (tmp_path / "model" / "config.json").read_text()
    loaded = load_model(tmp_path / "model", device="cpu")
    assert loaded.device_ == torch.device("cpu")
    users = planted.train.users.ids[:3]
    assert loaded.recommend(users, k=5) == model.recommend(users, k=5)


@pytest.mark.parametrize("model", _models(), ids=["ease", "multivae"])
def test_a_model_saved_with_cuda_before_format_2_loads_on_this_machine(planted, tmp_path, model):
    """The old format kept ``device="cuda"`` and a checkpoint path among the parameters; they are dropped."""
    model.fit(planted.train)
    model.save(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["format"] = 1
    config["params"].update(device="cuda", checkpoint_dir="/somewhere/.checkpoints/abc")
    path.write_text(json.dumps(config))
    loaded = load_model(tmp_path / "model")
    assert loaded.recommend_for_history(planted.train.items.ids[:3].tolist(), k=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", _models(), ids=["ease", "multivae"])
def test_trained_on_cuda_recommends_on_cpu(planted, tmp_path, model):
    model.fit(planted.train, options=TrainingOptions(device="cuda"))
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model", device="cpu")
    rows = np.arange(5)
    torch.testing.assert_close(
        loaded.score(planted.train.matrix[rows], rows), model.score(planted.train.matrix[rows], rows).cpu()
    )


def test_unusable_devices_are_named():
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("no-such-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available on this machine"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="resume must be"):
        TrainingOptions(resume="sometimes")  # type: ignore[arg-type]
