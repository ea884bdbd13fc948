"""Benchmark (run by hand, never in the tests): every backend's throughput on the same graph
and the same inputs, side by side in one process.

    .venv/bin/python bench/backends.py [--backends reference,norse,...] [--steps 16]
        [--batches 1,32] [--repeats 3] [--threads 1] [--lava]

The graph is a three-layer LIF network (64-256-256-10, ``nir.LIF`` with ``r = 1``,
``v_reset = 0``, ``τ = 5·dt`` at dt = 1e-4: a node every backend reads — snnTorch folding
``r`` into its threshold, Sinabs with its own multi-spike meaning of it) on the
scikit-learn digits (8×8 scans, shipped with scikit-learn), direct encoding over
``--steps`` steps. Each backend's ``run`` is timed end to end (conversion, session or
process start included: what a user of ``nirbridge run --backend`` waits for), best of
``--repeats`` after one warm-up, alternating the backends so that load drifts hit all of
them; throughput is steps·samples per second. The ONNX step model is also timed alone, as
an edge runtime streams it: one ``InferenceSession.run`` per step, states fed back, the
session built once (``onnx stream``). Each row also gives the backend's agreement with the
reference (identical output values), so that a fast wrong backend shows as wrong. Lava
(``--lava``) starts processes on every run: seconds per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import nir
import numpy as np
import torch
from sklearn.datasets import load_digits

from nirbridge.backends import get, names


def lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def graph() -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([64])),
               "fc1": nir.Affine(rng.normal(0, 1.5, (256, 64)), rng.normal(0, 0.5, 256)),
               "lif1": lif(256),
               "fc2": nir.Affine(rng.normal(0, 0.5, (256, 256)), np.zeros(256)),
               "lif2": lif(256),
               "fc3": nir.Affine(rng.normal(0, 0.5, (10, 256)), np.zeros(10)),
               "lif3": lif(10),
               "output": nir.Output(np.array([10]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "fc3"), ("fc3", "lif3"), ("lif3", "output")],
        metadata={"dt": 1e-4}, type_check=False)


def inputs(steps: int, batch: int) -> np.ndarray:
    digits = load_digits().data[:batch] / 16.0
    return np.repeat(digits[None], steps, axis=0).astype(np.float64)


def best(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each call after a warm-up, alternating the calls."""
    for fn in calls.values():
        fn()
    out = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            out[name] = min(out[name], time.perf_counter() - t0)
    return out


def onnx_stream(g: nir.NIRGraph, x: np.ndarray) -> Callable[[], np.ndarray]:
    """The ONNX step model in onnxruntime, one ``run`` per step, states fed back."""
    import onnxruntime as ort

    from nirbridge.export_onnx import to_onnx

    model = to_onnx(g)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the state defaults' "not treated as constant" warnings
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    # states with defaults are overridable initializers, not listed by get_inputs()
    state_in = [i.name for i in sess.get_overridable_initializers()]
    data_in = [i.name for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]
    x32 = x.astype(np.float32)

    def run() -> np.ndarray:
        feed: dict[str, np.ndarray] = {}  # t = 0: the states' initial values (defaults)
        ys = []
        for xt in x32:
            feed[data_in[0]] = xt
            got = dict(zip(outs, sess.run(None, feed), strict=True))
            ys.append(got[outs[0]])
            feed = {n: got[n + ".next"] for n in state_in}
        return np.stack(ys)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=None, help="comma-separated (default: all but Lava)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lava", action="store_true", help="include lava-float and lava-fixed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = (args.backends.split(",") if args.backends else
              [n for n in names() if args.lava or not n.startswith("lava")])
    g = graph()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s); graph 64-256-256-10 "
          f"LIF, T = {args.steps}; best of {args.repeats}, alternating\n")
    print("| backend | B | s per run | steps·samples/s | × reference | outputs identical "
          "to the reference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(args.steps, batch)
        ref = get("reference").run(g, x).output()
        calls: dict[str, Callable[[], object]] = {}
        for name in chosen:
            reasons = get(name).check(g)
            if reasons:
                print(f"| {name} | {batch} | cannot run: {reasons[0]} | | | |")
                continue
            calls[name] = lambda name=name, x=x: get(name).run(g, x).output()
        if "onnx" in calls:
            calls["onnx stream"] = onnx_stream(g, x)
        times = best(calls, args.repeats)
        for name, fn in calls.items():
            out = np.asarray(fn(), dtype=np.float64)
            same = float((np.abs(out - ref) <= 1e-9).mean())
            s = times[name]
            print(f"| {name} | {batch} | {s:.4f} | {args.steps * batch / s:,.0f} | "
                  f"{times['reference'] / s:.2f} | {same:.2%} |")


if __name__ == "__main__":
    main()
