"""The baseline ladder: Kneser-Ney n-grams and compressor rungs."""

import bz2
import json
import lzma
import math
import zlib

import numpy as np
import pytest
from conftest import words_text

from rnnlab.bpc import iter_char_nats
from rnnlab.config import ModelConfig
from rnnlab.ladder import KneserNey, compressor_bpc, unigram_bpc
from rnnlab.vocab import UnknownCharacterError, Vocab
from rnnlab.wins import closing_distances, where_the_model_wins


def corpus_ids(text: str):
    v = Vocab.from_chars(text)
    return np.array(v.encode(text)), len(v)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_conditional_distribution_sums_to_one(order):
    ids, V = corpus_ids(words_text(lines=200))
    kn = KneserNey(ids, order, V)
    rng = np.random.default_rng(0)
    seen = [ids[i - order + 1 : i] for i in rng.integers(order, len(ids), 20)]
    unseen = [rng.integers(0, V, order - 1) for _ in range(10)]
    for ctx in seen + unseen:
        for known in range(order):
            p = kn.prob(np.tile(ctx, (V, 1)), np.arange(V), np.full(V, known))
            assert np.all(p > 0)
            assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_ngram_bpc_falls_with_order_on_text_with_long_repeats():
    rng = np.random.default_rng(1)
    phrases = ["".join(rng.choice(list("abcdefgh "), 12)) for _ in range(30)]
    text = "".join(rng.choice(phrases) for _ in range(3000))
    ids, V = corpus_ids(text)
    n = int(len(ids) * 0.9)
    bpc = [KneserNey(ids[:n], k, V).bits_per_char(ids[n:]) for k in (1, 2, 3, 4, 6, 8)]
    assert all(a > b for a, b in zip(bpc[:-1], bpc[1:], strict=True)), bpc
    assert bpc[0] == pytest.approx(unigram_bpc(ids[:n], ids[n:], V), abs=0.05)


def test_compressor_rungs_are_the_stdlib_byte_counts():
    train = words_text(lines=300, seed=1).encode()
    text = words_text(lines=50, seed=2).encode()
    got = compressor_bpc(train, text, num_chars=len(text))
    assert got["gzip"] == 8 * len(zlib.compress(text, 9)) / len(text)
    assert got["bzip2"] == 8 * len(bz2.compress(text, 9)) / len(text)
    xz = lzma.compress(train + text, preset=9 | lzma.PRESET_EXTREME)
    xz_train = lzma.compress(train, preset=9 | lzma.PRESET_EXTREME)
    assert got["xz | train"] == 8 * (len(xz) - len(xz_train)) / len(text)
    assert got["xz | train"] < got["xz"]  # the training text helps


def test_uniform_model_is_log2_v_for_order_one_without_data():
    kn = KneserNey(np.array([0, 1]), 1, 4)
    p = kn.prob(np.zeros((4, 0), dtype=np.int64), np.arange(4))
    assert p.sum() == pytest.approx(1.0)
    assert -np.log2(p).max() <= math.log2(4) + 1.0


def test_closing_distances_match_brackets_and_quotes():
    text = 'f(a[1], "xy") {b}'
    got = dict(closing_distances(text))
    assert got == {5: 2, 11: 3, 12: 11, 16: 2}


def test_where_the_model_wins_bins_by_class_and_distance():
    text = "ab(cd)\n(e)"
    model = np.full(len(text) - 1, 1.0)
    ngram = np.full(len(text) - 1, 3.0)
    wins = where_the_model_wins(text, model, ngram)
    assert wins["by_class"]["letter"]["count"] == 4  # the first character is not scored
    assert wins["by_class"]["newline"] == {"count": 1, "model_bpc": 1.0, "ngram_bpc": 3.0}
    bins = {b["from"]: b for b in wins["closing_by_distance"]}
    assert bins[1]["count"] == 1 and bins[3]["count"] == 1  # ")" after 2 and after 3 chars
    assert all(b["advantage_bpc"] == 2.0 for b in bins.values())


def test_eval_of_a_learned_periodic_text_is_far_below_every_baseline(tmp_path, capsys):
    from rnnlab import cli, training
    from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig

    text = ("a" * 11 + "b") * 600  # an 8-gram cannot count to 11; an LSTM can
    (tmp_path / "c.txt").write_text(text)
    training.train(
        CorpusConfig(source=str(tmp_path / "c.txt")),
        ModelConfig(hidden_size=32, num_layers=1, embedding_size=8, dropout=0.0),
        TrainConfig(
            batch_size=8,
            seq_len=32,
            max_steps=400,
            learning_rate=1e-2,
            warmup_steps=5,
            state_reset=0.0,
            eval_every_s=1e9,
            sample_chars=20,
            autocast_dtype="float32",
            device="cpu",
        ),
        tmp_path / "run",
        progress=False,
    )
    assert cli.main(["eval", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rungs = report["baselines"]
    assert {f"{n}-gram KN" for n in range(2, 9)} | {"gzip", "bzip2", "xz"} <= set(rungs)
    # Far below every n-gram and every compressor of the text alone. The conditional rungs
    # (train + text - train) see the text repeat the training text and cost ~0 too: not scored.
    alone = {k: v for k, v in rungs.items() if "| train" not in k}
    assert report["bpc"] < 0.1 * min(alone.values()), (report["bpc"], alone)
    assert report["below_best_baseline_bpc"] == pytest.approx(min(rungs.values()) - report["bpc"])


class SpyIds:
    """Ids that record the longest slice anyone read: bounded memory means bounded reads."""

    def __init__(self, ids):
        self.ids, self.longest = ids, 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        assert isinstance(index, slice), "read whole-array index"
        part = self.ids[index]
        self.longest = max(self.longest, len(part))
        return part


def test_ladder_and_comparison_read_the_eval_text_a_chunk_at_a_time():
    import torch

    from rnnlab.evaluation import baseline_ladder, compare
    from rnnlab.model import CharLM

    text = words_text(lines=400, seed=3)
    v = Vocab.from_chars(text)
    ids = np.array(v.encode(text))
    train, held = ids[:8000], ids[8000:]
    decode = lambda a: v.decode(np.asarray(a).tolist()).encode()  # noqa: E731
    whole = baseline_ladder(train, held, len(v), decode, orders=(2, 4, 8))
    spy = SpyIds(held)
    chunked = baseline_ladder(train, spy, len(v), decode, orders=(2, 4, 8), chunk=500)
    assert spy.longest <= 500 + 7 and len(held) > 4 * 500
    for name, bpc in whole.rungs.items():
        assert chunked.rungs[name] == pytest.approx(bpc, rel=1e-12, abs=1e-12), name

    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(v), hidden_size=16, embedding_size=8))
    kn = whole.best_ngram_model
    full = compare(model, held, v.symbols, kn, chunk_len=len(held))
    spy = SpyIds(held)
    parts = compare(model, spy, v.symbols, kn, chunk_len=300)
    assert spy.longest <= 301 + 7
    assert parts.loss_nats == pytest.approx(full.loss_nats, rel=1e-6)
    model_bits = np.concatenate(list(iter_char_nats(model, held))) / math.log(2)
    ngram_bits = np.concatenate(list(kn.iter_char_bits(held)))
    expected = where_the_model_wins(v.decode(held.tolist()), model_bits, ngram_bits)
    assert parts.wins["by_class"].keys() == expected["by_class"].keys()
    for name, row in expected["by_class"].items():
        assert parts.wins["by_class"][name]["count"] == row["count"]
        assert parts.wins["by_class"][name]["ngram_bpc"] == pytest.approx(row["ngram_bpc"])
        assert parts.wins["by_class"][name]["model_bpc"] == pytest.approx(row["model_bpc"], 1e-5)


def test_eval_file_is_encoded_a_piece_at_a_time(tmp_path, monkeypatch):
    from rnnlab import data

    v = Vocab.from_chars("abc\n")
    pieces = ["abca\n" * 10, "cab\n" * 5]
    ids = data.encode_with(v, iter(pieces), tmp_path / "ids.bin")
    assert isinstance(ids, np.memmap)
    assert v.decode(np.asarray(ids).tolist()) == "".join(pieces)
    with pytest.raises(UnknownCharacterError, match="'x'.*'z'"):
        data.encode_with(v, iter(["abz", "xa"]), tmp_path / "bad.bin")
    kept = data.encode_with(v, iter(["abz", "xa"]), tmp_path / "skip.bin", unknown="skip")
    assert v.decode(np.asarray(kept).tolist()) == "aba"


def reference_kneser_ney(text: str, order: int, alphabet: str):
    """Interpolated Kneser-Ney written from Chen & Goodman (1999) with dictionaries: raw counts
    at the top order, continuation counts (distinct characters seen before) below it, one
    discount D = n1 / (n1 + 2 n2) per order, the uniform distribution under the unigrams."""
    from collections import Counter, defaultdict

    levels = []
    for k in range(1, order + 1):
        if k == order:
            counts = Counter(text[i : i + k] for i in range(len(text) - k + 1))
        else:
            longer = {text[i : i + k + 1] for i in range(len(text) - k)}
            counts = Counter(g[1:] for g in longer)
        n1 = sum(c == 1 for c in counts.values())
        n2 = sum(c == 2 for c in counts.values())
        total, types = defaultdict(int), defaultdict(int)
        for g, c in counts.items():
            total[g[:-1]] += c
            types[g[:-1]] += 1
        levels.append((counts, total, types, n1 / (n1 + 2 * n2)))

    def prob(context: str, ch: str) -> float:
        p = 1 / len(alphabet)
        for k, (counts, total, types, D) in enumerate(levels, 1):
            ctx = context[len(context) - (k - 1) :] if k > 1 else ""
            if total[ctx]:
                p = (max(counts[ctx + ch] - D, 0) + D * types[ctx] * p) / total[ctx]
        return p

    return prob


@pytest.mark.parametrize("order", [2, 3, 4])
def test_kneser_ney_matches_a_dictionary_implementation(order):
    text = words_text(lines=60, seed=5)
    v = Vocab.from_chars(text)
    alphabet = "".join(v.symbols)
    train, held = text[:2000], text[2000:2300]
    models = dict(KneserNey.fit_orders(np.array(v.encode(train)), (order,), len(v)))
    ids = np.array(v.encode(held))
    got = models[order].char_bits(ids, order - 1, len(ids))
    ref = reference_kneser_ney(train, order, alphabet)
    want = [-math.log2(ref(held[i - order + 1 : i], held[i])) for i in range(order - 1, len(held))]
    np.testing.assert_allclose(got, want, rtol=1e-12)
