"""Exact bits per character, and the first rungs of the baseline ladder (uniform, unigram).

Exact means one pass over the whole text at batch 1 with the state carried from chunk to chunk,
so the number does not depend on the chunk length. Imports config, vocab and model from rnnlab.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model import CharLM

LN2 = math.log(2.0)


@torch.no_grad()
def loss_nats(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean cross-entropy in nats per character of ``ids[1:]`` given everything before it.

    Args:
        model: the CharLM (switched to eval mode for the call).
        ids: (N,) ids of the text, N >= 2; a memory map is read one chunk at a time.
        chunk_len: characters per forward call; the state is carried, so it only trades speed
            for memory.
        autocast_dtype: run under autocast in this dtype (e.g. torch.bfloat16), or None.

    Returns:
        Total nats / (N - 1).
    """
    n = len(ids)
    if n < 2:
        raise ValueError("need at least 2 characters to evaluate")
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    state = None
    total = 0.0
    for start in range(0, n - 1, chunk_len):
        stop = min(start + chunk_len, n - 1)
        window = torch.as_tensor(np.asarray(ids[start : stop + 1]).astype(np.int64))
        window = window.to(device).unsqueeze(0)  # (1, T+1)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            logits, state = model(window[:, :-1], state)  # (1, T, V)
        logits = logits[0] if logits.dtype == torch.float64 else logits[0].float()  # (T, V)
        total += F.cross_entropy(logits, window[0, 1:], reduction="sum").item()
    model.train(was_training)
    return total / (n - 1)


def bits_per_char(model: CharLM, ids: np.ndarray | torch.Tensor, chunk_len: int = 8192) -> float:
    """Exact bits per character of ``ids[1:]`` (see ``loss_nats``)."""
    return loss_nats(model, ids, chunk_len) / LN2


def uniform_bpc(vocab_size: int) -> float:
    """A model that knows only the alphabet: log2 V."""
    return math.log2(vocab_size)


def unigram_bpc(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Character frequencies of the training text (add-one smoothed) scored on ``eval_ids[1:]``."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(train_ids), 1 << 24):  # bounded memory on a memory map
        counts += np.bincount(
            np.asarray(train_ids[start : start + (1 << 24)]), minlength=vocab_size
        )
    logp = np.log2((counts + 1) / (counts.sum() + vocab_size))
    scored = np.zeros(vocab_size, dtype=np.int64)
    for start in range(1, len(eval_ids), 1 << 24):
        scored += np.bincount(np.asarray(eval_ids[start : start + (1 << 24)]), minlength=vocab_size)
    return float(-(scored * logp).sum() / max(1, scored.sum()))


@dataclass(frozen=True)
class EvalReport:
    """The model's score on a text beside the baselines measured on the same text."""

    text: str  # "validation split" or a file path
    num_chars: int  # characters scored (the first one has nothing to be predicted from)
    bpc: float
    loss_nats: float
    uniform_bpc: float
    unigram_bpc: float

    def to_json(self) -> dict:
        return asdict(self)


def evaluate(
    model: CharLM, train_ids: np.ndarray, eval_ids: np.ndarray, text: str, chunk_len: int = 8192
) -> EvalReport:
    """Score ``eval_ids`` exactly and place it on the ladder (baselines fit on ``train_ids``)."""
    V = model.config.vocab_size
    nats = loss_nats(model, eval_ids, chunk_len)
    return EvalReport(
        text=text,
        num_chars=len(eval_ids) - 1,
        bpc=nats / LN2,
        loss_nats=nats,
        uniform_bpc=uniform_bpc(V),
        unigram_bpc=unigram_bpc(train_ids, eval_ids, V),
    )
