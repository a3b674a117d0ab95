"""The playground page in a real headless Chromium (Debian's `chromium`, which conftest installs
when it is missing), driven by Playwright, against a real uvicorn server on loopback. Fails,
never skips, without the browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg
from serve_helpers import Server, make_run

from rnnlab.serve import Limits, create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-page")
    runs = [make_run(tmp / "tiny"), make_run(tmp / "tiny-gru", cell="gru", seed=1)]
    s = Server(create_app(runs, Limits(max_length=2000, max_request_s=120)))
    s.runs = runs
    yield s
    s.stop()


@pytest.fixture
def opened(open_page, server):
    """The playground, with every console error, request and /v1/generate body recorded."""
    bodies = []

    def on_request(r):
        if r.url.endswith("/v1/generate"):
            bodies.append(json.loads(r.post_data))

    page, seen = open_page(server.url + "/", viewport=(1100, 800), on_request=on_request)
    return page, seen | {"bodies": bodies}


def test_loads_offline_without_errors(opened, server):
    page, seen = opened
    assert seen["errors"] == []
    assert all(url.startswith(server.url + "/") for url in seen["requests"]), seen["requests"]
    assert page.locator("#model option").all_inner_texts() == ["tiny", "tiny-gru"]
    assert "val 4.250 bpc" in page.inner_text("#model-info")


def test_generate_streams_in_tinted_characters(opened):
    page, seen = opened
    page.fill("#prompt", "def ")
    page.fill("#length", "60")
    page.fill("#seed", "5")
    page.click("#generate")
    page.wait_for_selector("body[data-state=idle][data-count='60']", timeout=20_000)
    spans = page.locator("#output span.c")
    assert spans.count() == 60
    assert page.inner_text("#prompt-echo") == "def "
    tints = set(spans.evaluate_all("s => s.map(x => x.style.backgroundColor)"))
    assert len(tints) > 5  # a scale, not one flat color
    body = seen["bodies"][-1]
    assert body["stream"] is True and body["seed"] == 5 and body["length"] == 60
    # hover shows the five best guesses with their probabilities
    spans.nth(10).hover()
    assert page.locator("#tip").is_visible()
    probs = [float(x) for x in page.locator("#tip .pred .p").all_inner_texts()]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    assert "surprise" in page.inner_text("#tip .own")
    assert seen["errors"] == []


def test_pick_the_next_character_then_let_it_run(opened, server):
    """Issue 24 item 6: the user writes with the model from its five best next characters
    (the model's own distribution, as the library computes it), then lets it run on."""
    from rnnlab import checkpoint
    from rnnlab.sampling import complete

    page, seen = opened
    page.fill("#prompt", "def ")
    page.click("#pick")
    page.wait_for_selector("#choices button.choice >> nth=4", timeout=20_000)
    chars = page.locator("#choices button.choice").evaluate_all("b => b.map(x => x.dataset.char)")
    model, vocab, _ = checkpoint.load_model(server.runs[0])
    expected = complete(model, vocab, "def ", length=1, temperature=0, logprobs=5)[0]
    assert chars == [c for c, _ in expected.logprobs[0].top]  # best first, as the library says
    page.locator("#choices button.choice").nth(1).click()  # the second best, by mouse
    page.wait_for_function("document.querySelectorAll('#output span.c').length === 1")
    page.wait_for_selector("#choices button.choice >> nth=4")
    page.locator("#output").focus()
    page.keyboard.press("1")  # the best, by key
    page.wait_for_function("document.querySelectorAll('#output span.c').length === 2")
    picked = page.locator("#output span.c").evaluate_all("s => s.map(x => x.dataset.char)")
    assert picked[0] == chars[1]
    page.fill("#length", "20")
    page.click("#generate")  # lets it run on from the picked text
    page.wait_for_selector("body[data-state=idle][data-count='20']", timeout=20_000)
    assert seen["bodies"][-1]["prompt"] == "def " + "".join(picked)
    assert page.locator("#choices").is_hidden()
    assert seen["errors"] == []


# The page's fetch, with each streamed body handed on 64 bytes at a time, 5 ms apart, and
# ended as an abort the moment the request's signal aborts (as a real fetch's body is): a
# stream of 2,000 characters then lasts seconds in the page on any machine, so Stop always
# finds it running (the tiny model writes them in a fraction of a second, and a loaded machine
# can take longer than that between two browser commands).
SLOW_STREAMS = """() => {
  const fetched = window.fetch;
  window.fetch = async (url, init) => {
    const r = await fetched(url, init);
    const signal = init && init.signal;
    if (!r.body) return r;
    const reader = r.body.getReader();
    const aborted = () => new DOMException("The operation was aborted.", "AbortError");
    const paced = new ReadableStream({async pull(out) {
      let got;
      try { got = await reader.read(); } catch (e) { out.error(e); return; }
      if (got.done) { out.close(); return; }
      for (let i = 0; i < got.value.length; i += 64) {
        if (signal && signal.aborted) { out.error(aborted()); return; }
        out.enqueue(got.value.slice(i, i + 64));
        await new Promise((wake) => setTimeout(wake, 5));
      }
    }, cancel(why) { return reader.cancel(why); }});
    return new Response(paced, {status: r.status, statusText: r.statusText, headers: r.headers});
  };
}"""


def test_stop_stops_and_the_keyboard_works(opened, server):
    page, seen = opened
    page.evaluate(SLOW_STREAMS)
    page.fill("#length", "2000")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")  # generate from the keyboard
    page.wait_for_selector("body[data-state=running]")
    page.wait_for_function("document.querySelectorAll('#output span.c').length > 20")
    page.keyboard.press("Escape")  # Stop, from the keyboard
    page.wait_for_selector("body[data-state=idle]", timeout=10_000)
    count = page.locator("#output span.c").count()
    assert 20 < count < 2000
    assert "stopped after" in page.inner_text("#status")
    page.wait_for_timeout(300)
    assert page.locator("#output span.c").count() == count  # nothing more arrives
    # and the server let go of the row
    import httpx

    deadline = 50
    while httpx.get(server.url + "/health").json()["models"]["tiny"]["streams_in_flight"]:
        deadline -= 1
        assert deadline > 0
        page.wait_for_timeout(100)
    # the Stop button by mouse too
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output span.c').length > 10")
    page.click("#stop")
    page.wait_for_selector("body[data-state=idle]", timeout=10_000)
    assert page.locator("#output span.c").count() < 2000
    assert seen["errors"] == []


def test_sliders_change_the_request(opened):
    page, seen = opened
    page.fill("#length", "10")
    page.locator("#temperature").fill("0")
    page.locator("#top_k").fill("7")
    page.locator("#top_p").fill("0.5")
    page.select_option("#model", "tiny-gru")
    assert page.inner_text("#temperature-out") == "0"
    page.click("#generate")
    page.wait_for_selector("body[data-state=idle][data-count='10']", timeout=20_000)
    body = seen["bodies"][-1]
    assert (body["temperature"], body["top_k"], body["top_p"]) == (0, 7, 0.5)
    assert body["model"] == "tiny-gru"
    assert seen["errors"] == []


def test_screenshot_is_not_blank(opened, tmp_path):
    page, _ = opened
    page.fill("#length", "300")
    page.fill("#seed", "1")
    page.click("#generate")
    page.wait_for_selector("body[data-state=idle][data-count='300']", timeout=20_000)
    page.locator("#output span.c").nth(40).hover()
    png = tmp_path / "serve.png"
    page.screenshot(path=str(png))
    pixels = mpimg.imread(str(png))[..., :3]  # (H, W, 3)
    r, b = pixels[..., 0], pixels[..., 2]
    assert pixels.std() > 0.05 and (np.abs(r - b) > 0.1).mean() > 0.005  # tinted text
