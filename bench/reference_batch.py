"""Benchmark (run by hand, never in the tests): the batched float64/float32 reference
executor on CPU and, when present, CUDA.

    .venv/bin/python bench/reference_batch.py [--steps 32] [--batch 256]

Runs the residual conv SNN of nirbridge.examples (ARLIF and LIF variants, 16 channels on
8×8 inputs) through :func:`nirbridge.backends.reference.run_reference` and prints
samples/s and time steps/s per device and dtype as Markdown rows. Also checks that the
CUDA run gives the same spikes as the CPU run in float64.
"""

from __future__ import annotations

import argparse
import time

import torch

import nirbridge
from nirbridge.backends.reference import ReferenceExecutor
from nirbridge.examples import DigitsConvSNN


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (CUDA context, allocator, cuDNN choice)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {name}; "
          f"T={args.steps}, B={args.batch}")
    print("| model | device | dtype | s per batch | samples/s | steps/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in ("lif", "arlif"):
        torch.manual_seed(0)
        graph = nirbridge.to_nir(DigitsConvSNN(kind, channels=16).eval(),
                                 torch.zeros(1, 1, 8, 8))
        x = torch.rand(args.steps, args.batch, 1, 8, 8, dtype=torch.float64)
        spikes = {}
        for dev in devices:
            for dtype in (torch.float64, torch.float32):
                ex = ReferenceExecutor(graph, dtype=dtype)
                xd = x.to(dev)

                def call(ex=ex, xd=xd):
                    with torch.no_grad():
                        return ex(xd, record=True)

                s = timed(call, args.repeats)
                if dtype == torch.float64:
                    _, rec = call()
                    spikes[dev] = {n: r.output.cpu() for n, r in rec.items()
                                   if n.startswith("sn")}
                print(f"| {kind} | {dev} | {str(dtype).split('.')[-1]} | {s:.3f} | "
                      f"{args.batch / s:.0f} | {args.batch * args.steps / s:.0f} |")
        if "cuda" in spikes:
            same = all(torch.equal(spikes["cpu"][n], spikes["cuda"][n]) for n in spikes["cpu"])
            print(f"\n{kind}: float64 spikes on CUDA identical to CPU: {same}\n")


if __name__ == "__main__":
    main()
