"""Serving a run directory over HTTP: ``create_app(run_dir, ...)`` builds the ASGI app (FastAPI, the ``serve``
extra) that ``recforge serve RUN_DIR`` runs on uvicorn.

* :mod:`recforge.serve.catalog` -- titles, genres and tags of a run's items, id checks (no web framework: the
  command line uses it too);
* :mod:`recforge.serve.store` -- the embedded SQLite of interactions added while serving;
* :mod:`recforge.serve.engine` -- vectorised recommendations, similar items, explanations, search (no web
  framework);
* :mod:`recforge.serve.schemas` -- the request and answer bodies;
* :mod:`recforge.serve.app` -- the app factory, its endpoints and the page (``static/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recforge.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # the web framework is imported only when the app is asked for
    if name == "create_app":
        from recforge.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
