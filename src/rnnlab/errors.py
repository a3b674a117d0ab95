"""The exceptions rnnlab raises on purpose: one base class, a usage-error subclass for anything
the user can fix (the CLI prints it as one line and exits 2). Stdlib only; imports nothing.
"""

from __future__ import annotations


class RnnlabError(Exception):
    """Base of every error rnnlab raises on purpose; the message says what to do."""


class UsageError(RnnlabError, ValueError):
    """Something the user gave (a flag, a path, a file, a run directory) cannot be used.

    The CLI reports it in one line with exit code 2; the API raises it unchanged.
    """


class DivergedError(RnnlabError):
    """Training met non-finite losses it could not skip, or the weight updates of dynamic
    evaluation or adaptation made the predictions non-finite; the CLI exits 3."""
