"""Corpora: named corpora, files and folders -> a deterministic stream of text pieces.

Named corpora are either built from this machine (``python``: the standard library source) or
downloaded once, sha256-verified and cached. Imports only errors and files from rnnlab.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .files import atomic_file

FILE_SEPARATOR = "\n\n"  # joins the files of a folder corpus
READ_CHUNK_BYTES = 1 << 22  # files are read in pieces of this size, never whole
_TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


class CorpusError(UsageError):
    """The corpus cannot be used as given; the message says what to do."""


@dataclass(frozen=True)
class NamedCorpus:
    name: str
    description: str
    url: str | None = None  # None: built from this machine, no network
    sha256: str | None = None
    filename: str | None = None


NAMED = {
    "python": NamedCorpus(
        "python",
        "the .py sources of this Python's standard library, test suites excluded (offline)",
    ),
    "shakespeare": NamedCorpus(
        "shakespeare",
        "tiny Shakespeare, 1,115,394 bytes, from karpathy/char-rnn (downloaded once)",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
    ),
}


def cache_dir() -> Path:
    """Where downloads and encoded token files live: $XDG_CACHE_HOME/rnnlab or ~/.cache/rnnlab."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnlab"


@dataclass(frozen=True)
class Corpus:
    """A resolved corpus: the files to read, in order, and how to name it."""

    name: str
    files: tuple[Path, ...]

    @property
    def num_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def fingerprint(self) -> str:
        """Cheap identity of the inputs (paths, sizes, mtimes), for the token-file cache key."""
        h = hashlib.sha256()
        for f in self.files:
            st = f.stat()
            h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


def python_stdlib_files() -> tuple[Path, ...]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = (p for p in root.rglob("*.py") if not _TEST_DIRS & set(p.relative_to(root).parts[:-1]))
    return tuple(sorted(files))


def resolve(source: str | None, glob: str | None = None) -> Corpus:
    """Turn what the user typed into a Corpus.

    Args:
        source: a named corpus (see ``NAMED``), a file, or a folder; None means ``python``.
        glob: for a folder, only files matching this pattern (searched recursively).

    Returns:
        The Corpus, files in a deterministic (sorted) order.
    """
    source = source or "python"
    path = Path(source).expanduser()
    if path.is_file():
        if glob:
            raise CorpusError(f"--glob applies to folders, but {source} is a file; drop --glob")
        return Corpus(path.stem, (path,))
    if path.is_dir():
        pattern = glob or "*"
        files = sorted(p for p in path.rglob(pattern) if p.is_file() and not _hidden(p, path))
        if not files:
            raise CorpusError(f"no files match {pattern!r} under {source}; check the --glob")
        return Corpus(path.resolve().name, tuple(files))
    if source in NAMED:
        if source == "python":
            return Corpus("python", python_stdlib_files())
        return Corpus(source, (fetch(NAMED[source]),))
    names = ", ".join(NAMED)
    raise CorpusError(f"{source}: no such file or folder, and not a named corpus ({names})")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def iter_text(corpus: Corpus) -> Iterator[str]:
    """Yield the corpus as text pieces, files joined by FILE_SEPARATOR, reading at most
    READ_CHUNK_BYTES at a time. Invalid UTF-8 raises CorpusError pointing to --bytes."""
    for n, f in enumerate(corpus.files):
        if n:
            yield FILE_SEPARATOR
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        offset = 0
        with open(f, "rb") as fh:
            while True:
                raw = fh.read(READ_CHUNK_BYTES)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise CorpusError(
                        f"{f} is not valid UTF-8 (byte {offset + e.start}); "
                        "train on raw bytes with --bytes"
                    ) from None
                if "\x00" in text:
                    raise CorpusError(
                        f"{f} looks binary (it holds NUL bytes); "
                        "pass text files, or --bytes to model raw bytes"
                    )
                if text:
                    yield text
                if not raw:
                    break
                offset += len(raw)


def iter_bytes(corpus: Corpus) -> Iterator[bytes]:
    """Yield the corpus as raw byte pieces (byte mode), files joined by FILE_SEPARATOR."""
    for n, f in enumerate(corpus.files):
        if n:
            yield FILE_SEPARATOR.encode()
        with open(f, "rb") as fh:
            while raw := fh.read(READ_CHUNK_BYTES):
                yield raw


def fetch(named: NamedCorpus) -> Path:
    """The cached file of a downloadable named corpus, downloading it the first time."""
    assert named.url and named.sha256 and named.filename
    dest = cache_dir() / "corpora" / named.filename
    if dest.is_file():
        return dest
    try:
        return download(named.url, dest, named.sha256)
    except OSError as e:
        raise CorpusError(
            f"could not download the {named.name!r} corpus ({e}); if you are offline, "
            f"get the file another way and pass its path: rnnlab train path/to/{named.filename}"
        ) from None


def download(url: str, dest: Path, sha256: str, timeout_s: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, keeping it only if its sha256 matches.

    Raises:
        CorpusError: the checksum does not match (nothing is written).
        OSError: the network failed (urllib.error.URLError is an OSError).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with atomic_file(dest) as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
        while block := resp.read(1 << 16):
            h.update(block)
            out.write(block)
        if h.hexdigest() != sha256:
            raise CorpusError(
                f"download of {url} has sha256 {h.hexdigest()}, expected {sha256}; "
                "the file changed or was corrupted, so it was not kept"
            )
    return dest


def describe() -> list[tuple[str, str, str]]:
    """(name, description, where it is) for each named corpus, for ``rnnlab corpora``."""
    rows = []
    for c in NAMED.values():
        if c.url is None:
            where = str(Path(sysconfig.get_paths()["stdlib"]))
        else:
            path = cache_dir() / "corpora" / (c.filename or c.name)
            where = str(path) if path.is_file() else f"not downloaded yet (-> {path})"
        rows.append((c.name, c.description, where))
    return rows
