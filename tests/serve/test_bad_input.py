"""Bad requests get a 4xx that says what is wrong, never a 500: a hand-written table, then a fuzz of every operation
of the OpenAPI document (hypothesis: bodies shaped by the request schemas with any values, and any JSON)."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

J = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(serve):
    with serve("ease").client() as c:
        yield c


CASES: list[tuple[str, str, Any, int, str]] = [
    # (method, path, JSON body or raw bytes, status, a fragment of the answer)
    ("POST", "/recommend", b"{not json", 422, "json_invalid"),
    ("POST", "/recommend", b"", 422, "missing"),
    ("POST", "/recommend", b"[1, 2]", 422, "model_attributes_type"),
    ("POST", "/recommend", {"items": [99999, "nope"]}, 422, '"unknown_ids": [99999, "nope"]'),
    ("POST", "/recommend", {"items": [50, 99999, 99999]}, 422, '"unknown_ids": [99999]'),
    ("POST", "/recommend", {"items": []}, 422, "too_short"),
    ("POST", "/recommend", {"items": [50], "k": 0}, 422, "greater_than_equal"),
    ("POST", "/recommend", {"items": [50], "k": 100000}, 422, "the limit is 1000"),
    ("POST", "/recommend", {"items": [50], "k": "ten"}, 422, "int_parsing"),
    ("POST", "/recommend", {"items": [50], "k": 2.5}, 422, "int_from_float"),
    ("POST", "/recommend", {"items": [50] * 1001}, 422, "items has 1001 entries; the limit is 1000"),
    ("POST", "/recommend", {"items": [50], "ratings": [1, 2]}, 422, "2 ratings for 1 items"),
    ("POST", "/recommend", b'{"items": [50], "ratings": [NaN]}', 422, "finite_number"),
    ("POST", "/recommend", {"items": [50], "ratings": ["x"]}, 422, "float_parsing"),
    ("POST", "/recommend", {"items": [True]}, 422, "int_type"),
    ("POST", "/recommend", {"items": [[50]]}, 422, "int_type"),
    ("POST", "/recommend", {"user_id": 196, "items": [50]}, 422, "exactly one of user_id"),
    ("POST", "/recommend", {}, 422, "exactly one of user_id"),
    ("POST", "/recommend", {"user_id": 196, "ratings": [5]}, 422, "ratings go with items"),
    ("POST", "/recommend", {"user_id": "nobody"}, 404, '"unknown_ids": ["nobody"]'),
    ("POST", "/recommend", {"items": [50], "tag": "no-such-genre"}, 422, "no item has the genre or tag"),
    ("POST", "/recommend", {"items": [50], "exclude": [424242]}, 422, '"unknown_ids": [424242]'),
    ("POST", "/recommend", {"items": [50], "candidates": ["zz"]}, 422, '"unknown_ids": ["zz"]'),
    ("POST", "/recommend", {"items": [50], "colour": "red"}, 422, "extra_forbidden"),
    ("POST", "/recommend", {"items": ["\ud800"]}, 422, "string_unicode"),
    ("POST", "/recommend/batch", {"requests": []}, 422, "too_short"),
    ("POST", "/recommend/batch", {"requests": [{"items": [50]}] * 1001}, 422, "the limit is 1000"),
    ("POST", "/recommend/batch", {"requests": [{"items": [50]}, {"items": [0]}]}, 422, "requests[1].items"),
    ("POST", "/users/196/interactions", {"items": [424242]}, 422, '"unknown_ids": [424242]'),
    ("POST", "/users/196/interactions", {"items": [50], "ratings": [1, 2]}, 422, "2 ratings for 1 items"),
    ("POST", "/users/196/interactions", {"items": []}, 422, "too_short"),
    ("GET", "/items/424242/similar", None, 404, '"unknown_ids": [424242]'),
    ("GET", "/items/50/similar?k=0", None, 422, "greater_than_equal"),
    ("GET", "/items/50/similar?k=5000", None, 422, "the limit is 1000"),
    ("GET", "/items/50/similar?k=abc", None, 422, "int_parsing"),
    ("GET", "/items?limit=0", None, 422, "greater_than_equal"),
    ("GET", "/items?tag=no-such-genre", None, 422, "no item has the genre or tag"),
    ("GET", "/items?query=" + "x" * 300, None, 422, "string_too_long"),
    ("GET", "/no/such/path", None, 404, "Not Found"),
    ("PUT", "/recommend", {"items": [50]}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "fragment"), CASES, ids=[f"{c[1]}:{c[4]}" for c in CASES])
def test_bad_request_is_a_clear_4xx(client, method, path, body, status, fragment):
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers=J)
    elif body is None:
        response = client.request(method, path)
    else:
        response = client.request(method, path, content=json.dumps(body).encode(), headers=J)
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert "detail" in response.json()


# ---------------------------------------------------------------------------------------------- schema-driven fuzz
def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
#: Ids: mostly ones the model knows (MovieLens 100K numbers them 1..1682), so that requests get past the id checks
IDS = st.one_of(st.integers(1, 1682), st.integers(1, 1682), st.integers(1, 1682), st.integers(), st.text(max_size=8))


def from_schema(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like ``schema`` (its properties and item types), with any values where it allows a choice,
    and now and then any JSON at all in place of a part."""
    schema = _resolve(schema, document)
    if depth > 4:
        return ANY_JSON
    if "anyOf" in schema:
        shaped = st.one_of([from_schema(s, document, depth + 1) for s in schema["anyOf"]])
    elif schema.get("type") == "object":
        props = schema.get("properties", {})
        shaped = st.fixed_dictionaries({}, optional={k: from_schema(v, document, depth + 1) for k, v in props.items()})
    elif schema.get("type") == "array":
        shaped = st.lists(from_schema(schema.get("items", {}), document, depth + 1), max_size=6)
    elif schema.get("type") == "integer":
        shaped = st.one_of(IDS, st.integers(-3, 30), st.integers(990, 1010), st.integers())
    elif schema.get("type") == "number":
        shaped = st.floats(allow_nan=False) | st.integers(-10, 10)
    elif schema.get("type") == "string":
        shaped = st.text(max_size=12) | st.sampled_from(["comedy", "Sci-Fi", "Drama", "50"])
    elif schema.get("type") == "boolean":
        shaped = st.booleans()
    else:
        shaped = ANY_JSON
    return st.one_of(*[shaped] * 7, ANY_JSON)


#: A valid body per operation: the fuzz also changes one field of it (to a value shaped by the schema, or any JSON),
#: which reaches the code behind the validation with one odd value at a time.
VALID: dict[str, Any] = {
    "/recommend": {"items": [50, 172, 181], "ratings": [5, 4, 3], "k": 5, "explain": True},
    "/recommend/batch": {"requests": [{"items": [50, 172], "k": 3}, {"user_id": 196, "k": 2, "tag": "Drama"}]},
    "/users/{user_id}/interactions": {"items": [50, 172], "ratings": [4, 5]},
}
ALTERNATIVES = [{"user_id": 196, "k": 4, "explain": True}, {"items": [1], "candidates": [2, 3, 4], "exclude": [2]}]


@st.composite
def mutated(draw, path: str, schema: dict[str, Any], document: dict[str, Any]) -> Any:
    body = json.loads(json.dumps(draw(st.sampled_from([VALID[path], *(ALTERNATIVES if path == "/recommend" else [])]))))
    target, target_schema = body, _resolve(schema, document)
    if path == "/recommend/batch" and draw(st.booleans()):  # inside one of the requests
        target = body["requests"][draw(st.integers(0, 1))]
        target_schema = _resolve(target_schema["properties"]["requests"]["items"], document)
    props = target_schema.get("properties", {})
    key = draw(st.sampled_from(sorted(props)))
    if draw(st.integers(0, 4)) == 0:
        target.pop(key, None)
    else:
        target[key] = draw(from_schema(props[key], document, depth=1))
    return body


PATH_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=12) | st.sampled_from(
    ["50", "196", "0", "-1", "99999999999999999999"]
)


@pytest.fixture(scope="module")
def operations(client) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    return [
        (method.upper(), path, {"operation": op, "document": document})
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_of_the_openapi_document_finds_no_5xx(client, operations, data):
    method, path, spec = data.draw(st.sampled_from(operations))
    op, document = spec["operation"], spec["document"]
    url = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", data.draw(PATH_TEXT))
    query = {}
    for param in op.get("parameters", []):
        if param["in"] == "query" and data.draw(st.booleans()):
            query[param["name"]] = str(data.draw(from_schema(param["schema"], document) | st.text(max_size=10)))
    content = None
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body_schema is not None:
        shaped = from_schema(body_schema, document)
        body = data.draw(st.one_of(shaped, mutated(path, body_schema, document)) if path in VALID else shaped)
        raw = json.dumps(body).encode()
        content = data.draw(st.sampled_from([raw, raw, raw, raw[: len(raw) // 2], b"\xff\xfe", b"NaN"]))
    response = client.request(method, url, params=query, content=content, headers=J if content is not None else None)
    event(f"{method} {path} -> {response.status_code}")  # --hypothesis-show-statistics: what the fuzz reached
    assert response.status_code < 500, (method, url, query, content, response.text)
