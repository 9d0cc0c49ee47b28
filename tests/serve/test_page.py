"""The page at / driven by a real headless Chromium (Debian's, through Playwright): find two films by title, add them
to the basket, see the recommendations appear with scores and reasons; a screenshot is written for a person to look
at (to $RECFORGE_SCREENSHOT_DIR too, when set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _add(page, query: str, title: str) -> None:
    page.fill("#search", query)
    row = page.locator("#results li", has_text=title).first
    row.wait_for(timeout=15_000)
    row.locator("button.add").click()
    page.locator("#basket li", has_text=title).wait_for(timeout=15_000)


@pytest.mark.parametrize("name", ["ease", "biasedmf"])
def test_basket_of_two_films_gets_recommendations(browser, serve, tmp_path, name):
    server = serve(name)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.locator("#model-name", has_text=name).wait_for(timeout=15_000)
    _add(page, "star wars", "Star Wars (1977)")
    _add(page, "empire", "Empire Strikes Back, The (1980)")
    recs = page.locator("#recs li")
    recs.nth(9).wait_for(timeout=15_000)
    page.locator("#status", has_text="a basket of 2").wait_for(timeout=15_000)
    texts = recs.all_inner_texts()
    assert len(texts) == 10
    assert not any("Star Wars (1977)" in t.split("\n")[0] or "Empire Strikes Back" in t.split("\n")[0] for t in texts)
    assert any("because of" in t for t in texts)
    if name == "biasedmf":  # a rating model: the basket has a rating per film
        assert page.locator("#basket select.rating").count() == 2
    shots = [tmp_path / f"serve-page-{name}.png"]
    if os.environ.get("RECFORGE_SCREENSHOT_DIR"):
        Path(os.environ["RECFORGE_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shots.append(Path(os.environ["RECFORGE_SCREENSHOT_DIR"]) / f"serve-page-{name}.png")
    for shot in shots:
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    # a known user instead of the basket
    page.check("input[name=mode][value=user]")
    page.fill("#user", "196")
    page.click("#use-user")
    page.locator("#status", has_text="user 196").wait_for(timeout=15_000)
    assert page.locator("#recs li").count() == 10
    assert errors == []
    page.close()
