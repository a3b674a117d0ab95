"""What every command shares: the parser that raises UsageError, flags generated from the
fields of a validated dataclass, output-path checks, and the stderr channel."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..checkpoint import check_output
from ..config import flag_fields
from ..errors import UsageError
from ..files import check_writable_dir


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage and exits
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _type_of(f: dataclasses.Field) -> Callable[[str], object]:
    name = str(f.type).replace(" | None", "")
    return {"int": int, "float": float, "str": str, "tuple[str, ...]": str}[name]


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One flag per field of ``cls`` that has a ``flag``: type, choices and help (with the
    default) from the field. Flags not given stay unset, so ``given`` can tell them apart."""
    group = parser.add_argument_group(title) if title else parser
    for f in flag_fields(cls):
        meta = f.metadata
        shown = meta.get("shown_default", f.default)
        help = meta["help"] + (f" (default: {shown})" if shown is not None else "")
        if str(f.type) == "bool":  # a planned switch can be turned off as well: --no-FLAG
            planned = "shown_default" in meta
            action = argparse.BooleanOptionalAction if planned else "store_true"
            group.add_argument(
                meta["flag"], dest=f.name, action=action, default=argparse.SUPPRESS, help=help
            )
            continue
        if meta.get("repeat"):
            help += "; repeat the flag or give a comma-separated list to overlay several"
        if meta.get("many"):
            help += "; repeat the flag for several"
        group.add_argument(
            meta["flag"],
            dest=f.name,
            type=_type_of(f),
            choices=meta.get("choices"),
            action="append" if meta.get("repeat") or meta.get("many") else "store",
            default=argparse.SUPPRESS,  # so we know which flags the user gave
            help=help,
        )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the user gave as flags (repeated flags joined by commas)."""
    out = {}
    for f in flag_fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            if f.metadata.get("repeat"):
                value = ",".join(value)
            elif f.metadata.get("many"):
                value = tuple(value)
            out[f.name] = value
    return out


def options(args: argparse.Namespace, cls: type) -> Any:
    """``cls`` built from the flags; its ``__post_init__`` rejects bad values naming the flag."""
    return cls(**given(args, cls))


def check_output_dir(path: Path, flag: str) -> Path:
    """``files.check_writable_dir``: a folder that exists, or can be created, and can be
    written; checked before any work."""
    return check_writable_dir(Path(path), flag)


def check_output_file(
    path: str | Path, flag: str, reading: Sequence[str | Path] = (), force: bool = True
) -> Path:
    """``checkpoint.check_output``: not a run's file nor inside a run being read, writable, an
    existing file only with ``force``; fail before a long computation, not after it."""
    return check_output(Path(path), flag, reading=[Path(r) for r in reading], force=force)


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--force", action="store_true", help="overwrite an existing output file"
    )


@contextmanager
def progress_bar(desc: str) -> Iterator[Callable[[int, int], None]]:
    """An ``on_progress`` callback drawing a tqdm bar on stderr (where stderr is a terminal),
    opened at the first report, so nothing is drawn before the inputs are checked."""
    bars: list[tqdm] = []

    def report(done: int, total: int) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, unit="char", unit_scale=True, desc=desc, file=sys.stderr,
                     disable=None)
            )  # fmt: skip
        bars[0].update(done - bars[0].n)

    try:
        yield report
    finally:
        for bar in bars:
            bar.close()


def err(message: str) -> None:
    """A line on stderr (progress, notes); under torchrun only rank 0 speaks."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)
