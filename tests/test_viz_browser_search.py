"""The viz page's searches in a real headless Chromium (as tests/test_viz_browser.py): a span
selected with the mouse or the keyboard, a regular expression (held equal to viz/search.py, and
timed on a 20,000-character page), and two runs side by side. Fail, never skip."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from test_viz_browser import CODE, TEXT  # the same page text

from rnnlab import checkpoint
from rnnlab.cli import main
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM
from rnnlab.viz import visualize
from rnnlab.viz.compare import prediction_gap
from rnnlab.viz.page import LEVELS, quantize
from rnnlab.viz.search import FIRE_CELLS, correlations, fires, rank, regex_feature, span_scores
from rnnlab.vocab import Vocab


def make_run(root, name, text, hidden=16, layers=2, seed=0, byte_mode=False):
    """A run directory with random weights for ``text``'s characters (or bytes)."""
    vocab = Vocab.bytes() if byte_mode else Vocab.from_chars(text)
    torch.manual_seed(seed)
    config = ModelConfig(
        cell="lstm", num_layers=layers, hidden_size=hidden, embedding_size=8, vocab_size=len(vocab)
    )
    run = root / name
    run.mkdir()
    corpus = CorpusConfig(source=str(root / "text.txt"))
    checkpoint.save_config(run, checkpoint.RunConfig(config, TrainConfig(), corpus))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, CharLM(config).eval(), step=0)
    return run


def unit_rows(analysis) -> np.ndarray:
    """(K, N) what the page holds: levels / (LEVELS - 1), rows (layer, quantity, cell)."""
    levels, _ = quantize(analysis)  # (L, Q, H, N)
    return levels.reshape(-1, levels.shape[-1]) / (LEVELS - 1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vizsearch")
    (tmp / "text.txt").write_text(TEXT)
    a = make_run(tmp, "a", TEXT)
    b = make_run(tmp, "b", TEXT, hidden=12, layers=1, seed=1)
    one = visualize(a, tmp / "text.txt", chars=900)
    two = visualize(a, tmp / "text.txt", chars=900, compare_with=b)
    (tmp / "one.html").write_text(one.html)
    (tmp / "two.html").write_text(two.html)
    return {"tmp": tmp, "a": a, "b": b, "one": one, "two": two}


def opened(open_page, path):
    page, seen = open_page(path.as_uri(), timeout_ms=60_000)
    return page, seen["errors"]


def span_rows(page, where="#span-rows") -> list[dict]:
    return page.eval_on_selector_all(f"{where} .cell-row", "rs => rs.map(r => ({...r.dataset}))")


def test_mouse_selection_ranks_the_cells_as_python_does(open_page, built):
    u = unit_rows(built["one"].analysis)
    page, errors = opened(open_page, built["tmp"] / "one.html")
    start, end = 150, 156
    first = page.locator(f"#text span[data-i='{start}']").bounding_box()
    last = page.locator(f"#text span[data-i='{end - 1}']").bounding_box()
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2, steps=5)
    page.mouse.up()
    info = page.eval_on_selector("#span-info", "e => ({...e.dataset})")
    assert (int(info["start"]), int(info["end"])) == (start, end)
    scores = span_scores(u, start, end)
    best = rank(scores[:, 0], 5)
    rows = span_rows(page)
    assert len(rows) == 5
    shown = [float(r["score"]) for r in rows]
    assert shown == pytest.approx(scores[best, 0].tolist(), abs=1e-9)
    # the viewer shows the best cell; the other places where the best cells fire are marked
    H, Q = 16, 6
    k = best[0]
    viewer = page.eval_on_selector("#viewer", "e => ({...e.dataset})")
    assert (int(viewer["layer"]), int(viewer["cell"])) == (k // (Q * H), k % H)
    fired = fires(u, start, end, best[:FIRE_CELLS])
    fired[start:end] = False
    marked = page.eval_on_selector_all("#text span.fire", "s => s.map(x => +x.dataset.i)")
    assert marked == np.flatnonzero(fired).tolist() and int(info["matches"]) == len(marked)
    assert page.locator("#text span.picked").count() == end - start
    assert errors == []


def test_keyboard_selection(open_page, built):
    page, errors = opened(open_page, built["tmp"] / "one.html")
    page.click("#text span[data-i='300']")
    page.locator("#text").focus()
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")
    info = page.eval_on_selector("#span-info", "e => ({...e.dataset})")
    assert (int(info["start"]), int(info["end"])) == (300, 305)
    page.keyboard.press("Shift+ArrowLeft")
    assert page.get_attribute("#span-info", "data-end") == "304"
    assert len(span_rows(page)) == 5
    page.keyboard.press("Escape")
    assert page.locator("#text span.picked").count() == 0 and span_rows(page) == []
    assert errors == []


def test_regex_ranks_by_correlation_as_python_does(open_page, built):
    u = unit_rows(built["one"].analysis)
    text = "".join(built["one"].analysis.symbols)
    page, errors = opened(open_page, built["tmp"] / "one.html")
    for pattern in (r"\(.*?\)", r"return", r"[A-Z]", r"\n    ", r"^ +"):
        page.fill("#regex", pattern)
        f = regex_feature(text, pattern)
        assert int(page.get_attribute("#regex-info", "data-matches")) == int(f.sum())
        r = correlations(u, f)
        best = rank(np.abs(r), 5)
        rows = span_rows(page, "#regex-rows")
        assert [float(x["score"]) for x in rows] == pytest.approx(r[best].tolist(), abs=1e-9)
        assert page.locator("#regex-rows .cell-row").first.locator("rect.feature").count() > 0
    page.fill("#regex", "(")
    assert "not a regular expression" in page.inner_text("#regex-info")
    assert errors == []


def test_regex_answers_in_under_200_ms_on_20000_characters(open_page, tmp_path):
    text = (CODE * 120)[:20_000]
    (tmp_path / "text.txt").write_text(text)
    run = make_run(tmp_path, "wide", text, hidden=64, layers=2)
    page_path = tmp_path / "wide.html"
    page_path.write_text(visualize(run, tmp_path / "text.txt", chars=20_000).html)
    times = {}  # pattern -> ms of each try: ranking, rows and the text recolored, in the page
    page, errors = opened(open_page, page_path)
    for _ in range(2):  # the best of two: the machine is shared, other work adds noise
        for pattern in (r"\(.*?\)", r"return", r"[a-z]+", r"'[^']*'", r"\d"):
            page.fill("#regex", pattern)
            times.setdefault(pattern, []).append(
                float(page.get_attribute("#regex-info", "data-ms"))
            )
            page.fill("#regex", "")
    assert errors == []
    K = 2 * 6 * 64
    print(f"\nregex search, 20,000 characters x {K} rows (2 x 64 LSTM), ms per try: {times}")
    assert max(min(t) for t in times.values()) < 200


def test_two_runs_side_by_side(open_page, built):
    a, b = built["two"].analysis, None
    page, errors = opened(open_page, built["tmp"] / "two.html")
    head = page.eval_on_selector_all("#feature-table thead th", "t => t.map(x => x.innerText)")
    assert head == ["feature", "a (r)", "b (r)"]
    summary = built["two"].summary
    for name in ("line_position", "after_newline"):
        for run, feats in ((0, summary["features"]), (1, summary["compare"]["features"])):
            links = page.locator(f"tr[data-feature='{name}'] td[data-run='{run}'] a.cell-link")
            assert links.count() == 5
            c = feats[name]["cells"][0]
            assert f"r={c['r']:+.3f}" in links.first.inner_text()
    page.locator("tr[data-feature='line_position'] td[data-run='1'] a.cell-link").first.click()
    assert page.get_attribute("#viewer", "data-run") == "1"
    # the characters where the predictions differ most, largest first, as compare.py says
    data = json.loads(page.inner_text("#data"))
    b = visualize(built["b"], built["tmp"] / "text.txt", chars=900).analysis
    gap = prediction_gap(a, data["runs"][0]["symbols"], b, data["runs"][1]["symbols"])
    items = page.eval_on_selector_all(
        "#gap-list li", "l => l.map(x => [+x.dataset.i, +x.dataset.gap])"
    )
    assert len(items) == 20
    assert [g for _, g in items] == pytest.approx(sorted(gap, reverse=True)[:20], abs=1e-3)
    assert [t for t, _ in items][0] == int(np.argmax(gap))
    page.check("#color-gap")
    # selections and patterns search both runs
    page.fill("#regex", r"\(")
    assert {r["run"] for r in span_rows(page, "#regex-rows")} == {"0", "1"}
    assert errors == []


def test_two_runs_must_share_the_texts_characters(built, tmp_path, capsys):
    other = make_run(tmp_path, "other", "abc def\n")
    out = tmp_path / "v.html"
    code = main(
        ["viz", str(built["a"]), str(other), str(built["tmp"] / "text.txt"), "-o", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "both runs must share the text's characters" in err
    raw = make_run(tmp_path, "raw", TEXT, byte_mode=True)
    assert (
        main(["viz", str(built["a"]), str(raw), str(built["tmp"] / "text.txt"), "-o", str(out)])
        == 2
    )
    assert "reads bytes and the first run chars" in capsys.readouterr().err
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args = ["viz", str(built["a"]), str(built["b"]), str(built["tmp"] / "text.txt")]
        assert main([*args, "-o", str(out), "--chars", "300", "--quiet", "--json"]) == 0
    report = json.loads(buf.getvalue())
    assert report["compare"]["run"] == "b" and report["compare"]["hidden_size"] == 12
