"""Generation: prime with one forward pass over the prompt, then one step per character with
the state carried (O(1) work per new character, the prefix is never fed again).

The per-character step is cells.StepDecoder, hand-written from the CharLM's own weights (one
matrix-vector product per layer, the first layer's input projection folded into a table),
because at batch 1 a fused-module call costs more than its arithmetic. ``iter_generate`` hands
the text over in pieces (memory bounded for any length); ``generate`` collects it;
``complete`` adds finish reasons and per-character log-probabilities; ``beam_search`` searches
instead of sampling. Controls (stop strings, allowed characters, a regex the output must match)
are checked symbol by symbol: masks on the logits, so a sample can never break them.
Imports errors, options, vocab, model and cells from rnnlab; ``regex`` only under a constraint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .cells import StepDecoder
from .errors import UsageError
from .model import CharLM
from .options import check_control, check_sampling
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


# --- generation -------------------------------------------------------------------------------


BLOCK = 256  # steps between yields (and between draws of the Gumbel noise)
check_arguments = check_sampling  # one set of checks for the CLI and the API (options.py)


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


def iter_generate(
    model: CharLM,
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

    def pop_records(self, r: int, text: str) -> list[CharLogprob]:
        """The log-probabilities of the symbols behind ``text`` (handed over with it)."""
        n = len(text.encode()) if self.vocab.mode == "byte" else len(text)
        out, self.records[r] = self.records[r][:n], self.records[r][n:]
        return out

    @property
    def all_done(self) -> bool:
        return all(f is not None for f in self.finish)


@torch.inference_mode()
def _pieces(
    model: CharLM,
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
    device = model.head.weight.device
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
        records = _records(vocab, logits, token, run.logprobs) if run.logprobs else [None] * B
        for r, (tok, record) in enumerate(zip(token.tolist(), records, strict=True)):
            texts[r].append(run.take(r, tok, record))
        if (t + 1) % every == 0 or last or run.all_done:
            block = []
            for r in range(B):
                text = "".join(texts[r]) + (run.end(r) if last or run.finish[r] else "")
                texts[r] = []
                block.append((text, run.pop_records(r, text) if run.logprobs else []))
            yield block
            if run.all_done:
                return


def _records(vocab: Vocab, logits: torch.Tensor, token: torch.Tensor, k: int) -> list:
    """Per row: the drawn symbol's log-probability and the k most likely, as CharLogprob."""
    logp = logits.float().log_softmax(-1)  # (B, V) the model's own distribution
    chosen = logp.gather(1, token[:, None])[:, 0].tolist()  # (B,)
    top_logp, top_ids = logp.topk(min(k, logp.size(-1)), -1)  # (B, k)
    return [
        CharLogprob(
            _symbol(vocab, tok), lp, [(_symbol(vocab, i), v) for i, v in zip(ti, tl, strict=True)]
        )
        for tok, lp, ti, tl in zip(
            token.tolist(), chosen, top_ids.tolist(), top_logp.tolist(), strict=True
        )
    ]


def _symbol(vocab: Vocab, i: int) -> str:
    """A symbol as text: the character, or in byte mode the byte as U+00XX."""
    s = vocab.symbols[i]
    return s if isinstance(s, str) else chr(s)


def _decode(vocab: Vocab, decoder, row: list[int], final: bool) -> str:
    if decoder is None:
        return vocab.decode(row)
    return decoder.decode(bytes(row), final=final)


def generate(
    model: CharLM,
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
    model: CharLM,
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


# --- beam search ----------------------------------------------------------------------------------


@dataclass
class _Hypothesis:
    ids: list[int]
    logprob: float  # sum, nats
    seen: str | bytes  # the output as the constraint sees it
    records: list[CharLogprob]

    def score(self) -> float:
        """Length-normalized: mean log-probability per symbol (hypotheses that stop early
        compete with longer ones on equal terms)."""
        return self.logprob / max(len(self.ids), 1)


@torch.inference_mode()
def beam_search(
    model: CharLM,
    vocab: Vocab,
    ids: list[int],
    length: int,
    width: int,
    num_samples: int,
    stops: tuple[str, ...],
    constraint: Constraint | None,
    logprobs: int,
    weights_dtype: torch.dtype | None,
) -> list[Completion]:
    """Keep the ``width`` most likely continuations (sum of log-probabilities) step by step;
    a hypothesis ends at a stop string or a complete regex match, or at ``length``. The
    results are ranked by mean log-probability per symbol. Width 1 is greedy decoding.

    Returns:
        The ``num_samples`` best Completions, best first, ``score`` set.
    """
    model.eval()
    device = model.head.weight.device
    if not ids:
        start = vocab.id_of("\n")
        ids = [start if start is not None else 0]
    prime = torch.tensor([ids], device=device)  # (1, P)
    _, state = model(prime[:, :-1]) if prime.size(1) > 1 else (None, None)
    state = state if state is not None else model.init_state(1, device)
    decoder = StepDecoder.from_model(model, weights_dtype)
    layers = [list(s.unbind(0)) for s in state]
    token = prime[:, -1]  # (1,)
    empty = constraint.empty if constraint is not None else ""
    alive = [_Hypothesis([], 0.0, empty, [])]
    done: list[tuple[_Hypothesis, str]] = []
    V = len(vocab)
    for _ in range(length):
        logp = decoder.advance(token, layers).double().log_softmax(-1)  # (n, V)
        recs = _records(vocab, logp, logp.argmax(-1), logprobs) if logprobs else None
        allowed = logp.new_ones(logp.shape, dtype=torch.bool)
        if constraint is not None:
            for r, h in enumerate(alive):
                allowed[r] = constraint.mask(h.seen)
                if not allowed[r].any() and constraint.complete(h.seen):
                    done.append((h, "stop"))  # a complete match nothing extends
        totals = torch.tensor([h.logprob for h in alive], device=device, dtype=logp.dtype)[
            :, None
        ] + mask_logits(logp, allowed)  # (n, V)
        flat = totals.flatten()
        k = min(2 * width, int(torch.isfinite(flat).sum()))
        if k == 0:
            break
        best = flat.topk(k).indices.tolist()
        parents, nexts = [], []
        for i in best:
            r, tok = divmod(i, V)
            h = alive[r]
            record = None
            if recs is not None:
                x = recs[r]
                record = CharLogprob(_symbol(vocab, tok), logp[r, tok].item(), x.top)
            piece = constraint.pieces[tok] if constraint is not None else ""
            new = _Hypothesis(
                h.ids + [tok],
                flat[i].item(),
                h.seen + piece,
                h.records + [record] if record is not None else h.records,
            )
            if stops and _ends_in_stop(vocab, new.ids, stops):
                done.append((new, "stop"))
                continue
            if len(nexts) < width:
                parents.append(r)
                nexts.append(new)
        if not nexts:
            alive = []
            break
        index = torch.tensor(parents, device=device)
        layers = [[t.index_select(0, index) for t in s] for s in layers]
        token = torch.tensor([h.ids[-1] for h in nexts], device=device)
        alive = nexts
    done += [(h, "length") for h in alive]
    if not done:
        raise constraint.dead_end(empty) if constraint is not None else UsageError("no output")
    done.sort(key=lambda hf: hf[0].score(), reverse=True)
    out = []
    for h, reason in done[:num_samples]:
        text = vocab.decode(h.ids)
        if reason == "stop" and stops:
            text, _, _ = split_at_stop(text, stops)
        n = len(text.encode()) if vocab.mode == "byte" else len(text)
        out.append(Completion(text, reason, h.records[:n] if logprobs else None, h.score()))
    return out


def _ends_in_stop(vocab: Vocab, ids: list[int], stops: tuple[str, ...]) -> bool:
    """Whether the text of ``ids`` now holds a stop string (it was checked a step ago, so only
    its tail can)."""
    tail = vocab.decode(ids[-(max(len(s) for s in stops) * 4 + 4) :])
    return any(s in tail for s in stops)


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
