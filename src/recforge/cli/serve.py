"""`recforge serve RUN_DIR`: the HTTP API and the page of a run (FastAPI on uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from recforge.cli.common import LoadDevice, app, err
from recforge.experiments.pipeline import read_config
from recforge.models.base import read_saved_config

#: The environment variable that hands a worker process its settings (uvicorn starts workers by import string).
SPEC_ENV = "RECFORGE_SERVE_SPEC"


def default_state_dir(run_dir: Path) -> Path:
    """``$XDG_STATE_HOME/recforge/serve/<run name>-<hash of its path>`` (``~/.local/state`` without it): the
    interactions added while serving a run survive restarts, and never go into the run folder."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    resolved = run_dir.resolve()
    return base / "recforge" / "serve" / f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"


def _limits(spec: dict[str, Any]) -> Any:
    from recforge.serve.engine import Limits

    return Limits(**spec["limits"])


def worker_app() -> Any:
    """The app of one worker process (``uvicorn --factory``), from the settings the command put in
    ``RECFORGE_SERVE_SPEC``."""
    import torch

    from recforge.serve.app import create_app

    spec = json.loads(os.environ[SPEC_ENV])
    torch.set_num_threads(spec["threads"])
    return create_app(
        spec["run_dir"], device=spec["device"], state_dir=spec["state_dir"], limits=_limits(spec), warm_up=True
    )


@app.command(rich_help_panel="Use a trained model")
def serve(
    run_dir: Path,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes, each with its own copy of the model", min=1)] = 1,
    device: LoadDevice = "auto",
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="folder of the SQLite file of interactions added while serving "
            "(default: ~/.local/state/recforge/serve/<run>-<hash>)"
        ),
    ] = None,
    max_k: Annotated[int, typer.Option(help="longest list a request may ask for", min=1)] = 1000,
    max_history: Annotated[int, typer.Option(help="longest history a request may send", min=1)] = 1000,
    max_batch: Annotated[int, typer.Option(help="most requests in one /recommend/batch", min=1)] = 1000,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug")] = "info",
) -> None:
    """Serve a run's model over HTTP: the page at /, the API documented at /docs.

    Endpoints: POST /recommend, POST /recommend/batch, POST /users/{id}/interactions (folded into that user's next
    recommendations), GET /items/{id}/similar, GET /items?query=, GET /health, GET /model.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ValueError(
            f"recforge serve needs the serve extra ({exc.name} is missing): pip install 'recforge[serve]'"
        ) from None
    read_config(run_dir)  # a missing or broken run fails here, in one line, before any worker starts
    read_saved_config(run_dir / "model")
    state = state_dir if state_dir is not None else default_state_dir(run_dir)
    spec = {
        "run_dir": str(run_dir.resolve()),
        "device": device,
        "state_dir": str(state),
        "limits": {"max_k": max_k, "max_history": max_history, "max_batch": max_batch},
        "threads": max(1, (os.cpu_count() or 1) // workers),
    }
    shown = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    err.print(
        f"serving {escape(str(run_dir))} on {shown} (page /, API /docs) with {workers} worker(s); "
        f"added interactions in {escape(str(state))}",
        highlight=False,
    )
    if workers == 1:
        import torch

        from recforge.serve.app import create_app

        torch.set_num_threads(spec["threads"])
        application = create_app(run_dir, device=device, state_dir=state, limits=_limits(spec))
        uvicorn.run(application, host=host, port=port, log_level=log_level)
        return
    os.environ[SPEC_ENV] = json.dumps(spec)
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "recforge.cli.serve:worker_app", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )
    sock = config.bind_socket()
    # uvicorn binds the workers' socket with protocol 0, so asyncio does not set TCP_NODELAY on its connections and
    # an answer written in two parts waits for the client's delayed ACK (40 ms a request on Linux); set on the
    # listening socket, accepted connections inherit it
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
