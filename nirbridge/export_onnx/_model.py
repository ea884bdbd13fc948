"""The step graph of a NIR graph and the Scan model around it (see the package docstring
for the interface: names, shapes, state layout)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np
import onnx
import torch
from onnx import helper

from nirbridge._version import __version__
from nirbridge.backends.reference import run_reference
from nirbridge.errors import LoweringError, NirbridgeError
from nirbridge.export_onnx._builder import FLOAT_NP, Builder, value_info
from nirbridge.export_onnx._nodes import SYNAPSES, emit_synapse
from nirbridge.export_onnx._trace import Sym, trace_step
from nirbridge.graph import (
    check_algebraic_loops,
    check_edge_names,
    delay_steps,
    execution_order,
    feedback_edges,
    flatten_subgraphs,
    predecessors,
)
from nirbridge.neurons import spec_of
from nirbridge.passes import graph_dt

#: The opsets the converter emits (Unsqueeze takes its axes as an input from 13 on).
MIN_OPSET = 13
#: The IR version written: the one that goes with opset 17, which onnxruntime ≥ 1.12 reads.
IR_VERSION = 8


@dataclass(frozen=True)
class StateInfo:
    """One state tensor of the step model.

    ``name``: the input (``state.<node>.<field>``; the output is ``name + ".next"``);
    ``node``, ``field``; ``kind``: ``"neuron"`` (a field of the neuron's state),
    ``"feedback"`` (field ``output``: the node's output of the previous step, read over a
    feedback edge) or ``"delay"`` (field ``buffer``: ``[D, B, ...]``, the last ``D``
    inputs, newest first); ``shape``: without the batch axis (for a delay, ``D`` first);
    ``batch_axis``: where the batch goes (0, or 1 for a delay buffer).
    """

    name: str
    node: str
    field: str
    kind: str
    shape: tuple[int, ...]
    batch_axis: int = 0

    @property
    def next_name(self) -> str:
        return f"{self.name}.next"

    def full_shape(self, batch: int | str) -> list[int | str]:
        s: list[int | str] = list(self.shape)
        s.insert(self.batch_axis, batch)
        return s


@dataclass
class Plan:
    """What the conversion of one graph found: the flattened graph, its order, shapes,
    states (with their initial values ``[1, ...]``) and interface names."""

    graph: nir.NIRGraph
    dt: float
    order: list[str]
    preds: dict[str, list[str]]
    feedback: set[tuple[str, str]]
    shapes: dict[str, tuple[int, ...]]
    in_shapes: dict[str, tuple[int, ...]]
    inputs: list[str]
    outputs: list[str]
    states: list[StateInfo] = field(default_factory=list)
    initial: dict[str, np.ndarray] = field(default_factory=dict)
    delays: dict[str, np.ndarray] = field(default_factory=dict)

    def layout(self) -> dict[str, Any]:
        """The interface as JSON-friendly data (also stored in the model's metadata)."""
        return {"dt": self.dt, "inputs": {n: list(self.shapes[n]) for n in self.inputs},
                "outputs": {n: list(self.shapes[n]) for n in self.outputs},
                "states": [asdict(s) for s in self.states]}


def _neuron_state_names(plan: Plan, name: str, fields: tuple[str, ...]) -> None:
    for f in fields:
        if f in ("output", "buffer"):
            raise LoweringError(f"neuron '{name}' has a state field '{f}', a name the ONNX "
                                "exporter keeps for feedback and delay states; rename it")


def make_plan(graph: nir.NIRGraph, dt: float | None) -> Plan:
    """Flatten and check ``graph``, find every node's per-sample shape (a one-step,
    batch-1 reference run on zeros) and the states of the step model."""
    flat = flatten_subgraphs(graph)
    check_edge_names(flat)
    check_algebraic_loops(flat)
    dt = graph_dt(flat, dt)
    nodes = flat.nodes
    order = execution_order(flat)
    inputs = [n for n in order if isinstance(nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(nodes[n], nir.Output)]
    if not inputs or not outputs:
        raise LoweringError(f"graph needs at least one Input and one Output node (has "
                            f"inputs {inputs}, outputs {outputs})")
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, nir.Delay, *SYNAPSES)) \
                and spec_of(node) is None:
            raise LoweringError(f"node '{name}' of type {type(node).__name__} has no ONNX "
                                "conversion: it is neither a NIR node nirbridge runs nor a "
                                "registered neuron")
    zeros = {}
    for n in inputs:
        shape = nodes[n].output_type.get("output")
        if shape is None or np.size(shape) == 0:
            raise LoweringError(f"Input node '{n}' has no shape; give it input_type "
                                "{'input': [...]} (the per-sample shape, no batch)")
        zeros[n] = torch.zeros((1, 1, *(int(s) for s in np.asarray(shape).ravel())),
                               dtype=torch.float64)
    try:
        _, records = run_reference(flat, zeros, dt=dt, record=True)
    except NirbridgeError as exc:
        raise LoweringError(f"the graph does not run, so it has no ONNX form: {exc}") from exc
    plan = Plan(flat, dt, order, predecessors(flat), set(feedback_edges(flat)),
                {n: tuple(r.output.shape[2:]) for n, r in records.items()},
                {n: tuple(r.input.shape[2:]) for n, r in records.items()
                 if r.input is not None}, inputs, outputs)
    for src in sorted({s for s, _ in plan.feedback}, key=order.index):
        _add_state(plan, src, "output", "feedback", np.zeros((1, *plan.shapes[src])))
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Delay):
            steps = delay_steps(node, dt, name)
            plan.delays[name] = steps
            depth = int(np.max(steps))
            _add_state(plan, name, "buffer", "delay",
                       np.zeros((depth, 1, *plan.shapes[name])), batch_axis=1)
        elif (spec := spec_of(node)) is not None:
            _neuron_state_names(plan, name, spec.state_fields)
            x0 = torch.zeros((1, *plan.in_shapes[name]), dtype=torch.float32)
            init = spec.initial_state(node, x0)
            for f in spec.state_fields:
                value = torch.as_tensor(getattr(init, f)).detach().cpu().numpy()
                value = np.broadcast_to(value, np.broadcast_shapes(value.shape, x0.shape))
                _add_state(plan, name, f, "neuron", value)
    return plan


def _add_state(plan: Plan, node: str, fld: str, kind: str, initial: np.ndarray,
               batch_axis: int = 0) -> None:
    shape = list(initial.shape)
    del shape[batch_axis]
    info = StateInfo(f"state.{node}.{fld}", node, fld, kind, tuple(shape), batch_axis)
    plan.states.append(info)
    plan.initial[info.name] = np.ascontiguousarray(initial, dtype=FLOAT_NP)


# ------------------------------------------------------------------------- the step
@dataclass
class StepGraph:
    """A built step graph: its interface value names (public name → name in this graph)
    and what it exposes (node → (summed input or None, output))."""

    builder: Builder
    inputs: dict[str, str]
    states_in: dict[str, str]
    states_out: dict[str, str]
    outputs: dict[str, str]
    exposed: dict[str, tuple[str | None, str]]


def _batch(b: Builder, x: str, axis: int) -> str:
    """``[B]`` (int64) of ``x``'s batch axis."""
    shape = b.op("Shape", [x], "batch/Shape")
    return b.op("Slice", [shape, b.ints([axis]), b.ints([axis + 1])], "batch/Slice")


def _expand(b: Builder, value: str, info: StateInfo, batch: str) -> str:
    """A state of the batch-1 default (or of any batch) broadcast to ``batch``."""
    parts = [b.ints(info.shape[:info.batch_axis]) if info.batch_axis else None, batch,
             b.ints(info.shape[info.batch_axis:])]
    target = b.op("Concat", [p for p in parts if p is not None], f"{info.name}/shape", axis=0)
    return b.op("Expand", [value, target], f"{info.name}/Expand")


def build_step(plan: Plan, b: Builder, rename: Callable[[str], str], *,
               expand_states: bool, expose: bool) -> StepGraph:
    """Emit one time step of ``plan``'s graph into ``b``."""
    nodes = plan.graph.nodes
    ins = {n: b.reserve(rename(n)) for n in plan.inputs}
    states_in = {s.name: b.reserve(rename(s.name)) for s in plan.states}
    batch = _batch(b, ins[plan.inputs[0]], 0) if expand_states else ""
    state = {s.name: _expand(b, states_in[s.name], s, batch) if expand_states
             else states_in[s.name] for s in plan.states}
    by_node: dict[str, dict[str, StateInfo]] = {}
    for s in plan.states:
        by_node.setdefault(s.node, {})[s.field] = s
    values: dict[str, str] = {}
    summed: dict[str, str] = {}
    new_state: dict[str, str] = {}
    for name in plan.order:
        node = nodes[name]
        if isinstance(node, nir.Input):
            values[name] = ins[name]
            continue
        x = None
        for p in plan.preds[name]:  # NIR sums several inputs, in edge order
            v = state[f"state.{p}.output"] if (p, name) in plan.feedback else values[p]
            x = v if x is None else b.op("Add", [x, v], f"{name}/sum")
        if x is None:
            raise LoweringError(f"node '{name}' has no incoming edge; connect it or remove it")
        summed[name] = x
        if isinstance(node, nir.Output):
            values[name] = x
        elif isinstance(node, nir.Delay):
            values[name], new_state[f"state.{name}.buffer"] = _delay(
                b, name, x, state[f"state.{name}.buffer"], plan.delays[name])
        elif (spec := spec_of(node)) is not None:
            fields = by_node[name]
            what = f"neuron '{name}' ({type(node).__name__})"
            kwargs = spec.kwargs(node, plan.dt, torch.float32, torch.device("cpu"))
            y, new, tracer = trace_step(b, what, name, spec.step, x,
                                        [state[fields[f].name] for f in spec.state_fields],
                                        spec.state_fields, spec.state, kwargs)
            values[name] = _materialise(b, tracer, y, x)
            for f, v in zip(spec.state_fields, new, strict=True):
                new_state[fields[f].name] = _materialise(b, tracer, v, x)
        else:
            values[name] = emit_synapse(b, name, node, x, plan.shapes[name])
    for s in plan.states:
        if s.kind == "feedback":
            new_state[s.name] = values[s.node]
    states_out = {s.name: b.op("Identity", [new_state[s.name]],
                               outputs=[b.reserve(rename(s.next_name))]) for s in plan.states}
    outs = {n: b.op("Identity", [values[n]], outputs=[b.reserve(rename(n))])
            for n in plan.outputs}
    exposed: dict[str, tuple[str | None, str]] = {}
    if expose:
        for name in plan.order:
            i = (b.op("Identity", [summed[name]], outputs=[b.reserve(rename(f"input.{name}"))])
                 if name in summed else None)
            o = b.op("Identity", [values[name]], outputs=[b.reserve(rename(f"value.{name}"))])
            exposed[name] = (i, o)
    return StepGraph(b, ins, states_in, states_out, outs, exposed)


def _materialise(b: Builder, tracer: Any, value: Any, like: str) -> str:
    """A traced result as an ONNX value of the batch's shape (a constant is expanded)."""
    if isinstance(value, Sym):
        if value.dtype != torch.float32:
            return tracer.cast(value.name, torch.float32)
        return value.name
    const = tracer.name(value)
    return b.op("Expand", [const, b.op("Shape", [like], "Shape")], "Expand")


def _delay(b: Builder, name: str, x: str, buffer: str, steps: np.ndarray) -> tuple[str, str]:
    """``y[t] = x[t - d]`` from the buffer of the last inputs (newest first), with the
    reference's masks where the delay differs per element; and the buffer's next value."""
    depth = int(np.max(steps))
    values = [int(d) for d in np.unique(steps)]

    def past(d: int) -> str:
        return b.op("Gather", [buffer, b.const(np.int64(d - 1), np.int64, f"{name}/index")],
                    f"{name}/Gather", axis=0)

    if len(values) == 1:
        y = past(values[0])
    else:
        y = b.op("ConstantOfShape", [b.op("Shape", [x], f"{name}/Shape")], f"{name}/zeros",
                 value=onnx.numpy_helper.from_array(np.zeros(1, FLOAT_NP)))
        for d in values:
            mask = b.const(steps == d, np.bool_, f"{name}/mask")
            y = b.op("Where", [mask, past(d), y], f"{name}/Where")
    newest = b.op("Unsqueeze", [x, b.ints([0])], f"{name}/Unsqueeze")
    if depth == 1:
        return y, newest
    older = b.op("Slice", [buffer, b.ints([0]), b.ints([depth - 1]), b.ints([0])],
                 f"{name}/Slice")
    return y, b.op("Concat", [newest, older], f"{name}/Concat", axis=0)


# ------------------------------------------------------------------------ the models
def _io(plan: Plan, name: str, lead: list[int | str]) -> onnx.ValueInfoProto:
    return value_info(name, [*lead, *plan.shapes[name]])


def _exposed_infos(plan: Plan, step: StepGraph, lead: list[int | str],
                   rename: Callable[[str], str] = str) -> list[onnx.ValueInfoProto]:
    out = []
    for name, (i, o) in step.exposed.items():
        if i is not None:
            out.append(value_info(i, [*lead, *plan.in_shapes[name]]))
        out.append(value_info(o, [*lead, *plan.shapes[name]]))
    return out


def step_model(plan: Plan, *, expose: bool, opset: int) -> onnx.ModelProto:
    """The step model: inputs (Input nodes, then states with their defaults), outputs
    (Output nodes, then the states' next values, then, with ``expose``, every node's
    summed input ``input.<node>`` and output ``value.<node>``)."""
    b = Builder()
    step = build_step(plan, b, str, expand_states=True, expose=expose)
    for s in plan.states:
        b.initializer(s.name, plan.initial[s.name])
    inputs = [_io(plan, n, ["batch"]) for n in plan.inputs]
    inputs += [value_info(s.name, s.full_shape("state_batch"))
               for s in plan.states]
    outputs = [_io(plan, n, ["batch"]) for n in plan.outputs]
    outputs += [value_info(s.next_name, s.full_shape("batch")) for s in plan.states]
    outputs += _exposed_infos(plan, step, ["batch"])
    graph = helper.make_graph(b.nodes, "nirbridge_step", inputs, outputs, b.initializers)
    return _model(graph, plan, "step", opset)


def sequence_model(plan: Plan, *, expose: bool, opset: int) -> onnx.ModelProto:
    """The sequence model: the step graph as the body of one ONNX ``Scan`` over the time
    axis of inputs ``[T, B, ...]``; outputs ``[T, B, ...]`` and the states after the last
    step (``.next``); the initial states are inputs with defaults, as in the step model."""
    body_b = Builder("scan/")
    inner: Callable[[str], str] = lambda n: f"scan/{n}"  # noqa: E731
    step = build_step(plan, body_b, inner, expand_states=False, expose=expose)
    body_inputs = [value_info(step.states_in[s.name], s.full_shape("batch"))
                   for s in plan.states]
    body_inputs += [value_info(step.inputs[n], ["batch", *plan.shapes[n]])
                    for n in plan.inputs]
    body_outputs = [value_info(step.states_out[s.name], s.full_shape("batch"))
                    for s in plan.states]
    body_outputs += [value_info(step.outputs[n], ["batch", *plan.shapes[n]])
                     for n in plan.outputs]
    body_outputs += _exposed_infos(plan, step, ["batch"])
    body = helper.make_graph(body_b.nodes, "nirbridge_step", body_inputs, body_outputs,
                             body_b.initializers)
    b = Builder()
    for n in [*plan.inputs, *plan.outputs, *(s.name for s in plan.states),
              *(s.next_name for s in plan.states)]:
        b.reserve(n)
    batch = _batch(b, plan.inputs[0], 1)
    init = [_expand(b, s.name, s, batch) for s in plan.states]
    scan_outs = [s.next_name for s in plan.states] + list(plan.outputs)
    for name, (i, _) in step.exposed.items():
        if i is not None:
            scan_outs.append(b.reserve(f"input.{name}"))
        scan_outs.append(b.reserve(f"value.{name}"))
    b.op("Scan", [*init, *plan.inputs], "Scan", outputs=scan_outs, body=body,
         num_scan_inputs=len(plan.inputs))
    for s in plan.states:
        b.initializer(s.name, plan.initial[s.name])
    inputs = [_io(plan, n, ["time", "batch"]) for n in plan.inputs]
    inputs += [value_info(s.name, s.full_shape("state_batch")) for s in plan.states]
    outputs = [value_info(s.next_name, s.full_shape("batch")) for s in plan.states]
    outputs += [_io(plan, n, ["time", "batch"]) for n in plan.outputs]
    outputs += [value_info(v.name.removeprefix("scan/"), ["time", *_dims(v)])
                for v in _exposed_infos(plan, step, ["batch"])]
    graph = helper.make_graph(b.nodes, "nirbridge_sequence", inputs, outputs, b.initializers)
    return _model(graph, plan, "sequence", opset)


def _dims(v: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


def _model(graph: onnx.GraphProto, plan: Plan, kind: str, opset: int) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="nirbridge", producer_version=__version__,
                              ir_version=IR_VERSION)
    helper.set_model_props(model, {"nirbridge.model": kind, "nirbridge.dt": repr(plan.dt),
                                   "nirbridge.layout": json.dumps(plan.layout())})
    return model


__all__ = ["IR_VERSION", "MIN_OPSET", "Plan", "StateInfo", "make_plan", "sequence_model",
           "step_model"]
