"""Exact bits per character of a CharLM on a text: one pass at batch 1 with the state carried
from chunk to chunk, so the number does not depend on the chunk length (a test holds it so).
Imports model from rnnlab; never checkpoint, training or the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .model import CharLM

LN2 = math.log(2.0)


@torch.no_grad()
def iter_char_nats(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[np.ndarray]:
    """Cross-entropy in nats of each character of ``ids[1:]`` given everything before it, one
    chunk at a time, the state carried from chunk to chunk (memory stays bounded).

    Args:
        model: the CharLM (switched to eval mode for the call).
        ids: (N,) ids of the text, N >= 2; a memory map is read one chunk at a time.
        chunk_len: characters per forward call; it only trades speed for memory.
        autocast_dtype: run under autocast in this dtype (e.g. torch.bfloat16), or None.

    Yields:
        (T,) float64 arrays that together cover positions 1..N-1.
    """
    n = len(ids)
    if n < 2:
        raise ValueError("need at least 2 characters to evaluate")
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    state = None
    try:
        for start in range(0, n - 1, chunk_len):
            stop = min(start + chunk_len, n - 1)
            window = torch.as_tensor(np.asarray(ids[start : stop + 1]).astype(np.int64))
            window = window.to(device).unsqueeze(0)  # (1, T+1)
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                logits, state = model(window[:, :-1], state)  # (1, T, V)
            logits = logits[0] if logits.dtype == torch.float64 else logits[0].float()  # (T, V)
            nats = F.cross_entropy(logits, window[0, 1:], reduction="none")  # (T,)
            yield nats.double().cpu().numpy()
    finally:
        model.train(was_training)


def loss_nats(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean cross-entropy in nats per character of ``ids[1:]``, exact: the state is carried over
    the whole text, so the result does not depend on ``chunk_len`` (see ``iter_char_nats``)."""
    total = sum(float(c.sum()) for c in iter_char_nats(model, ids, chunk_len, autocast_dtype))
    return total / (len(ids) - 1)


def bits_per_char(model: CharLM, ids: np.ndarray | torch.Tensor, chunk_len: int = 8192) -> float:
    """Exact bits per character of ``ids[1:]`` (see ``loss_nats``)."""
    return loss_nats(model, ids, chunk_len) / LN2
