"""``nirbridge quantize``: a .nir graph → its integers for a fixed-point target, with the
per-layer quantization report (calibrated on data with ``--calibrate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nirbridge._files import write_bytes
from nirbridge.cli._common import dt_options, load_calibration, load_graph
from nirbridge.errors import InputError


def _line(row: dict[str, Any]) -> str:
    parts = [f"{row['name']} ({row['node_type']})"]
    if row.get("grid_usage") is not None:
        parts.append(f"grid {100 * row['grid_usage']:.0f}%")
    parts.append(f"clipped {row['clipped']}, zeroed {row['zeroed']}")
    cal = row.get("calibration")
    if cal:
        from nirbridge.quantize.report import calibration_text

        a = cal["after"]
        parts.append(calibration_text(cal))
        if a.get("first_divergent_step") is not None:
            parts.append(f"first divergent step {a['first_divergent_step']}")
        if a.get("saturated"):
            parts.append(f"saturated {a['saturated']}")
    return "  " + "; ".join(parts)


def run_command(args: argparse.Namespace) -> int:

    from nirbridge.backends.fixed import input_quant_config
    from nirbridge.quantize import quantize
    from nirbridge.quantize.calibrate import calibrate
    from nirbridge.quantize.report import quantization_report, save_quantized

    out = Path(args.output) if args.output else Path(args.file).with_suffix(".quant.npz")
    if out.suffix != ".npz":
        raise InputError(f"-o {out}: the quantized graph is written as .npz; give a name "
                         "ending in .npz")
    if args.json and Path(args.json).resolve() == out.resolve():
        raise InputError(f"--json {args.json} is the same file as -o; give another name")
    graph, step, _ = load_graph(args, require_dt=False)
    x = load_calibration(args.calibrate) if args.calibrate else None
    cfg = input_quant_config(args.target, x, input_frac_bits=args.input_frac_bits)
    q = (calibrate(graph, x, cfg, dt=step.dt) if x is not None
         else quantize(graph, cfg, dt=step.dt))
    report = quantization_report(q)
    save_quantized(q, out)
    if args.json:
        write_bytes(args.json, json.dumps(report, indent=1).encode("utf-8"))
    how = (f"calibrated on {x.shape[1]} samples of {args.calibrate}" if x is not None
           else "plain rule (no --calibrate)")
    print(f"quantized for {args.target}, {how}:")
    for row in report["layers"]:
        print(_line(row))
    print(f"wrote {out}" + (f" and {args.json}" if args.json else ""))
    return 0


def add_parser(sub: Any) -> None:
    q = sub.add_parser("quantize", help="quantize a .nir graph for a fixed-point target "
                                        "(integers + per-layer report)")
    q.add_argument("file")
    q.add_argument("--target", default="loihi2",
                   help="profile name or .toml path with a [quantization] table "
                        "(default loihi2)")
    q.add_argument("--calibrate", metavar="X.npy",
                   help="calibration inputs [T, B, ...]: choose each layer's mantissas to "
                        "flip the fewest spikes on them (default: the plain rule)")
    q.add_argument("--input-frac-bits", type=int, default=None,
                   help="fractional bits of graded inputs (default: fitted to --calibrate, "
                        "else the profile's)")
    q.add_argument("-o", "--output", help="output .npz (default FILE.quant.npz)")
    q.add_argument("--json", help="also write the report as JSON here")
    dt_options(q, dt_help="time step (default: the file's metadata['dt'])")
    q.set_defaults(func=run_command)
