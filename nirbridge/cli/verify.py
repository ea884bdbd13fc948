"""``nirbridge verify``: the agreement matrix of every backend with the reference."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import backend_names, dt_options, load_array, load_graph
from nirbridge.cli._signals import add_timeout_option
from nirbridge.errors import CheckFailed, InputError


def run_command(args: argparse.Namespace) -> int:
    """The agreement matrix (:func:`nirbridge.verify.verify`): exit 0 when every backend
    that ran agrees within its tolerance, 3 when one does not or when none besides the
    reference could run (nothing was verified), 2 for bad input."""
    from nirbridge.backends import names
    from nirbridge.verify import verify

    graph, step, _ = load_graph(args, require_dt=False)
    x = load_array(args.input)
    if x.ndim < 3:
        raise InputError(f"--input '{args.input}' has shape {x.shape}; expected [T, B, ...]")
    labels = load_array(args.labels, "--labels") if args.labels else None
    wanted = names() if args.backends is None else [
        b.strip() for b in args.backends.split(",") if b.strip()]
    if not wanted:
        raise InputError(f"--backends {args.backends!r} names no backend; give e.g. "
                         f"{','.join(names())}")
    options = None
    if args.timeout is not None:
        from nirbridge.backends import ALIASES

        lava = {ALIASES.get(b, b) for b in wanted if ALIASES.get(b, b).startswith("lava")}
        if not lava:
            raise InputError(f"--timeout {args.timeout:g} limits Lava runs; --backends "
                             f"{args.backends!r} names no Lava backend")
        options = {b: {"timeout_s": args.timeout} for b in sorted(lava)}
    result = verify(graph, x, wanted, dt=step.dt, labels=labels, options=options,
                    model=str(args.file))
    print(result.to_text())
    for path, write in ((args.json, result.write_json), (args.report, result.write_html)):
        if path:
            write(path)
            print(f"wrote {path}")
    if not result.passed:
        raise CheckFailed("verify: " + result.summary())
    return 0


def add_parser(sub: Any) -> None:
    vf = sub.add_parser("verify", help="run a .nir graph on every backend that can run it "
                        "and print the agreement matrix with the float64 reference")
    vf.add_argument("file")
    vf.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    vf.add_argument("--backends", help="comma-separated backends (default: every one, "
                    f"{','.join(backend_names())}); lava = lava-float")
    vf.add_argument("--labels", help=".npy integer class per sample: report accuracies")
    vf.add_argument("--json", help="write the matrix as JSON here")
    vf.add_argument("--report", help="write the HTML report (heat map) here")
    add_timeout_option(vf)
    dt_options(vf, dt_help="time step of every run (default: the file's metadata['dt']; "
                           "a file without one runs at dt = 1 with a warning)")
    vf.set_defaults(func=run_command)
