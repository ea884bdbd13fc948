"""Benchmark (run by hand, never in the tests): the batched emulator (the ``fixed`` backend,
:func:`nirbridge.quantize.emulator.run_emulated`) against Lava fixed_pt and the numpy
golden model, side by side in one run, on the same quantized graph.

    .venv/bin/python bench/emulator_vs_lava.py [--repeats 3] [--lava-repeats 2]
        [--inner 3] [--threads 1] [--batches 1 32 256] [--steps 100] [--lava-steps-256 20]
        [--profile]

Networks: the digits conv net of ``deploy/digits_lif.toml`` (its trained checkpoint, its
test images, direct encoding: the image at every step) and a 700-256-256-20 LIF MLP
(random weights, Bernoulli(0.1) input spikes). Each is quantized once for loihi2 and the
same :class:`~nirbridge.quantize.QuantizedGraph` is run by all three: Lava fixed_pt
(``run_lava`` of the lowered network; its simulation seconds, and its wall seconds with
compile, child process and stop), the emulator and the numpy executor, alternating them.
Throughput is steps·samples per second. Lava is slow: at B = 256 every contender runs
``--lava-steps-256`` steps (default 20) so that the ratio compares the same T; the table
says which T each row used. Outputs must be identical (integers, in real units) between
all three; the script prints whether they are.
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import nir
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_recurrence import recipe_graph  # noqa: E402

from nirbridge.backends.fixed import quantized_for  # noqa: E402
from nirbridge.backends.lava import lower, run_lava  # noqa: E402
from nirbridge.quantize import run_fixed_point  # noqa: E402
from nirbridge.quantize.emulator import CHUNK_ROWS, DEFAULT_BATCH_SIZE, run_emulated  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def mlp_700_256_256_20() -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    sizes = [700, 256, 256, 20]
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([700]))}
    edges, prev = [], "input"
    for i in range(3):
        n_in, n_out = sizes[i], sizes[i + 1]
        nodes[f"fc{i}"] = nir.Affine(rng.normal(0.02, 2.0 / np.sqrt(n_in), (n_out, n_in)),
                                     np.zeros(n_out))
        nodes[f"lif{i}"] = nir.LIF(tau=np.full(n_out, 4.0), r=np.ones(n_out),
                                   v_leak=np.zeros(n_out), v_threshold=np.ones(n_out),
                                   v_reset=np.zeros(n_out))
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(np.array([20]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def nets(steps: int, batch: int) -> dict[str, tuple[nir.NIRGraph, np.ndarray]]:
    conv, x = recipe_graph(ROOT / "deploy" / "digits_lif.toml")
    images = x[0].numpy()  # direct encoding: every step shows the image
    idx = np.arange(batch) % images.shape[0]
    xc = np.broadcast_to(images[idx], (steps, batch, *images.shape[1:])).copy()
    xm = (np.random.default_rng(1).random((steps, batch, 700)) < 0.1).astype(np.float64)
    return {"digits conv (digits_lif)": (conv, xc), "MLP 700-256-256-20 LIF": (
        mlp_700_256_256_20(), xm)}


def _outputs_equal(a, b) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def row(name: str, graph: nir.NIRGraph, x: np.ndarray, args) -> str:
    q = quantized_for(graph, x)
    net = lower(graph, "fixed_pt", quant=q)
    t, b = x.shape[:2]
    times: dict[str, list[float]] = {"lava_run": [], "lava_wall": [], "emu": [], "old": [],
                                     "emu_cold": []}
    outs: dict[str, object] = {}

    def emu():
        return run_emulated(q, x, batch_size=args.batch_size).outputs

    def old():
        return run_fixed_point(q, x, record=False)[0]

    emu(), old()  # warm-up (imports, first-call allocations)
    for r in range(max(args.repeats, args.lava_repeats)):
        if r < args.lava_repeats:
            t0 = time.perf_counter()
            res = run_lava(net, x, progress=False, timeout_s=None)
            times["lava_wall"].append(time.perf_counter() - t0)
            times["lava_run"].append(res.seconds["run"])
            outs["lava"] = res.outputs
        if r < args.repeats:
            # each contender runs --inner times in a row: the first call after Lava's
            # child process finds the caches cold (at B = 1 it takes ~2x a warm call);
            # it is reported apart ("cold"), and min/median are over all calls
            for key, fn in (("emu", emu), ("old", old)):
                for i in range(args.inner):
                    t0 = time.perf_counter()
                    outs[key] = fn()
                    dt = time.perf_counter() - t0
                    times[key].append(dt)
                    if key == "emu" and i == 0:
                        times["emu_cold"].append(dt)
    same = _outputs_equal(outs["emu"], outs["lava"]) and _outputs_equal(outs["emu"], outs["old"])
    spikes = float(np.mean(np.asarray(outs["emu"]) != 0))
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    thr = {k: t * b / v for k, v in best.items()}
    return (f"| {name} | {b} | {t} | {thr['lava_run']:.0f} | {thr['lava_wall']:.0f} | "
            f"{thr['emu']:.0f} | {thr['emu_cold']:.0f} | {thr['old']:.0f} | "
            f"{best['lava_run'] / best['emu']:.0f} ({med['lava_run'] / med['emu']:.0f}) | "
            f"{best['lava_wall'] / best['emu']:.0f} | "
            f"{best['lava_run'] / best['emu_cold']:.0f} | "
            f"{best['old'] / best['emu']:.1f} ({med['old'] / med['emu']:.1f}) | {same} | "
            f"{spikes:.3f} |")


def profile(graph: nir.NIRGraph, x: np.ndarray, batch_size: int | str) -> None:
    q = quantized_for(graph, x)
    run_emulated(q, x, batch_size=batch_size)
    pr = cProfile.Profile()
    pr.enable()
    run_emulated(q, x, batch_size=batch_size)
    pr.disable()
    st = pstats.Stats(pr)
    total = st.total_tt
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:10]
    print(f"\nwhere the emulator's time goes (T×B = {x.shape[0]}×{x.shape[1]}, "
          f"{total:.3f} s under cProfile; own time):\n")
    print("| function | calls | own s | share |")
    print("| --- | --- | --- | --- |")
    for (file, line, fn), (_, ncalls, tt, _, _) in rows:
        where = f"{Path(file).name}:{line}({fn})" if line else fn
        print(f"| `{where}` | {ncalls} | {tt:.3f} | {100 * tt / total:.0f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lava-repeats", type=int, default=2)
    ap.add_argument("--inner", type=int, default=3,
                    help="consecutive calls of the emulator and the numpy executor per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lava-steps-256", type=int, default=20)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    ap.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v),
                    default=DEFAULT_BATCH_SIZE, help="samples per emulator chunk, or 'auto'")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} torch "
          f"thread(s), emulator on cpu in chunks of {args.batch_size} samples "
          f"(auto: {CHUNK_ROWS} // T); best of "
          f"{args.repeats} rounds × {args.inner} calls (emulator, numpy) / {args.lava_repeats} "
          "(Lava), alternating; median ratios in parentheses; 'cold': the emulator's first "
          "call after Lava in each round\n")
    # numba compiles the neuron kernels at the first call in a process (no cache file)
    graph, x = nets(8, 2)["MLP 700-256-256-20 LIF"]
    q = quantized_for(graph, x)
    t0 = time.perf_counter()
    run_emulated(q, x)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_emulated(q, x)
    print(f"first emulator call in this process (numba compiles the LIF kernel): "
          f"{first:.2f} s; the same call warm: {time.perf_counter() - t0:.4f} s; the "
          "conv net's first call compiles nothing more\n")
    print("| network | B | T | Lava sim steps·samples/s | Lava wall | emulator | emulator "
          "cold | numpy executor | emulator ÷ Lava sim | ÷ Lava wall | cold ÷ Lava sim | "
          "emulator ÷ numpy | outputs identical (all 3) | output nonzero |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in args.batches:
        steps = args.lava_steps_256 if b >= 256 else args.steps
        for name, (graph, x) in nets(steps, b).items():
            print(row(name, graph, x, args), flush=True)
    if args.profile:
        for name, (graph, x) in nets(args.steps, 256).items():
            print(f"\n## {name}")
            profile(graph, x, args.batch_size)


if __name__ == "__main__":
    main()
