"""Generation: prime with one forward pass over the prompt, then one step per character with
the state carried (O(1) work per new character, the prefix is never fed again).

The per-character step is cells.StepDecoder, hand-written from the CharLM's own weights (one
matrix-vector product per layer, the first layer's input projection folded into a table),
because at batch 1 a fused-module call costs more than its arithmetic. ``iter_generate`` hands
the text over in pieces (memory bounded for any length); ``generate`` collects it.
Imports errors, vocab, model and cells from rnnlab.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .cells import StepDecoder
from .errors import UsageError
from .model import CharLM
from .options import check_sampling
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


# --- generation -------------------------------------------------------------------------------


BLOCK = 256  # steps between yields (and between draws of the Gumbel noise)
check_arguments = check_sampling  # one set of checks for the CLI and the API (options.py)


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
) -> Iterator[list[str]]:
    """Sample ``num_samples`` continuations of ``prompt`` in parallel, yielding the new text of
    every row after each ``every`` steps: memory stays bounded whatever ``length`` is, and a
    consumer can write (or stop) as it goes. ``every`` changes only when text is handed over,
    never the text: the same seed gives the same characters. Other arguments as in ``generate``.

    Yields:
        One str per row: the text generated since the last yield (byte mode holds back a partial
        UTF-8 sequence until it completes; the last yield flushes it).
    """
    check_arguments(length, temperature, top_k, top_p, num_samples)
    if not isinstance(every, int) or every < 1:
        raise UsageError(f"every must be a positive int, got {every!r}")
    ids = vocab.encode(prompt, unknown=unknown)  # an unknown character fails here, not later
    return _pieces(
        model,
        vocab,
        ids,
        length,
        temperature,
        top_k,
        top_p,
        seed,
        num_samples,
        weights_dtype,
        every,
    )


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
    num_samples: int,
    weights_dtype: torch.dtype | None,
    every: int,
) -> Iterator[list[str]]:
    """The generator behind ``iter_generate``, its arguments checked."""
    model.eval()
    device = model.head.weight.device
    if not ids:
        start = vocab.id_of("\n")
        ids = [start if start is not None else 0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
    B = num_samples
    prime = torch.tensor([ids], device=device).expand(B, -1)  # (B, P)
    logits, state = model(prime[:, :-1]) if prime.size(1) > 1 else (None, None)
    state = state if state is not None else model.init_state(B, device)
    decoder = StepDecoder.from_model(model, weights_dtype)
    layers = [list(s.unbind(0)) for s in state]
    token = prime[:, -1]  # (B,) the last prompt character is fed by the first step
    decoders = [vocab.incremental_decoder() for _ in range(B)]
    plain = temperature > 0 and top_k == 0 and top_p >= 1.0
    tokens = []
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
            token = pick(logits, temperature, top_k, top_p, gen)
        tokens.append(token)
        last = t == length - 1
        if len(tokens) == every or last:
            rows = torch.stack(tokens, 1).tolist()  # (B, every)
            tokens = []
            yield [_decode(vocab, d, row, last) for d, row in zip(decoders, rows, strict=True)]


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
) -> list[str]:
    """Sample ``num_samples`` continuations of ``prompt`` in parallel.

    Args:
        model: a CharLM (put in eval mode here).
        vocab: its vocabulary.
        prompt: text to prime the state with; "" starts after a newline (or symbol 0).
        length: characters (char mode) or bytes (byte mode) to generate per sample.
        temperature: 0 is greedy; otherwise logits are divided by it.
        top_k: keep exactly the k most likely symbols (0: all).
        top_p: nucleus sampling threshold (1: off).
        seed: makes the output reproducible; None draws a fresh seed.
        num_samples: rows generated at once (a batch).
        unknown: policy for prompt characters outside the vocabulary ("error" or "skip").
        weights_dtype: how the recurrent weights are stored while sampling (torch.bfloat16 or
            torch.int8 for speed, see cells.StepDecoder); None keeps the model's own dtype.
        on_text: called as ``on_text(row, text)`` with each new piece of text, for streaming.

    Returns:
        The generated texts, without the prompt.

    Raises:
        UsageError: an argument out of range (the message names the flag).
    """
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
    )
    texts: list[list[str]] = [[] for _ in range(num_samples)]  # after the checks
    for pieces in pieces_of:
        for row, piece in enumerate(pieces):
            texts[row].append(piece)
            if on_text is not None and piece:
                on_text(row, piece)
    return ["".join(t) for t in texts]


def gumbel(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise: -log(-log(U)), U ~ Uniform(0, 1)."""
    u = torch.rand(shape, generator=gen).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u))


def pick(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V): greedy at temperature 0, else a draw from the filtered,
    tempered softmax (Gumbel-max: argmax of logits/T + Gumbel noise is a softmax sample)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = top_p_filter(
        top_k_filter(apply_temperature(logits.float(), temperature), top_k), top_p
    )
    u = torch.rand(logits.shape, generator=gen).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return (logits + gumbel).argmax(-1)
