"""``nirbridge import``: another tool's .nir file in the exact nirbridge form."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import dt_options, read_kwargs, warn
from nirbridge.errors import InputError


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.api import write
    from nirbridge.io.read import import_graph
    from nirbridge.passes import resolve_dt
    from nirbridge.sanity import check_time_step, refuse

    if args.framework is None and args.dt is None:
        raise InputError("import needs --from FRAMEWORK (its reading of its own files) "
                         "and/or --dt DT (the time step to record)")
    graph, notes = import_graph(args.file, args.framework, dt=args.dt,
                                **read_kwargs(args))
    for note in notes:
        print(f"--from {args.framework}: {note}" if args.framework else note)
    step = resolve_dt(graph, require=True, option="--dt")
    findings = check_time_step(graph, step.dt)
    if args.strict:
        refuse(findings)
    for f in findings:
        warn(args, f.message)
    write(args.output, graph)
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {step.line}; later commands "
          "need neither --dt nor --from")
    return 0


def add_parser(sub: Any) -> None:
    im = sub.add_parser("import", help="write another tool's .nir file in the exact "
                        "nirbridge form, with its dt and provenance in the metadata")
    im.add_argument("file")
    dt_options(im, dt_help="time step to record (default: the framework's convention)")
    im.add_argument("-o", "--output", required=True, help="output .nir file")
    im.set_defaults(func=run_command)
