"""The model side of the ``.rz`` coder: the next symbol's distribution as integers, computed
bit for bit the same by the compressor and the decompressor (the step function, the
quantization, the pinned threads, the digests that prove both sides agree). Imports errors,
vocab, model, cells, adaptive and dynamic from rnnlab; compression.py drives it.

Determinism: encoder and decoder call the very same step function (cells.StepDecoder, the
sampler's: batch S, one character, the recurrent weights in the header's dtype, CPU, the
header's number of threads, pinned), turn logits into integer frequencies with a float64
softmax and a fixed-point floor (every symbol at least 1), and hand the coder those integers as
exact float64 ratios. What could still differ between two machines (another CPU's kernels, another
torch) is caught before decoding by a probe digest of the quantized probabilities on a fixed
input, and after decoding by the original's SHA-256; either way the result is an error, never
wrong output.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .adaptive import AdaptConfig, Adapter, softmax64
from .cells import StepDecoder
from .contextmix import ContextTables
from .dynamic import DynamicConfig, DynamicUpdater
from .errors import DivergedError, UsageError
from .model import CharLM
from .vocab import Vocab

PRECISION_BITS = 20  # frequencies sum to 2**20; the coder itself works at 24 bits
# Measured on 2 cores (README, "Compressing files with a model"): 128 segments side by side and
# bf16 weights reach 20+ kB/s each way with the default model; the 64 segments and float32 of
# format 1 ran at about 10.
DEFAULT_SEGMENTS = 128
# a short text is cut into fewer segments: each segment's first characters are read cold (the
# network from a zero state, the tables without context), about 20 bits more a segment with the
# ten-minute models, so segments are of SEGMENT_CHARS symbols (as many as that takes, the last
# one shorter) up to DEFAULT_SEGMENTS of them. A text under DEFAULT_SEGMENTS x SEGMENT_CHARS
# then takes at most SEGMENT_CHARS steps, a few seconds, and a longer one is cut as before
# (benchmarks/small_files.py measures both)
SEGMENT_CHARS = 1024


def auto_segments(length: int) -> int:
    """The segments a text of ``length`` symbols is coded in when not told: one per
    SEGMENT_CHARS symbols begun, at least 1 and at most DEFAULT_SEGMENTS."""
    return max(1, min(DEFAULT_SEGMENTS, -(-length // SEGMENT_CHARS)))


THREADS = 2  # pinned, recorded, and pinned again by the decoder
# mixed with context tables: the network steps on one torch thread while the mixer learns from
# the last position on a thread of its own (adaptive.Adapter). Code, the ten-minute model, on 2
# cores: 19.8-20.2 kB/s, against 18.0 with two torch threads (their idle spinning takes the
# mixer's core) and 17.0-17.3 with one and the mixer on the main thread
MIXED_THREADS = 1


def default_threads(mixed: bool) -> int:
    """The torch threads of the coder's step when not told: MIXED_THREADS when mixing."""
    return MIXED_THREADS if mixed else THREADS


WEIGHTS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_WEIGHTS_DTYPE = "float32"  # what compress() takes when not told; the CLI says "auto"


def resolve_weights_dtype(name: str) -> str:
    """ "auto": bfloat16 on a CPU with native bf16 (AVX-512 BF16 or AMX), else float32."""
    if name != "auto":
        return name
    from .model import cpu_has_bf16

    return "bfloat16" if cpu_has_bf16() else "float32"


PROBE_STEPS = 16


# --- the model's distribution as integers --------------------------------------------------------


def quantize(logits: torch.Tensor, precision_bits: int = PRECISION_BITS) -> np.ndarray:
    """Integer frequencies of the next symbol, the same bits wherever the logits are the same.

    Args:
        logits: (B, V) float32 logits.
        precision_bits: the frequencies of each row sum to exactly 2**precision_bits.

    Returns:
        (B, V) int64 frequencies, each at least 1: softmax in float64, scaled to the mass left
        after one count per symbol, floored; the rounding remainder goes to the row's most
        likely symbol (the first one on ties), so each row sums to 2**precision_bits.
    """
    return quantize_probs(softmax64(logits), precision_bits)


def quantize_probs(p: np.ndarray, precision_bits: int = PRECISION_BITS) -> np.ndarray:
    """``quantize`` of (B, V) float64 probabilities (each row summing to 1).

    Raises:
        DivergedError: a probability is NaN or Inf (the adaptation's updates diverged).
    """
    if not np.isfinite(p).all():
        raise DivergedError(
            "the model's probabilities became NaN or Inf while adapting; lower --adapt-head-lr "
            "(or --dynamic-lr)"
        )
    # C order: the coder (constriction 0.5) reads a probability array's buffer as rows, whatever
    # its strides; a transposed (Fortran-ordered) array was coded as other probabilities, and
    # the file came out six times larger
    p = np.ascontiguousarray(p)
    B, V = p.shape
    total = 1 << precision_bits
    if total // 2 < V:
        raise ValueError(f"{V} symbols do not fit {precision_bits}-bit frequencies")
    freq = np.floor(p * (total - V)).astype(np.int64) + 1  # (B, V)
    rows = np.arange(B)
    freq[rows, freq.argmax(axis=1)] += total - freq.sum(axis=1)
    return freq


@contextmanager
def pinned_threads(n: int = 1) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads (a GEMM's summation order can depend on them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the weights: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_digest(model: torch.nn.Module, vocab: Vocab) -> str:
    """SHA-256 of the weights (``weights_digest``) and the vocabulary together."""
    vocab_json = json.dumps(vocab.to_json(), sort_keys=True).encode()
    return hashlib.sha256(weights_digest(model).encode() + vocab_json).hexdigest()


# --- the coder ------------------------------------------------------------------------------


class Stepper:
    """The one function both directions call: the next symbol's integer frequencies for every
    segment, given the symbols before it; plus the adaptation or the dynamic-evaluation updates,
    if any.

    The step is the sampler's (cells.StepDecoder: one product per layer, the input projection a
    table lookup), with the recurrent weights in ``weights_dtype``; after a dynamic update it is
    rebuilt from the updated weights. With ``adapt``, its features go to an adaptive.Adapter
    (the head and the match model, and the context mixer with ``tables``) instead of the fixed
    head."""

    def __init__(
        self,
        model: CharLM,
        segments: int,
        precision_bits: int,
        weights_dtype: str = DEFAULT_WEIGHTS_DTYPE,
        dynamic: DynamicConfig | None = None,
        stats: dict[str, torch.Tensor] | None = None,
        adapt: AdaptConfig | None = None,
        segment_len: int = 1,
        history: np.ndarray | None = None,
        tables: ContextTables | None = None,
    ) -> None:
        if adapt is not None and dynamic is not None:
            raise UsageError("--adapt and --dynamic are alternatives; choose one")
        self.model = model
        self.S = segments
        self.bits = precision_bits
        self.dtype = WEIGHTS_DTYPES[weights_dtype]
        self.decoder = StepDecoder.from_model(model, self.dtype)
        self.layers = [list(s.unbind(0)) for s in model.init_state(segments, "cpu")]
        V = model.config.vocab_size
        self.uniform = quantize(torch.zeros(segments, V), precision_bits)
        self.updater = DynamicUpdater(model, dynamic, stats) if dynamic else None
        self.adapter = (
            Adapter(
                model.head.weight, model.head.bias, adapt, segments, segment_len, history, tables
            )
            if adapt
            else None
        )
        self.inputs: list[torch.Tensor] = []  # (S,) ids fed since the last update
        self.targets: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.chunk_state = self.state()

    def state(self) -> tuple[torch.Tensor, ...]:
        """The carried state as CharLM's tuple of (L, S, H) tensors."""
        return tuple(torch.stack(s) for s in self.layers)

    @torch.no_grad()
    def first(self) -> np.ndarray:
        """Frequencies (S, V) of every segment's first symbol: uniform, or with context tables
        the training text's own frequencies (contextmix.Mixer.first)."""
        mixer = None if self.adapter is None else self.adapter.mixer
        if mixer is None:
            return self.uniform
        return quantize_probs(np.tile(mixer.first, (self.S, 1)), self.bits)

    @torch.no_grad()
    def next(self, prev: np.ndarray) -> np.ndarray:
        """Frequencies (S, V) of the next symbols, after feeding ``prev`` (S,)."""
        ids = torch.as_tensor(prev, dtype=torch.int64)
        if self.adapter is not None:
            return quantize_probs(
                self.adapter.predict(self.decoder.hidden(ids, self.layers)), self.bits
            )
        if self.updater is not None and not self.inputs:
            self.chunk_state = self.state()
        logits = self.decoder.advance(ids, self.layers)  # (S, V)
        if self.updater is not None:
            self.inputs.append(ids)
        return quantize(logits, self.bits)

    def observed(self, symbols: np.ndarray, active: int) -> None:
        """The symbols just coded (S,), of which the first ``active`` segments are real."""
        if self.adapter is not None:
            self.adapter.observe(symbols, active)
        if self.updater is None or not self.inputs:
            return
        self.targets.append(torch.as_tensor(symbols, dtype=torch.int64))
        mask = torch.zeros(self.S, dtype=torch.bool)
        mask[:active] = True
        self.masks.append(mask)
        if len(self.inputs) == self.updater.config.segment_len:
            self.updater.update(
                torch.stack(self.inputs, 1),  # (S, K)
                torch.stack(self.targets, 1),
                torch.stack(self.masks, 1),
                self.chunk_state,
            )
            self.decoder = StepDecoder.from_model(self.model, self.dtype)
            self.inputs, self.targets, self.masks = [], [], []


def prepare(model: CharLM) -> CharLM:
    """A float32 CPU copy in eval mode (the caller's model is never modified)."""
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def probe_digest(
    model: CharLM, segments: int, precision_bits: int, weights_dtype: str = DEFAULT_WEIGHTS_DTYPE
) -> str:
    """SHA-256 of the quantized probabilities on a fixed input, computed by the coder's own step
    function: equal on two machines only if their kernels agree on these bits."""
    V = model.config.vocab_size
    stepper = Stepper(model, segments, precision_bits, weights_dtype)
    h = hashlib.sha256()
    g = np.random.default_rng(0)
    for _ in range(PROBE_STEPS):
        h.update(stepper.next(g.integers(0, V, segments)).tobytes())
    return h.hexdigest()
