"""What generation returns: a Completion (text, why it ended, a score) and, when asked, a
CharLogprob per symbol (its log-probability and the K most likely). Imports vocab from rnnlab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .vocab import Vocab


@dataclass(frozen=True)
class CharLogprob:
    """One generated symbol with its log-probability (nats, the model's own distribution:
    before temperature, top-k, top-p or a constraint) and the K most likely symbols."""

    text: str  # the character (byte mode: the byte as U+00XX)
    logprob: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Completion:
    """A continuation with why it ended and, when asked, its per-symbol log-probabilities."""

    text: str
    finish_reason: str  # "length", or "stop": a stop string, or a regex nothing can extend
    logprobs: list[CharLogprob] | None = None
    score: float | None = None  # beam search: mean log-probability per symbol (nats)


def logprob_records(vocab: Vocab, logits: torch.Tensor, token: torch.Tensor, k: int) -> list:
    """Per row: the drawn symbol's log-probability and the k most likely, as CharLogprob."""
    logp = logits.float().log_softmax(-1)  # (B, V) the model's own distribution
    chosen = logp.gather(1, token[:, None])[:, 0].tolist()  # (B,)
    top_logp, top_ids = logp.topk(min(k, logp.size(-1)), -1)  # (B, k)
    return [
        CharLogprob(
            symbol_text(vocab, tok),
            lp,
            [(symbol_text(vocab, i), v) for i, v in zip(ti, tl, strict=True)],
        )
        for tok, lp, ti, tl in zip(
            token.tolist(), chosen, top_ids.tolist(), top_logp.tolist(), strict=True
        )
    ]


def symbol_text(vocab: Vocab, i: int) -> str:
    """A symbol as text: the character, or in byte mode the byte as U+00XX."""
    s = vocab.symbols[i]
    return s if isinstance(s, str) else chr(s)
