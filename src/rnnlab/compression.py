"""Lossless compression with a trained model: range coding (``constriction``) driven by the
model's next-character probabilities, quantized to integers the same way on both sides.

The model predicts, an arithmetic coder spends -log2 p bits on what actually came (Rissanen &
Langdon 1979; Witten, Neal & Cleary 1987), so a file costs about its bits per character.
Imports errors, vocab, model and dynamic from rnnlab; ``constriction`` only inside the coder.

Layout of a ``.rz`` file (format 3)::

    b"RNNLABZ\\0" | fixed fields: version, mode, precision, threads, weights dtype, segments,
    length, original bytes, SHA-256 of the original (first 16 bytes), SHA-256 of the model,
    probe digest | versions ("rnnlab torch constriction") | adaptation settings (adaptive.py;
    11 bytes, or 1 when off) | dynamic-evaluation settings (22 bytes, or 1 when off) | payload
    (u32 words) | 4-byte SHA-256 of everything before it

The text is cut into ``segments`` contiguous pieces coded side by side as one batch, each from a
zero state (its first symbol uniform), so the model runs at batch S rather than batch 1::

    text:  [ seg 0 (L chars) | seg 1 (L) | ... | seg S-1 (<= L) ]
    step t codes symbol t of every segment still that long: S symbols per model call

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

import codecs
import copy
import dataclasses
import hashlib
import json
import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .adaptive import AdaptConfig, Adapter, softmax64
from .cells import StepDecoder
from .config import __version__
from .data import stream_active, stream_layout, token_dtype
from .dynamic import RULES, DynamicConfig, DynamicUpdater
from .errors import DivergedError, UsageError
from .model import CharLM
from .vocab import Vocab, unknown_characters

MAGIC = b"RNNLABZ\0"
FORMAT_VERSION = 3  # 3: the adaptation settings (format 2 had none)
PRECISION_BITS = 20  # frequencies sum to 2**20; the coder itself works at 24 bits
# Measured on 2 cores (README, "Compressing files with a model"): 128 segments side by side and
# bf16 weights reach 20+ kB/s each way with the default model; the 64 segments and float32 of
# format 1 ran at about 10.
DEFAULT_SEGMENTS = 128
THREADS = 2  # pinned, recorded, and pinned again by the decoder
MAX_THREADS = 256
WEIGHTS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_WEIGHTS_DTYPE = "float32"  # what compress() takes when not told; the CLI says "auto"


def resolve_weights_dtype(name: str) -> str:
    """ "auto": bfloat16 on a CPU with native bf16 (AVX-512 BF16 or AMX), else float32."""
    if name != "auto":
        return name
    from .model import cpu_has_bf16

    return "bfloat16" if cpu_has_bf16() else "float32"


PIECE_BYTES = 1 << 20  # the text is decoded and encoded in pieces of this many bytes / symbols
MAX_SEGMENTS = 1 << 16  # the batch the decoder will allocate: bounded for untrusted files
MAX_LENGTH = 1 << 40  # symbols; a header claiming more is corrupt
PROBE_STEPS = 16


class CompressedFileError(UsageError):
    """A compressed file is truncated, corrupt, of another version, or of another model."""


def _constriction():
    try:
        import constriction
    except ImportError:  # the optional extra
        raise UsageError(
            "compression needs the constriction package: pip install 'rnnlab[compress]'"
        ) from None
    return constriction


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


# --- the header ---------------------------------------------------------------------------------

# magic | version, mode, precision bits, threads, weights dtype (u8 each) | segments (u32) |
# length, original bytes (u64 each) | SHA-256 of the original (first 8 bytes) | SHA-256 of the
# weights + vocabulary (first 16) | probe (8) | u8 length + versions text | u8 0 or 1 + the
# adaptation settings (_ADAPT) | u8 0 or 1 + the dynamic settings (_DYNAMIC) | payload (u32
# words) | checksum (4). Small on purpose: every byte of it is 8 bits on the file's bits per
# character (94 bytes static, 104 adaptive: 0.0067 and 0.0075 bpc on 111,540 characters).
_FIXED = struct.Struct("<BBBBBIQQ8s16s8s")
_ADAPT = struct.Struct("<ffBB")  # head_lr, confidence_bin (float32), match_len, match_long
# rule, learning rate, decay (float32), segment length, the statistics' SHA-256 (first 8 bytes,
# zeros without statistics)
_DYNAMIC = struct.Struct("<BffI8s")
CHECKSUM_BYTES = 4  # truncated SHA-256 of everything before it: corruption, caught up front
MODES = ("char", "byte")
DTYPES = tuple(WEIGHTS_DTYPES)


@dataclass(frozen=True)
class Header:
    """What a ``.rz`` file says about itself; decoding refuses any mismatch. The segment
    boundaries follow from ``length`` and ``segments`` (``segment_layout``). Digests are hex."""

    format_version: int
    mode: str  # "char" or "byte": what the symbols are
    precision_bits: int
    threads: int  # torch intra-op threads of the step function, pinned both ways
    weights_dtype: str  # "float32" or "bfloat16": the recurrent weights of the step function
    segments: int
    length: int  # symbols (characters or bytes)
    original_bytes: int
    original_sha256: str  # its first 8 bytes, hex: checked after decoding
    model_sha256: str  # first 16 bytes of ``model_digest`` (weights and vocabulary)
    probe_sha256: str  # first 8 bytes of ``probe_digest``
    versions: dict  # rnnlab, torch and constriction versions that wrote the file
    dynamic: dict | None  # DynamicConfig fields and "stats_sha256" (16 hex digits or None)
    adapt: AdaptConfig | None = None  # its floats exactly representable in float32

    @property
    def segment_len(self) -> int:
        return segment_layout(self.length, self.segments)[1]

    def to_bytes(self) -> bytes:
        names = ("rnnlab", "torch", "constriction")
        versions = " ".join(self.versions[k] for k in names).encode("ascii")
        dyn = b"\0"
        if self.dynamic is not None:
            d = self.dynamic
            digest = bytes.fromhex(d["stats_sha256"]) if d["stats_sha256"] else bytes(8)
            dyn = b"\1" + _DYNAMIC.pack(
                RULES.index(d["rule"]), d["learning_rate"], d["decay"], d["segment_len"], digest
            )
        fixed = _FIXED.pack(
            self.format_version,
            MODES.index(self.mode),
            self.precision_bits,
            self.threads,
            DTYPES.index(self.weights_dtype),
            self.segments,
            self.length,
            self.original_bytes,
            bytes.fromhex(self.original_sha256),
            bytes.fromhex(self.model_sha256),
            bytes.fromhex(self.probe_sha256),
        )
        adapt = b"\0"
        if self.adapt is not None:
            a = self.adapt
            adapt = b"\1" + _ADAPT.pack(a.head_lr, a.confidence_bin, a.match_len, a.match_long)
        return fixed + struct.pack("<B", len(versions)) + versions + adapt + dyn


def as_float32(config: AdaptConfig) -> AdaptConfig:
    """The settings as the header stores them (its floats rounded to float32), so that the
    compressor adapts exactly as the decompressor will."""
    return dataclasses.replace(
        config,
        head_lr=float(np.float32(config.head_lr)),
        confidence_bin=float(np.float32(config.confidence_bin)),
    )


def original_digest(data: bytes) -> str:
    """The header's checksum of the original: the first 8 bytes of its SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()[:16]


def model_digest(model: torch.nn.Module, vocab: Vocab) -> str:
    """SHA-256 of the weights (``weights_digest``) and the vocabulary together."""
    vocab_json = json.dumps(vocab.to_json(), sort_keys=True).encode()
    return hashlib.sha256(weights_digest(model).encode() + vocab_json).hexdigest()


def read_header(blob: bytes) -> tuple[Header, np.ndarray]:
    """The header and payload of a ``.rz`` file, after checking its magic, version and
    integrity (a trailing checksum over everything before it).

    Raises:
        CompressedFileError: not an rnnlab file, truncated, corrupt, or another format version.
    """
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise CompressedFileError("not an rnnlab compressed file (bad magic number)")
    start = len(MAGIC)
    if len(blob) > start and blob[start] != FORMAT_VERSION:
        raise CompressedFileError(
            f"the compressed file has format version {blob[start]}; this rnnlab "
            f"({__version__}) reads version {FORMAT_VERSION}: decompress it with the rnnlab "
            "that wrote it"
        )
    truncated = CompressedFileError("the compressed file is truncated; use a complete copy")
    if len(blob) < start + _FIXED.size + 3 + CHECKSUM_BYTES:
        raise truncated
    body, digest = blob[:-CHECKSUM_BYTES], blob[-CHECKSUM_BYTES:]
    if hashlib.sha256(body).digest()[:CHECKSUM_BYTES] != digest:
        raise CompressedFileError(
            "the compressed file is corrupt or truncated (checksum mismatch); use a good copy"
        )
    fields = _FIXED.unpack_from(body, start)
    version, mode, bits, threads, dtype, segments, length, nbytes, orig, model, probe = fields
    try:
        at = start + _FIXED.size
        versions = body[at + 1 : at + 1 + body[at]].decode("ascii").split(" ")
        at += 1 + body[at]
        adapt = None
        if body[at] not in (0, 1):
            raise CompressedFileError("the compressed file's header is corrupt")
        if body[at] == 1:
            lr, conf, match_len, match_long = _ADAPT.unpack_from(body, at + 1)
            try:
                adapt = AdaptConfig(
                    head_lr=lr, match_len=match_len, match_long=match_long, confidence_bin=conf
                )
            except UsageError:
                raise ValueError("adaptation settings") from None
            at += _ADAPT.size
        at += 1
        dyn = None
        if body[at] not in (0, 1):
            raise CompressedFileError("the compressed file's header is corrupt")
        if body[at] == 1:
            rule, lr, decay, segment_len, digest = _DYNAMIC.unpack_from(body, at + 1)
            dyn = {
                "rule": RULES[rule],
                "learning_rate": lr,
                "decay": decay,
                "segment_len": segment_len,
                "stats_sha256": digest.hex() if any(digest) else None,
            }
            at += _DYNAMIC.size
        payload_start = at + 1
        if payload_start > len(body):
            raise truncated
        header = Header(
            version,
            MODES[mode],
            bits,
            threads,
            DTYPES[dtype],
            segments,
            length,
            nbytes,
            orig.hex(),
            model.hex(),
            probe.hex(),
            dict(zip(("rnnlab", "torch", "constriction"), versions, strict=True)),
            dyn,
            adapt,
        )
    except (ValueError, TypeError, KeyError, IndexError, struct.error, RecursionError):
        raise CompressedFileError("the compressed file's header is corrupt") from None
    _check_header(header)
    if (len(body) - payload_start) % 4:
        raise CompressedFileError("the compressed file is corrupt (payload length)")
    payload = np.frombuffer(body, dtype="<u4", offset=payload_start).astype(np.uint32)
    return header, payload


def _check_header(h: Header) -> None:
    ok = (
        0 <= h.length <= MAX_LENGTH
        and 0 <= h.original_bytes <= 4 * MAX_LENGTH
        and 1 <= h.segments <= min(MAX_SEGMENTS, max(1, h.length))
        and 8 <= h.precision_bits <= 24
        and 1 <= h.threads <= MAX_THREADS
        and (h.dynamic is None or isinstance(h.dynamic, dict))
    )
    if not ok:
        raise CompressedFileError("the compressed file's header is invalid")


# --- the coder ------------------------------------------------------------------------------


def segment_layout(length: int, segments: int) -> tuple[int, int]:
    """(segments actually used, symbols per segment): data.stream_layout, S pieces of
    L = ceil(n / S) symbols, the last ones shorter; no segment is empty."""
    return stream_layout(length, segments)


class _Stepper:
    """The one function both directions call: the next symbol's integer frequencies for every
    segment, given the symbols before it; plus the adaptation or the dynamic-evaluation updates,
    if any.

    The step is the sampler's (cells.StepDecoder: one product per layer, the input projection a
    table lookup), with the recurrent weights in ``weights_dtype``; after a dynamic update it is
    rebuilt from the updated weights. With ``adapt``, its features go to an adaptive.Adapter
    (the head and the match model) instead of the fixed head."""

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
            Adapter(model.head.weight, model.head.bias, adapt, segments, segment_len)
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
        return self.uniform

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


def _prepare(model: CharLM) -> CharLM:
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
    stepper = _Stepper(model, segments, precision_bits, weights_dtype)
    h = hashlib.sha256()
    g = np.random.default_rng(0)
    for _ in range(PROBE_STEPS):
        h.update(stepper.next(g.integers(0, V, segments)).tobytes())
    return h.hexdigest()


def _symbols(data: bytes, vocab: Vocab) -> np.ndarray:
    """(n,) the ids of ``data`` in the smallest unsigned dtype that holds them, decoded and
    encoded a piece at a time: no Python object per character (data.py encodes the same way)."""
    if vocab.mode == "byte":
        return np.frombuffer(data, dtype=np.uint8)
    dtype = token_dtype(len(vocab))
    points = np.array(vocab.code_points(), dtype=np.uint32)  # sorted: an id is its rank
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces, missing = [], set()
    for start in range(0, len(data), PIECE_BYTES):
        try:
            text = decoder.decode(
                data[start : start + PIECE_BYTES], start + PIECE_BYTES >= len(data)
            )
        except UnicodeDecodeError as e:
            raise UsageError(
                f"the file is not UTF-8 text (byte {start + e.start}); compress it with a "
                "byte-mode run (rnnlab train --bytes)"
            ) from None
        missing.update(vocab.unknown(text))
        if not missing:
            cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            pieces.append(np.searchsorted(points, cps).astype(dtype))
    if missing:  # lossless: nothing can be skipped, so the hint is another run, not --unknown
        e = unknown_characters(missing)
        raise type(e)(
            str(e).replace(
                "remove them or pass --unknown skip to drop them",
                "remove them, or compress with a byte-mode run (rnnlab train --bytes)",
            )
        )
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def _unsymbols(ids: np.ndarray, vocab: Vocab) -> bytes:
    """The bytes of (n,) ids, a piece at a time (``_symbols`` reversed)."""
    if vocab.mode == "byte":
        return ids.astype(np.uint8).tobytes()
    points = np.array(vocab.code_points(), dtype="<u4")
    out = bytearray()
    for start in range(0, len(ids), PIECE_BYTES):
        out += points[ids[start : start + PIECE_BYTES]].tobytes().decode("utf-32-le").encode()
    return bytes(out)


def _column(ids: np.ndarray, starts: np.ndarray, t: int, active: int) -> np.ndarray:
    """(S,) int64: symbol t of each segment (segment s is ids[s * L : (s + 1) * L]); 0 where a
    segment is shorter. Read from ``ids`` in place, so no (S, L) copy of the text is made."""
    column = np.zeros(len(starts), dtype=np.int64)
    column[:active] = ids[starts[:active] + t]
    return column


def compress(
    data: bytes,
    model: CharLM,
    vocab: Vocab,
    segments: int = DEFAULT_SEGMENTS,
    dynamic: DynamicConfig | None = None,
    stats: dict[str, torch.Tensor] | None = None,
    stats_sha256: str | None = None,
    weights_dtype: str = DEFAULT_WEIGHTS_DTYPE,
    threads: int = THREADS,
    adapt: AdaptConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """Compress ``data`` with ``model``; ``decompress`` with the same model gives it back.

    Args:
        data: the original bytes (UTF-8 text for a char-mode model, anything in byte mode).
        model: a CharLM; it is copied to float32 on the CPU and left unchanged.
        vocab: the model's vocabulary.
        segments: pieces coded side by side (speed); each costs about log2 V bits more.
        dynamic: adapt the weights while coding (Krause et al. 2018), or None (static).
        stats: the RMS statistics the "rms" rule needs (``dynamic.gradient_stats``).
        stats_sha256: their digest, recorded so the decoder can check its own copy.
        weights_dtype: "float32" or "bfloat16": the step function's recurrent weights.
        threads: torch threads of the step function (recorded; the decoder pins the same).
        adapt: adapt the head and mix in a match model while coding (adaptive.py), or None.
        on_progress: called now and then with (symbols coded, symbols in all).

    Returns:
        The ``.rz`` file's bytes.

    Raises:
        UnknownCharacterError: characters outside the vocabulary (all listed).
        UsageError: not UTF-8 for a char-mode model.
    """
    if not 1 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments must be in [1, {MAX_SEGMENTS}], got {segments}")
    if not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    if weights_dtype not in WEIGHTS_DTYPES:
        raise UsageError(f"--weights-dtype must be one of {', '.join(WEIGHTS_DTYPES)}")
    constriction = _constriction()
    ids = _symbols(data, vocab)
    n = len(ids)
    S, L = segment_layout(n, segments)
    with pinned_threads(threads):
        m = _prepare(model)
        header = Header(
            format_version=FORMAT_VERSION,
            mode=vocab.mode,
            precision_bits=PRECISION_BITS,
            threads=threads,
            weights_dtype=weights_dtype,
            segments=S,
            length=n,
            original_bytes=len(data),
            original_sha256=original_digest(data),
            model_sha256=model_digest(m, vocab)[:32],
            probe_sha256=probe_digest(m, S, PRECISION_BITS, weights_dtype)[:16],
            versions={
                "rnnlab": __version__,
                "torch": torch.__version__,
                "constriction": _version("constriction"),
            },
            dynamic=_dynamic_field(dynamic, stats_sha256),
            adapt=as_float32(adapt) if adapt is not None else None,
        )
        starts = np.arange(S) * L  # segment s is ids[s * L : (s + 1) * L]
        active = stream_active(n, segments)
        encoder = constriction.stream.queue.RangeEncoder()
        family = constriction.stream.model.Categorical(perfect=False)
        if header.dynamic is not None:  # as the decoder will read them
            dynamic = DynamicConfig.from_dict(header.dynamic)
        stepper = _Stepper(m, S, PRECISION_BITS, weights_dtype, dynamic, stats, header.adapt, L)
        total = float(1 << PRECISION_BITS)
        done, every = 0, max(1, L // 200)  # progress about 200 times
        symbols = np.zeros(S, dtype=np.int64)  # those of position t - 1
        for t in range(L if n else 0):
            freq = stepper.first() if t == 0 else stepper.next(symbols)
            a = active[t]
            symbols = _column(ids, starts, t, a)
            encoder.encode(symbols[:a].astype(np.int32), family, freq[:a] / total)
            stepper.observed(symbols, a)
            done += a
            if on_progress is not None and (t % every == 0 or t == L - 1):
                on_progress(done, n)
        payload = encoder.get_compressed().astype("<u4").tobytes()
    return _assemble(header, payload)


def decompress(
    blob: bytes,
    model: CharLM,
    vocab: Vocab,
    stats: dict[str, torch.Tensor] | None = None,
    stats_sha256: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """The original bytes of a ``.rz`` file, checked against its SHA-256; ``on_progress`` is
    called now and then with (symbols decoded, symbols in all).

    Raises:
        CompressedFileError: truncated, corrupt, another version, another model, settings this
            machine cannot reproduce, or a decoded result whose checksum differs.
    """
    constriction = _constriction()
    header, payload = read_header(blob)
    with pinned_threads(header.threads):
        m = _prepare(model)
        check_model(header, m, vocab)
        if header.dynamic is not None and _short(stats_sha256) != header.dynamic["stats_sha256"]:
            raise CompressedFileError(
                "the file was compressed with --dynamic and statistics this run does not have; "
                "decompress it with the same run directory"
            )
        dynamic = DynamicConfig.from_dict(header.dynamic) if header.dynamic is not None else None
        n, S, L = header.length, header.segments, header.segment_len
        if n > most_symbols(payload.nbytes, len(vocab), header.precision_bits):
            raise CompressedFileError(
                f"the compressed file is corrupt: its header claims {n:,} symbols, more than its "
                f"{payload.nbytes:,}-byte payload can hold; use a good copy"
            )
        if segment_layout(n, S) != (S, L):
            raise CompressedFileError("the compressed file's header is invalid (segments)")
        probe = probe_digest(m, S, header.precision_bits, header.weights_dtype)
        if header.probe_sha256 != probe[:16]:
            raise CompressedFileError(
                "this machine computes the model's probabilities differently from the one "
                f"that compressed the file (torch {header.versions.get('torch')} there, "
                f"{torch.__version__} here, or another CPU); decompress it where it was compressed"
            )
        grid = np.zeros((S, L), dtype=token_dtype(len(vocab)))  # row s: segment s
        active = stream_active(n, S)
        try:
            decoder = constriction.stream.queue.RangeDecoder(payload)
        except Exception:
            raise CompressedFileError("the compressed file's payload is corrupt") from None
        family = constriction.stream.model.Categorical(perfect=False)
        stepper = _Stepper(
            m, S, header.precision_bits, header.weights_dtype, dynamic, stats, header.adapt, L
        )
        total = float(1 << header.precision_bits)
        done, every = 0, max(1, L // 200)
        for t in range(L if n else 0):
            freq = stepper.first() if t == 0 else stepper.next(grid[:, t - 1])
            a = active[t]
            try:
                grid[:a, t] = decoder.decode(family, freq[:a] / total)
            except Exception:
                raise CompressedFileError("the compressed file's payload is corrupt") from None
            stepper.observed(grid[:, t], a)
            done += a
            if on_progress is not None and (t % every == 0 or t == L - 1):
                on_progress(done, n)
    data = _unsymbols(grid.reshape(-1)[:n], vocab)
    if len(data) != header.original_bytes or (original_digest(data) != header.original_sha256):
        raise CompressedFileError(
            "decoding did not reproduce the original (checksum mismatch): this machine or "
            "library differs from the one that compressed it; nothing was written"
        )
    return data


def most_symbols(payload_bytes: int, vocab_size: int, precision_bits: int) -> int:
    """The most symbols a payload of ``payload_bytes`` can hold, whatever the model predicted.

    Every symbol costs at least -log2 of the largest probability the coder can give it, and
    that leaves each of the V - 1 others at least 2**-(precision_bits + 1) (``quantize`` gives
    each one count in 2**precision_bits; the coder's own 24-bit rounding at most halves it);
    64 bits of slack for the coder's flush. A header claiming more is corrupt, found out before
    anything the size of the claim is allocated.
    """
    if vocab_size < 2:
        return MAX_LENGTH
    least_bits = -math.log2(1 - (vocab_size - 1) * 2.0 ** -(precision_bits + 1))
    return math.floor((8 * payload_bytes + 64) / least_bits) + 1


def check_model(header: Header, model: CharLM, vocab: Vocab) -> None:
    """Refuse a file compressed with other weights or another vocabulary."""
    if header.model_sha256 != model_digest(model, vocab)[:32]:
        raise CompressedFileError(
            "the file was compressed with another model (weights differ); "
            "decompress it with the run that compressed it"
        )


def _dynamic_field(dynamic: DynamicConfig | None, stats_sha256: str | None) -> dict | None:
    """The header's dynamic settings: the floats as float32 (what the header stores, and so what
    both directions use), the statistics' digest to 8 bytes."""
    if dynamic is None:
        return None
    f32 = {k: float(np.float32(getattr(dynamic, k))) for k in ("learning_rate", "decay")}
    return {**asdict(dynamic), **f32, "stats_sha256": _short(stats_sha256)}


def _short(stats_sha256: str | None) -> str | None:
    return stats_sha256[:16] if stats_sha256 else None


def _assemble(header: Header, payload: bytes) -> bytes:
    body = MAGIC + header.to_bytes() + payload
    return body + hashlib.sha256(body).digest()[:CHECKSUM_BYTES]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
