"""``nirbridge export``: a torch model (a factory) to a .nir file."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import parse_shape, positive_finite_float, positive_int
from nirbridge.errors import ExportError
from nirbridge.factory import load_factory, load_weights


def run_command(args: argparse.Namespace) -> int:
    import torch

    from nirbridge.api import to_nir, write

    factory = load_factory(args.model)
    try:
        model = factory()
    except Exception as exc:
        raise ExportError(f"factory '{args.model}' failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"factory '{args.model}' returned {type(model).__name__}, "
                          "not a torch.nn.Module")
    if args.weights:
        load_weights(model, args.weights)
    sample = torch.zeros((args.batch, *parse_shape(args.input_shape)))
    graph = to_nir(model, sample, dt=args.dt)
    write(args.output, graph, compat=args.compat)
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
          f"dt={args.dt}")
    return 0


def add_parser(sub: Any) -> None:
    e = sub.add_parser("export", help="export a torch model to a .nir file")
    e.add_argument("model", help="MODULE_OR_FILE:FACTORY, a callable returning the nn.Module")
    e.add_argument("--input-shape", required=True, help="one sample's shape, e.g. 1,28,28")
    e.add_argument("--weights", help="checkpoint (state_dict) loaded with weights_only=True")
    e.add_argument("--dt", type=positive_finite_float, default=1.0,
                   help="time step recorded in the graph")
    e.add_argument("--batch", type=positive_int, default=1, help="batch size of the tracing sample")
    e.add_argument("--compat", choices=("native", "lossy"), default="native",
                   help="'lossy' writes standard NIR nodes only (approximating custom ones)")
    e.add_argument("-o", "--output", required=True, help="output .nir file")
    e.set_defaults(func=run_command)
