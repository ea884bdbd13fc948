"""The ``onnx`` backend: the graph converted by :mod:`nirbridge.export_onnx` and run by
onnxruntime on the CPU, in float32.

By default it runs the **step model** (one ``InferenceSession``, one call per time step,
each step's ``state.*.next`` outputs fed back as the next step's ``state.*`` inputs; at
t = 0 the states are left out, so the model's own defaults, the neurons' initial states,
apply). With ``record`` it converts with ``expose=True`` and records, per node, its summed
input, its output and (neurons) its state fields after each step, as float64 tensors
``[T, B, ...]``, like the reference's :class:`~nirbridge.backends.reference.RunRecord`.
Option ``sequence=True`` runs the **sequence model** instead (one ``Scan`` over the whole
input): the same values in one call; its records have inputs and outputs but no states.
Option ``threads``: onnxruntime's intra-op threads (default 1).

It reads the graph as NIR defines it (the reference's semantics, operation for
operation), in float32: graded values agree with the float64 reference to about 1e-7
relative, and a spike can differ only where the value compared lies within float32
rounding of its threshold (``Tolerance("rounding")``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import nir
import numpy as np

from nirbridge.backends._base import (
    Reading,
    Record,
    RunResult,
    Tolerance,
    check_options,
    error_reason,
    graph_issues,
)
from nirbridge.errors import InputError, NirbridgeError, SimulationError

_OPTIONS = ("sequence", "threads")


class OnnxBackend:
    """The ``onnx`` backend (:class:`~nirbridge.backends.Backend`); see the module."""

    name = "onnx"
    description = ("nirbridge's NIR → ONNX step model (float32, standard operators) run by "
                   "onnxruntime on the CPU")
    tolerance = Tolerance("rounding", graded_rel=1e-5,
                          why="float32: onnxruntime's float32 kernels against the float64 "
                              "reference; graded values within 1e-5 relative, spikes "
                              "identical but where a value is within float32 rounding of "
                              "its threshold")

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """The converter follows the reference's reading: no departure (float32 only)."""
        check_options(self.name, options, _OPTIONS)
        return Reading()

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why the graph cannot be converted: its structure, node types with no ONNX form,
        a neuron step the tracer cannot export (naming the torch function)."""
        from nirbridge.export_onnx import convert

        check_options(self.name, options, _OPTIONS)
        reasons = graph_issues(graph)
        if reasons:
            return reasons
        try:
            convert(graph, sequence=bool(options.get("sequence", False)))
        except NirbridgeError as exc:
            return [error_reason(exc)]
        return []

    def run(self, graph: nir.NIRGraph, inputs: Any, *, record: Record = False,
            dt: float | None = None, **options: Any) -> RunResult:
        """Run ``inputs`` ``[T, B, ...]`` (see the module docstring)."""
        import onnxruntime as ort

        from nirbridge.export_onnx import convert
        from nirbridge.passes import graph_dt

        check_options(self.name, options, _OPTIONS)
        sequence = bool(options.get("sequence", False))
        t0 = time.perf_counter()
        dt = graph_dt(graph, dt)
        model, plan = convert(graph, sequence=sequence, dt=dt, expose=bool(record))
        want = set(plan.order) if record is True else set(record or ()) & set(plan.order)
        feeds = _inputs(plan, inputs)
        t1 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the state defaults are overridable initializers on purpose
        opts.intra_op_num_threads = int(options.get("threads", 1))
        opts.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(model.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
            t2 = time.perf_counter()
            got = _run_sequence(sess, feeds) if sequence else _run_steps(sess, plan, feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SimulationError(f"onnxruntime failed to run the converted graph: "
                                  f"{type(exc).__name__}: {exc}") from exc
        t3 = time.perf_counter()
        outs = {n: got[n] for n in plan.outputs}
        out: Any = outs[plan.outputs[0]] if len(outs) == 1 else outs
        return RunResult(out, _records(plan, got, want, not sequence),
                         {"backend": self.name, "dt": dt, "dtype": "float32",
                          "model": "sequence" if sequence else "step",
                          "opset": model.opset_import[0].version,
                          "onnxruntime": ort.__version__,
                          "seconds": {"convert": t1 - t0, "session": t2 - t1,
                                      "run": t3 - t2, "wall": t3 - t0}})


def _inputs(plan: Any, inputs: Any) -> dict[str, np.ndarray]:
    """The inputs by Input node, float32 ``[T, B, ...]``, checked against the graph."""
    if not isinstance(inputs, Mapping):
        if len(plan.inputs) != 1:
            raise InputError(f"graph has inputs {plan.inputs}; pass a dict by name")
        inputs = {plan.inputs[0]: inputs}
    feeds = {}
    for name in plan.inputs:
        if name not in inputs:
            raise InputError(f"no input given for Input node '{name}'")
        x = inputs[name]
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if x.ndim < 3 or tuple(x.shape[2:]) != plan.shapes[name]:
            raise InputError(f"input for node '{name}' has shape {tuple(x.shape)}; the graph "
                             f"expects [T, B, {', '.join(map(str, plan.shapes[name]))}]")
        if not np.all(np.isfinite(x)):
            raise InputError(f"input for node '{name}' contains NaN or inf")
        feeds[name] = np.ascontiguousarray(x, dtype=np.float32)
    lead = {x.shape[:2] for x in feeds.values()}
    if len(lead) > 1:
        raise InputError(f"the inputs disagree on [T, B]: {sorted(lead)}")
    return feeds


def _run_steps(sess: Any, plan: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The step model over the time axis; every output stacked ``[T, B, ...]``."""
    names = [o.name for o in sess.get_outputs()]
    steps = next(iter(feeds.values())).shape[0]
    state: dict[str, np.ndarray] = {}  # empty at t = 0: the model's defaults
    traces: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for t in range(steps):
        res = dict(zip(names, sess.run(None, {**{n: x[t] for n, x in feeds.items()},
                                              **state}), strict=True))
        state = {s.name: res[s.next_name] for s in plan.states}
        for n in names:
            traces[n].append(res[n])
    return {n: np.stack(v).astype(np.float64) for n, v in traces.items()}


def _run_sequence(sess: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return {n: np.asarray(v, dtype=np.float64)
            for n, v in zip(names, sess.run(None, feeds), strict=True)}


def _records(plan: Any, got: dict[str, np.ndarray], want: set[str],
             with_states: bool) -> dict[str, Any]:
    """Per wanted node its :class:`~nirbridge.backends.reference.RunRecord` (neuron states
    only where ``with_states``: the step model's ``.next`` outputs stacked over time)."""
    import torch

    from nirbridge.backends.reference import RunRecord

    records = {}
    for name in plan.order:
        if name not in want:
            continue
        inp = got.get(f"input.{name}")
        states = {s.field: torch.from_numpy(got[s.next_name]) for s in plan.states
                  if with_states and s.node == name and s.kind == "neuron"}
        records[name] = RunRecord(input=None if inp is None else torch.from_numpy(inp),
                                  output=torch.from_numpy(got[f"value.{name}"]),
                                  states=states)
    return records


#: The onnx backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = OnnxBackend()
