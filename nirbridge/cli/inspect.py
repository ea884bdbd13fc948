"""``nirbridge inspect``: a .nir file's nodes, shapes, parameters, dt and whether its content
was verified against the checksums nirbridge stores (``integrity``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nirbridge.cli._common import dt_options, read_kwargs, warn
from nirbridge.describe import describe
from nirbridge.textfmt import text_table


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.io.read import from_framework, read_file
    from nirbridge.passes import dt_conventions, resolve_dt
    from nirbridge.sanity import check_time_step

    loaded = read_file(args.file, **read_kwargs(args))
    graph = loaded.graph
    notes: list[str] = []
    if args.framework:
        graph, notes = from_framework(graph, args.framework, dt=args.dt)
    if args.dt is not None:
        graph.metadata = {**(graph.metadata or {}), "dt": resolve_dt(graph, args.dt,
                                                                     option="--dt").dt}
    info = describe(graph)
    findings = []
    if info["dt"] is not None:
        step = resolve_dt(graph, args.dt, option="--dt")
        info["dt_source"] = step.source
        findings = check_time_step(graph, step.dt)
    info["notes"] = notes
    info["integrity"] = {"verified": loaded.integrity.verified,
                         "detail": loaded.integrity.detail}
    info["sanity"] = [f.to_dict() for f in findings]
    for f in findings:
        warn(args, f.message)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [("node", "type", "input", "output", "params", "fires")]
    for n in info["nodes"]:
        rows.append((n["name"], n["type"] + (" *" if n["custom"] else ""),
                     "x".join(map(str, n["input_shape"] or [])) or "?",
                     "x".join(map(str, n["output_shape"] or [])) or "?",
                     str(n["parameters"]), n.get("compare", "")))
    print(text_table(rows))
    dt = info["dt"] if info["dt"] is not None else (
        f"none in the file (run, deploy, profile and export-netx need --dt or --from "
        f"FRAMEWORK: {dt_conventions() or 'no front-end available'})")
    print(f"\n{len(info['nodes'])} nodes, {len(info['edges'])} edges, "
          f"{info['parameters']} parameters, dt = {dt}")
    for note in notes:
        print(f"--from {args.framework}: {note}")
    print(f"integrity: {loaded.integrity.label} ({loaded.integrity.detail})")
    if info["custom_nodes"]:
        print(f"custom nodes (*): {', '.join(info['custom_nodes'])}")
    return 0


def add_parser(sub: Any) -> None:
    i = sub.add_parser("inspect", help="show a .nir file's nodes, shapes and parameters")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dt_options(i, strict=False, dt_help="the time step to show and check the graph at")
    i.set_defaults(func=run_command)
