"""Token files and batches: a corpus is encoded once into a memory-mapped file of ids, split
90/10 (train head, validation tail) and read as B contiguous streams for truncated BPTT.

Imports only vocab and files (atomic_file) from rnnlab (the caller wires a corpus's text in);
never model or above.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UsageError
from .files import atomic_file, write_json
from .vocab import UNKNOWN_POLICIES, Vocab, unknown_characters

TOKEN_FORMAT = 1


class DataError(UsageError):
    """The text cannot be trained on as asked (empty, too short); the message says what to do."""


@dataclass(frozen=True)
class TokenFile:
    """An encoded corpus on disk: ids in the smallest unsigned dtype that holds the vocabulary."""

    path: Path
    vocab: Vocab
    num_tokens: int
    sha256: str  # of the UTF-8 text (char mode) or the raw bytes (byte mode)

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(len(self.vocab))

    def open(self) -> np.ndarray:
        """The ids as a read-only memory map: nothing is read until it is indexed."""
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))


def token_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def encode(
    pieces: Callable[[], Iterable[str] | Iterable[bytes]],
    byte_mode: bool,
    key: str,
    directory: Path,
) -> TokenFile:
    """Encode a text stream into a token file, once: a second call with the same key reuses it.

    Streams twice over ``pieces()`` (vocabulary, then ids), holding one piece at a time, so a
    corpus larger than memory encodes.

    Args:
        pieces: returns a fresh iterator over the text (str pieces; bytes in byte mode).
        byte_mode: ids are raw bytes (vocabulary of 256) instead of Unicode code points.
        key: identifies the inputs (e.g. paths, sizes and mtimes); names the cached file.
        directory: where token files are cached.

    Returns:
        The TokenFile, whose ``open()`` gives the memory-mapped ids.
    """
    directory = Path(directory)
    name = hashlib.sha256(
        f"{TOKEN_FORMAT}\0{'byte' if byte_mode else 'char'}\0{key}".encode()
    ).hexdigest()[:32]
    meta_path = directory / f"{name}.json"
    bin_path = directory / f"{name}.bin"
    if meta_path.is_file() and bin_path.is_file():
        meta = json.loads(meta_path.read_text())
        vocab = Vocab.from_json(meta["vocab"])
        tokens = TokenFile(bin_path, vocab, meta["num_tokens"], meta["sha256"])
        if bin_path.stat().st_size == tokens.num_tokens * tokens.dtype.itemsize:
            return tokens
    directory.mkdir(parents=True, exist_ok=True)

    # Pass 1: vocabulary, length and checksum.
    digest = hashlib.sha256()
    if byte_mode:
        vocab = Vocab.bytes()
        num_tokens = 0
        for raw in pieces():
            digest.update(raw)
            num_tokens += len(raw)
    else:
        seen: set[str] = set()
        num_tokens = 0
        for text in pieces():
            digest.update(text.encode("utf-8"))
            seen.update(text)
            num_tokens += len(text)
        vocab = Vocab.from_chars(seen)
    if num_tokens == 0:
        raise DataError("the corpus is empty; give it some text")

    # Pass 2: ids, written to a temporary file and renamed into place.
    dtype = token_dtype(len(vocab))
    with atomic_file(bin_path) as out:
        if byte_mode:
            for raw in pieces():
                out.write(raw)
        else:
            points = np.array(vocab.code_points(), dtype=np.uint32)
            for text in pieces():
                cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
                np.searchsorted(points, cps).astype(dtype).tofile(out)
    meta = {"vocab": vocab.to_json(), "num_tokens": num_tokens, "sha256": digest.hexdigest()}
    write_json(meta_path, meta)
    return TokenFile(bin_path, vocab, num_tokens, digest.hexdigest())


def encode_with(
    vocab: Vocab, pieces: Iterable[str] | Iterable[bytes], path: Path, unknown: str = "error"
) -> np.ndarray:
    """Encode a text stream with an existing vocabulary (an evaluation file) into ``path``, one
    piece at a time, and return the ids memory-mapped, so a file larger than memory evaluates.

    Args:
        vocab: the model's vocabulary.
        pieces: str pieces (bytes pieces are accepted in byte mode).
        path: where the ids go (the caller owns it, e.g. a temporary directory).
        unknown: "error" (raise UnknownCharacterError listing every unseen character) or
            "skip" (drop them).
    """
    if unknown not in UNKNOWN_POLICIES:
        raise UsageError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}")
    dtype = token_dtype(len(vocab))
    points = np.array(vocab.code_points() if vocab.mode == "char" else [0], dtype=np.uint32)
    order = np.argsort(points, kind="stable")  # a fine-tuned run's vocabulary is not sorted
    points = points[order]
    missing: set[str] = set()
    n = 0
    with open(path, "wb") as out:
        for piece in pieces:
            if vocab.mode == "byte":
                raw = piece.encode("utf-8") if isinstance(piece, str) else piece
                ids = np.frombuffer(raw, dtype=np.uint8)
            else:
                cps = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4")
                ids = np.searchsorted(points, cps).clip(max=len(points) - 1)
                known = points[ids] == cps
                if not known.all():
                    missing.update(chr(c) for c in np.unique(cps[~known]))
                    ids = ids[known]
                ids = order[ids]
            ids.astype(dtype).tofile(out)
            n += len(ids)
    if missing and unknown == "error":
        raise unknown_characters(missing)
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The first (1 - val_fraction) of the ids train, the rest validates (nanoGPT's split)."""
    n_train = int(len(ids) * (1.0 - val_fraction))
    return ids[:n_train], ids[n_train:]


class StreamBatches:
    """Truncated-BPTT batches over B contiguous streams.

    The training ids are cut into B streams of L ids each; step k reads the next T ids of every
    stream, so row b of step k+1 continues row b of step k and the recurrent state can be
    carried across steps (and detached, which is what makes the backprop "truncated")::

        stream 0: |--chunk 0--|--chunk 1--|--chunk 2--| ...
        stream 1: |--chunk 0--|--chunk 1--|--chunk 2--| ...
          ...        step 0      step 1      step 2

    Each epoch starts at a seeded random offset in [0, T), so chunk boundaries move between
    epochs. Everything follows from the step number, so a resumed run reads the same batches.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.stream_len = (len(ids) - 1) // batch_size
        self.steps_per_epoch = (self.stream_len - seq_len) // seq_len
        if self.steps_per_epoch < 1:
            raise DataError(too_short_message(len(ids), batch_size, seq_len))

    def offset(self, epoch: int) -> int:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return int(torch.randint(self.seq_len, (1,), generator=g)) if epoch else 0

    def starts_epoch(self, step: int) -> bool:
        """True when ``step`` begins a new epoch: the carried state must be reset."""
        return step % self.steps_per_epoch == 0

    def resets(self, step: int, probability: float) -> torch.Tensor:
        """(B,) bool: which streams restart from a zero state before ``step``, drawn from the step
        number alone (so resume repeats them). A model trained only on state carried from the
        start of an epoch can fall into a useless state when a text starts cold; occasional
        restarts teach it to recover."""
        g = torch.Generator().manual_seed(self.seed * 7_919 + step)
        return torch.rand(self.batch_size, generator=g) < probability

    def batch(self, step: int, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of a step, both (B, T) int64; ``rows`` picks a subset of streams."""
        epoch, chunk = divmod(step, self.steps_per_epoch)
        first = self.offset(epoch) + chunk * self.seq_len
        starts = np.arange(self.batch_size)[rows] * self.stream_len + first  # (B,)
        index = starts[:, None] + np.arange(self.seq_len + 1)[None, :]  # (B, T+1)
        window = torch.from_numpy(self.ids[index].astype(np.int64))
        return window[:, :-1], window[:, 1:]


def stream_layout(length: int, streams: int) -> tuple[int, int]:
    """(streams actually used, symbols per stream) of a text cut into contiguous pieces read side
    by side: S pieces of L = ceil(n / S) symbols, the last one shorter, none empty."""
    if length == 0:
        return 1, 1
    L = math.ceil(length / max(1, min(streams, length)))
    return math.ceil(length / L), L


def stream_active(length: int, streams: int) -> list[int]:
    """For each position t of the ``stream_layout``, how many streams (a prefix) reach it."""
    S, L = stream_layout(length, streams)
    return [min(S, max(0, math.ceil((length - t) / L))) for t in range(L)]


def stream_grid(ids: np.ndarray, streams: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` laid out by ``stream_layout`` as rows: (S, L) ids (0 past the end) and the (S, L)
    bool mask of real positions."""
    n = len(ids)
    S, L = stream_layout(n, streams)
    grid = np.zeros(S * L, dtype=np.int64)
    grid[:n] = np.asarray(ids)
    mask = np.zeros(S * L, dtype=bool)
    mask[:n] = True
    return grid.reshape(S, L), mask.reshape(S, L)


def too_short_message(num_train: int, batch_size: int, seq_len: int) -> str:
    """Name the largest settings that fit a training split of ``num_train`` ids."""
    fit_b = (num_train - 1) // (2 * seq_len)
    if fit_b >= 1:
        hint = f"use --batch-size {fit_b} or less (with --seq-len {seq_len})"
    else:
        fit_t = max(1, (num_train - 1) // 2)
        hint = f"use --batch-size 1 and --seq-len {fit_t} or less, or give more text"
    return (
        f"the corpus is too short: its training split has {num_train:,} characters, but "
        f"--batch-size {batch_size} x --seq-len {seq_len} needs at least "
        f"{batch_size * 2 * seq_len + 1:,}; {hint}"
    )
