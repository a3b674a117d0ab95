import math

import numpy as np
import pytest
import torch

from rnnlab.bpc import bits_per_char, loss_nats
from rnnlab.config import ModelConfig
from rnnlab.ladder import uniform_bpc, unigram_bpc
from rnnlab.model import CharLM
from rnnlab.sampling import generate, pick, top_k_filter, top_p_filter
from rnnlab.vocab import UnknownCharacterError, Vocab

VOCAB = Vocab.from_chars("abcdefgh \n")


def tiny(cell="lstm") -> CharLM:
    torch.manual_seed(0)
    return CharLM(
        ModelConfig(
            cell=cell, num_layers=2, hidden_size=16, embedding_size=8, vocab_size=len(VOCAB)
        )
    )


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).sum() == 2
    assert set(torch.nonzero(torch.isfinite(kept[0])).flatten().tolist()) <= {1, 2, 3}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = top_p_filter(probs.log(), 0.8)
    assert torch.isfinite(kept[0]).tolist() == [True, True, False, False]
    kept = top_p_filter(probs.log(), 0.81)
    assert torch.isfinite(kept[0]).tolist() == [True, True, True, False]


def test_gumbel_pick_samples_the_softmax():
    logits = torch.tensor([[0.0, math.log(3.0)]]).expand(20_000, 2)
    gen = torch.Generator().manual_seed(0)
    freq = pick(logits, 1.0, 0, 1.0, gen).float().mean().item()
    assert abs(freq - 0.75) < 0.015


def test_same_seed_same_text_and_greedy_is_deterministic():
    m = tiny()
    a = generate(m, VOCAB, "abc", length=80, temperature=0.9, seed=7)
    b = generate(m, VOCAB, "abc", length=80, temperature=0.9, seed=7)
    c = generate(m, VOCAB, "abc", length=80, temperature=0.9, seed=8)
    assert a == b and a != c and len(a[0]) == 80
    assert generate(m, VOCAB, "abc", length=50, temperature=0) == generate(
        m, VOCAB, "abc", length=50, temperature=0, seed=1
    )


def test_greedy_follows_the_argmax_of_the_full_forward():
    m = tiny("gru")
    text = generate(m, VOCAB, "ab", length=30, temperature=0)[0]
    ids = torch.tensor([VOCAB.encode("ab" + text)])
    logits, _ = m(ids)
    expected = logits[0, 1:-1].argmax(-1).tolist()
    assert VOCAB.encode(text) == expected


def test_prompt_is_fed_once_and_each_step_is_one_decoder_step(monkeypatch):
    """O(1) work per new character: the fused model runs once, on the prompt."""
    m = tiny()
    calls = []
    real = CharLM.forward
    monkeypatch.setattr(
        CharLM,
        "forward",
        lambda self, ids, state=None: (calls.append(ids.shape), real(self, ids, state))[1],
    )
    generate(m, VOCAB, "abcdefgh abcdefgh", length=200, seed=0)
    assert calls == [torch.Size([1, 16])]


def test_batch_of_samples_and_stream_callback():
    m = tiny()
    pieces: dict[int, list[str]] = {0: [], 1: [], 2: []}
    out = generate(
        m,
        VOCAB,
        "a",
        length=40,
        seed=3,
        num_samples=3,
        on_text=lambda row, s: pieces[row].append(s),
    )
    assert len(out) == 3 and all(len(t) == 40 for t in out)
    assert ["".join(pieces[i]) for i in range(3)] == out


def test_unknown_prompt_characters():
    m = tiny()
    with pytest.raises(UnknownCharacterError, match="'Z'"):
        generate(m, VOCAB, "abZ", length=10, seed=0)
    assert len(generate(m, VOCAB, "abZ", length=10, seed=0, unknown="skip")[0]) == 10


def test_uniform_logits_give_log2_v():
    m = tiny()
    with torch.no_grad():
        for p in m.head.parameters():
            p.zero_()
    ids = np.array(VOCAB.encode("abcdefgh \n" * 30))
    assert bits_per_char(m, ids) == pytest.approx(math.log2(len(VOCAB)), abs=1e-6)
    assert uniform_bpc(len(VOCAB)) == pytest.approx(math.log2(len(VOCAB)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_evaluation_does_not_depend_on_chunk_length(cell):
    m = tiny(cell).double()
    ids = np.random.default_rng(0).integers(0, len(VOCAB), 1000)
    whole = loss_nats(m, ids, chunk_len=10_000)
    for chunk in (1, 7, 64, 999):
        assert loss_nats(m, ids, chunk_len=chunk) == pytest.approx(whole, rel=1e-9)


def test_unigram_matches_hand_computation():
    train = np.array([0, 0, 0, 1])
    ev = np.array([1, 0, 1])  # scored: ids[1:] = [0, 1]
    p = np.array([4, 2, 1]) / 7  # add-one counts over V = 3
    expected = -(np.log2(p[0]) + np.log2(p[1])) / 2
    assert unigram_bpc(train, ev, 3) == pytest.approx(expected)
