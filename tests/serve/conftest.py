"""Real runs on MovieLens 100K (skipped without RECFORGE_DATA) and a real uvicorn server per run, on a free
loopback port, started by the tests and spoken to over HTTP with httpx."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

DATA = os.environ.get("RECFORGE_DATA")
HAS_ML100K = bool(DATA) and (Path(DATA) / "ml-100k" / "u.data").exists()

#: Tiny but real trainings (a few epochs) of the families the server must handle.
RUNS: dict[str, list[str]] = {
    "ease": ["model.name=ease", "model.l2=200", "data.binarize=true"],
    "multivae": ["model.name=multivae", "model.max_epochs=3", "data.binarize=true"],
    "biasedmf": ["model.name=biasedmf", "model.max_epochs=3", "model.embedding_dim=16"],
    "neumf": ["model.name=neumf", "model.max_epochs=1", "model.fold_in_steps=30", "model.batch_size=1024"],
}


def _train(out: Path, name: str) -> Path:
    from recforge.experiments.config import load_config
    from recforge.experiments.pipeline import run_experiment

    overrides = ["data.dataset=ml-100k", "split.protocol=random", f"run.output_dir={out}", f"run.name={name}"]
    cfg = load_config(None, [*overrides, *RUNS[name]])
    return run_experiment(cfg).run_dir


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """The runs of :data:`RUNS`, trained on first use."""
    if not HAS_ML100K:
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ to run the serving tests")
    out = tmp_path_factory.mktemp("serve-runs")
    cache: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            cache[name] = _train(out, name)
            self[name] = cache[name]
            return cache[name]

    yield Lazy()


class LiveServer:
    """uvicorn serving ``app`` in a thread, on a port of 127.0.0.1 the OS picked."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: without it, answers written in two parts wait for the client's delayed
        # ACK (40 ms a request on Linux)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", limit_concurrency=1000)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="session")
def serve(run_dirs, tmp_path_factory) -> Iterator:
    """``serve(name)``: the live server of a run (started once per session)."""
    from recforge.serve import create_app

    servers: dict[str, LiveServer] = {}

    def get(name: str) -> LiveServer:
        if name not in servers:
            state = tmp_path_factory.mktemp(f"state-{name}")
            servers[name] = LiveServer(create_app(run_dirs[name], device="cpu", state_dir=state))
        return servers[name]

    yield get
    for server in servers.values():
        server.stop()
