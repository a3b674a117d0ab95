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


def test_cli_eval_exact_and_batched(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text())
    out = tmp_path / "run"
    tiny = (
        "--hidden 16 --layers 1 --embedding 8 --batch-size 4 --seq-len 16 --autocast-dtype float32"
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
