"""The float64 reference executor: the ground truth every backend is judged against.

Any NIR graph of standard and nirbridge custom nodes becomes a torch module that runs
inputs shaped ``[T, B, ...]`` in one call. Nested subgraphs are flattened first
(:func:`nirbridge.graph.flatten_subgraphs`: node ``sub.x``). The graph is cut into its
strongly connected components (:func:`nirbridge.graph.schedule`):

- A node on no cycle is evaluated over the whole time axis at once: synapses (Affine,
  Conv, pooling, Scale, Threshold) act on all ``T·B`` samples in one batched call, a
  ``nir.Delay`` shifts the time axis, and only neurons loop over time.
- A component with a cycle runs step by step: at each time step its nodes in
  :func:`nirbridge.graph.execution_order`, each from this step's values of its
  predecessors, except over a **feedback edge** (:func:`nirbridge.graph.feedback_edges`:
  the edges a depth-first search from the Input nodes finds going back to an open
  node), which carries the *previous* step's value of its source, and nothing at
  t = 0 (zero). So a recurrent ``Affine`` feeding a neuron back contributes zero at
  t = 0 and ``W·s[t-1] + b`` from t = 1 on: its bias does not count at t = 0. That is
  nirtorch's reading (``nir_to_torch``, and ``nirtorch.load`` under Norse's
  ``from_nir``); snnTorch's ``RLeaky``/``RSynaptic`` compute ``recurrent(spk)`` from
  ``spk = 0`` at t = 0 and so add the recurrent bias at t = 0 too (the one place they
  differ; ``docs/recurrence.md`` has the details). A cycle with no neuron and no Delay
  on it (an algebraic loop) is refused naming its nodes.

Several edges into one node sum (NIR's convention), in edge order. A ``nir.Delay`` of
``d`` time units delays by ``d / dt`` steps (a whole number ≥ 1, per element; zero before
its first input arrives); on a cycle it adds to the feedback edge's one step.

nirtorch's own interpreter (``nirtorch.nir_to_torch``) runs one step at a time and
exposes neither the input nor the state of every node, which the verification and the
SOP counting need, and it knows nothing of custom nodes; hence this executor. The neuron
dynamics themselves are not written here: every neuron steps with the torch step of its
registry entry (:data:`nirbridge.neurons.NEURONS`), the same function its trainable module
and Lava ``floating_pt`` call.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as tF

from nirbridge.backends._base import EXACT, Reading, graph_issues
from nirbridge.backends.blocks import MIN_LINEAR_ROWS, find_regions, run_region, tensors_of
from nirbridge.backends.inputs import as_number_array, check_graph_input
from nirbridge.errors import GraphError, InputError, NirbridgeError, UnknownNodeError
from nirbridge.geometry import conv_geometry_of, pool_geometry_of
from nirbridge.graph import (
    Unit,
    check_algebraic_loops,
    check_edge_names,
    delay_steps,
    feedback_edges,
    flatten_subgraphs,
    predecessors,
    schedule,
)
from nirbridge.neurons import is_neuron, spec_of
from nirbridge.passes import (  # FRAMEWORK_DT: importable here as before
    FRAMEWORK_DT,  # noqa: F401
    graph_dt,
    input_shape,
    metadata_dt,
)

log = logging.getLogger(__name__)


def _fold(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    t, b = x.shape[:2]
    return x.reshape(t * b, *x.shape[2:]), (t, b)


def _unfold(y: torch.Tensor, tb: tuple[int, int]) -> torch.Tensor:
    return y.reshape(*tb, *y.shape[1:])


#: Column-buffer bytes one convolution call may use: ``tF.conv2d`` on CPU unfolds every
#: sample of its batch at once (float64: the ``slow_conv2d`` im2col buffer, C·k²·H·W values
#: a sample), so the folded ``T·B`` batch runs in chunks of about this much. Chosen from
#: measurements on the digits conv net (2-core CPU, 1 thread): 64–256 samples a call were
#: 1.3–2.5× faster than one call over all T·B, and the buffer stays a few MiB. Each sample
#: of a convolution is computed on its own, so chunks of two samples or more give the
#: same bits as one call (tested, float32 and float64); a chunk is never one sample.
CONV_CHUNK_BYTES = 4 << 20

SynapseOp = Callable[[torch.Tensor], torch.Tensor]


def _conv_rows(node: nir.NIRNode, x: torch.Tensor) -> int:
    """Samples per convolution call for folded input ``x`` (see :data:`CONV_CHUNK_BYTES`)."""
    g = conv_geometry_of(node)
    per_pixel = int(np.prod(np.shape(node.weight)[1:])) * max(int(g.groups), 1)  # C_in·k²
    pixels = int(np.prod(x.shape[3:])) // max(int(np.prod(g.stride)), 1)  # ≈ output H·W
    col = per_pixel * max(pixels, 1)
    # never one sample alone: oneDNN computes a float32 batch of one another way (its
    # values differ in the last bits from the same sample within a larger batch)
    return max(2, CONV_CHUNK_BYTES // max(col * x.element_size(), 1))


def synapse_op(node: nir.NIRNode, dtype: torch.dtype, device: Any = None) -> SynapseOp:
    """:func:`apply_synapse` of ``node`` with its parameters made tensors of ``dtype`` on
    ``device`` once: ``op(x)`` for ``x`` of shape ``[T, B, ...]``."""

    def t(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    if isinstance(node, nir.Affine):
        w, b = t(node.weight), t(node.bias)
        return lambda x: tF.linear(x, w, b)
    if isinstance(node, nir.Linear):
        w = t(node.weight)
        return lambda x: tF.linear(x, w)
    if isinstance(node, nir.Scale):
        scale = t(node.scale)
        return lambda x: x * scale
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        conv = tF.conv1d if isinstance(node, nir.Conv1d) else tF.conv2d
        g = conv_geometry_of(node)
        w, b = t(node.weight), t(node.bias)

        def call(xf: torch.Tensor) -> torch.Tensor:
            return conv(xf, w, b, stride=g.stride, padding=g.padding, dilation=g.dilation,
                        groups=g.groups)

        def conv_op(x: torch.Tensor) -> torch.Tensor:
            xf, tb = _fold(x)
            n = xf.shape[0]
            k = n // _conv_rows(node, x)  # k chunks of n/k ≥ rows ≥ 2 samples each
            if k <= 1:
                return _unfold(call(xf), tb)
            cuts = [i * n // k for i in range(k + 1)]
            first = call(xf[:cuts[1]])
            y = first.new_empty((n, *first.shape[1:]))
            y[:cuts[1]] = first
            del first
            for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
                y[a:b] = call(xf[a:b])
            return _unfold(y, tb)

        return conv_op
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        pool = pool_geometry_of(node)
        area = pool.area if isinstance(node, nir.SumPool2d) else None

        def pool_op(x: torch.Tensor) -> torch.Tensor:
            xf, tb = _fold(x)
            y = tF.avg_pool2d(xf, pool.kernel_size, pool.stride, pool.padding,
                              count_include_pad=True)
            return _unfold(y if area is None else y * area, tb)

        return pool_op
    if isinstance(node, nir.Flatten):
        def flatten(x: torch.Tensor) -> torch.Tensor:
            ndim = x.dim() - 2
            return x.flatten(int(node.start_dim) % ndim + 2, int(node.end_dim) % ndim + 2)

        return flatten
    if isinstance(node, nir.Threshold):
        theta = t(node.threshold)
        return lambda x: (x > theta).to(dtype)
    raise UnknownNodeError(f"node type {type(node).__name__} has no reference semantics")


def apply_synapse(node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    """A stateless node over a whole ``[T, B, ...]`` tensor."""
    return synapse_op(node, x.dtype, x.device)(x)


def neuron_runner(node: nir.NIRNode, dt: float):
    """``(init(x0), step(x, state))`` of a registered neuron node, or None: not a neuron."""
    spec = spec_of(node)
    return None if spec is None else spec.runner(node, dt)


def _delay_masks(steps: np.ndarray, like: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
    """``(d, mask)`` per distinct delay ``d`` of ``steps``; mask None when it is the only
    one (the whole tensor shifts)."""
    values = [int(d) for d in np.unique(steps)]
    if len(values) == 1:
        return [(values[0], None)]
    return [(d, torch.as_tensor(steps == d, device=like.device)) for d in values]


def apply_delay(x: torch.Tensor, steps: np.ndarray) -> torch.Tensor:
    """``y[t] = x[t - d]`` (zero for ``t < d``) over a whole ``[T, B, ...]`` tensor;
    ``steps`` (from :func:`nirbridge.graph.delay_steps`) broadcasts to the per-sample
    shape, one delay per element."""
    y = torch.zeros_like(x)
    n = x.shape[0]
    for d, mask in _delay_masks(steps, x):
        if d >= n:
            continue
        if mask is None:
            y[d:] = x[:n - d]
        else:
            y[d:] = torch.where(mask, x[:n - d], y[d:])
    return y


def _shares_storage(a: Any, x: torch.Tensor) -> bool:
    return torch.is_tensor(a) and a.untyped_storage().data_ptr() == \
        x.untyped_storage().data_ptr()


def _run_neuron(runner: tuple[Any, Any], x: torch.Tensor, rec: RunRecord | None,
                donated: bool = False) -> torch.Tensor:
    """A neuron over ``x`` ``[T, B, ...]``, one step at a time; its outputs (and, for
    ``rec``, its states) written into tensors allocated once, not stacked from lists.

    ``donated``: nothing reads ``x`` after this node, so step ``t``'s output is written
    over ``x[t]`` once the step has read it (no fresh ``[T, B, ...]`` buffer: its page
    faults cost as much as the copy). Only while the output has ``x``'s shape and dtype
    and no state holds a view of ``x``; otherwise (checked every step, before writing)
    into a buffer of its own, as without ``donated``. The values are the same either way.
    """
    init, step = runner
    state = init(x[0])
    out: torch.Tensor | None = None
    trace: dict[str, torch.Tensor] = {}
    n = x.shape[0]
    donated = donated and x.is_contiguous()
    for t in range(n):
        y, state = step(x[t], state)
        if donated and (y.shape != x.shape[1:] or y.dtype != x.dtype
                        or any(_shares_storage(v, x) for v in tensors_of(state))):
            donated = False
            if out is not None:  # the steps so far: over x[:t], which nothing else holds
                out = out[:t].clone().resize_((n, *y.shape))
        if out is None:
            out = x if donated else y.new_empty((n, *y.shape))
            if rec is not None:
                trace = {f: v.new_empty((n, *v.shape)) for f, v in state._asdict().items()}
        out[t] = y
        for f, buf in trace.items():
            buf[t] = getattr(state, f)
    if out is None:
        raise GraphError(f"input of shape {tuple(x.shape)} has no time steps")
    if rec is not None:
        rec.states = trace
    return out


#: ``observe(name, input, output)``: what :meth:`ReferenceExecutor.forward` calls per node.
#: One with ``before(name, input)`` lets a neuron write its outputs over an input nothing
#: else reads (called with it first; the call after gets None for it). One with a true
#: ``by_block`` is called inside regions per block of steps, with ``start=`` and ``steps=``.
Observer = Callable[[str, "torch.Tensor | None", torch.Tensor], None]


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
    ``record`` true (or a set of node names) also a dict of :class:`RunRecord` per node
    (nodes of recurrent components included; a subgraph's nodes as ``sub.x``).
    Recurrence and delays: see the module docstring.
    """

    def __init__(self, graph: nir.NIRGraph, *, dtype: torch.dtype = torch.float64,
                 dt: float | None = None) -> None:
        super().__init__()
        graph = flatten_subgraphs(graph)
        self.graph = graph
        self.dtype = dtype
        self.dt = graph_dt(graph, dt)
        check_edge_names(graph)
        check_algebraic_loops(graph)
        self.units: list[Unit] = schedule(graph)
        self.order = [n for u in self.units for n in u.nodes]
        self.preds = predecessors(graph)
        self.feedback = set(feedback_edges(graph))
        self.delays = {n: delay_steps(node, self.dt, n) for n, node in graph.nodes.items()
                       if isinstance(node, nir.Delay)}
        self.inputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Input)]
        self.outputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Output)]
        if not self.inputs or not self.outputs:
            raise GraphError("graph needs at least one Input and one Output node "
                             f"(has inputs {self.inputs}, outputs {self.outputs})")
        self._free = self._free_schedule()
        readers = Counter(p for n in graph.nodes for p in self.preds[n])
        kept = set(self.inputs) | set(self.outputs)
        #: values read by one node only (and not an Input's or Output's): that node may
        #: write over them (see :func:`_run_neuron`)
        self._sole: set[str] = {p for p, k in readers.items() if k == 1 and p not in kept}
        nodes, cyclic = graph.nodes, {n for u in self.units if u.cyclic for n in u.nodes}
        self._regions = find_regions(self.order, self.preds, {n for n in self.order if n not in
            cyclic and (isinstance(nodes[n], _SYNAPSES) or is_neuron(nodes[n]))},
            {n for n in self.order if is_neuron(nodes[n])})

    def _check_input(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return check_graph_input(self.graph, name, x).to(self.dtype)

    def _free_schedule(self) -> list[list[str]]:
        """Per unit, the values no later unit reads (freed after it unless an Output or
        Input node's): a feed-forward run holds only the tensors still to be read."""
        last: dict[str, int] = {}
        for i, unit in enumerate(self.units):
            for n in unit.nodes:
                last.setdefault(n, i)
                for p in self.preds[n]:
                    last[p] = max(last.get(p, i), i)
        keep = set(self.outputs) | set(self.inputs)
        free: list[list[str]] = [[] for _ in self.units]
        for n, i in last.items():
            if n not in keep:
                free[i].append(n)
        return free

    def forward(self, inputs: torch.Tensor | dict[str, torch.Tensor],
                record: bool | Iterable[str] = False, observe: Observer | None = None):
        """Run ``inputs``; see the class docstring. ``observe(name, input, output)``, when
        given, is called once per node with its whole ``[T, B, ...]`` summed input (None
        for an Input node) and output, as soon as they are known (an event counter reads
        them there instead of keeping every record); see :data:`Observer` for its
        ``before``."""
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise InputError(f"graph has inputs {self.inputs}; pass a dict by name")
            inputs = {self.inputs[0]: inputs}
        want = set(self.graph.nodes) if record is True else set(record or ())
        values: dict[str, torch.Tensor] = {}
        records: dict[str, RunRecord] = {}
        ops: dict[str, SynapseOp] = {}
        first = torch.as_tensor(inputs[self.inputs[0]]) if self.inputs[0] in inputs else None
        tb = tuple(first.shape[:2]) if first is not None and first.dim() > 1 else (0, 0)
        regions = {n: r for n, r in self._regions.items()
                   if self._blocked(r[0], tb, want, observe)}
        skip = {m for r, _ in regions.values() for m in r[1:]}
        for unit, free in zip(self.units, self._free, strict=True):
            if unit.cyclic:
                self._run_cyclic(unit.nodes, values, records, want, observe)
            elif unit.nodes[0] in skip:
                pass
            elif unit.nodes[0] in regions and self._run_region(*regions[unit.nodes[0]],
                                                               values, ops, observe):
                pass
            else:  # inputs of a region of unequal [T, B]: its nodes one by one
                for n in regions.get(unit.nodes[0], (unit.nodes,))[0]:
                    self._run_unit(n, inputs, values, records, want, ops, observe)
            for n in free:
                values.pop(n, None)
        outs = {n: values[n] for n in self.outputs}
        out: Any = outs[self.outputs[0]] if len(outs) == 1 else outs
        return (out, records) if want else out

    def _run_unit(self, name: str, inputs: dict[str, torch.Tensor],
                  values: dict[str, torch.Tensor], records: dict[str, RunRecord],
                  want: set[str], ops: dict[str, SynapseOp], observe: Observer | None) -> None:
        node = self.graph.nodes[name]
        if isinstance(node, nir.Input):
            if name not in inputs:
                raise InputError(f"no input given for Input node '{name}'")
            values[name] = self._check_input(name, torch.as_tensor(inputs[name]))
            if name in want:
                records[name] = RunRecord(output=values[name])
            if observe is not None:
                observe(name, None, values[name])
            return
        preds = self.preds[name]
        if not preds:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        x = values[preds[0]]
        for q in preds[1:]:
            x = self._add(name, x, preds[0], values[q], q)
        rec = RunRecord(input=x) if name in want else None
        # a neuron may write over x when nothing reads it after this node: no record of
        # it, a sum made here or a value only this node reads, and no observer or one
        # that reads the input first (``observe.before``)
        before = getattr(observe, "before", None)
        donate = (observe is None or before is not None) and rec is None \
            and is_neuron(node) and (
                len(preds) > 1 or (preds[0] in self._sole and preds[0] not in want)) \
            and not self._aliased(x, preds[0], values, records)
        if donate and before is not None:
            before(name, x)
        y = self._run_node(name, node, x, rec, ops, donate)
        values[name] = y
        if rec is not None:
            rec.output = y
            records[name] = rec
        if observe is not None:
            observe(name, None if donate else x, y)

    def _blocked(self, region: tuple[str, ...], tb: tuple[int, int], want: set[str],
                 observe: Observer | None) -> bool:
        """Whether ``region`` runs a block of steps at a time on inputs of ``tb`` = (T, B):
        no member recorded, any observer takes blocks, and the blocks hold enough samples
        to give the same bits. A region with a matrix product, only where one step holds
        them all and no observer counts it (measured on the 700-256-256-20 MLP, T = 100:
        blocked runs at B = 32 and 64 took 1.10-1.13x the node-by-node time, at B = 128
        the same, at 256 and 512 0.91-0.92x; counting one-step blocks cost 2.5x counting
        whole nodes)."""
        least = self._min_rows(region)
        if want.intersection(region) or tb[0] * tb[1] < 2 * least or (
                observe is not None and not getattr(observe, "by_block", False)):
            return False
        return least <= 2 or (tb[1] >= least and observe is None)

    def _min_rows(self, region: tuple[str, ...]) -> int:
        """Fewest folded samples a block of ``region`` may have (:mod:`.blocks`)."""
        linear = any(isinstance(self.graph.nodes[m], (nir.Affine, nir.Linear)) for m in region)
        return MIN_LINEAR_ROWS if linear else 2

    def _run_region(self, region: tuple[str, ...], keep: frozenset[str],
                    values: dict[str, torch.Tensor], ops: dict[str, SynapseOp],
                    observe: Observer | None = None) -> bool:
        """Run ``region`` in blocks of steps (:func:`~nirbridge.backends.blocks.run_region`),
        keeping the values ``keep``; False (nothing run) where a member has no input or the
        values it reads differ in ``[T, B]``."""
        nodes, inside = self.graph.nodes, set(region)
        outside = {p: values[p] for n in region for p in self.preds[n] if p not in inside}
        if len({tuple(v.shape[:2]) for v in outside.values()}) != 1 or not all(
                self.preds[n] for n in region):
            return False
        members = [(m, neuron_runner(nodes[m], self.dt)) for m in region]
        values.update(run_region(members, self.preds, outside, keep,
                                 self._sole, lambda m, v: self._synapse(m, nodes[m], v, ops),
                                 self._add, self._min_rows(region), observe))
        return True

    @staticmethod
    def _aliased(x: torch.Tensor, source: str, values: dict[str, torch.Tensor],
                 records: dict[str, RunRecord]) -> bool:
        """Whether a value other than ``source``'s, or a record, shares ``x``'s memory (a
        Flatten's output is a view of its input, which may still be read)."""
        held = [v for k, v in values.items() if k != source]
        held += [t for r in records.values() for t in (r.input, r.output, *r.states.values())]
        return any(_shares_storage(v, x) for v in held)

    @staticmethod
    def _add(name: str, x: torch.Tensor, first: str, v: torch.Tensor, q: str) -> torch.Tensor:
        if v.shape != x.shape:
            raise GraphError(f"node '{name}' sums inputs of shapes {tuple(x.shape)} "
                             f"('{first}') and {tuple(v.shape)} ('{q}')")
        return x + v

    def _synapse(self, name: str, node: nir.NIRNode, x: torch.Tensor,
                 ops: dict[str, SynapseOp] | None = None) -> torch.Tensor:
        try:
            op = None if ops is None else ops.get(name)
            if op is None:
                op = synapse_op(node, x.dtype, x.device)
                if ops is not None:
                    ops[name] = op
            return op(x)
        except UnknownNodeError:
            raise UnknownNodeError(
                f"node '{name}' of type {type(node).__name__} has no reference semantics"
            ) from None
        except RuntimeError as exc:
            raise GraphError(f"node '{name}' ({type(node).__name__}) failed on input of "
                             f"shape {tuple(x.shape)}: {exc}") from exc

    def _run_node(self, name: str, node: nir.NIRNode, x: torch.Tensor,
                  rec: RunRecord | None, ops: dict[str, SynapseOp] | None = None,
                  donate: bool = False) -> torch.Tensor:
        if isinstance(node, nir.Output):
            return x
        if isinstance(node, nir.Delay):
            return apply_delay(x, self.delays[name])
        runner = neuron_runner(node, self.dt)
        if runner is None:
            return self._synapse(name, node, x, ops)
        return _run_neuron(runner, x, rec, donate)

    # ------------------------------------------------------------ recurrent components
    def _run_cyclic(self, nodes: tuple[str, ...], values: dict[str, torch.Tensor],
                    records: dict[str, RunRecord], want: set[str],
                    observe: Observer | None = None) -> None:
        """Run one strongly connected component with a cycle step by step (see the
        module docstring); its outputs go into ``values`` as ``[T, B, ...]``."""
        members = set(nodes)
        outside = [values[p] for n in nodes for p in self.preds[n] if p not in members]
        ref = outside[0] if outside else values[self.inputs[0]]
        steps, batch = ref.shape[0], ref.shape[1]
        stepper = {n: self._stepper(n, self.graph.nodes[n]) for n in nodes}
        outs: dict[str, list[torch.Tensor]] = {n: [] for n in nodes}
        ins: dict[str, list[torch.Tensor]] = {n: [] for n in nodes
                                              if n in want or observe is not None}
        traces: dict[str, dict[str, list[torch.Tensor]]] = {n: {} for n in nodes if n in want}
        for t in range(steps):
            for n in nodes:
                x, first = None, ""
                for p in self.preds[n]:
                    if (p, n) in self.feedback:
                        if t == 0:
                            continue  # nothing has run yet: the feedback edge carries zero
                        v = outs[p][t - 1]
                    elif p in members:
                        v = outs[p][t]
                    else:
                        v = values[p][t]
                    x, first = (v, p) if x is None else (self._add(n, x, first, v, p), first)
                if x is None:
                    x = self._zero_input(n, batch, ref)
                if n in ins:
                    ins[n].append(x)
                y, state = stepper[n](x, t)
                outs[n].append(y)
                if n in traces and state is not None:
                    for f in type(state)._fields:
                        traces[n].setdefault(f, []).append(getattr(state, f))
        for n in nodes:
            values[n] = torch.stack(outs[n])
            x_n = torch.stack(ins[n]) if n in ins else None
            if n in want:
                records[n] = RunRecord(input=x_n, output=values[n],
                                       states={f: torch.stack(v)
                                               for f, v in traces[n].items()})
            if observe is not None:
                observe(n, x_n, values[n])

    def _zero_input(self, name: str, batch: int, like: torch.Tensor) -> torch.Tensor:
        """t = 0 for a node fed only over feedback edges: zero of its input shape."""
        shape = input_shape(self.graph.nodes[name])
        if shape is None:
            raise GraphError(f"node '{name}' is fed only over feedback edges and has no "
                             "known input shape for its zero input at t = 0; give it an "
                             "input_type or an input from outside its cycle")
        return torch.zeros((batch, *shape), dtype=like.dtype, device=like.device)

    def _stepper(self, name: str, node: nir.NIRNode):
        """``step(x_t, t) -> (y_t, state or None)`` of one node inside a cyclic
        component: the same operations as the batched path, one time step at a time."""
        if isinstance(node, nir.Output):
            return lambda x, t: (x, None)
        if isinstance(node, nir.Delay):
            return self._delay_stepper(self.delays[name])
        runner = neuron_runner(node, self.dt)
        if runner is not None:
            init, step = runner
            held: list[Any] = []

            def neuron(x: torch.Tensor, t: int):
                if not held:
                    held.append(init(x))
                y, held[0] = step(x, held[0])
                return y, held[0]

            return neuron
        if isinstance(node, (nir.Affine, nir.Linear)):
            cache: dict[str, torch.Tensor | None] = {}

            def linear(x: torch.Tensor, t: int):
                if not cache:  # the parameters once, in the input's dtype and device
                    cache["w"] = torch.as_tensor(np.asarray(node.weight), dtype=x.dtype,
                                                 device=x.device)
                    cache["b"] = (torch.as_tensor(np.asarray(node.bias), dtype=x.dtype,
                                                  device=x.device)
                                  if isinstance(node, nir.Affine) else None)
                try:
                    return tF.linear(x, cache["w"], cache["b"]), None
                except RuntimeError as exc:
                    raise GraphError(f"node '{name}' ({type(node).__name__}) failed on "
                                     f"input of shape {tuple(x.shape)}: {exc}") from exc

            return linear
        ops: dict[str, SynapseOp] = {}  # the parameters once, at the first step
        return lambda x, t: (self._synapse(name, node, x.unsqueeze(0), ops)[0], None)

    @staticmethod
    def _delay_stepper(steps: np.ndarray):
        history: list[torch.Tensor] = []
        masks: list[tuple[int, torch.Tensor | None]] = []

        def delay(x: torch.Tensor, t: int):
            history.append(x)
            if not masks:
                masks.extend(_delay_masks(steps, x))
            y = torch.zeros_like(x)
            for d, mask in masks:
                if t >= d:
                    y = history[t - d] if mask is None else torch.where(mask, history[t - d], y)
            return y, None

        return delay


def run_reference(graph: nir.NIRGraph, inputs: Any, *, dtype: torch.dtype = torch.float64,
                  dt: float | None = None, record: bool | Iterable[str] = False,
                  observe: Observer | None = None):
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` (tensor or numpy; dict for several
    Input nodes). Returns outputs, and ``(outputs, records)`` when ``record`` is set.
    ``observe``: see :meth:`ReferenceExecutor.forward`."""
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(as_number_array(inputs, "the input"))
    elif isinstance(inputs, dict):
        inputs = {k: torch.as_tensor(as_number_array(v, f"input for node '{k}'"))
                  for k, v in inputs.items()}
    with torch.no_grad():
        return ReferenceExecutor(graph, dtype=dtype, dt=dt)(inputs, record=record,
                                                            observe=observe)


def run(graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] = False,
        dtype: torch.dtype = torch.float64, dt: float | None = None):
    """The reference-shaped entry :func:`nirbridge.run` has always called: outputs, and
    ``(outputs, records)`` when ``record`` is set. New code uses :data:`BACKEND`."""
    return run_reference(graph, inputs, dtype=dtype, dt=dt, record=record)


#: The stateless node types :func:`apply_synapse` implements (checked without running).
_SYNAPSES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
             nir.AvgPool2d, nir.Flatten, nir.Threshold)


def structure_issues(graph: nir.NIRGraph) -> list[str]:
    """Why the reference cannot run ``graph``'s structure (cycles are fine): what no backend
    can run (:func:`~nirbridge.backends._base.graph_issues`), and a Delay that is no whole
    number of steps at the graph's ``metadata["dt"]`` (unchecked without one)."""
    reasons = graph_issues(graph)
    if reasons:
        return reasons
    dt = metadata_dt(graph)
    try:
        for name, node in flatten_subgraphs(graph).nodes.items():
            if isinstance(node, nir.Delay) and dt is not None:
                delay_steps(node, dt, name)
    except NirbridgeError as exc:
        return [str(exc)]
    return []


class ReferenceBackend:
    """The ``reference`` backend (:class:`~nirbridge.backends.Backend`): this
    executor, float64 by default (option ``dtype``)."""

    name = "reference"
    description = "float64 reference executor (torch): the ground truth"
    tolerance = EXACT

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """The reference defines the reading: no departure."""
        return Reading()

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why the reference cannot run ``graph``: its structure
        (:func:`structure_issues`), or node types it has no semantics for."""
        from nirbridge.backends._base import check_options

        check_options(self.name, options, ("dtype",))
        try:
            graph = flatten_subgraphs(graph)
        except NirbridgeError as exc:
            return [str(exc)]
        reasons = structure_issues(graph)
        for name, node in graph.nodes.items():
            if isinstance(node, (nir.Input, nir.Output, nir.Delay, *_SYNAPSES)):
                continue
            if not is_neuron(node):
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
