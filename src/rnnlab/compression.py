"""Lossless compression with a trained model: range coding (``constriction``) driven by the
model's next-character probabilities, quantized to integers the same way on both sides.

The model predicts, an arithmetic coder spends -log2 p bits on what actually came (Rissanen &
Langdon 1979; Witten, Neal & Cleary 1987), so a file costs about its bits per character.
Imports errors, vocab, model and dynamic from rnnlab; ``constriction`` only inside the coder.

The file format (header, checksum, streaming writer) is rzformat.py's.

The text is cut into ``segments`` contiguous pieces coded side by side as one batch, each from a
zero state, so the model runs at batch S rather than batch 1 (untold: ``auto_segments``)::

    text:  [ seg 0 (L chars) | seg 1 (L) | ... | seg S-1 (<= L) ]
    step t codes symbol t of every segment still that long: S symbols per model call

Determinism (the same integers on both sides) is rzmodel.py's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import files
from .adaptive import AdaptConfig
from .config import __version__
from .contextmix import ContextTables
from .data import token_dtype
from .dynamic import DynamicConfig
from .errors import UsageError
from .model import CharLM
from .rzformat import (
    FORMAT_VERSION,
    MAX_LENGTH,
    MAX_SEGMENTS,
    MAX_THREADS,
    PIECE_BYTES,
    CompressedFileError,
    Header,
    active_segments,
    as_float32,
    assemble,
    byte_pieces,
    check_tables,
    dynamic_field,
    most_symbols,
    original_digest,
    overclaim,
    package_version,
    read_header,
    segment_column,
    segment_layout,
    short_digest,
    symbol_pieces,
    symbols,
    unsymbols,
    write_rz,
)
from .rzmodel import DEFAULT_SEGMENTS as DEFAULT_SEGMENTS
from .rzmodel import (
    DEFAULT_WEIGHTS_DTYPE,
    PRECISION_BITS,
    WEIGHTS_DTYPES,
    Stepper,
    auto_segments,
    default_threads,
    model_digest,
    pinned_threads,
    prepare,
    probe_digest,
)
from .rzmodel import MIXED_THREADS as MIXED_THREADS
from .rzmodel import THREADS as THREADS
from .rzmodel import quantize as quantize
from .rzmodel import quantize_probs as quantize_probs
from .rzmodel import resolve_weights_dtype as resolve_weights_dtype
from .vocab import Vocab

# Once the decoder has read the payload's last word, what is left to decode must fit in the
# coder's state: at most two 32-bit words still to come and the 64-bit state itself, by the
# way a range coder renormalizes; 64 bytes is twice that, so a good file is never refused, and
# a header claiming more symbols than that is refused when the payload runs out (a forged
# length is found out after decoding about the payload's worth, not the claim's).
TAIL_BYTES = 64


def _constriction():
    try:
        import constriction
    except ImportError:  # the optional extra
        raise UsageError(
            "compression needs the constriction package: pip install 'rnnlab[compress]'"
        ) from None
    return constriction


def _check_settings(segments: int | None, threads: int | None, weights_dtype: str) -> None:
    if segments is not None and not 1 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments must be in [1, {MAX_SEGMENTS}], got {segments}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    if weights_dtype not in WEIGHTS_DTYPES:
        raise UsageError(f"--weights-dtype must be one of {', '.join(WEIGHTS_DTYPES)}")


@dataclass(frozen=True)
class Settings:
    """How to code: ``compress``'s keyword arguments, for ``compress_file`` too."""

    segments: int | None = None  # None: auto_segments of the text's length
    dynamic: DynamicConfig | None = None
    stats: dict[str, torch.Tensor] | None = None
    stats_sha256: str | None = None
    weights_dtype: str = DEFAULT_WEIGHTS_DTYPE
    threads: int | None = None  # None: default_threads (1 when mixing, else 2)
    adapt: AdaptConfig | None = None
    tables: ContextTables | None = None  # context tables mixed in (with adapt)


def _encode(
    ids: np.ndarray,
    nbytes: int,
    digest: str,
    model: CharLM,
    vocab: Vocab,
    how: Settings,
    on_progress: Callable[[int, int], None] | None,
    history: Callable[[int], np.ndarray | None] = lambda size: None,
) -> tuple[Header, np.ndarray]:
    """The header and (W,) uint32 payload of the (n,) ``ids`` of an original of ``nbytes``
    bytes whose ``original_digest`` is ``digest``; ``history(S * L)`` gives the adapter its
    memory of the text (None: its own array)."""
    if how.threads is None:  # 1 when mixing: the mixer learns on a thread of its own
        mixed = how.adapt is not None and how.tables is not None
        how = replace(how, threads=default_threads(mixed))
    _check_settings(how.segments, how.threads, how.weights_dtype)
    constriction = _constriction()
    n = len(ids)
    S, L = segment_layout(n, auto_segments(n) if how.segments is None else how.segments)
    with pinned_threads(how.threads):
        m = prepare(model)
        header = Header(
            format_version=FORMAT_VERSION,
            mode=vocab.mode,
            precision_bits=PRECISION_BITS,
            threads=how.threads,
            weights_dtype=how.weights_dtype,
            segments=S,
            length=n,
            original_bytes=nbytes,
            original_sha256=digest,
            model_sha256=model_digest(m, vocab)[:32],
            probe_sha256=probe_digest(m, S, PRECISION_BITS, how.weights_dtype)[:16],
            versions={
                "rnnlab": __version__,
                "torch": torch.__version__,
                "constriction": package_version("constriction"),
            },
            dynamic=dynamic_field(how.dynamic, how.stats_sha256),
            adapt=as_float32(how.adapt) if how.adapt is not None else None,
            mix=how.tables.sha256()[:16] if how.adapt and how.tables else None,
        )
        # as the decoder will read them
        dynamic = DynamicConfig.from_dict(header.dynamic) if header.dynamic else None
        starts = np.arange(S) * L  # segment s is ids[s * L : (s + 1) * L]
        encoder = constriction.stream.queue.RangeEncoder()
        family = constriction.stream.model.Categorical(perfect=False)
        stepper = Stepper(
            m, S, PRECISION_BITS, how.weights_dtype, dynamic, how.stats, header.adapt, L,
            history(S * L) if header.adapt else None, how.tables if header.mix else None,
        )  # fmt: skip
        total = float(1 << PRECISION_BITS)
        done, every = 0, max(1, L // 200)  # progress about 200 times
        symbols = np.zeros(S, dtype=np.int64)  # those of position t - 1
        for t in range(L if n else 0):
            freq = stepper.first() if t == 0 else stepper.next(symbols)
            a = active_segments(n, S, L, t)
            symbols = segment_column(ids, starts, t, a)
            encoder.encode(symbols[:a].astype(np.int32), family, freq[:a] / total)
            stepper.observed(symbols, a)
            done += a
            if on_progress is not None and (t % every == 0 or t == L - 1):
                on_progress(done, n)
        return header, encoder.get_compressed()


def compress(
    data: bytes,
    model: CharLM,
    vocab: Vocab,
    segments: int | None = None,
    dynamic: DynamicConfig | None = None,
    stats: dict[str, torch.Tensor] | None = None,
    stats_sha256: str | None = None,
    weights_dtype: str = DEFAULT_WEIGHTS_DTYPE,
    threads: int | None = None,
    adapt: AdaptConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    tables: ContextTables | None = None,
) -> bytes:
    """Compress ``data`` with ``model``; ``decompress`` with the same model gives it back.

    Args:
        data: the original bytes (UTF-8 text for a char-mode model, anything in byte mode).
        model: a CharLM; it is copied to float32 on the CPU and left unchanged.
        vocab: the model's vocabulary.
        segments: pieces coded side by side (speed; each starts cold); None: auto_segments.
        dynamic: adapt the weights while coding (Krause et al. 2018), or None (static).
        stats: the RMS statistics the "rms" rule needs (``dynamic.gradient_stats``).
        stats_sha256: their digest, recorded so the decoder can check its own copy.
        weights_dtype: "float32" or "bfloat16": the step function's recurrent weights.
        threads: torch threads of the step (recorded for the decoder); None: 1 mixed, else 2.
        adapt: adapt the head and mix in a match model while coding (adaptive.py), or None.
        on_progress: called now and then with (symbols coded, symbols in all).
        tables: with ``adapt``, context tables to mix in (contextmix.py; the CLI's default is
            the run's own), or None.

    Returns:
        The ``.rz`` file's bytes (``compress_file`` writes them to a file in bounded memory).

    Raises:
        UnknownCharacterError: characters outside the vocabulary (all listed).
        UsageError: not UTF-8 for a char-mode model.
    """
    how = Settings(segments, dynamic, stats, stats_sha256, weights_dtype, threads, adapt, tables)
    _check_settings(segments, threads, weights_dtype)
    ids = symbols(data, vocab)
    digest = original_digest(data)
    header, payload = _encode(ids, len(data), digest, model, vocab, how, on_progress)
    return assemble(header, payload.astype("<u4").tobytes())


def compress_file(
    src: Path,
    out: Path,
    model: CharLM,
    vocab: Vocab,
    how: Settings = Settings(),
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Header, int]:
    """``compress`` of the file ``src`` into the file ``out``, in memory that does not grow with
    the file (but for the coder's own buffer of the compressed words, the output's size).

    The input is read a piece at a time into ids in a scratch file beside ``out`` (mapped, so
    the OS pages them in and out), coded from there, and the ``.rz`` file is written to a
    temporary file renamed onto ``out`` at the end (``files.atomic_stream``: a device or a
    FIFO is written through, a symlink kept).

    Returns:
        (the header written, the size of ``out`` in bytes).

    Raises:
        As ``compress``; and UsageError where ``src`` is not a regular file.
    """
    _check_settings(how.segments, how.threads, how.weights_dtype)
    dtype = np.dtype(token_dtype(len(vocab)))
    h, nbytes = hashlib.sha256(), 0
    with files.open_regular(src, 4 * MAX_LENGTH) as f, files.scratch_file(out) as scratch:

        def chunks() -> Iterator[bytes]:
            nonlocal nbytes
            while chunk := f.read(PIECE_BYTES):
                h.update(chunk)
                nbytes += len(chunk)
                yield chunk

        n = 0
        for piece in symbol_pieces(chunks(), vocab):
            scratch.write(piece.astype(dtype).tobytes())
            n += len(piece)
        scratch.flush()

        def mapped(size: int) -> np.ndarray:
            if size * dtype.itemsize > os.fstat(scratch.fileno()).st_size:
                scratch.truncate(size * dtype.itemsize)  # the last segments' padding: zeros
            return np.memmap(scratch, dtype=dtype, mode="r+", shape=(size,))

        ids = mapped(n) if n else np.zeros(0, dtype=dtype)
        digest = h.hexdigest()[:16]  # original_digest
        header, payload = _encode(ids, nbytes, digest, model, vocab, how, on_progress, mapped)
        del ids
    with files.atomic_stream(out) as f:
        size = write_rz(f, header, payload)
    return header, size


def _decode(
    blob: bytes,
    model: CharLM,
    vocab: Vocab,
    stats: dict[str, torch.Tensor] | None,
    stats_sha256: str | None,
    on_progress: Callable[[int, int], None] | None,
    grid_of: Callable[[int, int], np.ndarray],
    tables: ContextTables | None = None,
) -> tuple[Header, np.ndarray]:
    """The header and the decoded (S, L) grid of ids (row s: segment s), in the array that
    ``grid_of(S, L)`` gives; nothing of the claimed length is allocated before the payload is
    known to be able to hold it, and decoding stops as soon as the payload runs out short of
    the claim."""
    constriction = _constriction()
    header, payload = read_header(blob)
    with pinned_threads(header.threads):
        m = prepare(model)
        check_model(header, m, vocab)
        if (
            header.dynamic is not None
            and short_digest(stats_sha256) != header.dynamic["stats_sha256"]
        ):
            raise CompressedFileError(
                "the file was compressed with --dynamic and statistics this run does not have; "
                "decompress it with the same run directory"
            )
        check_tables(header, tables)
        dynamic = DynamicConfig.from_dict(header.dynamic) if header.dynamic is not None else None
        n, S, L, bits = header.length, header.segments, header.segment_len, header.precision_bits
        if n > most_symbols(payload.nbytes, len(vocab), bits):
            raise overclaim(n, f"more than its {payload.nbytes:,}-byte payload can hold")
        if segment_layout(n, S) != (S, L):
            raise CompressedFileError("the compressed file's header is invalid (segments)")
        probe = probe_digest(m, S, bits, header.weights_dtype)
        if header.probe_sha256 != probe[:16]:
            raise CompressedFileError(
                "this machine computes the model's probabilities differently from the one "
                f"that compressed the file (torch {header.versions.get('torch')} there, "
                f"{torch.__version__} here, or another CPU); decompress it where it was compressed"
            )
        grid = grid_of(S, L)  # row s: segment s
        try:
            decoder = constriction.stream.queue.RangeDecoder(payload)
        except Exception:
            raise CompressedFileError("the compressed file's payload is corrupt") from None
        family = constriction.stream.model.Categorical(perfect=False)
        stepper = Stepper(
            m, S, bits, header.weights_dtype, dynamic, stats, header.adapt, L,
            grid.reshape(-1) if header.adapt else None, tables if header.mix else None,
        )  # fmt: skip
        total = float(1 << bits)
        # what the coder's state still holds once the last word is read (see TAIL_BYTES)
        tail = most_symbols(TAIL_BYTES, len(vocab), bits)
        done, every = 0, max(1, L // 200)
        for t in range(L if n else 0):
            freq = stepper.first() if t == 0 else stepper.next(grid[:, t - 1])
            a = active_segments(n, S, L, t)
            try:
                grid[:a, t] = decoder.decode(family, freq[:a] / total)
            except Exception:
                raise CompressedFileError("the compressed file's payload is corrupt") from None
            stepper.observed(grid[:, t], a)
            done += a
            if n - done > tail and decoder.maybe_exhausted():
                raise overclaim(n, f"but its payload ran out after {done:,}")
            if on_progress is not None and (t % every == 0 or t == L - 1):
                on_progress(done, n)
    return header, grid


def _verified(header: Header, ids: np.ndarray, vocab: Vocab) -> None:
    """Refuse decoded ``ids`` whose bytes are not the original's (length and SHA-256)."""
    h, nbytes = hashlib.sha256(), 0
    for piece in byte_pieces(ids, vocab):
        h.update(piece)
        nbytes += len(piece)
    if nbytes != header.original_bytes or h.hexdigest()[:16] != header.original_sha256:
        raise CompressedFileError(
            "decoding did not reproduce the original (checksum mismatch): this machine or "
            "library differs from the one that compressed it; nothing was written"
        )


def decompress(
    blob: bytes,
    model: CharLM,
    vocab: Vocab,
    stats: dict[str, torch.Tensor] | None = None,
    stats_sha256: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    tables: ContextTables | None = None,
) -> bytes:
    """The original bytes of a ``.rz`` file, checked against its SHA-256; ``on_progress`` is
    called now and then with (symbols decoded, symbols in all); ``tables``: the run's context
    tables, for a file coded with them. ``decompress_file`` writes
    them to a file in memory that does not grow with the original.

    Raises:
        CompressedFileError: truncated, corrupt, another version, another model, settings this
            machine cannot reproduce, or a decoded result whose checksum differs.
    """
    dtype = token_dtype(len(vocab))
    header, grid = _decode(
        blob, model, vocab, stats, stats_sha256, on_progress,
        lambda S, L: np.zeros((S, L), dtype=dtype), tables,
    )  # fmt: skip
    ids = grid.reshape(-1)[: header.length]
    _verified(header, ids, vocab)
    return unsymbols(ids, vocab)


def decompress_file(
    blob: bytes,
    out: Path,
    model: CharLM,
    vocab: Vocab,
    stats: dict[str, torch.Tensor] | None = None,
    stats_sha256: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    tables: ContextTables | None = None,
) -> int:
    """``decompress`` into the file ``out``; returns the bytes written.

    The decoded ids go to a scratch file beside ``out`` (mapped: memory stays bounded
    whatever the header claims), are checked against the original's SHA-256, and only then
    written, to a temporary file renamed onto ``out`` (``files.atomic_stream``: a device or a
    FIFO is written through, a symlink kept). On any error nothing is written.

    Raises:
        CompressedFileError: as ``decompress``.
    """
    dtype = np.dtype(token_dtype(len(vocab)))
    with files.scratch_file(out) as scratch:

        def mapped(S: int, L: int) -> np.ndarray:
            return np.memmap(scratch, dtype=dtype, mode="w+", shape=(S, L))

        header, grid = _decode(blob, model, vocab, stats, stats_sha256, on_progress, mapped, tables)
        ids = grid.reshape(-1)[: header.length]
        _verified(header, ids, vocab)
        written = 0
        with files.atomic_stream(out) as f:
            for piece in byte_pieces(ids, vocab):
                f.write(piece)
                written += len(piece)
        del ids, grid
    return written


def check_model(header: Header, model: CharLM, vocab: Vocab) -> None:
    """Refuse a file compressed with other weights or another vocabulary."""
    if header.model_sha256 != model_digest(model, vocab)[:32]:
        raise CompressedFileError(
            "the file was compressed with another model (weights differ); "
            "decompress it with the run that compressed it"
        )
