"""How the ``nirbridge`` command ends when it is told to: signals, a closed stdout.

:func:`interrupts_as_exceptions` turns SIGINT, SIGTERM and SIGHUP into an
:class:`Interrupted` exception in the main thread, so that every ``finally`` block runs
(temporary files removed, a Lava run's processes ended) before the command exits with
``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM). A second signal while that cleanup
runs is ignored: the cleanup is bounded (a Lava run is stopped within a few seconds),
and SIGKILL still ends the process at once (see docs/processes.md for what then
remains and who removes it).

:func:`quiet_stdout` makes a closed stdout pipe (``nirbridge inspect --json | head``)
end the command without Python's "Exception ignored" message at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from nirbridge._critical import DEFERRED, signals_deferred, signals_handled_by
from nirbridge.cli._common import positive_finite_float

#: The signals :func:`interrupts_as_exceptions` turns into :class:`Interrupted`.
HANDLED = DEFERRED  # the same three, which critical sections hold

#: Exit status after a closed stdout pipe, as a shell reports a process ended by SIGPIPE.
BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE


class Interrupted(KeyboardInterrupt):
    """The command was told to stop by signal ``signum``. A :class:`KeyboardInterrupt`,
    so that code which already stops cleanly on Ctrl-C does so for SIGTERM too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Guard:
    """What :func:`interrupts_as_exceptions` yields: :meth:`quiet` makes later signals
    be ignored (the command is ending: an exception raised now could only escape)."""

    def __init__(self) -> None:
        self.fired: list[int] = []

    def quiet(self) -> None:
        self.fired.append(0)

    def deferred(self, exit_now: bool = False) -> contextlib.AbstractContextManager[None]:
        """A signal within the block is raised when it ends
        (:func:`nirbridge._critical.signals_deferred`). For code that Python is called
        back from C++ in (torch's import: an exception raised in a pybind11 callback
        ends the process with ``std::terminate``, SIGABRT). ``exit_now``: the block has
        made nothing that needs cleaning up (the program's imports, before any file or
        process exists), so a signal ends the process at once instead
        (``os._exit(128 + signal)``, which unwinds no C++ frame), not seconds later."""
        if not exit_now:
            return signals_deferred()

        def end(signum: int, frame: FrameType | None) -> None:
            if self.fired:
                return
            self.fired.append(signum)
            with contextlib.suppress(OSError, ValueError):
                os.write(2, (interrupted_line(signal.Signals(signum).name) + "\n").encode())
            os._exit(128 + signum)

        return signals_handled_by(end)


def interrupted_line(name: str) -> str:
    """What the command prints on stderr when a signal (``name``) stops it."""
    return f"nirbridge: interrupted ({name})"


@contextlib.contextmanager
def interrupts_as_exceptions(ignore_after: bool = False) -> Iterator[Guard]:
    """Within the block, the first SIGINT/SIGTERM/SIGHUP raises :class:`Interrupted`
    where the main thread is; later ones (and any after :meth:`Guard.quiet`) are
    ignored. The previous handlers come back after the block, or, with
    ``ignore_after`` (the program itself, about to exit), the signals stay ignored:
    the command has ended and its outputs are whole, and a KeyboardInterrupt raised in
    the interpreter's exit handlers (torch's, multiprocessing's) would only print a
    traceback and skip their cleanup. Outside the main thread it does nothing (Python
    allows handlers only there)."""
    guard = Guard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if guard.fired:
            return
        guard.fired.append(signum)
        raise Interrupted(signum)

    previous = {}
    for sig in HANDLED:
        with contextlib.suppress(OSError, ValueError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield guard
    finally:
        guard.quiet()
        for sig, old in previous.items():
            if ignore_after:
                old = signal.SIG_IGN
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


def quiet_stdout() -> None:
    """After a write to a closed stdout pipe: point stdout at /dev/null, so that the
    interpreter's final flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    """``--timeout SECONDS``: the time limit of each Lava run (commands that run Lava)."""
    parser.add_argument("--timeout", type=positive_finite_float, default=None, metavar="SECONDS",
                        help="time limit in seconds of each Lava run, enforced by the run's "
                             "own process too (default 600; Lava backends only)")


def lava_timeout(backend: str, timeout: float | None) -> dict[str, float]:
    """The run options ``--timeout`` gives ``backend`` (a name or alias): ``timeout_s``
    for a Lava backend; an :class:`~nirbridge.errors.InputError` for another."""
    if timeout is None:
        return {}
    from nirbridge.backends import ALIASES
    from nirbridge.errors import InputError

    if not ALIASES.get(backend, backend).startswith("lava"):
        raise InputError(f"--timeout {timeout:g} limits Lava runs; backend {backend!r} "
                         "does not run Lava (drop --timeout, or use --backend lava-float "
                         "or lava-fixed)")
    return {"timeout_s": timeout}


__all__ = ["BROKEN_PIPE_EXIT", "HANDLED", "Guard", "Interrupted", "add_timeout_option",
           "interrupted_line", "interrupts_as_exceptions", "lava_timeout", "quiet_stdout"]
