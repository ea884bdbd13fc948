"""Benchmark (run by hand, never in the tests): the reference executor against Norse on the
same network, dtype and inputs, side by side in one process, and the peak memory of each
run in a process of its own.

    .venv/bin/python bench/reference_vs_norse.py [--nets conv,mlp] [--batches 1,32,256]
        [--dtypes float64,float32] [--steps 100] [--repeats 5] [--threads 1]
        [--memory] [--skip-memory conv:float64:256] [--baseline REV]

Networks (T = ``--steps``):

- ``conv``: the digits conv recipe (``deploy/digits_lif.toml``: its trained checkpoint, three
  3×3 conv layers of 8 channels with ``nir.LIF`` (r = 1, v_reset = 0), a residual sn1 → sn3,
  2×2 average pooling, a dense read-out). Norse 1.1 does not read that graph (it maps no
  AvgPool2d, and its ``torch.nn.Flatten`` flattens the batch axis), so both run an
  equivalent Norse reads: the pooling as ``nir.SumPool2d`` with the read-out weights divided
  by 4 (its window area), and the read-out as a ``nir.Conv2d`` whose 4×4 kernel covers the
  pooled map (the dense weights reshaped ``[10, 8, 4, 4]``): output ``[10, 1, 1]``. Inputs:
  the recipe's test split, direct encoding.
- ``mlp``: 700-256-256-20 ``nir.LIF`` (r = 1, v_reset = 0, τ = 5·dt), Bernoulli(0.05) spikes.

Throughput: each backend's ``run`` end to end (model built included, no records), best and
median of ``--repeats`` after one warm-up, alternating the backends; ``norse / reference``
> 1 means the reference is faster. Each row says whether the outputs are identical (float64:
the reference equals Norse exactly where Norse's float32 parameters are float32 values; the
agreement figure is the fraction of output values equal). ``--baseline REV`` also times the
reference as it was at git revision ``REV`` (its outputs must equal the current ones bit for
bit).

Memory (``--memory``): every (network, dtype, batch, backend) runs once in a fresh
subprocess that reads the graph (``nir.read``) and inputs (``np.load``) this process wrote,
runs two steps of one sample (imports and kernels loaded), resets the kernel's peak
resident set counter (``/proc/self/clear_refs`` ← 5), then the run; the figures are the
peak resident set during the run (``VmHWM`` of ``/proc/self/status``; Linux only) and that
minus the resident set just before the run (``VmRSS``): what the run itself added at its
peak. (``resource.getrusage``'s ``ru_maxrss`` cannot be reset: the imports' peak, about
0.8 GiB here, would hide every run smaller than that.)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import nir
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nirbridge.backends import get  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def lif(shape: tuple[int, ...], tau: float, v_th: float) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, v_th), v_reset=np.zeros(shape))


def conv_net() -> tuple[nir.NIRGraph, np.ndarray]:
    """The Norse-readable equivalent of the digits conv recipe graph, and its inputs
    ``[1, 360, 1, 8, 8]`` (one step; repeated over T by :func:`inputs`)."""
    from reference_recurrence import recipe_graph

    g, x = recipe_graph(ROOT / "deploy" / "digits_lif.toml")
    fc = g.nodes["fc"]
    head_w = np.asarray(fc.weight).reshape(-1, 8, 4, 4) / 4.0
    nodes = {n: g.nodes[n] for n in ("input", "conv1", "sn1", "conv2", "sn2", "conv3", "sn3")}
    nodes["pool"] = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                  padding=np.array([0, 0]))
    nodes["head"] = nir.Conv2d(input_shape=(4, 4), weight=head_w, stride=1, padding=0,
                               dilation=1, groups=1, bias=np.asarray(fc.bias))
    nodes["output"] = nir.Output(np.array([10, 1, 1]))
    edges = [e for e in g.edges if e[1] not in ("pool", "flat", "fc", "output")]
    edges += [("sn3", "pool"), ("pool", "head"), ("head", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
    return graph, x[:1].numpy()


def mlp_net() -> tuple[nir.NIRGraph, None]:
    rng = np.random.default_rng(0)
    sizes = [700, 256, 256, 20]
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([700]))}
    edges, prev = [], "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), 1):
        nodes[f"fc{i}"] = nir.Affine(rng.normal(0, 2.0 / np.sqrt(a), (b, a)),
                                     rng.normal(0, 0.1, b))
        nodes[f"lif{i}"] = lif((b,), 5e-4, 0.5)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(np.array([20]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-4},
                        type_check=False), None


def inputs(net: str, steps: int, batch: int) -> tuple[nir.NIRGraph, np.ndarray]:
    if net == "conv":
        graph, x1 = conv_net()
        reps = -(-batch // x1.shape[1])
        x = np.repeat(np.tile(x1, (1, reps, 1, 1, 1))[:, :batch], steps, axis=0)
        return graph, np.ascontiguousarray(x)
    graph, _ = mlp_net()
    rng = np.random.default_rng(1)
    return graph, (rng.random((steps, batch, 700)) < 0.05).astype(np.float64)


def baseline_backend(rev: str):
    """The reference backend as it was at git revision ``rev`` (loaded from ``git show``)."""
    src = subprocess.run(["git", "show", f"{rev}:nirbridge/backends/reference.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    tree = subprocess.run(["git", "ls-tree", "--name-only", rev, "nirbridge/backends/"],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    if "nirbridge/backends/blocks.py" in tree.split():  # its blocks.py, not today's
        blocks = types.ModuleType("_baseline_blocks")
        blocks.__file__ = f"<{rev}:nirbridge/backends/blocks.py>"
        sys.modules[blocks.__name__] = blocks
        exec(compile(subprocess.run(  # noqa: S102 - our own file
            ["git", "show", f"{rev}:nirbridge/backends/blocks.py"], cwd=ROOT, check=True,
            capture_output=True, text=True).stdout, blocks.__file__, "exec"), blocks.__dict__)
        src = src.replace("from nirbridge.backends.blocks import", "from _baseline_blocks import")
    mod = types.ModuleType("_baseline_reference")
    mod.__file__ = f"<{rev}:nirbridge/backends/reference.py>"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - our own file
    return mod.BACKEND


def timings(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Wall times of each call after one warm-up, alternating the calls."""
    for fn in calls.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(backend: str, folder: str, dtype: str) -> None:
    """One run, in this (fresh) process, of the graph and inputs :func:`measure_memory`
    wrote to ``folder``, after a two-step one-sample run that loads what the backend
    imports; prints its memory as JSON (``before_kb``: resident just before the run)."""
    graph = nir.read(Path(folder) / "graph.nir")
    x = np.load(Path(folder) / "x.npy")
    be = get(backend)
    be.run(graph, x[:2, :1], dtype=DTYPES[dtype])  # imports and kernels loaded, not measured
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the process's peak resident set (VmHWM) to the current one
    before = _status_kb("VmRSS")
    be.run(graph, x, dtype=DTYPES[dtype])
    print(json.dumps({"peak_kb": _status_kb("VmHWM"), "before_kb": before,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure_memory(backend: str, net: str, dtype: str, batch: int, steps: int,
                   threads: int) -> dict[str, int] | None:
    import tempfile

    graph, x = inputs(net, steps, batch)
    with tempfile.TemporaryDirectory() as tmp:
        nir.write(Path(tmp) / "graph.nir", graph)
        np.save(Path(tmp) / "x.npy", x)
        cmd = [sys.executable, __file__, "--child", f"{backend}:{tmp}:{dtype}",
               "--threads", str(threads)]
        got = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if got.returncode != 0:
        print(f"<!-- memory child {backend}:{net}:{dtype}:{batch} failed: "
              f"{got.stderr.strip().splitlines()[-1:]} -->")
        return None
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="conv,mlp")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--skip-memory", default="",
                    help="net:dtype:batch configurations whose memory is not measured")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        backend, folder, dtype = args.child.split(":")
        memory_child(backend, folder, dtype)
        return
    ref, norse = get("reference"), get("norse")
    old = baseline_backend(args.baseline) if args.baseline else None
    import norse as norse_pkg

    print(f"# torch {torch.__version__}, norse {norse_pkg.__version__}, "
          f"{torch.get_num_threads()} thread(s), T = {args.steps}; min and median of "
          f"{args.repeats}, alternating{'; baseline ' + args.baseline if old else ''}\n")
    skip = set(filter(None, args.skip_memory.split(",")))
    if not args.no_timing:
        head = "| net | dtype | B | reference s (min / med) | norse s (min / med) | " \
               "norse / reference (min / med) | outputs equal |"
        if old is not None:
            head += " baseline s (min / med) | baseline / current (min) | baseline identical |"
        print(head)
        print("|" + " --- |" * (head.count("|") - 1))
        for net in args.nets.split(","):
            for dtype in args.dtypes.split(","):
                for batch in (int(b) for b in args.batches.split(",")):
                    graph, x = inputs(net, args.steps, batch)
                    reasons = norse.check(graph)
                    if reasons:
                        raise SystemExit(f"Norse cannot run the {net} net: {reasons}")
                    dt = DTYPES[dtype]
                    calls = {"ref": lambda g=graph, x=x, dt=dt: ref.run(g, x, dtype=dt),
                             "norse": lambda g=graph, x=x, dt=dt: norse.run(g, x, dtype=dt)}
                    if old is not None:
                        calls["old"] = lambda g=graph, x=x, dt=dt: old.run(g, x, dtype=dt)
                    t = timings(calls, args.repeats)
                    a, b = ref.run(graph, x, dtype=dt).outputs, norse.run(
                        graph, x, dtype=dt).outputs
                    eq = float(np.mean(a == b))
                    mn = {k: min(v) for k, v in t.items()}
                    md = {k: statistics.median(v) for k, v in t.items()}
                    row = (f"| {net} | {dtype} | {batch} | {mn['ref']:.3f} / {md['ref']:.3f} | "
                           f"{mn['norse']:.3f} / {md['norse']:.3f} | "
                           f"{mn['norse'] / mn['ref']:.2f} / {md['norse'] / md['ref']:.2f} | "
                           f"{eq:.4f} |")
                    if old is not None:
                        same = np.array_equal(old.run(graph, x, dtype=dt).outputs, a)
                        row += (f" {mn['old']:.3f} / {md['old']:.3f} | "
                                f"{mn['old'] / mn['ref']:.2f} | {same} |")
                    print(row, flush=True)
    if args.memory:
        print("\n| net | dtype | B | reference peak MiB (run's own) | norse peak MiB "
              "(run's own) | reference / norse (peak) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for net in args.nets.split(","):
            for dtype in args.dtypes.split(","):
                for batch in (int(b) for b in args.batches.split(",")):
                    if f"{net}:{dtype}:{batch}" in skip:
                        continue
                    m = {be: measure_memory(be, net, dtype, batch, args.steps, args.threads)
                         for be in ("reference", "norse")}
                    if None in m.values():
                        continue
                    r, n = m["reference"], m["norse"]
                    mib = {k: (v["peak_kb"] / 1024, (v["peak_kb"] - v["before_kb"]) / 1024)
                           for k, v in m.items()}
                    print(f"| {net} | {dtype} | {batch} | {mib['reference'][0]:.0f} "
                          f"({mib['reference'][1]:.0f}) | {mib['norse'][0]:.0f} "
                          f"({mib['norse'][1]:.0f}) | {r['peak_kb'] / n['peak_kb']:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
