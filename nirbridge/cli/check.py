"""``nirbridge check``: design rules of a .nir graph on chip targets (no simulation).

Prints, per target, how each layer is split over cores and one line per violation;
exit code 0 when the graph fits every target, 3 (``CheckFailed``) when it does not, 2 for
bad input (a missing or corrupt file, a target that is no chip).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nirbridge._files import atomic_path
from nirbridge.errors import CheckFailed


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.api import read
    from nirbridge.passes import metadata_dt
    from nirbridge.profile.rules import check_graph, split_table
    from nirbridge.textfmt import text_table

    graph = read(args.file)
    dt = args.dt if args.dt is not None else metadata_dt(graph)
    reports = [check_graph(graph, t, dt=dt) for t in (args.target or ["loihi2"])]
    for r in reports:
        m = r.mapping
        print(f"{r.target}: {'fits' if r.fits else 'does NOT fit'} "
              f"({m.cores_used} cores of {m.cores_available} per chip; {m.label})")
        print(text_table(split_table(m), indent="  "))
        for line in r.lines():
            print(f"  {line}")
        for a in m.assumptions:
            print(f"  assumption: {a}")
        for u in r.unchecked:
            print(f"  unchecked: {u}")
    if args.json:
        with atomic_path(args.json) as tmp:
            doc = {"file": str(args.file), "dt": dt, "fits": all(r.fits for r in reports),
                   "targets": [r.to_dict() for r in reports]}
            tmp.write_text(json.dumps(_clean(doc), indent=2, allow_nan=False, default=str))
        print(f"wrote {args.json}")
    bad = [v for r in reports for v in r.violations]
    if bad:
        raise CheckFailed(f"{args.file} does not fit "
                          f"{', '.join(r.target for r in reports if not r.fits)}: {len(bad)} "
                          f"design-rule violation(s) (listed above)")
    return 0


def _clean(x: Any) -> Any:
    """Plain JSON: numpy scalars unwrapped, tuples as lists, an infinite ratio (a zero
    limit) as null."""
    import math

    import numpy as np

    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def add_parser(sub: Any) -> None:
    cp = sub.add_parser("check", help="design-rule check of a .nir graph on chip targets: "
                        "does it fit, how layers split over cores, what to change")
    cp.add_argument("file", help="FILE.nir")
    cp.add_argument("--target", action="append",
                    help="chip profile (loihi2, loihi, speck, xylo-audio2, truenorth, odin, "
                         "or a TOML path); repeatable; default loihi2")
    cp.add_argument("--dt", type=float,
                    help="time step for delay limits (default: the file's metadata['dt'])")
    cp.add_argument("--json", help="write the check report as JSON here")
    cp.set_defaults(func=run_command)
