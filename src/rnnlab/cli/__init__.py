"""Command line: one module per subcommand (its flags and a short ``run(args)`` that calls the
library and prints the result), one registry below, and ``main``, which turns every outcome
into an exit code. The only package that prints results or exits.

Exit codes: 0 finished; 1 internal error (a bug: --debug shows the traceback); 2 user error (one
line); 3 diverged (training, or the weight updates of eval --dynamic / --adapt and compress);
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), train saving first. A closed stdout
(``| head``) ends quietly.
Results go to stdout, progress to stderr. Only the standard library is imported up here, so that
a Ctrl-C while torch loads is caught like any other.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

from ..config import __version__
from ..errors import DivergedError, RnnlabError, UsageError

# subcommand -> module of this package: SUMMARY, EXAMPLE, add_arguments(parser), run(args)
COMMANDS = {
    "train": "train",
    "sample": "sample",
    "eval": "eval",
    "plot": "plot",
    "viz": "viz",
    "gradflow": "gradflow",
    "longrange": "longrange",
    "serve": "serve",
    "export": "export",
    "compress": "compress",
    "decompress": "decompress",
    "contexts": "contexts",
    "corpora": "corpora",
}
MAX_MESSAGE_CHARS = 2000
# a full disk or device, a quota, a read-only file system, a file-size limit: one line, exit 2
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}  # files.FULL and EROFS


def command(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand (or, to start faster, of ``only`` that one)."""
    from .flags import Parser

    parser = Parser(prog="rnnlab", description="Character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    for name in COMMANDS:
        if only is not None and name != only:
            subs.add_parser(name, help=f"(see: rnnlab {name} --help)")
            continue
        module = command(name)
        sub = subs.add_parser(
            name,
            parents=[common],
            help=module.SUMMARY,
            description=module.SUMMARY,
            epilog=module.EXAMPLE,
            formatter_class=DefaultsOnce,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Each default said once: not when the help already says it, and not for a default that
    says nothing (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if "(default:" in help or action.default in (None, False):
            return help
        return super()._get_help_string(action)


def _say(message: str) -> None:
    """One line on stderr, however long or multi-line the message (rank 0 only)."""
    line = re.sub(r"\s*\n\s*", " ", message).strip()
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[:MAX_MESSAGE_CHARS] + " [...]"
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _run(argv: list[str]) -> int:
    if argv == ["--version"]:  # without loading torch
        print(f"rnnlab {__version__}")
        return 0
    # the command is the first word that names one (no top-level flag takes a value)
    parser = build_parser(next((a for a in argv if a in COMMANDS), None))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.handler(args)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which saves on it): stop like Ctrl-C, exit 143."""


# the SIGINT / SIGTERM this process has received, in order; a command that runs on after a
# library swallowed the interrupt (an optional import cut short: `except ImportError`) checks it
SIGNALS: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    SIGNALS.append(signum)
    raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _run_until_signalled(argv: list[str]) -> int:
    """``_run``; an error raised after a signal is the signal's doing (an import it cut short
    fails later with an ImportError, say), so it stops as that signal, not as a bug."""
    try:
        code = _run(argv)
    except Exception:
        if not SIGNALS:
            raise
        raise (_Terminated if SIGNALS[0] == signal.SIGTERM else KeyboardInterrupt)() from None
    if SIGNALS:  # finished, but a signal came that something swallowed
        raise _Terminated if SIGNALS[0] == signal.SIGTERM else KeyboardInterrupt
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``python -m rnnlab`` passes it to sys.exit)."""
    whole_process = argv is None  # the rnnlab command itself, not a caller in Python
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous = {}
    SIGNALS.clear()
    if threading.current_thread() is threading.main_thread():
        previous = {
            s: signal.signal(s, _on_signal)
            for s in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(s) is not signal.SIG_IGN  # started ignoring it (nohup, &)
        }
    try:
        return _run_until_signalled(argv)
    except _Terminated:
        _say("rnnlab: terminated (SIGTERM)")
        return 143
    except KeyboardInterrupt:
        _say("rnnlab: interrupted")
        return 130
    except BrokenPipeError:
        _silence_stdout()  # the reader (e.g. `head`) has what it wanted
        return 0
    except UsageError as e:
        if debug:
            raise
        _say(f"rnnlab: error: {e}")
        return 2
    except PermissionError as e:  # a path of the user's that this user may not read or write
        if debug:
            raise
        _say(f"rnnlab: error: permission denied: {e.filename or e}; check the file's permissions")
        return 2
    except DivergedError as e:
        if debug:
            raise
        _say(f"rnnlab: diverged: {e}")
        return 3
    except (RnnlabError, Exception) as e:
        if debug:
            raise
        if isinstance(e, OSError) and e.errno in WRITE_ERRORS:  # the machine's state, not a bug
            _say(f"rnnlab: error: cannot write {e.filename or 'the output'}: {e.strerror}")
            return 2
        _say(
            f"rnnlab: internal error, a bug: {type(e).__name__}: {e} "
            "(rerun with --debug for the traceback)"
        )
        return 1
    finally:
        if whole_process and previous:
            # the work is done (and saved): a SIGTERM while the interpreter shuts down is 143 too
            signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(143))
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)
