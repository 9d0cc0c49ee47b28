"""Serving latency and throughput of `recforge serve` on loopback (issue 17).

For EASE on MovieLens 100K and on a 20,720-item synthetic catalogue (``make_ml20m_like``), with 1 and 2 workers:

* **fixed rate**: single new-user requests (a history of 20 items, k = 10) sent at ``--rate`` requests/s for
  ``--seconds`` by ``hey`` (Debian package ``hey``: 10 connections, each throttled to a tenth of the rate); without
  it, by an async httpx client, open loop (a request is due at its time whatever the previous ones did, and its
  latency counts from that time), which on a loaded 2-core machine cannot keep up itself; p50/p99;
* **saturation**: as many single requests as the server answers, from ``--connections`` concurrent connections of
  ``wrk`` (Debian package ``wrk``; the async httpx client when it is absent), for ``--seconds``; requests/s,
  p50/p99;
* **batch**: one ``POST /recommend/batch`` of 1,000 histories, wall time (median of 5).

    python benchmarks/bench_serve.py                  # both catalogues, 1 and 2 workers
    python benchmarks/bench_serve.py --only ml100k --workers 1

Run directories are made once under ``benchmarks/out/serve/`` (the 20,720-item EASE takes a minute to fit).
``RECFORGE_DATA`` must point at ML-100K.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

OUT = Path(__file__).parent / "out" / "serve"
HISTORY = 20


def ml100k_run() -> Path:
    run = OUT / "ml100k-ease"
    if not (run / "model").is_dir():
        from recforge.experiments.config import load_config
        from recforge.experiments.pipeline import run_experiment

        shutil.rmtree(run, ignore_errors=True)
        cfg = load_config(
            None,
            [
                "data.dataset=ml-100k",
                "data.binarize=true",
                "split.protocol=random",
                "model.name=ease",
                "model.l2=200",
                f"run.output_dir={OUT}",
                "run.name=ml100k-ease",
            ],
        )
        run_experiment(cfg)
    return run


def synthetic_run() -> Path:
    """EASE (l2 = 500) on ``make_ml20m_like()`` (136,677 users, 20,720 items), saved as a run directory (config,
    model; no evaluation: only the catalogue size matters here)."""
    run = OUT / "ml20m-like-ease"
    if not (run / "model").is_dir():
        from recforge.data.synthetic import make_ml20m_like
        from recforge.experiments.config import ExperimentConfig
        from recforge.models.linear import EASE

        data = make_ml20m_like(seed=0)
        t0 = time.perf_counter()
        model = EASE(l2=500.0).fit(data)
        print(f"fitted EASE on {data.n_items:,} items in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        cfg = ExperimentConfig.model_validate(
            {"data": {"path": "make_ml20m_like(seed=0)"}, "split": {"protocol": "none"}, "model": {"name": "ease"}}
        )
        (run / "config.json").write_text(cfg.model_dump_json(indent=2))
        model.save(run / "model")
    return run


def histories(run: Path, n: int, seed: int = 0) -> list[list]:
    """``n`` histories of :data:`HISTORY` items drawn by training popularity (ids as the API takes them)."""
    from recforge.models.registry import load_model

    model = load_model(run / "model", device="cpu")
    pop = np.diff(model.history_.tocsc().indptr).astype(np.float64) + 1.0
    rng = np.random.default_rng(seed)
    ids = model.items_.ids
    return [
        [
            x.item() if hasattr(x, "item") else x
            for x in ids[rng.choice(len(ids), HISTORY, replace=False, p=pop / pop.sum())]
        ]
        for _ in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, workers: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tempfile.mkdtemp(prefix="bench-serve-")
        cmd = [sys.executable, "-m", "recforge", "serve", str(run), "--port", str(self.port), "--device", "cpu"]
        cmd += ["--workers", str(workers), "--state-dir", self.state, "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.5)
        if workers > 1:  # every worker answers only once it has loaded and warmed up: ask until all have
            time.sleep(5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    a = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


async def fixed_rate(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict[str, float]:
    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await client.post("/recommend", content=bodies[0], headers={"content-type": "application/json"})
        start = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            r = await client.post(
                "/recommend", content=bodies[i % len(bodies)], headers={"content-type": "application/json"}
            )
            if r.status_code != 200:
                errors += 1
            latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    return {"requests": n, "achieved_rps": round(n / elapsed, 1), "errors": errors, **_percentiles(latencies)}


async def saturate_httpx(url: str, bodies: list[bytes], connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def loop(c: int) -> None:
            i = c
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await client.post(
                    "/recommend", content=bodies[i % len(bodies)], headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - t)
                i += connections

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(connections)))
        elapsed = time.perf_counter() - t0
    return {"tool": "httpx", "rps": round(len(latencies) / elapsed, 1), **_percentiles(latencies)}


def fixed_rate_hey(url: str, body: bytes, rate: float, seconds: float, clients: int = 10) -> dict[str, float]:
    """``hey`` (Debian package ``hey``): ``clients`` connections, each throttled to ``rate / clients`` requests/s."""
    path = Path(tempfile.mkdtemp()) / "body.json"
    path.write_bytes(body)
    cmd = ["hey", "-z", f"{int(seconds)}s", "-c", str(clients), "-q", str(rate / clients), "-m", "POST"]
    cmd += ["-T", "application/json", "-D", str(path), f"{url}/recommend"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    shutil.rmtree(path.parent, ignore_errors=True)

    def pct(p: int) -> float:
        m = re.search(rf"^\s+{p}% in ([\d.]+) secs", text, re.M)
        assert m, text
        return round(float(m.group(1)) * 1000, 2)

    ok = re.search(r"\[200\]\s+(\d+) responses", text)
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", text))
    return {
        "tool": "hey",
        "achieved_rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), 1),  # type: ignore[union-attr]
        "requests": total,
        "errors": total - (int(ok.group(1)) if ok else 0),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def saturate_wrk(url: str, bodies: list[bytes], connections: int, seconds: float) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "bodies.lua"
    quoted = ",\n".join("[==[" + b.decode() + "]==]" for b in bodies)
    script.write_text(
        f"bodies = {{{quoted}}}\ni = 0\n"
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n  i = i % #bodies + 1\n"
        '  return wrk.format(nil, "/recommend", nil, bodies[i])\nend\n'
    )
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s", "--latency", "-s", str(script), url]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    shutil.rmtree(script.parent, ignore_errors=True)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        assert m, text
        return round(float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)], 2)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "tool": "wrk",
        "rps": round(rps, 1),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def batch_seconds(url: str, hists: list[list], repeats: int = 5) -> dict[str, float]:
    body = json.dumps({"requests": [{"items": h, "k": 10} for h in hists]}).encode()
    times = []
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/recommend/batch", content=body, headers={"content-type": "application/json"})
        for _ in range(repeats):
            t = time.perf_counter()
            r = client.post("/recommend/batch", content=body, headers={"content-type": "application/json"})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:300]
    return {
        "histories": len(hists),
        "median_s": round(float(np.median(times)), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["ml100k", "ml20m-like"], default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    runs = {"ml100k": ml100k_run, "ml20m-like": synthetic_run}
    results = []
    for name, make in runs.items():
        if args.only and name != args.only:
            continue
        run = make()
        hists = histories(run, 1000)
        bodies = [json.dumps({"items": h, "k": 10}).encode() for h in hists[:200]]
        for workers in args.workers:
            server = Server(run, workers)
            try:
                row = {"catalogue": name, "workers": workers}
                if shutil.which("hey"):
                    row["fixed_rate"] = fixed_rate_hey(server.url, bodies[0], args.rate, args.seconds)
                else:
                    row["fixed_rate"] = asyncio.run(fixed_rate(server.url, bodies, args.rate, args.seconds))
                if shutil.which("wrk"):
                    row["saturation"] = saturate_wrk(server.url, bodies, args.connections, args.seconds)
                else:
                    row["saturation"] = asyncio.run(saturate_httpx(server.url, bodies, args.connections, args.seconds))
                row["batch_1000"] = batch_seconds(server.url, hists)
            finally:
                server.stop()
            print(json.dumps(row), flush=True)
            results.append(row)
    print(
        json.dumps(
            {
                "machine": platform.node(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        )
    )


if __name__ == "__main__":
    main()
