"""What a drawn symbol may be: small pure transforms on logits (B, V) (temperature, top-k,
top-p), the draw itself (greedy or Gumbel-max), and the controls a generation must satisfy
(stop strings, allowed characters, a regex) as masks on the logits. Imports errors and vocab
from rnnlab; ``regex`` only under a constraint; never model or cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import UsageError
from .vocab import Vocab

# --- sampling transforms: small pure functions on logits (B, V) ---------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature (> 0); lower is more conservative."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits per row (ties broken by index), -inf elsewhere."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    idx = logits.topk(k, dim=-1).indices  # (B, k)
    kept = torch.full_like(logits, float("-inf"))
    return kept.scatter(-1, idx, logits.gather(-1, idx))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely symbols whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)  # (B, V)
    drop_sorted = probs.cumsum(-1) - probs >= p  # mass before this symbol already >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# --- controls: what the output must satisfy ----------------------------------------------------


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """-inf where ``allowed`` (B, V) or (V,) is False: those symbols cannot be drawn."""
    return logits.masked_fill(~allowed, float("-inf"))


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Where ``text`` ends under stop strings: ``(out, held, stopped)``.

    ``stopped``: a stop string occurs; ``out`` is the text before its first occurrence (the stop
    string is not part of the output) and ``held`` is "". Otherwise ``out`` can be written now
    and ``held`` is the longest tail that could still begin a stop string, kept until the next
    characters say whether it does.
    """
    first = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if first >= 0:
        return text[:first], "", True
    keep = max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
    return text[: len(text) - keep], text[len(text) - keep :], False


class Constraint:
    """Which symbols may come next: a set of allowed characters and/or a regular expression
    the whole output must match. The regex is checked as a prefix: a symbol is allowed when
    output + symbol can still be extended to a full match (the ``regex`` package's partial
    matching), so a sample can never leave the pattern. In byte mode both apply to the UTF-8
    bytes of the output."""

    def __init__(self, vocab: Vocab, allowed_chars: str | None, pattern: str | None) -> None:
        byte_mode = vocab.mode == "byte"
        # each symbol as the text the pattern sees: a one-character str, or one byte
        self.pieces = [bytes([s]) if byte_mode else s for s in vocab.symbols]
        self.empty = b"" if byte_mode else ""
        allowed = [True] * len(vocab)
        if allowed_chars is not None:
            chars = set(allowed_chars.encode()) if byte_mode else set(allowed_chars)
            allowed = [s in chars for s in vocab.symbols]
            if not any(allowed):
                raise UsageError(
                    f"--allowed-chars: none of {allowed_chars!r} is in the model's vocabulary"
                )
        self.allowed = torch.tensor(allowed)  # (V,)
        import regex  # only under a constraint: the one place that needs it

        self.patterns = []  # each must still be able to match the whole output
        if byte_mode and allowed_chars is not None and not allowed_chars.isascii():
            # the allowed bytes alone could mix into invalid UTF-8: whole characters only
            whole = b"|".join(regex.escape(c.encode()) for c in sorted(set(allowed_chars)))
            self.patterns.append(regex.compile(b"(?:" + whole + b")*"))
        self.pattern = None
        if pattern is not None:
            try:
                self.pattern = regex.compile(pattern.encode() if byte_mode else pattern)
            except regex.error as e:
                raise UsageError(f"--regex {pattern!r} is not a valid pattern: {e}") from None
            self.patterns.append(self.pattern)
        self.source = pattern

    def mask(self, text: str | bytes) -> torch.Tensor:
        """(V,) bool: the symbols that may follow ``text`` (the output so far)."""
        if not self.patterns:
            return self.allowed
        ok = [
            a and all(p.fullmatch(text + s, partial=True) is not None for p in self.patterns)
            for a, s in zip(self.allowed.tolist(), self.pieces, strict=True)
        ]
        return torch.tensor(ok)

    def complete(self, text: str | bytes) -> bool:
        """Whether ``text`` is a full match (a dead end there is a finished output)."""
        return self.pattern is not None and all(p.fullmatch(text) for p in self.patterns)

    def dead_end(self, text: str | bytes) -> UsageError:
        """The error when no symbol can continue ``text`` and it is not a full match."""
        what = f"--regex {self.source!r}" if self.pattern is not None else "--allowed-chars"
        tail = text[-40:].decode(errors="replace") if isinstance(text, bytes) else text[-40:]
        return UsageError(
            f"no character of the vocabulary can continue the output (...{tail!r}, "
            f"{len(text)} characters) and still match {what}; loosen the constraint"
        )


def make_constraint(vocab: Vocab, allowed_chars: str | None, regex: str | None):
    """A Constraint, or None when there is nothing to enforce."""
    if allowed_chars is None and regex is None:
        return None
    return Constraint(vocab, allowed_chars, regex)


# --- the draw ---------------------------------------------------------------------------------


def gumbel(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise: -log(-log(U)), U ~ Uniform(0, 1)."""
    u = torch.rand(shape, generator=gen).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u))


def pick(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    gen: torch.Generator,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V): greedy at temperature 0, else a draw from the filtered,
    tempered softmax (Gumbel-max: argmax of logits/T + Gumbel noise is a softmax sample).
    ``allowed`` (B, V) masks symbols out first, so top-k and top-p choose among the rest."""
    if allowed is not None:
        logits = mask_logits(logits, allowed)
    if temperature == 0:
        return logits.argmax(-1)
    logits = top_p_filter(
        top_k_filter(apply_temperature(logits.float(), temperature), top_k), top_p
    )
    u = torch.rand(logits.shape, generator=gen).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return (logits + gumbel).argmax(-1)
