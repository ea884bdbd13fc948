"""The float64 reference executor: the ground truth every backend is judged against.

Any acyclic NIR graph of standard and nirbridge custom nodes becomes a torch module that
runs inputs shaped ``[T, B, ...]`` in one call. Because the graph has no feedback edges,
each node is evaluated over the whole time axis at once in topological order: synapses
(Affine, Conv, pooling) act on all ``T·B`` samples in one batched call and only neurons
loop over time. Several edges into one node sum (NIR's convention).

nirtorch's own interpreter (``nirtorch.nir_to_torch``) runs one step at a time and
exposes neither the input nor the state of every node, which the verification and the
SOP counting need, and it knows nothing of custom nodes; hence this executor. The neuron
dynamics themselves are not written here: every neuron steps with the torch step of its
registry entry (:data:`nirbridge.neurons.NEURONS`), the same function its trainable module
and Lava ``floating_pt`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as tF

from nirbridge.errors import GraphError, InputError, UnknownNodeError
from nirbridge.geometry import conv_geometry_of, pool_geometry_of
from nirbridge.neurons import spec_of
from nirbridge.passes import (  # FRAMEWORK_DT: importable here as before
    FRAMEWORK_DT,  # noqa: F401
    graph_dt,
    predecessors,
    topological_order,
)

log = logging.getLogger(__name__)


def _fold(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    t, b = x.shape[:2]
    return x.reshape(t * b, *x.shape[2:]), (t, b)


def _unfold(y: torch.Tensor, tb: tuple[int, int]) -> torch.Tensor:
    return y.reshape(*tb, *y.shape[1:])


def apply_synapse(node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    """A stateless node over a whole ``[T, B, ...]`` tensor."""
    dt_ = x.dtype
    dev = x.device

    def t(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dt_, device=dev)

    if isinstance(node, nir.Affine):
        return tF.linear(x, t(node.weight), t(node.bias))
    if isinstance(node, nir.Linear):
        return tF.linear(x, t(node.weight))
    if isinstance(node, nir.Scale):
        return x * t(node.scale)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        xf, tb = _fold(x)
        conv = tF.conv1d if isinstance(node, nir.Conv1d) else tF.conv2d
        g = conv_geometry_of(node)
        y = conv(xf, t(node.weight), t(node.bias), stride=g.stride, padding=g.padding,
                 dilation=g.dilation, groups=g.groups)
        return _unfold(y, tb)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        xf, tb = _fold(x)
        pool = pool_geometry_of(node)
        y = tF.avg_pool2d(xf, pool.kernel_size, pool.stride, pool.padding,
                          count_include_pad=True)
        if isinstance(node, nir.SumPool2d):
            y = y * pool.area
        return _unfold(y, tb)
    if isinstance(node, nir.Flatten):
        ndim = x.dim() - 2
        start = int(node.start_dim) % ndim + 2
        end = int(node.end_dim) % ndim + 2
        return x.flatten(start, end)
    if isinstance(node, nir.Threshold):
        return (x > t(node.threshold)).to(dt_)
    raise UnknownNodeError(f"node type {type(node).__name__} has no reference semantics")


def neuron_runner(node: nir.NIRNode, dt: float):
    """``(init(x0), step(x, state))`` of a registered neuron node, or None: not a neuron."""
    spec = spec_of(node)
    return None if spec is None else spec.runner(node, dt)


@dataclass
class RunRecord:
    """What the reference run saw at one node: its summed input, output and states."""

    input: torch.Tensor | None = None
    output: torch.Tensor | None = None
    states: dict[str, torch.Tensor] = field(default_factory=dict)


class ReferenceExecutor(torch.nn.Module):
    """Runs a NIR graph on inputs ``[T, B, ...]`` in float64 (by default), exactly.

    ``forward(inputs, record=False)``: ``inputs`` is a tensor (one Input node) or a dict
    by Input node name. Returns the output tensor (one Output node) or a dict; with
    ``record`` true (or a set of node names) also a dict of :class:`RunRecord` per node.
    """

    def __init__(self, graph: nir.NIRGraph, *, dtype: torch.dtype = torch.float64,
                 dt: float | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.dtype = dtype
        self.dt = graph_dt(graph, dt)
        self.order = topological_order(graph)
        self.preds = predecessors(graph)
        self.inputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Input)]
        self.outputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Output)]
        if not self.inputs or not self.outputs:
            raise GraphError("graph needs at least one Input and one Output node "
                             f"(has inputs {self.inputs}, outputs {self.outputs})")

    def _check_input(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise InputError(f"input for node '{name}' has shape {tuple(x.shape)}; expected "
                             "[T, B, ...] with time first, then batch")
        shape = self.graph.nodes[name].output_type.get("output")
        if shape is not None and np.size(shape) > 0:
            want = tuple(int(s) for s in np.asarray(shape).ravel())
            if tuple(x.shape[2:]) != want:
                raise InputError(f"input for node '{name}' has per-step shape "
                                 f"{tuple(x.shape[2:])}; the graph expects {want}")
        if not torch.isfinite(x).all():
            raise InputError(f"input for node '{name}' contains NaN or inf")
        return x.to(self.dtype)

    def forward(self, inputs: torch.Tensor | dict[str, torch.Tensor],
                record: bool | Iterable[str] = False):
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise InputError(f"graph has inputs {self.inputs}; pass a dict by name")
            inputs = {self.inputs[0]: inputs}
        want = set(self.graph.nodes) if record is True else set(record or ())
        values: dict[str, torch.Tensor] = {}
        records: dict[str, RunRecord] = {}
        for name in self.order:
            node = self.graph.nodes[name]
            if isinstance(node, nir.Input):
                if name not in inputs:
                    raise InputError(f"no input given for Input node '{name}'")
                x = torch.as_tensor(inputs[name])
                values[name] = self._check_input(name, x)
                if name in want:
                    records[name] = RunRecord(output=values[name])
                continue
            preds = self.preds[name]
            if not preds:
                raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
            x = values[preds[0]]
            for q in preds[1:]:
                if values[q].shape != x.shape:
                    raise GraphError(f"node '{name}' sums inputs of shapes {tuple(x.shape)} "
                                     f"('{preds[0]}') and {tuple(values[q].shape)} ('{q}')")
                x = x + values[q]
            rec = RunRecord(input=x) if name in want else None
            y = self._run_node(name, node, x, rec)
            values[name] = y
            if rec is not None:
                rec.output = y
                records[name] = rec
        outs = {n: values[n] for n in self.outputs}
        out: Any = outs[self.outputs[0]] if len(outs) == 1 else outs
        return (out, records) if want else out

    def _run_node(self, name: str, node: nir.NIRNode, x: torch.Tensor,
                  rec: RunRecord | None) -> torch.Tensor:
        if isinstance(node, nir.Output):
            return x
        runner = neuron_runner(node, self.dt)
        if runner is None:
            try:
                return apply_synapse(node, x)
            except UnknownNodeError:
                raise UnknownNodeError(
                    f"node '{name}' of type {type(node).__name__} has no reference semantics"
                ) from None
            except RuntimeError as exc:
                raise GraphError(f"node '{name}' ({type(node).__name__}) failed on input of "
                                 f"shape {tuple(x.shape)}: {exc}") from exc
        init, step = runner
        state = init(x[0])
        outs = []
        trace: dict[str, list[torch.Tensor]] = {f: [] for f in type(state)._fields}
        for xt in x:
            y, state = step(xt, state)
            outs.append(y)
            if rec is not None:
                for f in trace:
                    trace[f].append(getattr(state, f))
        if rec is not None:
            rec.states = {f: torch.stack(v) for f, v in trace.items()}
        return torch.stack(outs)


def run_reference(graph: nir.NIRGraph, inputs: Any, *, dtype: torch.dtype = torch.float64,
                  dt: float | None = None, record: bool | Iterable[str] = False):
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` (tensor or numpy; dict for several
    Input nodes). Returns outputs, and ``(outputs, records)`` when ``record`` is set."""
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    elif isinstance(inputs, dict):
        inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        return ReferenceExecutor(graph, dtype=dtype, dt=dt)(inputs, record=record)


def run(graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] = False,
        dtype: torch.dtype = torch.float64, dt: float | None = None):
    """The reference-shaped entry :func:`nirbridge.run` has always called: outputs, and
    ``(outputs, records)`` when ``record`` is set. New code uses :data:`BACKEND`."""
    return run_reference(graph, inputs, dtype=dtype, dt=dt, record=record)


#: The stateless node types :func:`apply_synapse` implements (checked without running).
_SYNAPSES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
             nir.AvgPool2d, nir.Flatten, nir.Threshold)


class ReferenceBackend:
    """The ``reference`` backend (:class:`~nirbridge.backends.Backend`): this
    executor, float64 by default (option ``dtype``)."""

    name = "reference"
    description = "float64 reference executor (torch): the ground truth"

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why the reference cannot run ``graph``: its structure, or node types it has no
        semantics for."""
        from nirbridge.backends._base import check_options, graph_issues

        check_options(self.name, options, ("dtype",))
        reasons = graph_issues(graph)
        for name, node in graph.nodes.items():
            if isinstance(node, (nir.Input, nir.Output, *_SYNAPSES)):
                continue
            if neuron_runner(node, 1.0) is None:  # dt only enters the step closures
                reasons.append(f"node '{name}' ({type(node).__name__}) has no reference "
                               "semantics")
        return reasons

    def run(self, graph: nir.NIRGraph, inputs: Any, *,
            record: bool | Iterable[str] | None = False, dt: float | None = None,
            **options: Any):
        """Run on ``inputs`` ``[T, B, ...]``; a :class:`~nirbridge.backends.RunResult`
        whose records are this executor's own :class:`RunRecord`."""
        import time

        from nirbridge.backends._base import RunResult, check_options, to_numpy

        check_options(self.name, options, ("dtype",))
        dtype = options.get("dtype", torch.float64)
        want = True if record is True else set(record or ())
        t0 = time.perf_counter()
        dt = graph_dt(graph, dt)
        got = run_reference(graph, inputs, dtype=dtype, dt=dt, record=want)
        out, records = got if want else (got, {})
        return RunResult(to_numpy(out), dict(records),
                         {"backend": self.name, "dt": dt,
                          "dtype": str(dtype).removeprefix("torch."),
                          "seconds": {"wall": time.perf_counter() - t0}})


#: The reference backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = ReferenceBackend()
