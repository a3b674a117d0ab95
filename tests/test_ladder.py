"""The baseline ladder: Kneser-Ney n-grams and compressor rungs."""

import bz2
import lzma
import math
import zlib

import numpy as np
import pytest
from conftest import words_text

from rnnlab.evaluation import (
    KneserNey,
    closing_distances,
    compressor_bpc,
    unigram_bpc,
    where_the_model_wins,
)
from rnnlab.vocab import Vocab


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
