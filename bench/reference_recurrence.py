"""Benchmark (run by hand, never in the tests): the reference executor before and after
recurrence support, side by side in one process, on the digits conv recipes' graphs.

    .venv/bin/python bench/reference_recurrence.py [--baseline REV] [--repeats 5]
        [--samples 360] [--threads N] [--recurrent]

The baseline is ``nirbridge/backends/reference.py`` as it was at git revision ``REV``
(default: the last commit before recurrence support), loaded from ``git show`` into a
module of its own; the current executor is the installed one. For every
``deploy/digits_*.toml`` recipe it builds the trained model (its checkpoint), exports it
to NIR at the recipe's dt and runs the recipe's own inputs (the test split, direct
encoding, T steps) through both executors' ``run_reference`` (building the executor
included: the schedule is computed there), alternating them, ``--repeats`` times each,
with and without ``record=True``. It prints the best time of each as Markdown rows and
checks that outputs and every record are identical. ``--recurrent`` adds the step-by-step
cost of a recurrent layer (no baseline: the old executor refused cycles).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import nir
import numpy as np
import torch

import nirbridge
from nirbridge.backends import reference as current
from nirbridge.factory import load_factory, load_weights
from nirbridge.recipes import load_recipe, recipe_inputs

ROOT = Path(__file__).resolve().parent.parent
#: The last commit whose reference executor refused cycles.
BASELINE = "464310f"


def baseline_module(rev: str) -> types.ModuleType:
    """``nirbridge/backends/reference.py`` at git revision ``rev``, as a module."""
    src = subprocess.run(["git", "show", f"{rev}:nirbridge/backends/reference.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType("_baseline_reference")
    mod.__file__ = f"<{rev}:nirbridge/backends/reference.py>"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - our own file
    return mod


def recipe_graph(path: Path) -> tuple[nir.NIRGraph, torch.Tensor]:
    recipe = load_recipe(path)
    spec = recipe.model
    model = load_factory(spec.factory)(**spec.kwargs)
    load_weights(model, spec.checkpoint)
    x, _ = recipe_inputs(recipe)
    graph = nirbridge.to_nir(model.eval(), torch.from_numpy(x[0, :1]).float(),
                             dt=1.0 if spec.dt is None else spec.dt)
    return graph, torch.from_numpy(x).to(torch.float64)


def best_times(calls: dict[str, callable], repeats: int) -> dict[str, float]:
    """Best wall time of each call, alternating them so that load drifts hit both."""
    for fn in calls.values():
        fn()  # warm-up
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def identical(a, b) -> bool:
    """Outputs, or ``(outputs, records)``, equal bit for bit."""
    if isinstance(a, tuple):
        (oa, ra), (ob, rb) = a, b
        return identical(oa, ob) and ra.keys() == rb.keys() and all(
            _same(ra[n].input, rb[n].input) and _same(ra[n].output, rb[n].output)
            and ra[n].states.keys() == rb[n].states.keys()
            and all(torch.equal(ra[n].states[f], rb[n].states[f]) for f in ra[n].states)
            for n in ra)
    return torch.equal(a, b)


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def recurrent_rows(repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    for n in (64, 256):
        lif = nir.LIF(tau=np.full(n, 4.0), r=np.ones(n), v_leak=np.zeros(n),
                      v_threshold=np.ones(n), v_reset=np.zeros(n))
        graph = nir.NIRGraph(
            nodes={"input": nir.Input(np.array([64])),
                   "fc": nir.Affine(rng.normal(size=(n, 64)) * 0.5, np.zeros(n)),
                   "lif": lif, "rec": nir.Affine(rng.normal(size=(n, n)) * 0.1, np.zeros(n)),
                   "output": nir.Output(np.array([n]))},
            edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                   ("lif", "output")], metadata={"dt": 1.0}, type_check=False)
        x = torch.rand(100, 64, 64, dtype=torch.float64)
        ex = current.ReferenceExecutor(graph)
        with torch.no_grad():
            s = best_times({"r": lambda ex=ex, x=x: ex(x)}, repeats)["r"]
        rows.append(f"| recurrent LIF {n} (T=100, B=64) | {s:.3f} | {64 / s:.0f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--recurrent", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    old = baseline_module(args.baseline)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} CPU threads, float64 on "
          f"CPU; baseline {args.baseline}; best of {args.repeats}, alternating\n")
    print("| recipe | T × B | record | baseline s | current s | current / baseline | "
          "identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted((ROOT / "deploy").glob("digits_*.toml")):
        graph, x = recipe_graph(path)
        for record in (False, True):
            def run(mod, record=record, graph=graph, x=x):
                return mod.run_reference(graph, x, record=record)

            same = identical(run(old), run(current))
            t = best_times({"old": lambda: run(old), "new": lambda: run(current)},
                           args.repeats)
            print(f"| {path.stem} | {x.shape[0]} × {x.shape[1]} | {record} | {t['old']:.3f} | "
                  f"{t['new']:.3f} | {t['new'] / t['old']:.3f} | {same} |")
    if args.recurrent:
        print("\n| recurrent graph (step by step) | s per batch | samples/s |")
        print("| --- | --- | --- |")
        for row in recurrent_rows(args.repeats):
            print(row)


if __name__ == "__main__":
    main()
