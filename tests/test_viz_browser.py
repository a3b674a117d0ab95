"""The viz page in a real headless Chromium (Debian's `chromium`, installed by the session fixture
when missing), driven by Playwright with its executable path set. Fail, never skip, without it."""

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg

from rnnlab import checkpoint
from rnnlab.cli import main
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab

CODE = (
    "def area(shape, scale=2):  # width * height\n"
    '    """Return the area."""\n'
    "    if shape in ('square', \"circle\"):\n"
    "        return [scale * (x + 1) for x in range(3)]\n"
    "    return {'a': 1}\n"
    "\n"
)
TEXT = CODE * 6  # about 1,200 characters


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A run with random weights (a 2 x 16 LSTM), its page, and the JSON report of it."""
    tmp = tmp_path_factory.mktemp("viz")
    vocab = Vocab.from_chars(TEXT)
    torch.manual_seed(0)
    config = ModelConfig(
        cell="lstm", num_layers=2, hidden_size=16, embedding_size=8, vocab_size=len(vocab)
    )
    model = CharLM(config).eval()
    run = tmp / "run"
    run.mkdir()
    corpus = CorpusConfig(source=str(tmp / "code.py"))
    checkpoint.save_config(run, checkpoint.RunConfig(config, TrainConfig(), corpus))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, model, step=0)
    (tmp / "code.py").write_text(TEXT)
    page = tmp / "viz.html"
    args = ["viz", str(run), str(tmp / "code.py"), "-o", str(page), "--chars", "900"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--json", "--quiet"]) == 0
    ids = torch.tensor(vocab.encode(TEXT))[None]
    with torch.no_grad():
        probs = model(ids)[0][0].softmax(-1).numpy()  # (N, V): the model's own distribution
    return {"page": page, "report": json.loads(out.getvalue()), "probs": probs, "vocab": vocab}


@pytest.fixture
def opened(open_page, built):
    """The page loaded from its file URL, with every console error and request recorded."""
    return open_page(built["page"].as_uri())


def selection(page) -> tuple[int, str, int]:
    d = page.eval_on_selector("#viewer", "e => ({...e.dataset})")
    return int(d["layer"]), d["quantity"], int(d["cell"])


def colors(page) -> list[str]:
    return page.eval_on_selector_all("#text span", "s => s.map(x => x.style.backgroundColor)")


def test_page_loads_offline_without_errors(opened, built):
    page, seen = opened
    assert seen["errors"] == []
    assert seen["requests"] == [built["page"].as_uri()]  # the file itself, nothing else
    assert page.eval_on_selector_all("#text span", "s => s.map(x => x.textContent).join('')") == (
        TEXT[:900].replace("\n", "\u21b5\n")
    )
    assert "first 900 characters" in page.inner_text("#note")
    assert page.locator("#saturation svg.saturation-plot").count() == 3  # LSTM: i, f, o
    assert page.locator("#saturation circle[data-layer]").count() == 3 * 2 * 16


def test_choosing_another_cell_changes_the_colors(opened):
    page, seen = opened
    layer, quantity, cell = selection(page)
    before = colors(page)
    assert len(before) == 900 and len(set(before)) >= 3  # a scale, not one flat color
    page.fill("#cell", str((cell + 1) % 16))
    page.dispatch_event("#cell", "change")
    assert selection(page) == (layer, quantity, (cell + 1) % 16)
    after = colors(page)
    assert after != before
    page.select_option("#quantity", label="forget gate f")
    assert selection(page)[1] == "f" and colors(page) != after
    page.select_option("#layer", "0" if layer else "1")
    assert selection(page)[0] == 1 - layer
    assert (
        page.inner_text("#selection")
        == f"layer {1 - layer} · forget gate f · cell {(cell + 1) % 16}"
    )
    # the keyboard: right and left arrows step the cell index, wrapping around
    page.locator("#text").focus()
    page.keyboard.press("ArrowRight")
    assert selection(page)[2] == (cell + 2) % 16
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert selection(page)[2] == cell
    assert seen["errors"] == []


def test_colors_follow_the_cell_values(opened, built):
    """The span with the cell's highest value is the reddest, the lowest the bluest."""
    page, _ = opened
    page.select_option("#quantity", label="cell state tanh(c)")
    values = page.evaluate(
        "() => [...document.querySelectorAll('#text span')].map((s) => {"
        "  s.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
        "  return +/cell value (-?[0-9.]+)/.exec(document.querySelector('#tip').textContent)[1];"
        "})"
    )
    rgb = [tuple(map(int, re.findall(r"\d+", c))) for c in colors(page)]
    redness = [r - b for r, g, b in rgb]
    hi, lo = int(np.argmax(values)), int(np.argmin(values))
    assert values[hi] > values[lo]
    assert redness[hi] == max(redness) and redness[lo] == min(redness)


def test_hover_shows_the_models_top5(opened, built):
    page, _ = opened
    probs, vocab = built["probs"], built["vocab"]
    for t in (0, 37, 150, 899):
        page.hover(f"#text span[data-i='{t}']")
        rows = page.locator("#tip .pred")
        assert rows.count() == 5
        shown = [(rows.nth(k).get_attribute("data-char"), rows.nth(k)) for k in range(5)]
        expected = np.argsort(-probs[t])[:5]
        for (char, row), i in zip(shown, expected, strict=True):
            assert char == vocab.symbols[i]
            p_text = row.locator(".p").inner_text()
            assert abs(float(p_text) - probs[t, i]) <= 0.0005 + 1e-7, (t, char, p_text)
        own = page.inner_text("#tip .own")
        if t == 0:
            assert "not predicted" in own
        else:
            p_own = probs[t - 1, vocab.symbols.index(TEXT[t])]
            m = re.search(r"p=([0-9.]+), surprise ([0-9.]+) bits", own)
            assert abs(float(m.group(1)) - p_own) <= 0.0005 + 1e-7
            assert abs(float(m.group(2)) + np.log2(p_own)) <= 0.005 + 1e-6


def test_interpretable_cells_link_to_their_cell(opened, built):
    page, seen = opened
    report = built["report"]["features"]
    rows = page.locator("#feature-table tbody tr")
    assert rows.count() == len(report)
    for name, feature in report.items():
        links = page.locator(f"#feature-table tr[data-feature='{name}'] a.cell-link")
        assert links.count() == len(feature["cells"]) == 5
        for k in (0, 4):
            c = feature["cells"][k]
            assert f"r={c['r']:+.3f}" in links.nth(k).inner_text()
            links.nth(k).click()
            assert selection(page) == (c["layer"], c["quantity"], c["cell"])
            assert "current" in links.nth(k).get_attribute("class")
    # a saturation circle selects its gate; a URL fragment selects a cell on load
    page.dispatch_event("#saturation circle[data-id='L1-o-7']", "click")  # circles may overlap
    assert selection(page) == (1, "o", 7)
    page.goto(built["page"].as_uri() + "#L0-g-3")
    page.wait_for_selector("body[data-ready=true]")
    assert selection(page) == (0, "g", 3)
    assert seen["errors"] == []


def test_screenshot_is_not_blank(opened, tmp_path):
    page, _ = opened
    page.hover("#text span[data-i='60']")
    png = tmp_path / "viz.png"
    page.screenshot(path=str(png))
    pixels = mpimg.imread(str(png))[..., :3]  # (H, W, 3) in [0, 1]
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 0.05
    r, b = pixels[..., 0], pixels[..., 2]
    assert (np.abs(r - b) > 0.1).mean() > 0.01  # the text's colored backgrounds
    assert page.locator("#tip").is_visible()
