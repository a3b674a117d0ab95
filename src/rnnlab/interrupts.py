"""Ctrl-C and SIGTERM during training: the first asks the loop to stop and save at the end of
its step; a second, later one aborts at once. Stdlib only."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

DUPLICATE_SIGNAL_S = 1.0  # a second Ctrl-C sooner than this is the same one, passed on


class StopRequest:
    """Set by the first Ctrl-C or SIGTERM; the loop stops and saves at the end of the step."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self.first_s = 0.0

    def is_set(self) -> bool:
        return self.event.is_set()


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While active, the first Ctrl-C (or SIGTERM, as a scheduler or torchrun sends when it
    stops a job) asks the loop to stop and save. A second one raises KeyboardInterrupt at once.
    A file-size limit (SIGXFSZ) becomes an EFBIG error on the write instead of a kill."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        # torchrun passes a Ctrl-C on to its workers, who also get it from the terminal: the
        # same keypress arrives twice within moments, and only a later one means "abort now"
        if stop.is_set() and time.monotonic() - stop.first_s > DUPLICATE_SIGNAL_S:
            raise KeyboardInterrupt
        if not stop.is_set():
            stop.first_s = time.monotonic()
            stop.signal = signal.Signals(signum).name
        stop.event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
