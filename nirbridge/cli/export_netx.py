"""``nirbridge export-netx``: a .nir graph as a lava-dl netx HDF5 network."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import dt_options, load_graph


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.netx import netx_latency, netx_layers, quantize_for_netx, write_netx

    graph, step, _ = load_graph(args, require_dt=True)
    qgraph = quantize_for_netx(graph, args.target, dt=step.dt)
    n_layers = len(netx_layers(qgraph)) - 1
    write_netx(qgraph, args.output)  # atomic: a failure leaves no file
    print(f"wrote {args.output}: {n_layers} netx layers after the input, latency "
          f"{netx_latency(qgraph)} steps (target {args.target}, dt = {step.dt:g})")
    return 0


def add_parser(sub: Any) -> None:
    nx = sub.add_parser("export-netx", help="write a .nir graph as a lava-dl netx HDF5 "
                        "network (fixed point, CUBA neurons)")
    nx.add_argument("file")
    nx.add_argument("-o", "--output", required=True, help="output netx file (e.g. model.net)")
    nx.add_argument("--target", default="loihi2",
                    help="target profile name or TOML path for quantization (default loihi2)")
    dt_options(nx, dt_help="time step the decays are quantized for (default: the file's "
                           "metadata['dt']; a file without one is refused)")
    nx.set_defaults(func=run_command)
