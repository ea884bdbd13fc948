"""The ``nirbridge`` command.

Every sub-command turns a :class:`nirbridge.errors.NirbridgeError` (and any other failure)
into one line on stderr and a non-zero exit code (``--debug`` shows the traceback), and
writes its output files atomically, so a failed command never leaves a partial file.

The commands that run or lower a file take ``--dt`` and ``--from FRAMEWORK`` (the dt rules
are :func:`nirbridge.passes.resolve_dt`'s), print the dt they use in one line and record
it in every output; they warn about the sanity findings of :mod:`nirbridge.sanity`
(``--strict``: refuse a forward-Euler step with dt/τ > 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import Any

from nirbridge._version import __version__
from nirbridge.cli._common import load_array as load_array
from nirbridge.cli._common import parse_shape as parse_shape
from nirbridge.describe import describe as describe  # moved; importable from here as before
from nirbridge.errors import NirbridgeError
from nirbridge.factory import load_factory as load_factory

log = logging.getLogger("nirbridge")

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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
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
    except KeyboardInterrupt:
        print("nirbridge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for the user; --debug shows it
        if args.debug:
            raise
        msg = f"nirbridge {args.command}: internal error: {type(exc).__name__}: {exc}"
        print(msg.splitlines()[0] + " (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
