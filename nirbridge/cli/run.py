"""``nirbridge run``: a .nir graph on one backend, outputs to .npz."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge._files import save_npz
from nirbridge.cli._common import (
    backend_help,
    dt_options,
    load_array,
    load_graph,
    warn,
    warn_reading,
)
from nirbridge.cli._signals import add_timeout_option, lava_timeout
from nirbridge.errors import InputError


def run_command(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.backends import get
    from nirbridge.sanity import check_run, neuron_names

    graph, step, _ = load_graph(args, require_dt=False)
    x = load_array(args.input)
    if x.ndim < 3:
        raise InputError(f"--input '{args.input}' has shape {x.shape}; expected [T, B, ...]")
    backend = get(args.backend)
    options = lava_timeout(args.backend, args.timeout)
    warn_reading(args, backend, graph, step.dt)
    record = neuron_names(graph) if backend.name == "reference" else False
    res = backend.run(graph, np.asarray(x, dtype=np.float64), dt=step.dt, record=record,
                      **options)
    for f in check_run(graph, res.records) if record else []:
        warn(args, f.message)
    out = res.outputs
    arrays = {f"output_{k}": v for k, v in out.items()} if isinstance(out, dict) else {
        "output": out}
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    arrays["dt"] = np.asarray(step.dt)
    save_npz(args.output, arrays)
    print(f"wrote {args.output}: {shapes}, dt")
    return 0


def add_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="run a .nir graph on inputs [T, B, ...]")
    r.add_argument("file")
    r.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    r.add_argument("--backend", default="reference", help=backend_help("backend"))
    dt_options(r, dt_help="time step (default: the file's metadata['dt']; a file without "
                          "one runs at dt = 1 with a warning)")
    r.add_argument("-o", "--output", required=True,
                   help="output .npz (holds 'output' and 'dt')")
    add_timeout_option(r)
    r.set_defaults(func=run_command)
