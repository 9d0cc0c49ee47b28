"""The ASGI app of ``recforge serve``: :func:`create_app` builds it from explicit arguments (nothing is read at
import), loading the run's model once, read-only, and answering one warm-up request before it serves.

Endpoints (JSON; the OpenAPI page is at ``/docs``): ``POST /recommend``, ``POST /recommend/batch``,
``POST|DELETE /users/{user_id}/interactions``, ``GET /items/{item_id}/similar``, ``GET /items``, ``GET /health``,
``GET /model``, and the page at ``/``.

Bad input never answers 500: a malformed body, a wrong type or a value out of range is a 422 listing what is
wrong (``detail``); unknown ids are a 422 (in a body) or a 404 (the user or item asked for), with the ids in
``unknown_ids``.
"""

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from recforge.experiments.pipeline import reload_run
from recforge.serve import schemas as s
from recforge.serve.engine import Engine, Limits, Query, ServeError
from recforge.serve.store import InteractionStore

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"

UserIdPath = Annotated[str, PathParam(min_length=1, max_length=200, description="a user id")]
ItemIdPath = Annotated[str, PathParam(min_length=1, max_length=200, description="an item id")]


def _ok(body: Any) -> Response:
    """A 200 answer serialised here (the endpoints' ``response_model`` documents it; re-validating what the engine
    built would only cost time)."""
    return Response(json.dumps(body, ensure_ascii=True, allow_nan=False), media_type="application/json")


def _json(status: int, body: Any) -> Response:
    """A JSON answer that any input can be echoed in (non-ASCII escaped, so lone surrogates cannot break it)."""
    return Response(json.dumps(body, ensure_ascii=True, default=str), status_code=status, media_type="application/json")


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def create_app(
    run_dir: str | Path,
    *,
    device: str = "auto",
    state_dir: str | Path | None = None,
    limits: Limits | None = None,
    warm_up: bool = True,
) -> FastAPI:
    """The app serving the run in ``run_dir``.

    ``device``: where the model runs. ``state_dir``: the folder of the SQLite file of interactions added while
    serving (shared by the workers of one server; ``None``: a temporary folder removed when the app stops).
    ``limits``: what one request may ask for (:class:`~recforge.serve.engine.Limits`).
    """
    run_dir = Path(run_dir)
    limits = limits or Limits()
    config, model = reload_run(run_dir, device=device)
    temporary = state_dir is None
    folder = Path(tempfile.mkdtemp(prefix="recforge-serve-")) if temporary else Path(state_dir)  # type: ignore[arg-type]
    store = InteractionStore(folder, model.items_.ids.tolist())
    engine = Engine(run_dir, config, model, store, limits, metrics=_read_metrics(run_dir))
    if warm_up:
        engine.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)

    app = FastAPI(
        title=f"recforge: {model.name} ({run_dir.name})",
        description=(
            "Recommendations from a recforge run: known users, new users given by their history (folded in without "
            "retraining), interactions added while serving, similar items, title search. The page is at /."
        ),
        version="1",
        lifespan=lifespan,
    )
    app.state.engine = engine

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ServeError)
    async def _serve_error(_request: Request, exc: ServeError) -> Response:
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.unknown_ids is not None:
            body["unknown_ids"] = exc.unknown_ids
        return _json(exc.status, body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return _json(422, {"detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return _json(exc.status_code, {"detail": exc.detail})

    errors: dict[int | str, dict[str, Any]] = {
        404: {"model": s.ErrorAnswer, "description": "unknown user or item (listed in unknown_ids)"},
        422: {"model": s.ErrorAnswer, "description": "invalid request: what is wrong, unknown ids listed"},
    }

    # ------------------------------------------------------------------ endpoints
    def _query(req: s.RecommendRequest, where: str = "") -> Query:
        return Query(
            user=req.user_id,
            items=req.items,
            ratings=req.ratings,
            k=req.k,
            exclude=req.exclude,
            exclude_seen=req.exclude_seen,
            tag=req.tag,
            candidates=req.candidates,
            explain=req.explain,
            where=where,
        )

    @app.post("/recommend", response_model=s.Recommendation, responses=errors, tags=["recommend"])
    async def recommend(req: s.RecommendRequest) -> Response:
        """Top-k items for a known user (``user_id``) or a new user's history (``items``, optional ``ratings``)."""
        query = [_query(req)]
        if engine.inline:  # closed-form scoring of one row costs less than a hop to the thread pool
            return _ok(engine.recommend(query)[0])
        return _ok((await anyio.to_thread.run_sync(engine.recommend, query))[0])

    @app.post("/recommend/batch", response_model=s.BatchAnswer, responses=errors, tags=["recommend"])
    def recommend_batch(req: s.BatchRequest) -> Response:
        """Many users or histories at once, scored together (one scoring call per kind of row)."""
        if len(req.requests) > limits.max_batch:
            raise ServeError(422, f"requests has {len(req.requests)} entries; the limit is {limits.max_batch}")
        return _ok({"results": engine.recommend([_query(r, f"requests[{i}].") for i, r in enumerate(req.requests)])})

    @app.post("/users/{user_id}/interactions", response_model=s.InteractionsAnswer, responses=errors, tags=["users"])
    def add_interactions(user_id: UserIdPath, req: s.InteractionsRequest) -> dict[str, Any]:
        """Add a user's new interactions (a new user id starts a user); their next recommendations fold them in."""
        label, index = engine.user_key(user_id)
        items = engine.item_indices(req.items, "items")
        if req.ratings is not None and len(req.ratings) != len(items):
            raise ServeError(422, f"ratings: {len(req.ratings)} ratings for {len(items)} items (give one per item)")
        values = (
            np.asarray(req.ratings, dtype=np.float32)
            if req.ratings is not None
            else np.full(len(items), engine.model._default_history_value(), dtype=np.float32)
        )
        before = engine.store.count(label)
        if before + len(items) > limits.max_added:
            raise ServeError(
                422,
                f"user {label} would have {before + len(items)} added interactions; the limit is {limits.max_added}",
            )
        total = engine.store.add(label, items, values)
        return {"user_id": label, "known_user": index >= 0, "added": len(items), "total_added": total}

    @app.delete("/users/{user_id}/interactions", response_model=s.ClearedAnswer, tags=["users"])
    def clear_interactions(user_id: UserIdPath) -> dict[str, Any]:
        """Forget the interactions added for a user while serving (the training data stays)."""
        label, _ = engine.user_key(user_id)
        return {"user_id": label, "removed": engine.store.clear(label)}

    @app.get("/items/{item_id}/similar", response_model=s.SimilarAnswer, responses=errors, tags=["items"])
    def similar(item_id: ItemIdPath, k: Annotated[int, QueryParam(ge=1)] = 10) -> dict[str, Any]:
        """The items most similar to one, by the model (item-item weights, item vectors or decoder rows)."""
        if k > limits.max_k:
            raise ServeError(422, f"k is {k}; the limit is {limits.max_k}")
        index = engine.item_index(item_id)
        return {"item": engine.item_info(index), "method": engine.similar_method, "items": engine.similar(index, k)}

    @app.get("/items", response_model=s.SearchAnswer, responses=errors, tags=["items"])
    def search(
        query: Annotated[str, QueryParam(max_length=limits.max_query)] = "",
        tag: Annotated[str | None, QueryParam(max_length=200)] = None,
        limit: Annotated[int, QueryParam(ge=1, le=limits.max_search_results)] = 20,
    ) -> dict[str, Any]:
        """Items whose title contains ``query`` (case-insensitive; an item id matches too), best matches and most
        popular first; with ``tag``, only items of that genre or tag."""
        return {"items": engine.search(query, tag or None, limit)}

    @app.get("/health", response_model=s.Health, tags=["service"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.name, "uptime_s": round(time.time() - engine.started, 3)}

    info = {
        "model": model.name,
        "params": json.loads(json.dumps(model.get_params(), default=str)),
        "dataset": config.data.dataset or (str(config.data.path) if config.data.path else None),
        "split": json.loads(json.dumps(config.split.model_dump(), default=str)),
        "metrics": engine.metrics,
        "n_users": len(model.users_),
        "n_items": model.n_items,
        "takes_ratings": engine.takes_ratings,
        "rating_range": (
            [model.rating_stats_["low"], model.rating_stats_["high"]]  # type: ignore[attr-defined]
            if engine.takes_ratings
            else None
        ),
        "folds_in_from_history": model.folds_in_from_history,
        "similar_method": engine.similar_method,
        "explain_method": engine.explain_method(),
        "has_titles": engine.catalog.has_titles,
        "tags": list(engine.catalog.tag_counts())[:200],
        "example_users": [x.item() if hasattr(x, "item") else x for x in model.users_.ids[:5]],
        "limits": dict(vars(limits)),
    }

    @app.get("/model", response_model=s.ModelInfo, tags=["service"])
    async def model_info() -> dict[str, Any]:
        """The model: name, hyper-parameters, dataset, split, the run's metrics, what the page can offer."""
        return info

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
