"""rnnlab compress / decompress: exact round trips, a self-checking file format, refusals that
are one line and never wrong output; the coder's cost matches the model's cross-entropy."""

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import forge_rz_length, train_tiny_runs, words_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab import compression as C
from rnnlab import evaluation, rzmodel
from rnnlab import rzformat as Z
from rnnlab.adaptive import AdaptConfig
from rnnlab.cli import main
from rnnlab.config import ModelConfig
from rnnlab.dynamic import DynamicConfig, gradient_stats, stats_digest
from rnnlab.errors import UsageError
from rnnlab.model import CharLM
from rnnlab.vocab import UnknownCharacterError, Vocab

TEXT = words_text(60)
VOCAB = Vocab.from_chars(TEXT + "XYZ")


def tiny(vocab: Vocab = VOCAB, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(vocab), hidden_size=16, num_layers=1, embedding_size=8)
    return CharLM(config).eval()


MODEL = tiny()


def round_trip(data: bytes, model=MODEL, vocab=VOCAB, **kw) -> bytes:
    blob = C.compress(data, model, vocab, **kw)
    assert C.decompress(blob, model, vocab) == data
    return blob


def rewrite(blob: bytes, **changes) -> bytes:
    """A well-formed file (valid trailing checksum) whose header fields were changed."""
    header, payload = C.read_header(blob)
    return Z.assemble(dataclasses.replace(header, **changes), payload.astype("<u4").tobytes())


# --- the integer distribution -------------------------------------------------------------


def test_quantize_sums_exactly_keeps_every_symbol_and_follows_softmax():
    logits = torch.randn(32, 70) * 6
    logits[0, 3] = 80.0  # one near-certain symbol: the others keep a count of 1
    freq = C.quantize(logits, 16)
    assert freq.dtype == np.int64 and (freq >= 1).all()
    assert (freq.sum(axis=1) == 1 << 16).all()
    p = torch.softmax(logits.double(), dim=1).numpy()  # float64 oracle
    assert np.abs(freq / (1 << 16) - p).max() < 70 / (1 << 16) + 1e-12
    assert np.array_equal(C.quantize(logits.clone(), 16), freq)  # a function of the bits


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("segments", [1, 3, 64])
def test_round_trip_of_real_random_empty_and_one_character_texts(segments):
    rng = np.random.default_rng(segments)
    random_text = "".join(rng.choice(list(VOCAB.symbols), 500))
    for text in ["", "t", "XY", TEXT[:1500], random_text]:
        blob = round_trip(text.encode(), segments=segments)
        header, _ = C.read_header(blob)
        assert header.length == len(text) and header.original_bytes == len(text.encode())
        assert header.segments <= max(1, min(segments, len(text)))


def test_untold_segments_are_one_per_segment_chars_begun_at_most_the_default():
    auto, least = rzmodel.auto_segments, rzmodel.SEGMENT_CHARS
    assert [auto(n) for n in (0, 1, least, least + 1, 2 * least + 5)] == [1, 1, 1, 2, 3]
    assert auto(C.DEFAULT_SEGMENTS * least) == auto(10**9) == C.DEFAULT_SEGMENTS
    # a short text is not cut into pieces of a few characters, each read from a cold start
    data = (TEXT * 4)[: 3 * least - 10].encode()
    header, _ = C.read_header(round_trip(data))
    assert (header.segments, header.segment_len) == (3, least - 3)
    told, _ = C.read_header(round_trip(data, segments=8))
    assert told.segments == 8  # an explicit count is kept


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="".join(VOCAB.symbols), max_size=120), st.integers(1, 9))
def test_round_trip_property(text, segments):
    round_trip(text.encode(), segments=segments)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=150), st.integers(1, 5))
def test_byte_mode_round_trips_any_bytes(data, segments):
    round_trip(data, tiny(Vocab.bytes(), 1), Vocab.bytes(), segments=segments)


def test_byte_mode_round_trips_invalid_utf8_and_a_binary_file():
    vocab = Vocab.bytes()
    model = tiny(vocab, 2)
    round_trip(b"\xff\xfe\x00abc\x80" * 30, model, vocab, segments=4)
    round_trip(bytes(range(256)) * 3, model, vocab, segments=7)


def test_unknown_characters_are_listed_and_non_utf8_points_to_byte_mode():
    with pytest.raises(UnknownCharacterError, match="2 character.*'!'.*'é'"):
        C.compress("hello! é".encode(), MODEL, VOCAB)
    with pytest.raises(UsageError, match="--bytes"):
        C.compress(b"the \xff dog", MODEL, VOCAB)
    with pytest.raises(UsageError, match="--segments"):
        C.compress(b"the", MODEL, VOCAB, segments=0)


def test_the_caller_model_is_untouched_and_repeat_runs_give_the_same_bytes():
    before = {k: v.clone() for k, v in MODEL.state_dict().items()}
    data = TEXT[:800].encode()
    assert C.compress(data, MODEL, VOCAB, segments=5) == C.compress(data, MODEL, VOCAB, segments=5)
    for k, v in MODEL.state_dict().items():
        assert torch.equal(v, before[k])


# --- the size is the model's cross-entropy ----------------------------------------------------


def test_payload_bits_match_the_models_bits_per_character():
    trained = tiny(seed=3)
    data = TEXT[:3000]
    ids = np.asarray(VOCAB.encode(data))
    for segments in (1, 4):
        _, payload = C.read_header(C.compress(data.encode(), trained, VOCAB, segments=segments))
        payload_bits = 32 * len(payload)
        # each segment: a uniform first symbol, then the model on its own piece
        grid_bits = 0.0
        L = math.ceil(len(ids) / segments)
        for s in range(segments):
            piece = ids[s * L : (s + 1) * L]
            grid_bits += math.log2(len(VOCAB))
            grid_bits += evaluation.bits_per_char(trained, piece) * (len(piece) - 1)
        # quantization (at most ~V/2**20 of the mass) and the coder's final words
        assert grid_bits - 1 < payload_bits < grid_bits * 1.002 + 64


# --- a file that cannot be decoded faithfully is refused ---------------------------------------


SGD = AdaptConfig(head_rule="sgd")  # what a file before format 12 held


def test_corrupt_truncated_foreign_and_other_version_files_are_refused():
    blob = round_trip(TEXT[:600].encode(), segments=3)
    bad = [
        (b"PK\x03\x04" + blob[4:], "bad magic"),
        (blob[:-1], "corrupt or truncated"),
        (blob[:20], "truncated"),
        (blob[: len(blob) // 2], "truncated"),
        (blob[:100] + bytes([blob[100] ^ 1]) + blob[101:], "corrupt"),
        (blob[:-40] + bytes([blob[-40] ^ 0x10]) + blob[-39:], "corrupt"),
        (rewrite(blob, format_version=2), "format version 2"),
        (rewrite(blob, format_version=3, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=4, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=5, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=6, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=7, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=8, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, format_version=10, adapt=SGD, mix="00" * 8), "earlier format"),
        (rewrite(blob, length=10**15), "header is invalid"),
        (rewrite(blob, probe_sha256="0" * 16), "computes the model's probabilities differently"),
        (rewrite(blob, original_sha256="0" * 16), "checksum mismatch"),
    ]
    for data, needle in bad:
        with pytest.raises(C.CompressedFileError, match=needle):
            C.decompress(data, MODEL, VOCAB)
    with pytest.raises(C.CompressedFileError, match="another model"):
        C.decompress(blob, tiny(seed=9), VOCAB)
    # a file of format 3 to 8 that was not mixed reads as it did
    for version in (3, 4, 5, 6, 7, 8):
        assert (
            C.decompress(rewrite(blob, format_version=version), MODEL, VOCAB) == TEXT[:600].encode()
        )


def test_a_file_from_a_machine_with_different_kernels_is_refused(monkeypatch):
    """What another CPU or torch would look like: logits that differ in the last bits."""
    blob = C.compress(TEXT[:400].encode(), MODEL, VOCAB, segments=2)
    real = rzmodel.quantize
    skewed = lambda logits, bits=20: real(logits * (1 + 1e-6), bits)  # noqa: E731
    monkeypatch.setattr(rzmodel, "quantize", skewed)
    with pytest.raises(C.CompressedFileError, match="differently"):
        C.decompress(blob, MODEL, VOCAB)


# --- dynamic evaluation inside the coder -------------------------------------------------------


def test_dynamic_round_trip_and_a_missing_statistics_file_is_refused():
    ids = np.asarray(VOCAB.encode(TEXT))
    stats = gradient_stats(MODEL, ids[:2000], segment_len=20, max_chars=600)
    digest = stats_digest(stats)
    dyn = DynamicConfig("rms", 1e-3, 1e-2, 20)
    data = TEXT[2000:3200].encode()
    blob = C.compress(data, MODEL, VOCAB, 3, dyn, stats, digest)
    assert C.decompress(blob, MODEL, VOCAB, stats, digest) == data
    assert blob != C.compress(data, MODEL, VOCAB, 3)  # the updates changed the coding
    with pytest.raises(C.CompressedFileError, match="--dynamic"):
        C.decompress(blob, MODEL, VOCAB)
    sgd = C.compress(data, MODEL, VOCAB, 2, DynamicConfig("sgd", 0.05, 0.0, 16))
    assert C.decompress(sgd, MODEL, VOCAB) == data
    # the settings cost 21 bytes (rule, float32 rate and decay, length, 8-byte digest) and read
    # back as the float32 values both directions used
    header, payload = C.read_header(blob)
    assert header.dynamic == {
        "rule": "rms",
        "learning_rate": float(np.float32(1e-3)),
        "decay": float(np.float32(1e-2)),
        "segment_len": 20,
        "stats_sha256": digest[:16],
    }
    static = C.compress(data, MODEL, VOCAB, 3)
    extra = (len(blob) - 4 * len(payload)) - (len(static) - 4 * len(C.read_header(static)[1]))
    assert extra == Z._DYNAMIC.size == 21


# --- the CLI, and two separate processes ---------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_runs(tmp_path_factory.mktemp("runs"), {"a": "1", "b": "2"})


def test_compress_and_decompress_in_separate_processes(runs, tmp_path):
    original = tmp_path / "in.txt"
    original.write_bytes(words_text(50, seed=5).encode())
    env = os.environ | {"XDG_CACHE_HOME": str(runs / "cache")}

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "rnnlab", *args], env=env, capture_output=True, text=True
        )
        return done.returncode, done.stdout, done.stderr

    for extra in ([], ["--static"], ["--dynamic", "--dynamic-segment-len", "16"]):
        # -f: each round writes over the last round's files
        code, out, err = cli("compress", str(runs / "a"), str(original), "--json", "-f", *extra)
        assert code == 0, err
        report = json.loads(out)
        assert (report["adapt"] is not None) == (extra == [])  # adaptive unless told otherwise
        assert report["compressed_bytes"] == (tmp_path / "in.txt.rz").stat().st_size
        back = tmp_path / "back.txt"
        code, _, err = cli(
            "decompress", str(runs / "a"), str(tmp_path / "in.txt.rz"), "-o", str(back), "-f"
        )
        assert code == 0, err
        assert back.read_bytes() == original.read_bytes()
    # another model: one line, exit 2, nothing written
    code, _, err = cli(
        "decompress", str(runs / "b"), str(tmp_path / "in.txt.rz"), "-o", str(tmp_path / "x")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another model" in err
    assert not (tmp_path / "x").exists()


def test_cli_errors_are_one_line(runs, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("a line with ~ and @\n")
    assert main(["compress", str(runs / "a"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'@'" in err and "'~'" in err and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk.rz"
    junk.write_bytes(Z.MAGIC + bytes([Z.FORMAT_VERSION]) * 50)
    assert main(["decompress", str(runs / "a"), str(junk), "-o", str(tmp_path / "out")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_dynamic_reports_static_and_dynamic(runs, capsys):
    args = ["eval", str(runs / "a"), "--dynamic", "--dynamic-segment-len", "16", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    static = main(["eval", str(runs / "a"), "--quick", "--exact", "--json"])
    assert static == 0
    plain = json.loads(capsys.readouterr().out)
    assert abs(report["static_bpc"] - plain["bpc"]) < 1e-9
    assert math.isfinite(report["dynamic_bpc"]) and report["dynamic"]["segment_len"] == 16


def test_the_header_describes_the_file_and_costs_few_bytes():
    data = TEXT[:500].encode()
    blob = C.compress(data, MODEL, VOCAB, segments=4)
    header, payload = C.read_header(blob)
    assert header.model_sha256 == C.model_digest(MODEL, VOCAB)[:32]
    assert header.original_sha256 == hashlib.sha256(data).hexdigest()[:16]
    assert header.versions["torch"] == torch.__version__ and header.dynamic is None
    assert (header.segments, header.segment_len) == (4, 125)
    assert (header.threads, header.weights_dtype) == (C.THREADS, C.DEFAULT_WEIGHTS_DTYPE)
    assert hashlib.sha256(blob[:-4]).digest()[:4] == blob[-4:]
    # the fixed cost of a file: every byte of it is on the file's bits per character
    assert len(blob) - 4 * len(payload) <= 8 + Z._FIXED.size + 1 + 40 + 1 + 1 + 4 < 120


@pytest.mark.parametrize("length", [2**40, 10**9, 3 * 10**8])
def test_a_header_claiming_a_huge_length_is_a_corrupt_file(runs, tmp_path, capsys, length):
    original = tmp_path / "in.txt"
    original.write_bytes(words_text(50, seed=5).encode())
    rz = tmp_path / "in.txt.rz"
    assert main(["compress", str(runs / "a"), str(original), "--static", "-o", str(rz)]) == 0
    forge_rz_length(rz, length)
    capsys.readouterr()
    out = tmp_path / "back.txt"
    assert main(["decompress", str(runs / "a"), str(rz), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupt" in err and "payload" in err, err
    assert not out.exists()


def test_an_empty_file_round_trips_without_a_rate(runs, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["compress", str(runs / "a"), str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_symbol"] is None
    assert main(["compress", str(runs / "a"), str(empty), "-f"]) == 0
    out = capsys.readouterr().out
    assert "an empty file" in out and "bits per" not in out, out
    back = tmp_path / "back.txt"
    assert main(["decompress", str(runs / "a"), f"{empty}.rz", "-o", str(back)]) == 0
    assert back.read_bytes() == b""


def test_compress_reports_progress_and_holds_the_text_compactly(tmp_path):
    vocab = Vocab.from_chars("abcdefgh\n")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=16, vocab_size=len(vocab)))
    data = ("abcdefgh\n" * 300).encode()
    ids = Z.symbols(data, vocab)
    assert ids.dtype == np.uint8 and len(ids) == len(data)  # one byte a character, not 30
    assert Z.unsymbols(ids, vocab) == data
    seen = []
    blob = C.compress(data, model, vocab, segments=16, on_progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (len(data), len(data)) and seen == sorted(seen) and len(seen) > 10
    back = []
    assert C.decompress(blob, model, vocab, on_progress=lambda d, n: back.append(d)) == data
    assert back[-1] == len(data)


def test_dynamic_evaluation_reports_progress():
    from rnnlab.dynamic import dynamic_bits_per_char

    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=16, vocab_size=9))
    ids = np.arange(400) % 9
    seen = []
    config = DynamicConfig(rule="sgd", learning_rate=1e-3, segment_len=50)
    dynamic_bits_per_char(model, ids, config, on_progress=lambda d, n: seen.append((d, n)))
    assert seen == sorted(seen) and seen[-1] == (399, 399) and len(seen) == 8
