"""Batched evaluation (segments side by side, each warmed up on the text before it) against the
exact single pass: equal where the model has no memory to lose, within 1e-9 nats per character
where its memory is shorter than the warm-up, identical at one row; and the CLI's --exact."""

import json

import numpy as np
import pytest
import torch
from conftest import words_text

from rnnlab.cli import main
from rnnlab.config import ModelConfig
from rnnlab.evaluation import iter_char_nats, iter_char_nats_batched
from rnnlab.model import CharLM
from rnnlab.viz.record import iter_record


def model_of(cell: str, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, vocab_size=11, hidden_size=12, num_layers=2, embedding_size=5)
    return CharLM(config).double()


def both(model, ids, **kw):
    exact = np.concatenate(list(iter_char_nats(model, ids, chunk_len=97)))
    batched = np.concatenate(list(iter_char_nats_batched(model, ids, **kw)))
    return exact, batched


IDS = np.random.default_rng(0).integers(0, 11, 3001)


def test_a_model_without_memory_scores_the_same():
    model = model_of("rnn")
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.zero_()  # h_t depends on x_t alone
    exact, batched = both(model, IDS, batch_size=7, warmup=3, max_segment=50, chunk_len=13)
    assert batched.shape == exact.shape == (3000,)
    np.testing.assert_allclose(batched, exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_short_memory_is_recovered_by_the_warmup(cell):
    # a random small network forgets geometrically: 200 characters of warm-up leave nothing
    # of the zero start; a warm-up read one character off would show at every segment start
    model = model_of(cell, seed=1)
    exact, batched = both(model, IDS, batch_size=4, warmup=200, max_segment=300, chunk_len=64)
    np.testing.assert_allclose(batched, exact, rtol=0, atol=1e-9)


def test_one_row_is_the_exact_pass():
    model = model_of("lstm", seed=2)
    exact, batched = both(model, IDS, batch_size=1, warmup=5, max_segment=10_000, chunk_len=77)
    np.testing.assert_allclose(batched, exact, rtol=1e-12, atol=1e-12)


def test_without_warmup_the_segments_differ():
    # the test above is not vacuous: starting each segment cold changes its first characters
    model = model_of("lstm", seed=1)
    exact, batched = both(model, IDS, batch_size=4, warmup=0, max_segment=300, chunk_len=64)
    assert np.abs(batched - exact).max() > 1e-4


@pytest.mark.parametrize("cell", ["lstm", "minlstm"])
def test_viz_record_by_segments(cell):
    # the shown part (exact_chars) is the exact pass itself; the rest, read by warmed-up
    # segments side by side, matches it where the memory is shorter than the warm-up
    torch.manual_seed(3)
    config = ModelConfig(cell=cell, vocab_size=11, hidden_size=12, num_layers=2, embedding_size=5)
    model = CharLM(config).eval()

    def record(**kw):
        chunks = sorted(iter_record(model, IDS[:2000], chunk_len=97, **kw), key=lambda c: c.start)
        assert [c.start for c in chunks] == sorted({c.start for c in chunks})
        values = np.concatenate([c.values for c in chunks], 2)  # (L, Q, N, H)
        return values, np.concatenate([c.probs for c in chunks])

    exact_v, exact_p = record()
    v, p = record(exact_chars=300, rows=5, warmup=150)
    assert v.shape == exact_v.shape and p.shape == exact_p.shape == (2000, 11)
    np.testing.assert_allclose(v[:, :, :300], exact_v[:, :, :300], atol=1e-6)  # batch rounding
    np.testing.assert_allclose(v, exact_v, atol=1e-5)
    np.testing.assert_allclose(p, exact_p, atol=1e-5)
    cold, _ = record(exact_chars=300, rows=5, warmup=0)
    assert np.abs(cold - exact_v).max() > 1e-3  # without the warm-up the segments differ


def test_cli_eval_exact_and_batched(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text())
    out = tmp_path / "run"
    tiny = (
        "--cell lstm --hidden 16 --layers 1 --embedding 8 --batch-size 4 --seq-len 16 "
        "--autocast-dtype float32"
    )
    assert main(["train", str(corpus), "--out", str(out), "--max-steps", "20", "--quiet"]
                + tiny.split() + ["--device", "cpu"]) == 0  # fmt: skip
    capsys.readouterr()
    reports = {}
    for flags in ([], ["--exact"]):
        assert main(["eval", str(out), "--quick", "--json", *flags]) == 0
        reports[bool(flags)] = json.loads(capsys.readouterr().out)
    assert reports[True]["exact"] and not reports[False]["exact"]
    assert reports[False]["bpc"] == pytest.approx(reports[True]["bpc"], abs=0.01)
