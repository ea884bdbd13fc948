"""Critical sections that a stop signal must not cut in two: :func:`signals_deferred`.

The CLI turns SIGINT, SIGTERM and SIGHUP into an exception wherever the main thread is
(:mod:`nirbridge.cli._signals`), so that every ``finally`` block runs. A few steps must
not be cut in two by it: forking a child and recording its pid (an exception between
the two loses the child, which then outlives the command), and ending a Lava run (half
ended, nobody would end it again). Blocking the signals with ``pthread_sigmask`` does not
do it: it blocks them in one thread only, and the kernel then delivers them to another
(torch's, numba's), whose C handler still has Python raise in the main thread. So the
Python handlers are swapped for one that notes the signal, and the first one noted is
sent again when the section ends, to whatever handler was there before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

#: The signals :func:`signals_deferred` holds (those the CLI turns into an exception).
DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP go to ``handler``; the previous handlers
    come back after it. Outside the main thread (where Python allows no handler) it
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in DEFERRED:
        with contextlib.suppress(OSError, ValueError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP are noted, not handled; when it ends the
    previous handlers come back and the first signal noted is sent to this process
    again, so that it is handled right after the block. A child forked within the
    block inherits the noting handler: it sets its own handlers first. Outside the
    main thread it does nothing."""
    noted: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    try:
        with signals_handled_by(note):
            yield
    finally:
        if noted:
            os.kill(os.getpid(), noted[0])


__all__ = ["DEFERRED", "signals_deferred", "signals_handled_by"]
