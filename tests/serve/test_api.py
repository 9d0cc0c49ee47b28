"""The HTTP API of `recforge serve` against real runs (EASE, Mult-VAE, BiasedMF, NeuMF) on a live uvicorn server."""

from __future__ import annotations

import pandas as pd
import pytest

FAMILIES = ["ease", "multivae", "biasedmf", "neumf"]
STAR_WARS, EMPIRE, JEDI = 50, 172, 181


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, serve):
    return request.param, serve(request.param)


def test_health_and_model(family, run_dirs):
    name, server = family
    with server.client() as c:
        assert c.get("/health").json()["status"] == "ok"
        info = c.get("/model").json()
    assert info["model"] == name and info["dataset"] == "ml-100k" and info["split"]["protocol"] == "random"
    assert "test" in info["metrics"] and info["n_items"] > 1000
    assert "Comedy" in info["tags"] and info["has_titles"]
    assert info["takes_ratings"] == (name in ("biasedmf", "neumf"))


def test_run_dir_keeps_titles_and_genres(run_dirs):
    items = pd.read_csv(run_dirs["ease"] / "items.csv", keep_default_na=False)
    star_wars = items[items["item"] == STAR_WARS].iloc[0]
    assert star_wars["title"] == "Star Wars (1977)" and "Sci-Fi" in star_wars["genres"].split("|")


def test_known_user_and_new_history(family):
    _name, server = family
    with server.client() as c:
        known = c.post("/recommend", json={"user_id": 196, "k": 7}).json()
        assert known["user_id"] == 196 and not known["folded_in"] and len(known["items"]) == 7
        new = c.post("/recommend", json={"items": [STAR_WARS, EMPIRE, JEDI], "k": 10}).json()
    assert new["folded_in"] and new["history_size"] == 3 and len(new["items"]) == 10
    ids = [r["item_id"] for r in new["items"]]
    assert not {STAR_WARS, EMPIRE, JEDI} & set(ids)
    assert all(r["title"] for r in new["items"]) and all(isinstance(r["score"], float) for r in new["items"])
    scores = [r["score"] for r in new["items"]]
    assert scores == sorted(scores, reverse=True)


def test_ratings_exclude_and_filters(family):
    _, server = family
    with server.client() as c:
        base = c.post("/recommend", json={"items": [STAR_WARS, EMPIRE], "ratings": [5, 4], "k": 5}).json()
        first = base["items"][0]["item_id"]
        excluded = c.post("/recommend", json={"items": [STAR_WARS, EMPIRE], "ratings": [5, 4], "exclude": [first]})
        assert first not in [r["item_id"] for r in excluded.json()["items"]]
        comedy = c.post("/recommend", json={"items": [STAR_WARS], "tag": "comedy", "k": 5}).json()
        assert all("Comedy" in r["tags"] for r in comedy["items"]) and len(comedy["items"]) == 5
        only = c.post("/recommend", json={"items": [STAR_WARS], "candidates": [1, 2, 3, STAR_WARS], "k": 10}).json()
        assert {r["item_id"] for r in only["items"]} == {1, 2, 3}


def test_batch_is_the_single_answers(family):
    _, server = family
    queries = [{"user_id": 196, "k": 5}, {"items": [STAR_WARS, JEDI], "k": 3}, {"items": [1, 2, 3], "k": 4}]
    with server.client() as c:
        batch = c.post("/recommend/batch", json={"requests": queries}).json()["results"]
        single = [c.post("/recommend", json=q).json() for q in queries]
    assert len(batch) == 3
    for b, s in zip(batch, single, strict=True):
        assert [r["item_id"] for r in b["items"]] == [r["item_id"] for r in s["items"]]
        assert [r["score"] for r in b["items"]] == pytest.approx([r["score"] for r in s["items"]], rel=1e-4, abs=1e-5)


def test_added_interactions_change_the_next_recommendations(family):
    _name, server = family
    user = 7
    with server.client() as c:
        before = c.post("/recommend", json={"user_id": user, "k": 10}).json()
        top = before["items"][0]["item_id"]
        added = c.post(f"/users/{user}/interactions", json={"items": [top, STAR_WARS], "ratings": [5, 5]}).json()
        assert added == {"user_id": user, "known_user": True, "added": 2, "total_added": 2}
        after = c.post("/recommend", json={"user_id": user, "k": 10}).json()
        assert after["history_size"] >= before["history_size"] + 1
        assert top not in [r["item_id"] for r in after["items"]]  # now seen
        assert after["items"] != before["items"]
        # a user id the model never saw starts with its added interactions, folded in
        new = c.post("/users/visitor-1/interactions", json={"items": [STAR_WARS, EMPIRE]}).json()
        assert new["known_user"] is False
        recs = c.post("/recommend", json={"user_id": "visitor-1", "k": 5}).json()
        assert recs["folded_in"] and not {STAR_WARS, EMPIRE} & {r["item_id"] for r in recs["items"]}
        assert c.delete(f"/users/{user}/interactions").json()["removed"] == 2
        again = c.post("/recommend", json={"user_id": user, "k": 10}).json()
        assert [r["item_id"] for r in again["items"]] == [r["item_id"] for r in before["items"]]


def test_similar_items_and_search(family):
    _, server = family
    with server.client() as c:
        similar = c.get(f"/items/{STAR_WARS}/similar", params={"k": 5}).json()
        found = c.get("/items", params={"query": "star wars"}).json()["items"]
        popular = c.get("/items", params={"limit": 3}).json()["items"]
        sci_fi = c.get("/items", params={"query": "star", "tag": "sci-fi"}).json()["items"]
    assert similar["item"]["title"] == "Star Wars (1977)" and len(similar["items"]) == 5
    assert STAR_WARS not in [r["item_id"] for r in similar["items"]] and similar["method"]
    assert found[0]["item_id"] == STAR_WARS
    assert [p["popularity"] for p in popular] == sorted((p["popularity"] for p in popular), reverse=True)
    assert sci_fi and all("Sci-Fi" in r["tags"] for r in sci_fi)


def test_similar_items_use_the_models_own_item_item_relation(serve):
    expected = {
        "ease": "item-item weights",
        "multivae": "cosine of item vectors",
        "biasedmf": "cosine of item vectors",
        "neumf": "cosine of item vectors",
    }
    for name, method in expected.items():
        with serve(name).client() as c:
            assert c.get("/items/1/similar").json()["method"] == method, name


def test_explanations_name_the_basket_items(family):
    _, server = family
    with server.client() as c:
        answer = c.post("/recommend", json={"items": [STAR_WARS, EMPIRE, JEDI], "k": 5, "explain": True}).json()
    reasons = [b for r in answer["items"] for b in r["because"]]
    assert reasons, "no recommendation was explained"
    assert {b["item_id"] for b in reasons} <= {STAR_WARS, EMPIRE, JEDI}
    assert all(b["contribution"] > 0 and b["title"] for b in reasons)


def test_the_page_and_the_openapi_document(serve):
    with serve("ease").client() as c:
        page = c.get("/")
        script = c.get("/static/app.js")
        schema = c.get("/openapi.json").json()
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "app.js" in page.text
    assert script.status_code == 200 and "/recommend" in script.text
    paths = set(schema["paths"])
    assert {"/recommend", "/recommend/batch", "/users/{user_id}/interactions", "/items/{item_id}/similar"} <= paths
    assert {"/items", "/health", "/model"} <= paths
