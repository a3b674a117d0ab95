"""Generation: prime with one forward pass over the prompt, then one step per character with
the state carried (O(1) work per new character, the prefix is never fed again).

The per-character step is cells.StepDecoder, hand-written from the CharLM's own weights (one
matrix-vector product per layer, the first layer's input projection folded into a table),
because at batch 1 a fused-module call costs more than its arithmetic. ``iter_generate`` hands
the text over in pieces (memory bounded for any length); ``generate`` collects it;
``complete`` adds finish reasons and per-character log-probabilities, or searches instead
(beam.py). Controls (stop strings, allowed characters, a regex the output must match) are
checked symbol by symbol: masks on the logits (controls.py), so a sample can never break them.
Imports errors, options, vocab, model, cells, controls, completion and beam from rnnlab.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from .beam import beam_search
from .cells import StepDecoder
from .completion import CharLogprob, Completion, logprob_records
from .controls import (
    Constraint,
    apply_temperature,
    gumbel,
    make_constraint,
    mask_logits,
    pick,
    split_at_stop,
    top_k_filter,
    top_p_filter,
)
from .errors import UsageError
from .model import LM, model_device
from .options import check_control, check_sampling
from .vocab import Vocab

# --- generation -------------------------------------------------------------------------------


BLOCK = 256  # steps between yields (and between draws of the Gumbel noise)
check_arguments = check_sampling  # one set of checks for the CLI and the API (options.py)

# The transforms and controls (controls.py), the result types (completion.py) and beam search
# (beam.py) stay reachable here, where every caller has always found them.
__all__ = [
    "BLOCK",
    "check_arguments",
    "iter_generate",
    "generate",
    "complete",
    "CharLogprob",
    "Completion",
    "beam_search",
    "Constraint",
    "apply_temperature",
    "gumbel",
    "make_constraint",
    "mask_logits",
    "pick",
    "split_at_stop",
    "top_k_filter",
    "top_p_filter",
]


def iter_generate(
    model: LM,
    vocab: Vocab,
    prompt: str = "",
    *,
    length: int = 500,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    num_samples: int = 1,
    unknown: str = "error",
    weights_dtype: torch.dtype | None = None,
    every: int = BLOCK,
    stop: Sequence[str] = (),
    allowed_chars: str | None = None,
    regex: str | None = None,
) -> Iterator[list[str]]:
    """Sample ``num_samples`` continuations of ``prompt`` in parallel, yielding the new text of
    every row after each ``every`` steps: memory stays bounded whatever ``length`` is, and a
    consumer can write (or stop) as it goes. ``every`` changes only when text is handed over,
    never the text: the same seed gives the same characters. Other arguments as in ``generate``.

    Yields:
        One str per row: the text generated since the last yield (byte mode holds back a partial
        UTF-8 sequence until it completes, and a stop string's possible start is held back until
        it is known not to be one; the last yield flushes them).
    """
    check_arguments(length, temperature, top_k, top_p, num_samples)
    check_control(0, tuple(stop), allowed_chars, regex, 0, num_samples)
    if not isinstance(every, int) or every < 1:
        raise UsageError(f"every must be a positive int, got {every!r}")
    ids = vocab.encode(prompt, unknown=unknown)  # an unknown character fails here, not later
    constraint = make_constraint(vocab, allowed_chars, regex)
    run = _Rows(vocab, num_samples, tuple(stop), constraint, 0)
    return _texts(
        _pieces(
            model, vocab, ids, length, temperature, top_k, top_p, seed, weights_dtype, every, run
        )
    )


def _texts(blocks: Iterator[list[tuple[str, list]]]) -> Iterator[list[str]]:
    for block in blocks:
        yield [text for text, _ in block]


class _Rows:
    """Per row of a batch being sampled: the output so far (as the constraint sees it), the
    text held back for the stop strings, the log-probabilities not yet handed over, and
    whether (and why) it ended."""

    def __init__(
        self,
        vocab: Vocab,
        n: int,
        stops: tuple[str, ...],
        constraint: Constraint | None,
        logprobs: int,
    ) -> None:
        self.vocab, self.stops, self.constraint, self.logprobs = vocab, stops, constraint, logprobs
        empty = constraint.empty if constraint is not None else ""
        self.seen = [empty] * n  # the output, for the constraint
        self.held = [""] * n
        self.records: list[list[CharLogprob]] = [[] for _ in range(n)]
        self.finish: list[str | None] = [None] * n
        self.ended = [False] * n
        self.decoders = [vocab.incremental_decoder() for _ in range(n)]

    @property
    def simple(self) -> bool:
        return not self.stops and self.constraint is None and not self.logprobs

    def masks(self, device: torch.device) -> torch.Tensor | None:
        """(B, V) allowed symbols, or None without a constraint; ends rows at a complete match
        that nothing extends, and raises at a dead end."""
        c = self.constraint
        if c is None:
            return None
        rows = []
        for r, seen in enumerate(self.seen):
            m = c.mask(seen) if self.finish[r] is None else torch.ones_like(c.allowed)
            if not m.any():
                if not c.complete(seen):
                    raise c.dead_end(seen)
                self.finish[r] = "stop"
                m = torch.ones_like(c.allowed)
            rows.append(m)
        return torch.stack(rows).to(device)  # (B, V)

    def take(self, r: int, token: int, record: CharLogprob | None) -> str:
        """Row ``r`` drew ``token``: the text it can hand over now ("" once it has ended)."""
        if self.finish[r] is not None:
            return ""
        if self.constraint is not None:
            self.seen[r] += self.constraint.pieces[token]
        if record is not None:
            self.records[r].append(record)
        dec = self.decoders[r]
        piece = dec.decode(bytes([token])) if dec else self.vocab.symbols[token]
        if not self.stops:
            return piece
        out, self.held[r], stopped = split_at_stop(self.held[r] + piece, self.stops)
        if stopped:
            self.finish[r] = "stop"
            self.ended[r] = True  # what followed the stop string is dropped
        return out

    def end(self, r: int) -> str:
        """Row ``r`` ran its length or ended: whatever it still holds back (once)."""
        if self.ended[r]:
            return ""
        self.ended[r] = True
        out, self.held[r] = self.held[r], ""
        if self.decoders[r] is not None:
            out += self.decoders[r].decode(b"", final=True)
        if self.finish[r] is None:
            self.finish[r] = "length"
        return out

    def poprecords(self, r: int, text: str) -> list[CharLogprob]:
        """The log-probabilities of the symbols behind ``text`` (handed over with it)."""
        n = len(text.encode()) if self.vocab.mode == "byte" else len(text)
        out, self.records[r] = self.records[r][:n], self.records[r][n:]
        return out

    @property
    def all_done(self) -> bool:
        return all(f is not None for f in self.finish)


@torch.inference_mode()
def _pieces(
    model: LM,
    vocab: Vocab,
    ids: list[int],
    length: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    weights_dtype: torch.dtype | None,
    every: int,
    run: _Rows,
) -> Iterator[list[tuple[str, list[CharLogprob]]]]:
    """The generator behind ``iter_generate`` and ``complete``, its arguments checked: per
    block, each row's (new text, its log-probabilities)."""
    model.eval()
    device = model_device(model)
    if not ids:
        start = vocab.id_of("\n")
        ids = [start if start is not None else 0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
    B = len(run.finish)
    prime = torch.tensor([ids], device=device).expand(B, -1)  # (B, P)
    logits, state = model(prime[:, :-1]) if prime.size(1) > 1 else (None, None)
    state = state if state is not None else model.init_state(B, device)
    decoder = StepDecoder.from_model(model, weights_dtype)
    layers = [list(s.unbind(0)) for s in state]
    token = prime[:, -1]  # (B,) the last prompt character is fed by the first step
    plain = temperature > 0 and top_k == 0 and top_p >= 1.0 and run.constraint is None
    tokens: list[torch.Tensor] = []  # simple runs: the ids of this block
    texts: list[list[str]] = [[] for _ in range(B)]  # controlled runs: each step taken at once
    for t in range(length):
        logits = decoder.advance(token, layers)  # (B, V)
        if plain:
            # Gumbel-max with the temperature folded into the noise:
            # argmax(l / T + G) == argmax(l + T * G); noise drawn a block of steps at a time
            if t % BLOCK == 0:
                noise = temperature * gumbel((min(BLOCK, length - t), *logits.shape), gen)
                noise = noise.to(device)
            token = (logits + noise[t % BLOCK]).argmax(-1)
        else:
            token = pick(logits, temperature, top_k, top_p, gen, run.masks(device))
        last = t == length - 1
        if run.simple:
            tokens.append(token)
            if len(tokens) == every or last:
                rows = torch.stack(tokens, 1).tolist()  # (B, every)
                tokens = []
                yield [
                    (_decode(vocab, d, row, last), [])
                    for d, row in zip(run.decoders, rows, strict=True)
                ]
            continue
        # a constraint or a stop string needs each row's text at every step
        records = (
            logprob_records(vocab, logits, token, run.logprobs) if run.logprobs else [None] * B
        )
        for r, (tok, record) in enumerate(zip(token.tolist(), records, strict=True)):
            texts[r].append(run.take(r, tok, record))
        if (t + 1) % every == 0 or last or run.all_done:
            block = []
            for r in range(B):
                text = "".join(texts[r]) + (run.end(r) if last or run.finish[r] else "")
                texts[r] = []
                block.append((text, run.poprecords(r, text) if run.logprobs else []))
            yield block
            if run.all_done:
                return


def _decode(vocab: Vocab, decoder, row: list[int], final: bool) -> str:
    if decoder is None:
        return vocab.decode(row)
    return decoder.decode(bytes(row), final=final)


def generate(
    model: LM,
    vocab: Vocab,
    prompt: str = "",
    *,
    length: int = 500,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    num_samples: int = 1,
    unknown: str = "error",
    weights_dtype: torch.dtype | None = None,
    on_text: Callable[[int, str], None] | None = None,
    beam: int = 0,
    stop: Sequence[str] = (),
    allowed_chars: str | None = None,
    regex: str | None = None,
) -> list[str]:
    """Sample ``num_samples`` continuations of ``prompt`` in parallel (or, with ``beam``,
    search for the most likely ones).

    Args:
        model: a CharLM (put in eval mode here).
        vocab: its vocabulary.
        prompt: text to prime the state with; "" starts after a newline (or symbol 0).
        length: characters (char mode) or bytes (byte mode) to generate per sample, at most.
        temperature: 0 is greedy; otherwise logits are divided by it.
        top_k: keep exactly the k most likely symbols (0: all).
        top_p: nucleus sampling threshold (1: off).
        seed: makes the output reproducible; None draws a fresh seed.
        num_samples: rows generated at once (a batch); with ``beam``, the best hypotheses.
        unknown: policy for prompt characters outside the vocabulary ("error" or "skip").
        weights_dtype: how the recurrent weights are stored while sampling (torch.bfloat16 or
            torch.int8 for speed, see cells.StepDecoder); None keeps the model's own dtype.
        on_text: called as ``on_text(row, text)`` with each new piece of text, for streaming.
        beam: beam search with this many hypotheses (0: sample); see ``beam_search``.
        stop: the output ends before the first of these strings (which is not included).
        allowed_chars: the only characters the output may use.
        regex: a pattern the output (not the prompt) must match in full, enforced symbol by
            symbol; a row ends early when its match is complete and nothing can extend it.

    Returns:
        The generated texts, without the prompt.

    Raises:
        UsageError: an argument out of range (the message names the flag), or a constraint
            that no character of the vocabulary can continue.
    """
    if beam:
        found = complete(
            model,
            vocab,
            prompt,
            length=length,
            num_samples=num_samples,
            unknown=unknown,
            weights_dtype=weights_dtype,
            beam=beam,
            stop=stop,
            allowed_chars=allowed_chars,
            regex=regex,
        )
        texts = [c.text for c in found]
        if on_text is not None:
            for row, text in enumerate(texts):
                on_text(row, text)
        return texts
    pieces_of = iter_generate(
        model,
        vocab,
        prompt,
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        num_samples=num_samples,
        unknown=unknown,
        weights_dtype=weights_dtype,
        every=1 if on_text is not None else BLOCK,
        stop=stop,
        allowed_chars=allowed_chars,
        regex=regex,
    )
    texts: list[list[str]] = [[] for _ in range(num_samples)]  # after the checks
    for pieces in pieces_of:
        for row, piece in enumerate(pieces):
            texts[row].append(piece)
            if on_text is not None and piece:
                on_text(row, piece)
    return ["".join(t) for t in texts]


def complete(
    model: LM,
    vocab: Vocab,
    prompt: str = "",
    *,
    length: int = 500,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    num_samples: int = 1,
    unknown: str = "error",
    weights_dtype: torch.dtype | None = None,
    beam: int = 0,
    stop: Sequence[str] = (),
    allowed_chars: str | None = None,
    regex: str | None = None,
    logprobs: int = 0,
) -> list[Completion]:
    """As ``generate``, with each output's finish reason and, with ``logprobs=K``, each
    generated symbol's log-probability and the K most likely symbols (the model's own
    distribution, in nats). Holds the whole output: for long texts use ``iter_generate``.

    Returns:
        One Completion per sample (with ``beam``: the best hypotheses, best first).
    """
    check_arguments(length, temperature, top_k, top_p, num_samples)
    check_control(beam, tuple(stop), allowed_chars, regex, logprobs, num_samples, top_k, top_p)
    ids = vocab.encode(prompt, unknown=unknown)
    constraint = make_constraint(vocab, allowed_chars, regex)
    if beam:
        return beam_search(
            model,
            vocab,
            ids,
            length,
            beam,
            num_samples,
            tuple(stop),
            constraint,
            logprobs,
            weights_dtype,
        )
    run = _Rows(vocab, num_samples, tuple(stop), constraint, logprobs)
    texts: list[list[str]] = [[] for _ in range(num_samples)]
    records: list[list[CharLogprob]] = [[] for _ in range(num_samples)]
    blocks = _pieces(
        model, vocab, ids, length, temperature, top_k, top_p, seed, weights_dtype, BLOCK, run
    )
    for block in blocks:
        for r, (text, recs) in enumerate(block):
            texts[r].append(text)
            records[r].extend(recs)
    return [
        Completion("".join(texts[r]), run.finish[r] or "length", records[r] if logprobs else None)
        for r in range(num_samples)
    ]
