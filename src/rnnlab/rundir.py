"""The run directory's files other than the weights: their names, config.json and vocab.json,
metrics.jsonl, baselines.json, the lock, and the test that no other command writes over them.
Every file is untrusted input: regular files only, bounded reads, validated types. Imports
errors, files, config and vocab from rnnlab; never model (the weights live in checkpoint.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import FORMAT, CorpusConfig, ModelConfig, TrainConfig, __version__, from_dict, to_dict
from .errors import UsageError
from .files import check_writable, output_target, read_regular, write_json
from .vocab import Vocab

CONFIG = "config.json"
VOCAB = "vocab.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
METRICS = "metrics.jsonl"
BASELINES = "baselines.json"  # written by `rnnlab eval` on the run's validation split
WEIGHTS = {"best": BEST, "last": LAST}  # the names --weights takes
LOCK = ".lock"
LEGACY_TRAIN_STATE = "train_state.pt"  # runs written before the one-file checkpoint
RUN_FILES = frozenset({CONFIG, VOCAB, BEST, LAST, METRICS, BASELINES, LOCK, LEGACY_TRAIN_STATE})

MAX_JSON_BYTES = 1 << 20  # config.json, vocab.json, baselines.json


class CheckpointError(UsageError):
    """A run directory is missing, incomplete or corrupt; the message says what to do."""


class MetricsWarning(UserWarning):
    """A line of metrics.jsonl was not a JSON object and was skipped."""


@dataclass(frozen=True)
class RunConfig:
    """Everything config.json holds."""

    model: ModelConfig
    train: TrainConfig
    corpus: CorpusConfig
    plan: dict[str, Any] | None = None  # what the training plan chose and from what (plan.py)


# --- what no other command may write ------------------------------------------------------------


def is_run_dir(folder: Path) -> bool:
    """``folder`` holds a run (or a run being started): its config and vocabulary or weights,
    or its lock. A folder that merely has a config.json of its own is not one."""
    folder = Path(folder)
    if (folder / LOCK).exists():
        return True
    return (folder / CONFIG).exists() and any((folder / n).exists() for n in (VOCAB, BEST, LAST))


def check_output(
    path: str | Path, what: str = "-o", *, reading: Sequence[Path] = (), force: bool = True
) -> Path:
    """The one test of an output path, before any work: never a file of a run directory (those
    belong to `rnnlab train`), nothing inside the runs being read, and the checks of
    ``files.check_writable`` (folder writable, an existing file only with ``force``), all made
    where the bytes would land, through symlinks.

    Raises:
        UsageError: one line naming ``what`` and the fix.
    """
    path = Path(path)
    target = output_target(path)
    if target.name in RUN_FILES and is_run_dir(target.parent):
        raise UsageError(
            f"{what} {path} is {target.name} of the run directory {target.parent}; only "
            "rnnlab train writes a run's files: give another name"
        )
    return check_writable(path, what, force=force, keep_out=reading)


# --- JSON files ---------------------------------------------------------------------------------


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A small JSON file of a run directory, read as untrusted input."""
    try:
        return json.loads(read_regular(path, max_bytes).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is this an rnnlab run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{path} is corrupt ({type(e).__name__}); the run cannot be read"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror})") from None


def save_config(run_dir: Path, config: RunConfig) -> None:
    write_json(
        Path(run_dir) / CONFIG,
        {
            "format": FORMAT,
            "rnnlab": __version__,
            "torch": torch.__version__,
            "model": to_dict(config.model),
            "train": to_dict(config.train),
            "corpus": to_dict(config.corpus),
        }
        | ({"plan": config.plan} if config.plan is not None else {}),
    )


def load_config(run_dir: Path) -> RunConfig:
    """config.json, every field present and of its declared type and range."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory; train one with: rnnlab train")
    entries = {p.name for p in run_dir.iterdir()}
    if (
        CONFIG not in entries
        and LOCK in entries
        and all(n == LOCK or n.endswith(".part") for n in entries)
    ):  # a run (a fine-tune, say) killed before it wrote anything but its lock
        raise CheckpointError(
            f"{run_dir} was stopped before its first save, so there is nothing to read or resume; "
            f"start it again: rnnlab train TEXT --out {run_dir} (with the same flags)"
        )
    raw = read_json(run_dir / CONFIG)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise CheckpointError(
            f"{run_dir / CONFIG} has format {found!r}; this rnnlab reads format {FORMAT}"
        )
    try:
        return RunConfig(
            from_dict(ModelConfig, raw.get("model"), strict=True),
            from_dict(TrainConfig, raw.get("train"), strict=True),
            from_dict(CorpusConfig, raw.get("corpus"), strict=True),
            raw["plan"] if isinstance(raw.get("plan"), dict) else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / CONFIG} is invalid: {e}") from None


def save_vocab(run_dir: Path, vocab: Vocab) -> None:
    write_json(Path(run_dir) / VOCAB, vocab.to_json())


def load_vocab(run_dir: Path) -> Vocab:
    path = Path(run_dir) / VOCAB
    raw = read_json(path)
    try:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return Vocab.from_json(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is invalid ({e})") from None


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that a killed process never finished."""
    gone = []
    for p in Path(run_dir).glob(".*.part"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def regular_file(path: Path) -> bool:
    """True if ``path`` is a regular file, False if it is missing; anything else in its place
    (a FIFO, a device, a folder) is refused without opening it, so nothing waits on it.

    Raises:
        CheckpointError: ``path`` exists and is not a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"{path} is not a regular file; restore the run's own file, or remove it"
        )
    return True


# --- metrics.jsonl ------------------------------------------------------------------------------


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def sync_metrics(run_dir: Path) -> int:
    """Flush metrics.jsonl to disk; its length, which the next checkpoint refers to."""
    path = Path(run_dir) / METRICS
    if not regular_file(path):
        return 0
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        return os.fstat(f.fileno()).st_size


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The events of metrics.jsonl; a line that is not a JSON object (cut short by a kill, or
    damaged) is skipped with a MetricsWarning."""
    path = Path(run_dir) / METRICS
    if not regular_file(path):
        return []
    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                record = None
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
            elif line.strip():
                warnings.warn(
                    f"{path}: line {number} is not a metrics record; skipped",
                    MetricsWarning,
                    stacklevel=2,
                )
    return records


def read_baselines(run_dir: Path) -> dict[str, float]:
    """baselines.json: rung name -> bpc; a damaged file is ignored with a warning."""
    path = Path(run_dir) / BASELINES
    if not path.exists():
        return {}
    try:
        raw = read_json(path)
    except CheckpointError:
        warnings.warn(f"{path} is damaged; ignored", MetricsWarning, stacklevel=2)
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        for k, v in raw.items()
    ):
        warnings.warn(
            f"{path} is not a table of rung -> bpc; ignored", MetricsWarning, stacklevel=2
        )
        return {}
    return {k: float(v) for k, v in raw.items()}


# --- one writer per run directory ---------------------------------------------------------------


class RunLock:
    """An exclusive advisory lock on a run directory, held while a process writes it.

    ``flock`` on ``.lock``: the OS releases it when the process ends, however it ends, so a
    killed run never leaves a stale lock. A second writer is refused at once, naming the
    process that holds the lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        path = self.run_dir / LOCK
        try:
            # O_NONBLOCK: a FIFO in its place must not wait for a reader
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as e:
            raise CheckpointError(
                f"cannot lock {self.run_dir} ({e.strerror}); check the folder"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device: flock cannot hold it
            os.close(fd)
            raise CheckpointError(f"{path} is not a regular file; remove it and run again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CheckpointError(
                    f"{self.run_dir} is being written by another rnnlab process (pid {holder}); "
                    "wait for it to finish or stop it, or pick another --out"
                ) from None
            raise
        try:  # who holds it, for the message a second writer gets
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _lock_holder(fd: int) -> str:
    """The pid that holds the flock on ``fd``'s file: from /proc/locks where there is one (the
    pid written in the file may be a stale one, of a writer killed before this holder wrote
    its own), else the pid written in the file."""
    info = os.fstat(fd)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                    return fields[4]
    except OSError:
        pass
    return os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
