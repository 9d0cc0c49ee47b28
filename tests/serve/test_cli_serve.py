"""`recforge serve` as a user runs it: a subprocess with two workers sharing the added interactions, and the
one-line errors of a bad run directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_added_interactions(run_dirs, tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "recforge", "serve", str(run_dirs["ease"]), "--port", str(port), "--workers", "2"]
    cmd += ["--state-dir", str(state), "--max-k", "50", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "recforge serve did not start"
            time.sleep(0.2)
        assert (state / "interactions.sqlite").is_file()
        assert not (run_dirs["ease"] / "interactions.sqlite").exists()
        with httpx.Client(base_url=url, timeout=30) as c:
            before = c.post("/recommend", json={"user_id": 13, "k": 5}).json()["items"]
            top = before[0]["item_id"]
            assert c.post("/users/13/interactions", json={"items": [top]}).status_code == 200
            # new connections: the answers come from either worker, and every one has seen the interaction
            for _ in range(12):
                with httpx.Client(base_url=url, timeout=30) as fresh:
                    after = fresh.post("/recommend", json={"user_id": 13, "k": 5}).json()["items"]
                    assert top not in [r["item_id"] for r in after]
            assert c.post("/recommend", json={"items": [50], "k": 51}).status_code == 422  # --max-k
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("what", ["missing", "not-a-run"])
def test_a_bad_run_directory_is_one_line_and_status_2(tmp_path, monkeypatch, capsys, what):
    from recforge.cli import main

    run = tmp_path / what
    if what == "not-a-run":
        run.mkdir()
    monkeypatch.setattr(sys, "argv", ["recforge", "serve", str(run), "--port", str(_free_port())])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.strip().splitlines()[-1].startswith("error:") and "config.json" in err
