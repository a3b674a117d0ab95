"""adaptive.py: the output layer's dynamic evaluation and the match model, in the coder and in
`rnnlab eval --adapt`: predictive (a position's probabilities never depend on what follows),
exactly reproduced by the decoder, and scored by eval as the compressor spends it."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import words_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab import compression as C
from rnnlab import rzformat as Z
from rnnlab import rzmodel
from rnnlab.adaptive import AdaptConfig, Adapter, adaptive_bits_per_char
from rnnlab.cli import main
from rnnlab.config import ModelConfig
from rnnlab.dynamic import DynamicConfig
from rnnlab.errors import UsageError
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab

TEXT = words_text(40)
VOCAB = Vocab.from_chars(TEXT)


def tiny(seed: int = 0, vocab: Vocab = VOCAB, cell: str = "mingru") -> CharLM:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(vocab), cell=cell, hidden_size=16, num_layers=1, embedding_size=8
    )
    return CharLM(config).eval()


MODEL = tiny()


def repeated_text(seed: int = 0, piece: int = 300, times: int = 4) -> str:
    """Random characters, the same piece several times: what only adaptation can learn."""
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(VOCAB.symbols), piece)) * times


def test_off_is_the_static_model():
    ids = np.asarray(VOCAB.encode(TEXT[:600]))
    off = AdaptConfig(head_lr=0.0, match_len=0, match_long=0)
    result = adaptive_bits_per_char(MODEL, ids, off, streams=3)
    assert result.bpc == pytest.approx(result.static_bpc, abs=1e-5)


def test_adaptation_learns_a_repeated_text_that_the_model_cannot_predict():
    ids = np.asarray(VOCAB.encode(repeated_text()))
    result = adaptive_bits_per_char(MODEL, ids, AdaptConfig(), streams=1)
    # the static model knows nothing of these random characters; three of four copies repeat
    assert result.static_bpc > 0.9 * math.log2(len(VOCAB))
    assert result.bpc < 0.5 * result.static_bpc


def test_a_prediction_never_depends_on_what_follows():
    """Two texts equal up to position k: every prediction for positions <= k is identical."""
    a = np.asarray(VOCAB.encode(repeated_text(1, 120, 3)))
    b = a.copy()
    k = 200
    b[k:] = np.random.default_rng(9).integers(0, len(VOCAB), len(b) - k)
    S, L = 1, len(a)
    feats = {}
    for name, ids in (("a", a), ("b", b)):
        with torch.no_grad():
            feats[name] = MODEL.features(torch.as_tensor(ids)[None])[0][0]
    preds = {}
    for name, ids in (("a", a), ("b", b)):
        adapter = Adapter(MODEL.head.weight, MODEL.head.bias, AdaptConfig(), S, L)
        out = []
        for t in range(k + 1):
            adapter.observe(ids[t : t + 1], 1)
            if t < k:
                out.append(adapter.predict(feats[name][t : t + 1]))  # for position t + 1
        preds[name] = np.concatenate(out)
    assert np.array_equal(preds["a"], preds["b"])
    assert np.allclose(preds["a"].sum(axis=1), 1.0) and (preds["a"] > 0).all()


def test_the_match_model_predicts_the_continuation_of_an_earlier_occurrence():
    ids = np.asarray(VOCAB.encode(repeated_text(2, 200, 2)))
    feats = MODEL.features(torch.as_tensor(ids)[None])[0][0].detach()
    adapter = Adapter(MODEL.head.weight, MODEL.head.bias, AdaptConfig(head_lr=0.0), 1, len(ids))
    right = []
    for t in range(len(ids) - 1):
        adapter.observe(ids[t : t + 1], 1)
        p = adapter.predict(feats[t : t + 1])[0]
        right.append(p[ids[t + 1]])
    first, second = np.mean(right[:199]), np.mean(right[230:])
    assert first < 0.2 and second > 0.9  # the second copy is predicted from the first


@pytest.mark.parametrize("cell", ["mingru", "lstm"])
@pytest.mark.parametrize("segments", [1, 5])
def test_round_trip_and_the_file_costs_what_eval_says(cell, segments):
    model = tiny(3, cell=cell)
    text = TEXT[:900] + repeated_text(3, 150, 3)
    data = text.encode()
    blob = C.compress(data, model, VOCAB, segments, adapt=AdaptConfig())
    assert C.decompress(blob, model, VOCAB) == data
    header, payload = C.read_header(blob)
    assert header.adapt == Z.as_float32(AdaptConfig())
    static = C.compress(data, model, VOCAB, segments)
    assert len(blob) < 0.8 * len(static)
    ids = np.asarray(VOCAB.encode(text))
    expected = adaptive_bits_per_char(model, ids, AdaptConfig(), segments).bpc * len(ids)
    # the coder's integer frequencies (1 count in 2**20 per symbol) and its final words
    assert expected - 1 < 32 * len(payload) < expected * 1.003 + 64


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet="".join(VOCAB.symbols), max_size=150),
    st.integers(1, 6),
    st.integers(0, 6),
    st.sampled_from([0.0, 0.3]),
)
def test_round_trip_property(text, segments, match_len, head_lr):
    adapt = AdaptConfig(head_lr=head_lr, match_len=match_len, match_long=2 * match_len)
    blob = C.compress(text.encode(), MODEL, VOCAB, segments, adapt=adapt)
    assert C.decompress(blob, MODEL, VOCAB) == text.encode()


def test_the_head_rule_is_recorded_honoured_and_old_sgd_files_read_as_before():
    """rms (the default) and sgd give different files, each decoding exactly; a file of an
    earlier format, which could only be sgd, still reads; rms claimed by one is corrupt."""
    data = (TEXT[:400] + repeated_text(5, 120, 3)).encode()
    blobs = {}
    for rule in ("rms", "sgd"):
        adapt = AdaptConfig(head_rule=rule)
        blobs[rule] = C.compress(data, MODEL, VOCAB, 3, adapt=adapt)
        assert C.read_header(blobs[rule])[0].adapt == Z.as_float32(adapt)
        assert C.decompress(blobs[rule], MODEL, VOCAB) == data
    assert blobs["rms"] != blobs["sgd"]
    for rule, blob in blobs.items():
        header, payload = C.read_header(blob)
        older = Z.assemble(dataclasses.replace(header, format_version=10), payload.tobytes())
        if rule == "sgd":
            assert C.decompress(older, MODEL, VOCAB) == data
        else:
            with pytest.raises(C.CompressedFileError, match="corrupt"):
                C.decompress(older, MODEL, VOCAB)
    with pytest.raises(UsageError, match="--adapt-head-rule"):
        AdaptConfig(head_rule="adam")


def test_the_rms_rule_steps_each_weight_by_its_gradients_running_rms():
    """One observed position: the head moves by -lr * g / (sqrt((1 - decay) g^2) + floor)."""
    from rnnlab import adaptive

    config = AdaptConfig(head_lr=0.01, match_len=0, match_long=0)
    V = MODEL.head.weight.size(0)
    adapter = Adapter(MODEL.head.weight, MODEL.head.bias, config, 1, 4)
    adapter.observe(np.array([0]), 1)
    h = torch.randn(1, MODEL.head.weight.size(1))
    p = adapter.predict(h)
    adapter.observe(np.array([2]), 1)
    g = torch.tensor(p, dtype=torch.float32)
    g[0, 2] -= 1.0
    rms = ((1 - adaptive.RMS_DECAY) * g[0] ** 2).sqrt() + adaptive.RMS_FLOOR
    expected_b = MODEL.head.bias.detach() - 0.01 * g[0] / rms
    assert torch.allclose(adapter.b, expected_b, atol=1e-6)
    assert adapter.w.shape == (V, h.size(1)) and not torch.equal(adapter.w, MODEL.head.weight)


def test_byte_mode_round_trip():
    vocab = Vocab.bytes()
    model = tiny(4, vocab)
    data = bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8)) * 3
    blob = C.compress(data, model, vocab, 4, adapt=AdaptConfig())
    assert C.decompress(blob, model, vocab) == data


def test_settings_are_checked_and_a_corrupt_setting_is_refused():
    with pytest.raises(UsageError, match="--adapt-head-lr"):
        AdaptConfig(head_lr=-1.0)
    with pytest.raises(UsageError, match="--adapt-match-long"):
        AdaptConfig(match_long=65)
    with pytest.raises(UsageError, match="alternatives"):
        C.compress(b"the", MODEL, VOCAB, adapt=AdaptConfig(), dynamic=DynamicConfig())
    blob = C.compress(TEXT[:300].encode(), MODEL, VOCAB, 2, adapt=AdaptConfig())
    header, payload = C.read_header(blob)
    bad = AdaptConfig(head_lr=0.5)  # well-formed, but not what coded the payload
    forged = Z.assemble(dataclasses.replace(header, adapt=bad), payload.astype("<u4").tobytes())
    with pytest.raises(C.CompressedFileError):
        C.decompress(forged, MODEL, VOCAB)


def test_eval_adapt_cli_reports_what_compress_spends(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text(300))
    run = tmp_path / "run"
    flags = "--hidden 16 --layers 1 --embedding 8 --batch-size 4 --seq-len 16 --device cpu"
    args = ["train", str(corpus), "--out", str(run), "--quiet", "--max-steps", "10"]
    assert main([*args, *flags.split(), "--autocast-dtype", "float32"]) == 0
    text = tmp_path / "held_out.txt"
    text.write_text(words_text(30, seed=7))
    capsys.readouterr()  # what training printed
    assert main(["eval", str(run), str(text), "--adapt", "--segments", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["streams"] == 4 and report["adaptive_bpc"] < report["static_bpc"]
    # training counted its text into context tables; mixed with them the same words cost less
    assert (run / "contexts.safetensors").exists()
    assert report["mixed_bpc"] < report["adaptive_bpc"]
    out = tmp_path / "held_out.rz"
    for flags, bpc, header_bytes in (([], "mixed_bpc", 128), (["--no-mix"], "adaptive_bpc", 120)):
        compress = ["compress", str(run), str(text), "-o", str(out), "--segments", "4", "-f"]
        assert main([*compress, *flags]) == 0
        capsys.readouterr()
        file_bits = 8 * out.stat().st_size
        assert abs(file_bits - 8 * header_bytes - report[bpc] * report["num_chars"]) < 400
    # untold, both cut the text alike: one segment per SEGMENT_CHARS characters begun
    text.write_text(words_text(70, seed=8))
    assert main(["eval", str(run), str(text), "--adapt", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["streams"] == rzmodel.auto_segments(report["num_chars"]) > 1
    assert main(["compress", str(run), str(text), "-o", str(out), "-f", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == report["streams"]
    file_bits = 8 * out.stat().st_size
    assert abs(file_bits - 8 * 128 - report["mixed_bpc"] * report["num_chars"]) < 400
    assert main(["eval", str(run), "--adapt", "--dynamic"]) == 2
    assert "alternatives" in capsys.readouterr().err
    assert main(["compress", str(run), str(text), "--static", "--dynamic"]) == 2
    assert "alternatives" in capsys.readouterr().err
