"""The README's Python tour runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not os.environ.get("RECFORGE_DATA"), reason="RECFORGE_DATA not set")
def test_python_tour_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:  # one tour: later blocks use what earlier ones made
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["result"].metrics["ndcg@100"] == pytest.approx(0.4737, abs=0.002)
    assert (tmp_path / "ease-ml100k" / "weights.safetensors").exists()
    assert str(namespace["vae"].device_) == "cpu"  # loaded where asked
    assert not (tmp_path / "ckpt" / "multivae").exists()  # the finished training removed its checkpoint
