"""The ``nirbridge`` command.

Every sub-command turns a :class:`nirbridge.errors.NirbridgeError` (and any other failure)
into one line on stderr and a non-zero exit code (``--debug`` shows the traceback), and
writes its output files atomically, so a failed command never leaves a partial file.
SIGINT, SIGTERM and SIGHUP end a command through its cleanup (exit 130, 143, 129: no
temporary file, no process of a Lava run is left, :mod:`nirbridge.cli._signals`); a
closed stdout pipe ends it quietly (exit 141); each command first removes the temporary
files that killed nirbridge processes left (:func:`nirbridge._files.sweep_stale`).

The commands that run or lower a file take ``--dt`` and ``--from FRAMEWORK`` (the dt rules
are :func:`nirbridge.passes.resolve_dt`'s), print the dt they use in one line and record
it in every output; they warn about the sanity findings of :mod:`nirbridge.sanity`
(``--strict``: refuse a forward-Euler step with dt/τ > 1).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from typing import Any

from nirbridge._files import sweep_stale
from nirbridge._version import __version__
from nirbridge.cli._common import load_array as load_array
from nirbridge.cli._common import parse_shape as parse_shape
from nirbridge.cli._signals import (
    BROKEN_PIPE_EXIT,
    Interrupted,
    interrupted_line,
    interrupts_as_exceptions,
    quiet_stdout,
)
from nirbridge.errors import NirbridgeError

log = logging.getLogger("nirbridge")

#: Names that moved and stay importable from here, imported on first use: importing
#: this module must stay light, so that main() installs its signal handlers at once
#: (what a command needs is imported by build_parser, where signals are held).
_MOVED = {"describe": "nirbridge.describe", "load_factory": "nirbridge.factory"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'nirbridge.cli' has no attribute {name!r}")

#: The sub-commands in the order ``--help`` lists them; each is the module
#: ``nirbridge.cli.<name>`` with ``add_parser(sub)`` and ``run_command(args)``.
COMMANDS = ("export", "inspect", "run", "profile", "check", "deploy", "verify", "targets",
            "quantize", "export_netx", "export_onnx", "import_file", "train", "demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nirbridge",
        description="Export PyTorch SNNs to NIR, run them on backends, deploy and profile.",
    )
    p.add_argument("--version", action="version", version=f"nirbridge {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"nirbridge.cli.{name}").add_parser(sub)
    return p


def _one_line_warning(command: str) -> Any:
    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        text = str(message).splitlines()[0] if str(message) else ""
        print(f"nirbridge {command}: warning: {category.__name__}: {text}", file=sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    # the program itself (not a caller's main([...])) ends right after: see _signals
    with interrupts_as_exceptions(ignore_after=argv is None) as guard:
        try:
            # build_parser imports torch (see Guard.deferred); the program itself, which
            # has made nothing yet, may end at once there
            with guard.deferred(exit_now=argv is None):
                parser = build_parser()
            args = parser.parse_args(argv)
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                format="%(levelname)s %(name)s: %(message)s")
            sweep_stale()
            code = _run(args)
            sys.stdout.flush()  # here, so that a closed pipe is seen here and not at exit
            guard.quiet()  # done: a signal from now on meets no exception handler
            return code
        except BrokenPipeError:
            guard.quiet()
            quiet_stdout()
            return BROKEN_PIPE_EXIT
        except KeyboardInterrupt as exc:
            guard.quiet()
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            with contextlib.suppress(OSError, ValueError):
                print(interrupted_line(exc.args[0] if exc.args else "SIGINT"),
                      file=sys.stderr)
            if argv is None:  # the program itself (not a caller's main([...])): see below
                _exit_now(code)
            return code


def _exit_now(code: int) -> None:
    """End the process now: every ``finally`` block has run (temporary files removed,
    Lava runs ended), and what is left, the interpreter's teardown of torch, Lava and
    matplotlib, takes over a second; a stopped command should end at once."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings():
            # a library's warning (numpy, torch, h5py) as one line, like nirbridge's own,
            # not two lines with its source: an error after it stays the last line
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except NirbridgeError as exc:
        if args.debug:
            raise
        print(f"nirbridge {args.command}: error: {exc}".splitlines()[0], file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # never a traceback for the user; --debug shows it
        if args.debug:
            raise
        msg = f"nirbridge {args.command}: internal error: {type(exc).__name__}: {exc}"
        print(msg.splitlines()[0] + " (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
