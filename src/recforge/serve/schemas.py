"""Request and answer bodies of the HTTP API (pydantic; FastAPI documents them in the OpenAPI page at /docs).

Ids are JSON integers or strings, typed like the run's ids on arrival (``"50"`` is item 50 of MovieLens). The
limits of a server (``k``, history length, batch size...) are checked by the server, which names them in a 422;
the caps here only bound what is parsed at all.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

#: What is parsed at all (the server's configurable limits are lower)
HARD_CAP = 100_000

Id = StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=200)]
Rating = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
IdList = Annotated[list[Id], Field(max_length=HARD_CAP)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    """A known user (``user_id``) or a new user's history (``items``, with ``ratings`` or weights, one per item)."""

    user_id: Id | None = Field(None, description="a known user (or one given interactions while serving)")
    items: Annotated[list[Id], Field(min_length=1, max_length=HARD_CAP)] | None = Field(
        None, description="a new user's history: item ids"
    )
    ratings: Annotated[list[Rating], Field(max_length=HARD_CAP)] | None = Field(
        None, description="ratings or weights of the history items, one each (default: the model's liked value)"
    )
    k: Annotated[int, Field(ge=1)] = Field(10, description="list length")
    exclude: IdList | None = Field(None, description="item ids never to recommend")
    exclude_seen: bool = Field(True, description="leave out the items of the history")
    tag: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="only items with this genre or tag (case-insensitive)"
    )
    candidates: IdList | None = Field(None, description="only these items")
    explain: bool = Field(False, description="add, per item, the history items that contributed most")

    @model_validator(mode="after")
    def _one_user(self) -> RecommendRequest:
        if (self.user_id is None) == (self.items is None):
            raise ValueError("give exactly one of user_id (a known user) or items (a new user's history)")
        if self.ratings is not None and self.items is None:
            raise ValueError("ratings go with items (a new user's history)")
        return self


class BatchRequest(_Body):
    requests: Annotated[list[RecommendRequest], Field(min_length=1, max_length=HARD_CAP)]


class InteractionsRequest(_Body):
    items: Annotated[list[Id], Field(min_length=1, max_length=HARD_CAP)]
    ratings: Annotated[list[Rating], Field(max_length=HARD_CAP)] | None = None


class ItemInfo(BaseModel):
    item_id: Any
    title: str | None = None
    tags: list[str] = []


class Contribution(ItemInfo):
    contribution: float


class ScoredItem(ItemInfo):
    score: float | None
    because: list[Contribution] | None = Field(
        None, description="with explain: the history items that contributed most to the score"
    )


class Recommendation(BaseModel):
    user_id: Any = None
    history_size: int
    folded_in: bool = Field(description="scored from the history (a new user, or a known one with added items)")
    items: list[ScoredItem]


class BatchAnswer(BaseModel):
    results: list[Recommendation]


class SearchItem(ItemInfo):
    popularity: int = Field(description="training interactions")


class SearchAnswer(BaseModel):
    items: list[SearchItem]


class SimilarAnswer(BaseModel):
    item: ItemInfo
    method: str
    items: list[ScoredItem]


class InteractionsAnswer(BaseModel):
    user_id: Any
    known_user: bool = Field(description="a training user (else a user who exists through added interactions)")
    added: int
    total_added: int


class ClearedAnswer(BaseModel):
    user_id: Any
    removed: int


class Health(BaseModel):
    status: str
    model: str
    uptime_s: float


class ModelInfo(BaseModel):
    model: str
    params: dict[str, Any]
    dataset: str | None
    split: dict[str, Any]
    metrics: dict[str, Any]
    n_users: int
    n_items: int
    takes_ratings: bool
    rating_range: list[float] | None
    folds_in_from_history: bool
    similar_method: str
    explain_method: str
    has_titles: bool
    tags: list[str]
    example_users: list[Any]
    limits: dict[str, int]


class ErrorAnswer(BaseModel):
    detail: Any
    unknown_ids: list[Any] | None = None
