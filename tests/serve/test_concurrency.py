"""Many clients at once against NeuMF, whose fold-in of new users runs gradient steps: every answer is the one a
lone request gets, and interactions added concurrently for different users each reach their own user."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

N_CLIENTS = 24


def _ids(answer):
    return [r["item_id"] for r in answer["items"]]


def test_parallel_clients_get_the_answers_of_lone_requests(serve):
    server = serve("neumf")
    queries = [{"items": [50 + i, 172, 181 + i], "k": 10} for i in range(8)]
    queries += [{"items": [1, 2, 3 + i], "ratings": [5, 1, 4], "k": 5, "explain": True} for i in range(4)]
    queries += [{"user_id": u, "k": 10} for u in (196, 186, 22, 244)]
    with server.client() as c:
        expected = [c.post("/recommend", json=q).json() for q in queries]

    def client_session(seed: int) -> list[tuple[int, dict]]:
        out = []
        with server.client() as c:
            for j in range(len(queries)):
                i = (seed + j) % len(queries)
                response = c.post("/recommend", json=queries[i])
                assert response.status_code == 200, response.text
                out.append((i, response.json()))
            batch = c.post("/recommend/batch", json={"requests": queries[:6]})
            assert batch.status_code == 200, batch.text
            out.extend(enumerate(batch.json()["results"]))
        return out

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        results = [r for session in pool.map(client_session, range(N_CLIENTS)) for r in session]
    assert len(results) == N_CLIENTS * (len(queries) + 6)
    for i, answer in results:
        assert _ids(answer) == _ids(expected[i])
        got = [r["score"] for r in answer["items"]]
        assert got == pytest.approx([r["score"] for r in expected[i]["items"]], rel=1e-4, abs=1e-5)


def test_concurrent_feedback_reaches_each_user(serve):
    server = serve("neumf")
    users = [f"parallel-{i}" for i in range(N_CLIENTS)]

    def feed(i: int) -> tuple[list, list]:
        with server.client() as c:
            history = [1 + i, 50 + i, 100 + i]
            for item in history:  # one interaction at a time, interleaved with the other clients
                assert c.post(f"/users/{users[i]}/interactions", json={"items": [item]}).status_code == 200
            answer = c.post("/recommend", json={"user_id": users[i], "k": 10}).json()
            fresh = c.post("/recommend", json={"items": history, "k": 10}).json()
            return _ids(answer), _ids(fresh)

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        for stored, fresh in pool.map(feed, range(N_CLIENTS)):
            assert stored == fresh  # the stored interactions are exactly that user's, folded in the same way
