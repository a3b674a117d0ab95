"""`rnnlab serve`'s viz tab: POST /v1/viz renders the viz page for a pasted text, and the
playground shows it live in a sandboxed frame (headless Chromium, as tests/test_serve_browser.py,
against a real uvicorn server on loopback). Fails, never skips, without the browser."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from serve_helpers import TEXT, Server, make_run

from rnnlab.serve import Limits, create_app
from rnnlab.viz import page_for_ids


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-viz")
    app = create_app([make_run(tmp / "tiny")], Limits(max_viz_chars=3000), viz=page_for_ids)
    s = Server(app)
    yield s
    s.stop()


def test_the_route_renders_the_page_for_a_text(server):
    text = TEXT[:400]
    r = httpx.post(server.url + "/v1/viz", json={"text": text}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    data = json.loads(re.search(r'id="data">(.*?)</script>', r.text, re.S).group(1))
    assert data["text"] == text and data["runs"][0]["name"] == "tiny"
    for body, status, needle in (
        ({"text": "x" * 3001}, 413, "over the limit of 3,000 characters"),
        ({"text": "def \u00a7\u00a7"}, 422, "\u00a7"),
        ({"text": "def", "model": "nope"}, 404, "no model named 'nope'"),
        ({"text": "d"}, 422, "at least 2"),
    ):
        r = httpx.post(server.url + "/v1/viz", json=body, timeout=60)
        assert r.status_code == status and needle in r.json()["error"], (body, r.text)


def test_a_server_without_the_renderer_has_no_viz_tab(tmp_path):
    s = Server(create_app([make_run(tmp_path / "tiny")]))
    try:
        r = httpx.post(s.url + "/v1/viz", json={"text": "def f"}, timeout=30)
        assert r.status_code == 404 and "no viz page" in r.json()["error"]
        assert httpx.get(s.url + "/v1/models").json()["viz"] is False
    finally:
        s.stop()


def test_the_viz_tab_shows_the_page_live(open_page, server, tmp_path):
    page, seen = open_page(server.url + "/", viewport=(1200, 1000))
    errors, requests = seen["errors"], seen["requests"]
    assert page.is_hidden("#panel-viz")
    page.click("#tab-viz")
    assert page.is_visible("#panel-viz") and page.is_hidden("#panel-generate")
    text = TEXT[:600]
    page.fill("#viz-text", text)  # live: typing is enough
    page.wait_for_selector("body[data-viz=shown]", timeout=60_000)
    frame = page.frame_locator("#viz-frame")
    frame.locator("body[data-ready=true]").wait_for(timeout=20_000)
    assert frame.locator("#text span").count() == len(text)
    frame.locator("#regex").fill(r"\(")
    assert frame.locator("#regex-rows .cell-row").count() == 5
    assert int(frame.locator("#regex-info").get_attribute("data-matches")) == text.count("(")
    # a new text replaces the page (here by the button, not live)
    page.uncheck("#viz-live")
    page.fill("#viz-text", text[:200])
    page.click("#viz-go")
    page.wait_for_selector("body[data-viz-chars='200']", timeout=60_000)
    frame.locator("body[data-ready=true]").wait_for(timeout=20_000)
    assert frame.locator("#text span").count() == 200
    page.fill("#viz-text", "def \u00a7")
    page.click("#viz-go")
    page.wait_for_selector("body[data-viz=error]", timeout=30_000)
    assert "\u00a7" in page.inner_text("#viz-status")
    assert all(u.startswith(server.url) for u in requests if not u.startswith("about:"))
    assert [e for e in errors if "422" not in e] == []
