"""Deferred SIGINT / SIGTERM for long runs: note the signal, finish the step, checkpoint, return."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred_signals"]


@contextlib.contextmanager
def deferred_signals(enabled: bool = True) -> Iterator[list[int]]:
    """While active, SIGINT and SIGTERM are appended to the yielded list instead of stopping the process.

    The loop checks the list after each step, writes its checkpoint and returns. Outside the main thread
    (where Python cannot install handlers) or with ``enabled`` False, nothing is installed and the list
    stays empty. The previous handlers are restored on exit.
    """
    caught: list[int] = []
    previous = {}
    if enabled and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
