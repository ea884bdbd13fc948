"""Benchmark (run by hand, never in the tests): Lava compile time and simulation speed.

    .venv/bin/python bench/lava_sim.py [--steps 200] [--batch 2] [--modes floating_pt fixed_pt]

Networks: a 784-256-10 LIF MLP and a small residual conv SNN (nirbridge.examples,
8 channels on 8×8 inputs). Reports compile seconds and simulated steps per second
(steps = B·T + latency, run seconds only) for each Lava mode, as Markdown table rows.
"""

from __future__ import annotations

import argparse
import platform
import time

import nir
import numpy as np
import torch

import nirbridge
from nirbridge.backends.lava import run_lava
from nirbridge.examples import DigitsConvSNN


def mlp_784_256_10() -> nir.NIRGraph:
    rng = np.random.default_rng(0)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 4.0), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.full(n, 1.0), v_reset=np.zeros(n))

    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([784])),
               "fc1": nir.Affine(rng.normal(0, 0.1, (256, 784)), np.zeros(256)),
               "lif1": lif(256),
               "fc2": nir.Affine(rng.normal(0, 0.3, (10, 256)), np.zeros(10)),
               "lif2": lif(10),
               "output": nir.Output(np.array([10]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "output")],
        metadata={"dt": 1.0}, type_check=False)


def conv_net() -> nir.NIRGraph:
    torch.manual_seed(0)
    return nirbridge.to_nir(DigitsConvSNN("lif").eval(), torch.zeros(1, 1, 8, 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["floating_pt", "fixed_pt"])
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    nets = {
        "784-256-10 LIF": (mlp_784_256_10(), (rng.random((args.steps, args.batch, 784)) < 0.1)
                           .astype(np.float64)),
        "conv 8ch residual": (conv_net(), rng.random((args.steps, args.batch, 1, 8, 8))),
    }
    print(f"# {platform.processor() or platform.machine()}, T={args.steps}, B={args.batch}")
    print("| network | mode | compile s | run s | steps | steps/s | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (graph, x) in nets.items():
        for mode in args.modes:
            t0 = time.perf_counter()
            try:
                res = run_lava(graph, x, mode, progress=False)
            except nirbridge.NirbridgeError as exc:
                print(f"| {name} | {mode} | failed: {str(exc).splitlines()[0]} | | | | |")
                continue
            wall = time.perf_counter() - t0
            s = res.seconds
            print(f"| {name} | {mode} | {s['compile']:.2f} | {s['run']:.2f} | {res.steps} | "
                  f"{res.steps / s['run']:.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
