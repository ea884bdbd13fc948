"""``nirbridge export-onnx``: a .nir graph as an ONNX model."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge._files import write_bytes
from nirbridge.cli._common import dt_options, load_graph


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.export_onnx import layout, to_onnx

    graph, step, _ = load_graph(args, require_dt=True)
    model = to_onnx(graph, sequence=args.sequence, dt=step.dt)
    write_bytes(args.output, model.SerializeToString())  # a failure leaves no file
    states = len(layout(model)["states"])
    print(f"wrote {args.output}: {'sequence (Scan)' if args.sequence else 'step'} model, "
          f"opset {model.opset_import[0].version}, {states} state tensors, dt = {step.dt:g}")
    return 0


def add_parser(sub: Any) -> None:
    ox = sub.add_parser("export-onnx", help="write a .nir graph as an ONNX model (float32, "
                        "standard operators): one time step with explicit states, or "
                        "--sequence over [T, B, ...]")
    ox.add_argument("file")
    ox.add_argument("-o", "--output", required=True, help="output ONNX file (model.onnx)")
    ox.add_argument("--sequence", action="store_true",
                    help="a Scan model over the whole input [T, B, ...] (default: the step "
                         "model, states in and out; see docs/onnx.md)")
    dt_options(ox, dt_help="time step the model is built for (default: the file's "
                           "metadata['dt']; a file without one is refused)")
    ox.set_defaults(func=run_command)
