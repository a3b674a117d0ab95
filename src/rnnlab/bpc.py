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

from .model import LM, model_device

LN2 = math.log(2.0)


@torch.no_grad()
def iter_char_nats(
    model: LM,
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
    device = model_device(model)
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


@torch.no_grad()
def iter_char_nats_batched(
    model: LM,
    ids: np.ndarray | torch.Tensor,
    batch_size: int = 64,
    warmup: int = 512,
    max_segment: int = 16384,
    chunk_len: int = 1024,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[np.ndarray]:
    """``iter_char_nats`` approximated by segments read side by side as a batch.

    The targets 1..N-1 are cut into equal segments of at most ``max_segment`` characters
    (never fewer than ``warmup``), ``batch_size`` of them per round. Each segment starts from
    a zero state warmed up on the ``warmup`` characters before it; the first segment of the
    text starts where the exact pass does. The extra work is warmup / segment length; the
    difference from the exact pass is what a state of ``warmup`` characters forgets::

        text   |--seg 0--|--seg 1--|--seg 2--| ...        one round: rows 0..R-1
        row 0  |=========|                                 exact start (zero state)
        row 1        |ww|=========|                        ww: warm-up, not scored
        row 2                  |ww|=========|

    Args:
        model: the CharLM (switched to eval mode for the call).
        ids: (N,) ids of the text, N >= 2; a memory map is read one chunk at a time.
        batch_size: segments per forward call (rows).
        warmup: characters read before each segment to set its state.
        max_segment: longest segment; bounds memory (one round's nats) for any N.
        chunk_len: time steps per forward call.
        autocast_dtype: as in ``iter_char_nats``.

    Yields:
        (T,) float64 arrays that together cover positions 1..N-1, in order.
    """
    n = len(ids)
    if n < 2:
        raise ValueError("need at least 2 characters to evaluate")
    if batch_size < 1 or warmup < 0 or max_segment < 1 or chunk_len < 1:
        raise ValueError("need batch_size >= 1, warmup >= 0, max_segment >= 1, chunk_len >= 1")
    targets = n - 1
    rounds = math.ceil(targets / (batch_size * max_segment))
    seg = max(math.ceil(targets / (rounds * batch_size)), warmup, 1)
    starts = list(range(1, n, seg))  # first target of each segment
    was_training = model.training
    model.eval()
    device = model_device(model)

    def rows(spans: list[tuple[int, int]], length: int) -> torch.Tensor:
        """(R, length) ids of each span, padded on the right with 0."""
        out = np.zeros((len(spans), length), np.int64)
        for r, (a, b) in enumerate(spans):
            out[r, : b - a] = np.asarray(ids[a:b])
        return torch.as_tensor(out, device=device)

    def forward(x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            return model(x, state)

    try:
        for first in range(0, len(starts), batch_size):
            round_starts = starts[first : first + batch_size]
            R = len(round_starts)
            state = None
            if warmup:
                spans = [(max(a - 1 - warmup, 0), a - 1) for a in round_starts]
                _, state = forward(rows(spans, warmup), None)
                if round_starts[0] == 1:  # the text's first segment: the exact zero state
                    state = tuple(
                        s.index_fill(1, torch.tensor([0], device=device), 0.0) for s in state
                    )
            nats = np.zeros((R, seg))
            stops = [min(a + seg, n) for a in round_starts]
            for t in range(0, seg, chunk_len):
                T = min(chunk_len, seg - t)
                spans = [
                    (min(a - 1 + t, b), min(a - 1 + t + T + 1, b))
                    for a, b in zip(round_starts, stops, strict=True)
                ]
                window = rows(spans, T + 1)  # (R, T+1): inputs and the targets one ahead
                logits, state = forward(window[:, :-1], state)  # (R, T, V)
                logits = logits if logits.dtype == torch.float64 else logits.float()
                ce = F.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none")
                nats[:, t : t + T] = ce.double().cpu().numpy()
            for r, (a, b) in enumerate(zip(round_starts, stops, strict=True)):
                yield nats[r, : b - a]
    finally:
        model.train(was_training)


def loss_nats(
    model: LM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean cross-entropy in nats per character of ``ids[1:]``, exact: the state is carried over
    the whole text, so the result does not depend on ``chunk_len`` (see ``iter_char_nats``)."""
    total = sum(float(c.sum()) for c in iter_char_nats(model, ids, chunk_len, autocast_dtype))
    return total / (len(ids) - 1)


def bits_per_char(model: LM, ids: np.ndarray | torch.Tensor, chunk_len: int = 8192) -> float:
    """Exact bits per character of ``ids[1:]`` (see ``loss_nats``)."""
    return loss_nats(model, ids, chunk_len) / LN2
