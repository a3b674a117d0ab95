"""rnnlab viz without a browser: the text features, the statistics, the recording against the
fused model and independent oracles, the page's packed data, and the CLI end to end."""

import base64
import json
import re
import zlib

import numpy as np
import pytest
import torch

from rnnlab import checkpoint
from rnnlab.cli import main
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM
from rnnlab.viz import FEATURES, analyze, text_features
from rnnlab.viz.features import Correlator, Saturation
from rnnlab.viz.page import LEVELS, pack_activations, render_page
from rnnlab.vocab import Vocab

CODE = (
    "def area(shape, scale=2):  # a comment with 'quotes' and (brackets)\n"
    '    """Doc string."""\n'
    "    if shape in ('square', \"circle\"):\n"
    "        return [scale * (x + 1) for x in range(3)]\n"
    "    o'er = {'a': 1}\n"
    "\n"
)


def tiny_model(cell: str, vocab_size: int, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    config = ModelConfig(
        cell=cell, num_layers=2, hidden_size=12, embedding_size=6, vocab_size=vocab_size
    )
    return CharLM(config).eval()


def test_text_features_by_hand():
    f = text_features(CODE)
    at = lambda name, needle, k=0: f[name][CODE.index(needle) + k]  # noqa: E731
    assert list(f) == list(FEATURES) and all(len(v) == len(CODE) for v in f.values())
    # the comment: quotes and brackets in it are not strings or nesting
    assert at("in_comment", "# a") == 1 and at("in_comment", "'quotes'", 1) == 1
    assert at("in_single_quotes", "'quotes'", 1) == 0 and at("bracket_depth", "(brackets)", 1) == 0
    assert at("in_comment", "\n") == 0 and at("in_comment", "def") == 0
    # a triple-quoted string is inside double quotes, from the opening quotes to the closing ones
    assert at("in_double_quotes", '"""Doc', 0) == 1 and at("in_double_quotes", "Doc") == 1
    assert at("in_double_quotes", '."""', 1) == 0
    # strings hide brackets; depth counts every kind
    assert at("in_single_quotes", "square") == 1 and at("in_double_quotes", "circle") == 1
    assert at("bracket_depth", "(shape") == 1 and at("bracket_depth", "(x + 1)", 1) == 2
    assert at("bracket_depth", "):\n") == 0 and at("in_brackets", "{'a'") == 1
    # an apostrophe between letters is not a quote
    assert at("in_single_quotes", "o'er", 2) == 0
    # lines: position, indentation (causal: counted while it is read), newline, word starts
    line2 = CODE.index('    """')
    assert f["line_position"][line2 - 1] == 0 and f["after_newline"][line2 - 1] == 1
    assert f["line_position"][line2] == 1 and f["line_position"][line2 + 4] == 5
    assert f["indentation"][line2 + 1] == 2 and at("indentation", "return") == 8
    assert at("word_start", "return") == 1 and at("word_start", "return", 1) == 0
    assert f["after_newline"].sum() == CODE.count("\n")


def test_correlator_matches_numpy_over_chunks():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 3))
    feats[:, 2] = 4.0  # a feature absent from the text
    acts = rng.normal(size=(500, 6)) + feats[:, :1] * np.arange(6)
    acts[:, 5] = 0.5  # a dead cell
    corr = Correlator(3, 6)
    for a in range(0, 500, 128):
        corr.add(feats[a : a + 128], acts[a : a + 128])
    r = corr.r()
    expected = np.corrcoef(feats[:, :2].T, acts[:, :5].T)[:2, 2:]
    np.testing.assert_allclose(r[:2, :5], expected, atol=1e-10)
    assert (r[2] == 0).all() and (r[:, 5] == 0).all()
    assert corr.constant_features().tolist() == [False, False, True]


def test_saturation_fractions():
    sat = Saturation.empty(("i", "f"), num_layers=1, hidden_size=2)
    values = np.array([[[[0.05, 0.5], [0.95, 0.5], [0.5, 0.92], [0.09, 0.95]]] * 2])  # (1,2,4,2)
    sat.add(values[:, :, :2])
    sat.add(values[:, :, 2:])
    left, right = sat.fractions()
    assert sat.steps == 4
    np.testing.assert_allclose(left[0, 0], [0.5, 0.0])
    np.testing.assert_allclose(right[0, 0], [0.25, 0.5])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_analysis_is_the_models(cell):
    """Predictions equal the fused model's softmax over the whole text at once; the recorded
    states equal independent nn modules'; r equals numpy's on the recorded values."""
    text = CODE * 4
    vocab = Vocab.from_chars(text)
    ids = np.array(vocab.encode(text))
    model = tiny_model(cell, len(vocab))
    a = analyze(model, ids, list(text), show_chars=len(ids), chunk_len=37)  # state carried
    with torch.no_grad():
        x = torch.as_tensor(ids)[None]
        probs = model(x)[0][0].softmax(-1).numpy()  # (N, V)
        top_ids = np.argsort(-probs, 1, kind="stable")[:, :5]
        np.testing.assert_array_equal(a.top_ids, top_ids)
        np.testing.assert_allclose(a.top_probs, np.take_along_axis(probs, top_ids, 1), atol=1e-6)
        np.testing.assert_allclose(a.own_probs[1:], probs[np.arange(len(ids) - 1), ids[1:]], 1e-5)
        assert np.isnan(a.own_probs[0])
        # layer 0 through a one-layer fused module with the same weights, layer 1 the stack's
        one = type(model.rnn)(6, 12, 1, batch_first=True)
        one.load_state_dict(
            {k[:-1] + "0": v for k, v in model.rnn.state_dict().items() if "l0" in k}
        )
        emb = model.embedding(x)
        h0, state0 = one(emb)
        out, _ = model.rnn(emb)
    q = a.quantities
    np.testing.assert_allclose(a.values[0, q.index("h")], h0[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(a.values[1, q.index("h")], out[0].numpy(), atol=1e-5)
    if cell == "lstm":  # the page shows tanh(c); the final c is the module's
        np.testing.assert_allclose(a.values[0, q.index("c"), -1], state0[1][0, 0].tanh(), 1e-5)
    feats = np.stack(list(text_features(text).values()), 1)
    flat = a.values.transpose(2, 0, 1, 3).reshape(len(ids), -1)
    for fi in np.flatnonzero(~a.constant):
        expected = [np.corrcoef(feats[:, fi], flat[:, k])[0, 1] for k in range(flat.shape[1])]
        np.testing.assert_allclose(a.r[fi].reshape(-1), np.nan_to_num(expected), atol=1e-6)
    assert a.constant.tolist() == [feats[:, k].std() == 0 for k in range(len(FEATURES))]


def test_strongest_cells_come_from_r():
    text = CODE * 3
    vocab = Vocab.from_chars(text)
    a = analyze(tiny_model("lstm", len(vocab)), np.array(vocab.encode(text)), list(text), 50)
    strongest = a.strongest(per_feature=3)
    assert a.values.shape == (2, 6, 50, 12) and len(a.symbols) == 50 and a.num_analyzed == len(text)
    for fi, name in enumerate(FEATURES):
        cells = strongest[name]
        assert len(cells) == 3 and len({(c["layer"], c["cell"]) for c in cells}) == 3
        best = np.abs(a.r[fi]).max()
        assert abs(cells[0]["r"]) == pytest.approx(best)
        for c in cells:
            qi = a.quantities.index(c["quantity"])
            assert c["r"] == a.r[fi, c["layer"], qi, c["cell"]]
        assert abs(cells[0]["r"]) >= abs(cells[1]["r"]) >= abs(cells[2]["r"])


def test_packed_activations_decode_to_the_values():
    text = CODE * 2
    vocab = Vocab.from_chars(text)
    a = analyze(tiny_model("lstm", len(vocab)), np.array(vocab.encode(text)), list(text), 101)
    b64, quantities = pack_activations(a)
    raw = np.frombuffer(zlib.decompress(base64.b64decode(b64), -15), np.uint8)
    L, Q, N, H = a.values.shape
    rows = raw.reshape(L, Q, H, (N + 1) // 2)
    levels = np.stack([rows >> 4, rows & 15], -1).reshape(L, Q, H, -1)[..., :N]  # (L, Q, H, N)
    for qi, q in enumerate(quantities):
        decoded = q["lo"] + levels[:, qi] / (LEVELS - 1) * (q["hi"] - q["lo"])
        step = (q["hi"] - q["lo"]) / (LEVELS - 1)
        assert np.abs(decoded - a.values[:, qi].transpose(0, 2, 1)).max() <= step / 2 + 1e-6


def test_page_is_self_contained():
    text = CODE + '</script><script>alert("x")</script> __DATA__\n'
    vocab = Vocab.from_chars(text)
    a = analyze(tiny_model("gru", len(vocab)), np.array(vocab.encode(text)), list(text), 80)
    page = render_page(a, "run __DATA__ <b>", "a test text", list(vocab.symbols))
    assert not re.search(r"(https?|ftp|wss?):", page) and "src=" not in page and "url(" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the text cannot end one
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.S).group(1))
    run = data["runs"][0]
    assert data["text"] == text[:80] and run["hidden"] == 12 and run["layers"] == 2
    assert [q["key"] for q in run["quantities"]] == ["h", "r", "z", "n"] and data["gap"] is None
    assert "run __DATA__ &lt;b&gt;" in page
    assert page.count('class="saturation-plot"') == 2  # GRU: r and z
    assert len(re.findall(r"<circle [^>]*data-quantity=\"z\"", page)) == 2 * 12


# --- the CLI -------------------------------------------------------------------------------------


def test_viz_cli_end_to_end(trained, tmp_path, capsys):
    capsys.readouterr()
    page = tmp_path / "viz.html"
    args = ["viz", str(trained), "-o", str(page), "--chars", "300", "--feature-chars", "900"]
    assert main([*args, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["text"].startswith("the validation split of") and report["html"] == str(page)
    assert report["num_shown"] == 300 and report["num_analyzed"] == 900
    assert report["html_bytes"] == page.stat().st_size > 10_000
    assert list(report["features"]) == list(FEATURES)
    assert report["features"]["in_double_quotes"] == {
        "description": FEATURES["in_double_quotes"],
        "constant": True,  # the words corpus has no quotes
        "cells": [],
    }
    for name in ("line_position", "word_start", "after_newline"):
        cells = report["features"][name]["cells"]
        assert len(cells) == 5 and all(-1 <= c["r"] <= 1 for c in cells)
        assert {c["quantity"] for c in cells} <= {"c", "h", "i", "f", "g", "o"}
    sat = report["saturation"]
    assert sat["steps"] == 900 and len(sat["layers"]) == 2 and list(sat["layers"][0]) == list("ifo")
    gate = sat["layers"][1]["f"]
    assert len(gate["left"]) == 16 and all(
        0 <= x + y <= 1 for x, y in zip(gate["left"], gate["right"], strict=True)
    )
    assert gate["mean_left"] == pytest.approx(np.mean(gate["left"]), abs=1e-5)
    html = page.read_text()
    assert html.startswith("<!doctype html>") and not re.search(r"(https?|wss?):", html)

    # a text file, and the human-readable table
    text = tmp_path / "mine.txt"
    text.write_text("the lazy dog sleeps\n" * 20)
    assert main(["viz", str(trained), str(text), "-o", str(page), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{page}:" in out and "400 characters" in out
    assert re.search(r"after_newline\s+L\d [cfgiho]\[\d+\]\s+[+-]\d\.\d{3}", out)
    assert "in_brackets" in out and "(constant here)" in out


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_viz_user_errors(trained, tmp_path, capsys):
    out = str(tmp_path / "v.html")
    assert main(["viz", str(tmp_path / "nope"), "-o", out]) == 2
    one_line_error(capsys, "no such run directory")
    assert main(["viz", str(trained), str(tmp_path / "missing.txt"), "-o", out]) == 2
    one_line_error(capsys, "missing.txt: no such file")
    odd = tmp_path / "odd.txt"
    odd.write_text("the dog §\n")
    assert main(["viz", str(trained), str(odd), "-o", out]) == 2
    one_line_error(capsys, "not in the model's vocabulary", "'§'", "--unknown skip")
    odd.write_bytes(b"the \xff dog")
    assert main(["viz", str(trained), str(odd), "-o", out]) == 2
    one_line_error(capsys, "not valid UTF-8")
    for flags, needle in (
        (["--chars", "0"], "--chars must be between 1 and 20,000"),
        (["--chars", "20001"], "--chars must be between 1 and 20,000"),
        (["--feature-chars", "-1"], "--feature-chars must be between 0 and 10,000,000"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-o", str(tmp_path / "no" / "v.html")], "does not exist; create it first"),
    ):
        assert main(["viz", str(trained), *flags] + ([] if "-o" in flags else ["-o", out])) == 2
        one_line_error(capsys, needle)
    assert not (tmp_path / "v.html").exists()
    odd.write_text("d\n")
    assert main(["viz", str(trained), str(odd), "-o", out, "--unknown", "skip"]) == 0
    assert (tmp_path / "v.html").is_file()


def test_viz_runs_without_the_corpus_given_a_text(tmp_path, capsys):
    """A run whose corpus is gone says to pass a text file; given one, it works."""
    text = CODE * 3
    vocab = Vocab.from_chars(text)
    model = tiny_model("lstm", len(vocab))
    run = tmp_path / "run"
    run.mkdir()
    corpus = CorpusConfig(source=str(tmp_path / "gone.txt"), sha256="0" * 64)
    checkpoint.save_config(run, checkpoint.RunConfig(model.config, TrainConfig(), corpus))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, model, step=0)
    assert main(["viz", str(run), "-o", str(tmp_path / "v.html")]) == 2
    one_line_error(capsys, "pass a text file: rnnlab viz")
    (tmp_path / "code.py").write_text(text)
    args = ["viz", str(run), str(tmp_path / "code.py"), "-o", str(tmp_path / "v.html"), "--json"]
    assert main([*args, "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_analyzed"] == len(text) and not any(
        f["constant"] for f in report["features"].values()
    )
