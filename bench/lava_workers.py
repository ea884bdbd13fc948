"""Benchmark (run by hand, never in the tests): a Lava run in one process, in shards on
``--workers`` processes side by side, and on a local Dask cluster of as many workers, on
a digits recipe's graph, side by side in one run.

    .venv/bin/python bench/lava_workers.py [--recipe deploy/digits_lif.toml]
        [--mode fixed_pt] [--samples 96] [--workers 2] [--repeats 3] [--no-cluster]

The graph is the recipe's trained conv net exported to NIR (as
``bench/reference_recurrence.py`` builds it), its inputs the first ``--samples`` samples of
the recipe's test split (direct encoding, the recipe's T). Each contender is the Lava
backend's whole ``run`` (lowering, quantizing in fixed_pt, the child processes, Lava's
compile, run and stop, assembling; for the cluster also starting and closing it: what a
caller waits for), alternated ``--repeats`` times after one warm-up; it prints the
minimum and median wall time of each and the ratio to one process, and checks that every
contender's outputs and spike counts equal the one-process run's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_recurrence import ROOT, recipe_graph  # noqa: E402

from nirbridge.backends import get  # noqa: E402


def timed(calls: dict[str, Callable[[], object]], repeats: int
          ) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Wall times of each call, alternating them so that load drifts hit all; and each
    call's last result."""
    results = {name: fn() for name, fn in calls.items()}  # warm-up (Lava's imports)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return times, results


def same(a, b) -> bool:
    return np.array_equal(a.outputs, b.outputs) and a.info["counts"].keys() == \
        b.info["counts"].keys() and all(np.array_equal(a.info["counts"][k], b.info["counts"][k])
                                        for k in a.info["counts"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "deploy" / "digits_lif.toml"))
    ap.add_argument("--mode", choices=("fixed_pt", "floating_pt"), default="fixed_pt")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-cluster", action="store_true", help="leave the Dask cluster out")
    args = ap.parse_args()

    graph, x = recipe_graph(Path(args.recipe))
    x = x[:, : args.samples].numpy()
    t, b = x.shape[:2]
    backend = get("lava-fixed" if args.mode == "fixed_pt" else "lava-float")
    n = args.workers

    def call(**kw) -> Callable[[], object]:
        return lambda: backend.run(graph, x, timeout_s=3600, progress=False, **kw)

    calls = {"1 process": call(), f"{n} workers": call(workers=n)}
    if not args.no_cluster:
        calls[f"Dask local cluster, {n} workers"] = call(workers=n, cluster="local")
    times, results = timed(calls, args.repeats)
    one = results["1 process"]
    base_min, base_med = min(times["1 process"]), statistics.median(times["1 process"])
    print(f"{Path(args.recipe).name}, {backend.name}, T = {t}, B = {b} ({b * t} sample-steps),"
          f" {os.cpu_count()} CPUs, {args.repeats} repeats after a warm-up\n")
    print("| contender | min s | median s | speed-up (min) | speed-up (median) | identical |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, ts in times.items():
        lo, med = min(ts), statistics.median(ts)
        ok = same(one, results[name])
        print(f"| {name} | {lo:.2f} | {med:.2f} | {base_min / lo:.2f}× | {base_med / med:.2f}× "
              f"| {'yes' if ok else 'NO'} |")
    for name, res in results.items():
        sec = res.info["seconds"]
        print(f"\n{name}: compile {sec['compile']:.2f} s, run {sec['run']:.2f} s, stop "
              f"{sec['stop']:.2f} s summed over {res.info['runs']} run(s); shards "
              f"{res.info['shards']}", end="")
    print()


if __name__ == "__main__":
    main()
