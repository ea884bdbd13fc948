"""``nirbridge profile``: SOPs, neuron updates, spikes and energy per target."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import (
    backend_help,
    dt_options,
    load_array,
    load_graph,
    run_section,
    warn,
    warn_reading,
)


def run_command(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.backends import get
    from nirbridge.errors import InputError
    from nirbridge.graph import flatten_subgraphs
    from nirbridge.neurons import is_neuron
    from nirbridge.profile import (
        count_events,
        count_run,
        estimate_energy,
        load_profile,
        map_to_chip,
    )
    from nirbridge.report import build_report, format_table, raster_from_records, write_report
    from nirbridge.sanity import check_run

    profiles = [load_profile(t) for t in (args.target or ["loihi2", "cmos45-fp32"])]
    graph, step, findings = load_graph(args, require_dt=True)
    x = np.asarray(load_array(args.input), dtype=np.float64)
    flat = flatten_subgraphs(graph).nodes
    if args.raster and args.raster not in flat:
        raise InputError(f"--raster {args.raster!r}: no such node in {args.file} (nodes: "
                         f"{', '.join(list(flat)[:20])}); give a node's name (nirbridge "
                         "inspect lists them)")
    warn_reading(args, get(args.backend), graph, step.dt)
    if args.backend == "reference":
        # counted while it runs; records only of what the sanity check and raster read
        keep = [n for n, node in flatten_subgraphs(graph).nodes.items() if is_neuron(node)]
        (_, records), counts = count_run(graph, x, dt=step.dt, spike_inputs=args.spike_inputs,
                                         record=keep + ([args.raster] if args.raster else []))
    else:
        records = get(args.backend).run(graph, x, record=True, dt=step.dt).records
        counts = count_events(graph, records, spike_inputs=args.spike_inputs)
    ran = check_run(graph, records, where=f"{args.backend} run",
                    spikes={n: c.spikes for n, c in counts.neurons.items()})
    for f in ran:
        warn(args, f.message)
    findings = findings + ran
    energies = [estimate_energy(counts, p, time_step_s=args.time_step) for p in profiles]
    mappings = []
    for p in profiles:
        if p.mapper is not None:
            mappings.append(map_to_chip(graph, p, counts))
    doc = build_report(counts, energies, mappings, model=str(args.file),
                       meta={"backend": args.backend, "input": str(args.input),
                             "dt": step.dt, "dt_source": step.source,
                             "sanity": [f.to_dict() for f in findings]})
    print(format_table(doc))
    if args.json:
        write_report(doc, args.json)
        print(f"wrote {args.json}")
    if args.report:
        node = args.raster or next((n for n, c in counts.neurons.items() if c.spiking), None)
        raster = raster_from_records(records, node) if node else None
        write_report(doc, args.report, raster=raster, raster_node=node,
                     sections=[run_section(args.backend, step, findings)])
        print(f"wrote {args.report}")
    return 0


def _seconds(text: str) -> float:
    """``--time-step``: a finite number of seconds > 0."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds > 0 "
                                         "(e.g. 1e-3)")
    return v


def add_parser(sub: Any) -> None:
    pr = sub.add_parser("profile", help="count SOPs, neuron updates, spikes; price energy")
    pr.add_argument("file")
    pr.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    pr.add_argument("--backend", default="reference",
                    help=backend_help("backend whose run is counted"))
    pr.add_argument("--target", action="append",
                    help="target profile name or TOML path (repeatable; default loihi2 and "
                         "cmos45-fp32); see `nirbridge targets`")
    pr.add_argument("--time-step", type=_seconds, metavar="SECONDS",
                    help="wall-clock duration of one time step on the chip, for static "
                         "energy (P_static x T x SECONDS) on every target; default: each "
                         "target's published step time (Loihi 2: 153 us measured on "
                         "PilotNet), none for the others (their static part is then "
                         "missing and the total a lower bound)")
    pr.add_argument("--spike-inputs", action="store_true",
                    help="the input carries binary events: first layer counts as AC")
    dt_options(pr, dt_help="time step (default: the file's metadata['dt']; a file "
                           "without one is refused)")
    pr.add_argument("--json", help="write the JSON report here")
    pr.add_argument("--report", help="write an HTML (.html) or Markdown (.md) report with plots")
    pr.add_argument("--raster", help="node whose spike raster the report plots")
    pr.set_defaults(func=run_command)
