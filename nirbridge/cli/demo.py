"""``nirbridge demo``: the default deployment and its summary table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nirbridge.cli._common import lava_parallel_options, positive_int


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.demo import run_demo

    return run_demo(Path(args.out_dir), echo=print, samples=args.samples,
                    lava_samples=args.lava_samples, workers=args.workers,
                    cluster=args.cluster)


def add_parser(sub: Any) -> None:
    d = sub.add_parser("demo", help="the default deployment: the digits recipes of deploy/ "
                       "(LIF, AR-LIF, KLIF, DA-LIF; AR-LIF rate-encoded; recurrent ALIF "
                       "and CubaLIF on sequential digits) end to end, and their summary "
                       "table")
    d.add_argument("--out-dir", default="out", help="where to write the demo's files")
    d.add_argument("--samples", type=positive_int,
                   help="test samples per recipe (default: the recipes' own, 360)")
    lava_parallel_options(d, recipes=True)
    d.set_defaults(func=run_command)
