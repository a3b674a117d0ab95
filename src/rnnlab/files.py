"""Files written so that a reader, or a process killed at any instant, sees the old file or the
new one and never half of one: atomic bytes, JSON and PNG writes, and bounded reads of files
that must be regular. Every layer writes through here. Stdlib only (matplotlib when a PNG is
written).
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import UsageError

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # errors of the machine's state, not the path
_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_target(path: Path) -> Path:
    """Where a write to ``path`` lands: the file a symlink points to (through every link, even
    a dangling one), else ``path`` itself."""
    return Path(os.path.realpath(path))


def is_special(path: Path) -> bool:
    """``path`` exists and is a device, a FIFO or a socket: something a write goes through to,
    never a file to replace."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path``. On any error (disk full, file-size limit) the temporary file is
    removed and ``path`` is untouched. A symlink is kept: the file it points to is the one
    replaced. A device or a FIFO (``/dev/null``, a pipe's reader) is never replaced by a
    regular file: the bytes are written straight to it.

    Raises:
        OSError: the disk or a quota is full, or a file-size limit was hit (``FULL``), naming
            ``path``: callers say what was kept.
        UsageError: any other reason it cannot be written (a read-only file system, a folder
            like /proc that takes no new file), in one line naming ``path``.
    """
    with atomic_stream(path) as f:
        f.write(data)


@contextmanager
def atomic_stream(path: Path) -> Iterator[BinaryIO]:
    """``atomic_write`` for bytes written a piece at a time: the file object yielded writes to
    a temporary file beside ``path``, renamed over it only when the block ends without an
    error (any error removes it and leaves ``path`` untouched). A device or FIFO is written
    through. The block should only write: an OSError raised in it is reported as one of
    writing ``path`` (see ``atomic_write`` for the errors)."""
    target = output_target(path)
    try:
        if is_special(target):
            with os.fdopen(os.open(target, os.O_WRONLY), "wb") as f:
                yield f  # written as a shell's ``>`` would: nothing created or truncated
        else:
            with atomic_file(target) as f:
                yield f
    except OSError as e:
        if e.errno in FULL:
            e.filename = str(path)  # the user's name for it, not the temporary file's
            raise
        raise UsageError(f"cannot write {path} ({e.strerror})") from None


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to stream into that replaces ``path`` only when the block ends cleanly.

    The bytes go to a temporary file in ``path``'s folder; on a clean exit it is flushed to
    disk and renamed over ``path``. If the block raises (a checksum that does not match, a disk
    that fills), the temporary file is removed and ``path`` is untouched. Unlike
    ``atomic_stream``, ``path`` is replaced as named (no symlink or device handling) and
    OSErrors pass through unchanged: for caches a program writes for itself.

    Example:
        >>> with atomic_file(Path("ids.bin")) as f:  # doctest: +SKIP
        ...     for piece in pieces:
        ...         f.write(piece)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def scratch_file(beside: Path) -> BinaryIO:
    """An unnamed temporary file for work data, in the folder ``beside`` lands in when that is
    a writable folder (its disk, not a RAM-backed /tmp), else the system's temporary folder;
    it disappears when closed or when the process dies."""
    folder = output_target(beside).parent
    if not is_special(output_target(beside)) and os.access(folder, os.W_OK | os.X_OK):
        try:
            return tempfile.TemporaryFile(dir=folder)
        except OSError:
            pass
    return tempfile.TemporaryFile()


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON, atomically."""
    atomic_write(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def save_png(fig: Any, path: Path) -> Path:
    """A matplotlib Figure as a PNG, atomically; returns ``path``."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    A symlink to a device, a FIFO or a huge file is refused before anything is read, so an
    untrusted run directory cannot hang or exhaust memory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UsageError: not a regular file, or larger than ``max_bytes``.
    """
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{path} grew past {max_bytes:,} bytes while being read")
    return data


def open_regular(path: Path, max_bytes: int) -> BinaryIO:
    """``path`` opened for reading, after the checks of ``read_regular`` (a regular file of at
    most ``max_bytes``), for a caller that reads it a piece at a time.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UsageError: not a regular file, or larger than ``max_bytes``.
    """
    path = Path(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path} is not a regular file; replace it with the run's own file")
        if info.st_size > max_bytes:
            raise UsageError(
                f"{path} is {info.st_size:,} bytes, more than the {max_bytes:,} allowed; "
                "is it the run's own file?"
            )
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def check_writable(
    path: Path, what: str = "-o", *, force: bool = True, keep_out: Sequence[Path] = ()
) -> Path:
    """Fail now, not after a long computation, if ``path`` cannot be written as a file.

    Checked where the bytes would land (``output_target``: through symlinks). A device or a
    FIFO is always writable this way (``atomic_write`` writes through to it).

    Args:
        path: the output file.
        what: the flag that named it, for the message.
        force: overwrite an existing regular file; False refuses it (as gzip, xz and zstd do).
        keep_out: folders no output may land in (the run directories a command reads).

    Raises:
        UsageError: its folder is missing or not writable, ``path`` is a folder, it lands in
            one of ``keep_out``, or it exists and ``force`` is False.
    """
    path = Path(path)
    target = output_target(path)
    if target.is_dir():
        raise UsageError(f"{what} {path} is a folder; give a file name")
    for folder in keep_out:
        if target.is_relative_to(output_target(folder)):
            raise UsageError(
                f"{what} {path} is inside the run directory {folder} being read; write elsewhere"
            )
    if is_special(target):
        return path
    parent = target.parent
    if not path.is_symlink():  # name the folder as the user wrote it
        parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: the folder {parent} is not writable")
    if target.exists():
        if not force:
            raise UsageError(f"{what} {path} already exists; add --force (-f) to overwrite it")
        if not os.access(target, os.W_OK):
            raise UsageError(f"{what} {path} exists and is not writable")
    return path


def check_writable_dir(path: Path, what: str = "--out") -> Path:
    """Fail now if ``path`` cannot be a folder to write in: it must be a folder, or not exist
    yet under a writable folder.

    Raises:
        UsageError: ``path`` is a file, or its nearest existing ancestor is not a writable folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file; give a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: the folder {existing} is not writable")
    return path
