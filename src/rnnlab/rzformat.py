"""The ``.rz`` container: its header, its checksum, and a writer that streams the payload to a
file; what the coder (compression.py) writes and reads, without the coder. Imports errors,
config, data, adaptive and dynamic from rnnlab; no torch.

Layout of a ``.rz`` file (format 3 on; FORMAT_VERSION's comment lists what each changed)::

    b"RNNLABZ\\0" | fixed fields: version, mode, precision, threads, weights dtype, segments,
    length, original bytes, SHA-256 of the original (first 8 bytes), SHA-256 of the model,
    probe digest | versions ("rnnlab torch constriction") | adaptation settings (adaptive.py;
    a marker byte of the mixing and the head's rule: 11 bytes, 19 mixed, or 1 when off) |
    dynamic-evaluation settings (22 bytes, or 1 when off) | payload (u32 words) | 4-byte
    SHA-256 of everything before it

The checksum catches corruption, not forgery: anyone can recompute it, so every field is
still checked against what the payload can hold (``most_symbols``) before anything of the
claimed size is allocated, and the decoder refuses a claim the payload runs out before.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import itertools
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np

from .adaptive import AdaptConfig
from .config import __version__
from .contextmix import ContextTables
from .data import stream_layout, token_dtype
from .dynamic import RULES, DynamicConfig
from .errors import UsageError
from .vocab import Vocab, unknown_characters

MAGIC = b"RNNLABZ\0"
# 3: the adaptation settings (format 2 had none); 4: mixed with the second context-table format
# (nonstationary counts, local tables, two mixers); 5: mixed with the third (line contexts, four
# mixers); 6: mixed with the fourth (a check byte per row, two rows per context); 7: mixed with
# the fifth (the match model of the training text); 8: the mixers' sums in another order (the
# tables' terms first, the network's last); 9: with the sixth (the network as trained, a second
# input); 10: with the seventh (the symbol tree by classes and counts; each segment's first
# symbol at the training text's frequencies); 11: with the eighth (a second input per table,
# where its context is deterministic); 12: the head's rule in the adaptation's marker (1, 2:
# sgd, all a file before 12 can hold; 3, 4: rms). A file of format 3 to 11 that was not mixed
# reads the same in format 12, as does one of format 11 that was; one mixed before 11 needs the
# rnnlab that wrote it.
FORMAT_VERSION = 12
READS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
MIXED_READS = (11, 12)  # the formats whose mixed files this rnnlab still computes
RULE_SINCE = 12  # the first format whose adaptation may use another head rule than sgd
MAX_THREADS = 256
MAX_SEGMENTS = 1 << 16  # the batch the decoder will allocate: bounded for untrusted files
MAX_LENGTH = 1 << 40  # symbols; a header claiming more is corrupt
PIECE_BYTES = 1 << 20  # the text is decoded and encoded in pieces of this many bytes / symbols


class CompressedFileError(UsageError):
    """A compressed file is truncated, corrupt, of another version, or of another model."""


def segment_layout(length: int, segments: int) -> tuple[int, int]:
    """(segments actually used, symbols per segment): data.stream_layout, S pieces of
    L = ceil(n / S) symbols, the last ones shorter; no segment is empty."""
    return stream_layout(length, segments)


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
DTYPES = ("float32", "bfloat16")  # the weights of the step function (compression.py)


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
    mix: str | None = None  # with adapt: the context tables' SHA-256 (16 hex digits) mixed in

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
            marker = (1 if self.mix is None else 2) + (2 if a.head_rule == "rms" else 0)
            adapt = bytes([marker]) + _ADAPT.pack(
                a.head_lr, a.confidence_bin, a.match_len, a.match_long
            )
            adapt += bytes.fromhex(self.mix) if self.mix is not None else b""
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


def read_header(blob: bytes) -> tuple[Header, np.ndarray]:
    """The header and payload of a ``.rz`` file, after checking its magic, version and
    integrity (a trailing checksum over everything before it).

    Raises:
        CompressedFileError: not an rnnlab file, truncated, corrupt, or another format version.
    """
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise CompressedFileError("not an rnnlab compressed file (bad magic number)")
    start = len(MAGIC)
    if len(blob) > start and blob[start] not in READS:
        raise CompressedFileError(
            f"the compressed file has format version {blob[start]}; this rnnlab "
            f"({__version__}) reads versions {' and '.join(map(str, READS))}: decompress it with "
            "the rnnlab that wrote it"
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
        adapt, mix = None, None
        # 1: adapted, 2: adapted and mixed with context tables; 3 and 4 the same by the rms rule
        marker = body[at]
        if marker not in (0, 1, 2, 3, 4) or (marker > 2 and version < RULE_SINCE):
            raise CompressedFileError("the compressed file's header is corrupt")
        if marker:
            lr, conf, match_len, match_long = _ADAPT.unpack_from(body, at + 1)
            try:
                adapt = AdaptConfig(
                    head_lr=lr,
                    head_rule="rms" if marker > 2 else "sgd",
                    match_len=match_len,
                    match_long=match_long,
                    confidence_bin=conf,
                )
            except UsageError:
                raise ValueError("adaptation settings") from None
            if marker in (2, 4):
                mix = body[at + 1 + _ADAPT.size : at + 9 + _ADAPT.size].hex()
                at += 8
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
            mix,
        )
    except (ValueError, TypeError, KeyError, IndexError, struct.error, RecursionError):
        raise CompressedFileError("the compressed file's header is corrupt") from None
    if version not in MIXED_READS and mix is not None:
        raise CompressedFileError(
            f"the compressed file was mixed with an earlier format of context tables, which this "
            f"rnnlab ({__version__}) no longer computes: decompress it with the rnnlab that wrote "
            f"it ({header.versions['rnnlab']}) and its run's tables"
        )
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
        and (h.mix is None or len(h.mix) == 16)
    )
    if not ok:
        raise CompressedFileError("the compressed file's header is invalid")


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


def assemble(header: Header, payload: bytes) -> bytes:
    """The bytes of a ``.rz`` file: magic, header, payload and checksum."""
    body = MAGIC + header.to_bytes() + payload
    return body + hashlib.sha256(body).digest()[:CHECKSUM_BYTES]


def write_rz(f: BinaryIO, header: Header, payload: np.ndarray) -> int:
    """Write a ``.rz`` file to ``f`` (``assemble``'s bytes) without a copy of the payload: its
    (W,) uint32 words go out in pieces, hashed on the way. Returns the bytes written."""
    h = hashlib.sha256()
    head = MAGIC + header.to_bytes()
    h.update(head)
    f.write(head)
    words = np.asarray(payload, dtype="<u4")
    piece = 1 << 18  # words (1 MiB) at a time
    for start in range(0, len(words), piece):
        chunk = memoryview(np.ascontiguousarray(words[start : start + piece])).cast("B")
        h.update(chunk)
        f.write(chunk)
    f.write(h.digest()[:CHECKSUM_BYTES])
    return len(head) + 4 * len(words) + CHECKSUM_BYTES


# --- the symbols: the original's bytes <-> ids -------------------------------------------


def symbol_pieces(chunks: Iterable[bytes], vocab: Vocab) -> Iterator[np.ndarray]:
    """The ids of the bytes in ``chunks``, a piece at a time, in the smallest unsigned dtype
    that holds them: no Python object per character (data.py encodes the same way).

    Raises:
        UnknownCharacterError: characters outside the vocabulary (all listed, at the end).
        UsageError: not UTF-8 for a char-mode model.
    """
    dtype = token_dtype(len(vocab))
    char = vocab.mode == "char"
    points = np.array(vocab.code_points() if char else [], dtype=np.uint32)  # sorted: id = rank
    decoder = codecs.getincrementaldecoder("utf-8")()
    missing: set[str] = set()
    start = 0
    for chunk in itertools.chain(chunks, [None]):
        if not char:
            if chunk:
                yield np.frombuffer(chunk, dtype=np.uint8)
            continue
        try:  # None: the end, where a character cut short is an error
            text = decoder.decode(chunk or b"", chunk is None)
        except UnicodeDecodeError as e:
            raise UsageError(
                f"the file is not UTF-8 text (byte {max(0, start + e.start)}); compress it with "
                "a byte-mode run (rnnlab train --bytes)"
            ) from None
        start += len(chunk or b"")
        missing.update(vocab.unknown(text))
        if not missing and text:
            cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            yield np.searchsorted(points, cps).astype(dtype)
    if missing:  # lossless: nothing can be skipped, so the hint is another run, not --unknown
        e = unknown_characters(missing)
        raise type(e)(
            str(e).replace(
                "remove them or pass --unknown skip to drop them",
                "remove them, or compress with a byte-mode run (rnnlab train --bytes)",
            )
        )


def symbols(data: bytes, vocab: Vocab) -> np.ndarray:
    """(n,) the ids of ``data`` (``_symbol_pieces`` of it, joined)."""
    chunks = (data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES))
    pieces = list(symbol_pieces(chunks, vocab))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=token_dtype(len(vocab)))


def byte_pieces(ids: np.ndarray, vocab: Vocab) -> Iterator[bytes]:
    """The bytes of (n,) ids, a piece at a time (``_symbol_pieces`` reversed)."""
    char = vocab.mode == "char"
    points = np.array(vocab.code_points() if char else [], dtype="<u4")
    for start in range(0, len(ids), PIECE_BYTES):
        piece = np.asarray(ids[start : start + PIECE_BYTES])
        if not char:
            yield piece.astype(np.uint8).tobytes()
        else:
            yield points[piece].tobytes().decode("utf-32-le").encode()


def unsymbols(ids: np.ndarray, vocab: Vocab) -> bytes:
    return b"".join(byte_pieces(ids, vocab))


def dynamic_field(dynamic: DynamicConfig | None, stats_sha256: str | None) -> dict | None:
    """The header's dynamic settings: the floats as float32 (what the header stores, and so what
    both directions use), the statistics' digest to 8 bytes."""
    if dynamic is None:
        return None
    f32 = {k: float(np.float32(getattr(dynamic, k))) for k in ("learning_rate", "decay")}
    return {**asdict(dynamic), **f32, "stats_sha256": short_digest(stats_sha256)}


def short_digest(stats_sha256: str | None) -> str | None:
    return stats_sha256[:16] if stats_sha256 else None


def package_version(package: str) -> str:
    """The installed version of ``package`` (for the header's versions), or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def check_tables(header: Header, tables: ContextTables | None) -> None:
    """Refuse a file mixed with context tables other than ``tables`` (or with none here)."""
    if header.mix is None:
        return
    if tables is None:
        raise CompressedFileError(
            "the file was compressed with the run's context tables (contexts.safetensors), "
            "which this run directory does not have; decompress it with the run that "
            "compressed it"
        )
    if tables.sha256()[:16] != header.mix:
        raise CompressedFileError(
            "the file was compressed with other context tables than this run's "
            "contexts.safetensors; decompress it with the run that compressed it"
        )


def overclaim(n: int, what: str) -> CompressedFileError:
    return CompressedFileError(
        f"the compressed file is corrupt: its header claims {n:,} symbols, {what}; use a good copy"
    )


def active_segments(n: int, S: int, L: int, t: int) -> int:
    """How many segments (a prefix) reach position t (data.stream_active's, one at a time: no
    list of the claimed length is made)."""
    return min(S, max(0, -(-(n - t) // L)))


def segment_column(ids: np.ndarray, starts: np.ndarray, t: int, active: int) -> np.ndarray:
    """(S,) int64: symbol t of each segment (segment s is ids[s * L : (s + 1) * L]); 0 where a
    segment is shorter. Read from ``ids`` in place, so no (S, L) copy of the text is made."""
    column = np.zeros(len(starts), dtype=np.int64)
    column[:active] = ids[starts[:active] + t]
    return column
