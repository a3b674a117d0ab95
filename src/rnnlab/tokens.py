"""Texts as token ids: a run's corpus encoded once into its cached token file (checked against
the sha256 the run recorded), and any other text encoded with a run's vocabulary into a memory
map, a piece at a time. Imports corpus, data and vocab; never model, checkpoint or training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from .config import CorpusConfig
from .corpus import CorpusError, cache_dir, iter_bytes, iter_text, resolve
from .data import TokenFile, encode, encode_with, split
from .errors import UsageError
from .vocab import Vocab


class Ranks(Protocol):
    """What ``load_tokens`` needs of a torchrun job: which process on this machine, and a
    barrier (training.Ranks is one)."""

    local_rank: int

    def barrier(self) -> None: ...


def load_tokens(
    corpus: CorpusConfig, expect_sha256: str | None = None, ranks: Ranks | None = None
) -> TokenFile:
    """Encode the corpus (or reuse its cached token file), checking it is the one expected.
    Under torchrun the first process of each machine encodes while the others wait, then all
    memory-map the same file.

    Raises:
        CorpusError: the corpus is missing or unreadable, or changed since ``expect_sha256``.
    """
    local_rank = ranks.local_rank if ranks is not None else 0
    files = resolve(corpus.source, corpus.glob)
    read = iter_bytes if corpus.byte_mode else iter_text

    def tokens_file() -> TokenFile:
        key = files.fingerprint()
        return encode(lambda: read(files), corpus.byte_mode, key, cache_dir() / "tokens")

    error = None
    if local_rank == 0:
        try:
            tokens = tokens_file()
        except Exception as e:  # the others meet the same error on their own below
            error = e
    if ranks is not None:
        ranks.barrier()
    if error is not None:
        raise error
    if local_rank != 0:
        tokens = tokens_file()  # a cache hit
    if expect_sha256 and tokens.sha256 != expect_sha256:
        raise CorpusError(
            f"the corpus {corpus.source!r} changed since this run started (sha256 differs); "
            "restore it, or start a new run"
        )
    return tokens


def corpus_splits(
    corpus: CorpusConfig, val_fraction: float, hint: str
) -> tuple[np.ndarray, np.ndarray]:
    """The (training, validation) ids of a run's corpus, memory-mapped.

    Args:
        corpus, val_fraction: from the run's config.json.
        hint: the command to suggest when the corpus is not on this machine.
    """
    try:
        tokens = load_tokens(corpus, corpus.sha256)
    except CorpusError as e:
        raise CorpusError(f"the run's corpus is not available here ({e}); {hint}") from None
    return split(tokens.open(), val_fraction)


def _first(pieces: Iterable[str] | Iterable[bytes], limit: int | None) -> Iterator:
    """The pieces, cut after ``limit`` characters (bytes in byte mode) in total."""
    left = limit
    for piece in pieces:
        if left is not None:
            piece = piece[:left]
            left -= len(piece)
        if piece:
            yield piece
        if left is not None and left <= 0:
            return


def encode_text(
    vocab: Vocab,
    text_or_path: str | Path,
    scratch: Path,
    unknown: str = "error",
    limit: int | None = None,
) -> tuple[np.ndarray, str]:
    """A text as ids of ``vocab``, streamed into ``scratch/ids.bin`` and memory-mapped, so a
    file larger than memory works.

    Args:
        vocab: the run's vocabulary.
        text_or_path: a ``Path`` is a file to read (UTF-8, or any bytes in byte mode); a ``str``
            is the text itself.
        scratch: a folder the caller owns (e.g. a temporary directory).
        unknown: characters outside the vocabulary: "error" (list them) or "skip".
        limit: read at most this many characters (bytes in byte mode) from the start.

    Returns:
        (ids (N,), a name for the text: the path, or "the given text").
    """
    if isinstance(text_or_path, Path):
        path = text_or_path
        if not path.is_file():
            raise UsageError(f"{path}: no such file; give a text file")
        source = resolve(str(path))
        pieces = iter_bytes(source) if vocab.mode == "byte" else iter_text(source)
        name = str(path)
    else:
        pieces, name = [text_or_path], "the given text"
    try:
        ids = encode_with(vocab, _first(pieces, limit), Path(scratch) / "ids.bin", unknown)
    except CorpusError as e:  # not UTF-8, or binary
        raise UsageError(f"{str(e).split(';')[0]}; give a UTF-8 text file") from None
    return ids, name
