"""Target-independent event counts of one recorded run (:func:`count_events`).

Exact counts, no target involved: synaptic operations (effective and dense, tagged AC or
MAC from the graph), neuron updates (dense and driven), spikes, the parameter footprint.
Counts are summed over time steps and averaged per sample, as NeuroBench does (Yik et
al., Nat. Commun. 16:1545, 2025), and :meth:`Counts.neurobench` gives NeuroBench's three
numbers. :func:`fanout_map` gives the exact connectivity of a synapse node.

Recurrent graphs are counted as the reference runs them (``docs/recurrence.md``): a
feedback edge carries its source's previous step, zero at t = 0. A node's input is its
recorded input, or, for backends that record only outputs (Lava), the sum of its
predecessors' outputs with those over feedback edges taken one step late. A *recurrent
synapse* — a synapse node whose output reaches the graph only over feedback edges
(directly, or through further synapse and pass-through nodes that do), such as ``w_rec``
in ``lif → w_rec → lif`` — is counted at the step its output is used: its events at step
t are the spikes of step t − 1 × its fan-out, none at t = 0 (the last step's spikes feed
no step of the run and are not counted; a ``nir.Delay`` on the loop does not move the
count further; its dense count stays every connection at every step). A synapse *fed*
over a feedback edge needs no shift: its input is already the previous step's value.
Feed-forward graphs count exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InputError
from nirbridge.graph import Edge, feedback_edges, flatten_subgraphs, predecessors, successors
from nirbridge.neurons import is_neuron
from nirbridge.profile.counts import (  # importable here as before
    Counts,
    NeuronCount,
    ParamCount,
    SynapseCount,
    _param_count,
    merge_counts,
)
from nirbridge.profile.fanout import fanout_map
from nirbridge.profile.nonzero import (  # importable here as before
    COUNT_BLOCK_ELEMENTS,
    nonzero_by_element,
    nonzero_per_step,
)
from nirbridge.profile.spiking import (
    NEUROBENCH_TYPES,
    PASS_THROUGH,
    SYNAPSE_TYPES,
    event_scales,
    is_spiking,
    payload_tags,
    synapse_kind,
)


def _record(records: MappingABC[str, Any], name: str, what: str) -> torch.Tensor:
    rec = records.get(name)
    t = None if rec is None else getattr(rec, what)
    if t is None:
        raise InputError(f"no recorded {what} for node '{name}'; run the reference with "
                         "record=True (or include this node in record=...)")
    return torch.as_tensor(t)


def _previous_step(x: torch.Tensor) -> torch.Tensor:
    """``y[t] = x[t - 1]``, zero at t = 0: what a feedback edge carries."""
    y = torch.zeros_like(x)
    y[1:] = x[:-1]
    return y


def _node_input(records: MappingABC[str, Any], name: str, preds: list[str],
                feedback: set[Edge]) -> torch.Tensor:
    """A node's summed input: recorded, or (for backends that record only outputs, such as
    Lava) the sum of its predecessors' recorded outputs, which is what NIR defines it as;
    over a feedback edge the source's previous step (zero at t = 0), as the reference
    reads it."""
    rec = records.get(name)
    if rec is not None and getattr(rec, "input", None) is not None:
        return torch.as_tensor(rec.input)
    if not preds:
        return _record(records, name, "input")
    total = None
    for p in preds:
        v = _record(records, p, "output")
        if (p, name) in feedback:
            v = _previous_step(v)
        total = v if total is None else total + v
    return total


def recurrent_synapses(graph: nir.NIRGraph) -> set[str]:
    """The synapse nodes whose output reaches the rest of ``graph`` only over feedback
    edges, directly or through synapse and pass-through nodes that do (see the module
    docstring): the recurrent weights of recurrent layers. Empty for an acyclic graph."""
    feedback = set(feedback_edges(graph))
    if not feedback:
        return set()
    succ = successors(graph)
    late: dict[str, bool] = {}

    def is_late(name: str) -> bool:
        if name not in late:
            late[name] = False  # on a cycle of such nodes (through a Delay): not late
            late[name] = bool(succ[name]) and all(
                (name, m) in feedback
                or isinstance(graph.nodes[m], (*SYNAPSE_TYPES, *PASS_THROUGH)) and is_late(m)
                for m in succ[name])
        return late[name]

    return {n for n, node in graph.nodes.items()
            if isinstance(node, SYNAPSE_TYPES) and is_late(n)}


@dataclass
class _SynapseSteps:
    """A synapse's counts so far: its fan-out and its effective SOPs per step."""

    shape: tuple[int, ...]
    fanout: torch.Tensor
    dense_step: float
    steps: np.ndarray             #: [T] effective SOPs of each step, summed over the batch
    kind: str                     #: AC or MAC
    #: [T] SOPs with each input value taken as the events it stands for (pooled events,
    #: :func:`~nirbridge.profile.spiking.event_scales`); None: AC (= ``steps``) or
    #: real-valued input (no event count)
    events: np.ndarray | None
    scale: float                  #: events per unit of input value, for ``events``


@dataclass
class _NeuronSteps:
    """A neuron's counts so far, per step, summed over the batch."""

    neurons: int
    driven: np.ndarray            #: [T]
    spikes: np.ndarray | None     #: [T]; None for a graded neuron
    pending: int | None = None    #: the block whose driven count :meth:`before` took


class EventCounter:
    """Counts a run's events while it runs, node by node or a block of time steps at a time.

    ``counter(name, input, output)`` with a node's whole ``[T, B, ...]`` summed input (None
    for an Input node) and output is the reference executor's observer
    (``ReferenceExecutor.forward(observe=...)``), so that no record needs keeping. With
    ``start=a, steps=T`` the two are the steps ``a:a+τ`` of a run of ``T`` steps: the
    executor runs its feed-forward regions a block of steps at a time (:data:`by_block`)
    and the counter reads each block while it is in cache. :meth:`counts` gives the
    :class:`Counts`: the same numbers, however the run was cut, as :func:`count_events`
    finds in the records of the same run (it feeds this class from them). Nodes other
    than Input, synapse and neuron nodes are ignored.
    """

    #: the reference executor may call it a block of steps at a time (``start=``, ``steps=``)
    by_block = True

    def __init__(self, graph: nir.NIRGraph, *,
                 spike_inputs: bool | Iterable[str] = False) -> None:
        self.graph = flatten_subgraphs(graph)
        self._tags = payload_tags(self.graph, spike_inputs)
        self._scales = event_scales(self.graph, self._tags)
        self._preds = predecessors(self.graph)
        self._late = recurrent_synapses(self.graph)
        self._synapses: dict[str, _SynapseSteps] = {}
        self._neurons: dict[str, _NeuronSteps] = {}
        self._inputs: dict[str, float] = {}
        self._tb: tuple[int, int] | None = None
        self._fanouts: dict[tuple[str, tuple[int, ...]], tuple[torch.Tensor, float]] = {}
        # The per-element non-zero counts over the batch of an Input's or a neuron's output
        # (``[T, ...]``, filled as its blocks come) serve every synapse that reads that
        # output alone (through Flatten nodes): one pass over each value. Dropped once
        # each such reader has read every step.
        self._source: dict[str, str] = {}
        self._readers: dict[str, int] = {}
        for name, node in self.graph.nodes.items():
            src = self._counted_source(name, node)
            if src is not None:
                self._source[name] = src
                self._readers[src] = self._readers.get(src, 0) + 1
        self._elem: dict[str, torch.Tensor] = {}
        self._read: dict[str, int] = {}
        self._filled: dict[str, int] = {}  # steps of each kept count made so far
        self._unread: dict[str, torch.Tensor] = {}  # Inputs whose readers will count them

    def _add_events(self, name: str, per_elem: torch.Tensor) -> None:
        # whole numbers summed (exact below 2^53), divided by the batch once, at the end
        self._inputs[name] = self._inputs.get(name, 0.0) + float(per_elem.sum().item())

    def _counted_source(self, name: str, node: nir.NIRNode) -> str | None:
        """The Input or neuron whose output ``name`` (a synapse) reads alone, as is or
        reshaped by Flatten nodes, where its per-element counts are the ones it needs."""
        preds = self._preds[name]
        if not isinstance(node, SYNAPSE_TYPES) or len(preds) != 1 \
                or self._tags[preds[0]] == "count":
            return None
        src = preds[0]
        while isinstance(self.graph.nodes[src], nir.Flatten) and len(self._preds[src]) == 1:
            src = self._preds[src][0]
        source = self.graph.nodes[src]
        return src if isinstance(source, nir.Input) or is_neuron(source) else None

    def _block(self, x: torch.Tensor, name: str, start: int | None, steps: int | None
               ) -> tuple[int, int, int]:
        """``(a, τ, B)``: where the block ``x`` starts, its steps and batch, checked
        against the run's ``T`` and ``B``."""
        if x.dim() < 2:
            raise InputError(f"record of node '{name}' has shape {tuple(x.shape)}; "
                             "expected [T, B, ...]")
        tau, b = int(x.shape[0]), int(x.shape[1])
        t = tau if start is None else int(steps if steps is not None else -1)
        a = 0 if start is None else int(start)
        if self._tb is None:
            self._tb = (t, b)
        if t != self._tb[0] or b != self._tb[1] or a < 0 or a + tau > t:
            raise InputError(f"record of node '{name}' has T, B = {tau}, {b}"
                             + (f" at step {a} of {t}" if start is not None else "")
                             + f"; other nodes have {self._tb[0]}, {self._tb[1]}")
        return a, tau, b

    def _produce(self, name: str, y: torch.Tensor, a: int) -> torch.Tensor:
        """Per-element non-zero counts of the block ``y`` of ``name``'s output; kept for
        its readers when it has any."""
        c = nonzero_by_element(y)
        if self._readers.get(name):
            t = self._tb[0] if self._tb else c.shape[0]
            if name not in self._elem or a == 0:
                self._elem[name] = c.new_empty((t, *c.shape[1:]))
                self._read[name] = 0
            self._elem[name][a:a + c.shape[0]] = c
            self._filled[name] = a + c.shape[0]
        return c

    def before(self, name: str, x: torch.Tensor, *, start: int | None = None,
               steps: int | None = None) -> None:
        """A neuron's input (or a block of it), before the neuron writes its outputs over
        it (see :data:`nirbridge.backends.reference.Observer`): its driven updates are
        counted now."""
        node = self.graph.nodes.get(name)
        if node is not None and is_neuron(node):
            x = torch.as_tensor(x)
            a, tau, _ = self._block(x, name, start, steps)
            acc = self._neuron_steps(name, node, x)
            acc.driven[a:a + tau] = nonzero_per_step(x).numpy()
            acc.pending = a

    def __call__(self, name: str, x: torch.Tensor | None, y: torch.Tensor | None, *,
                 start: int | None = None, steps: int | None = None) -> None:
        node = self.graph.nodes.get(name)
        if isinstance(node, nir.Input):
            if y is not None:
                y = torch.as_tensor(y)
                a, _, b = self._block(y, name, start, steps)
                if self._readers.get(name) and start is None:
                    # counted as its first reader reads it (a block of it in cache then)
                    self._unread[name] = y
                else:
                    self._add_events(name, self._produce(name, y, a))
        elif isinstance(node, SYNAPSE_TYPES):
            if x is None:
                raise InputError(f"no input for synapse node '{name}'")
            self._synapse(name, node, torch.as_tensor(x), start, steps)
        elif node is not None and is_neuron(node):
            pending = self._neurons[name].pending if name in self._neurons else None
            if (x is None and pending != (start or 0)) or y is None:
                raise InputError(f"neuron node '{name}' needs its input and output")
            self._neuron(name, node, None if x is None else torch.as_tensor(x),
                         torch.as_tensor(y), start, steps)

    def _fanout(self, name: str, node: nir.NIRNode, shape: tuple[int, ...]
                ) -> tuple[torch.Tensor, float]:
        key = (name, shape)
        if key not in self._fanouts:
            fmap = fanout_map(node, shape).reshape(-1).to(torch.float64)
            dense = float(fanout_map(node, shape, ones=True).sum().item())
            self._fanouts[key] = (fmap, dense)
        return self._fanouts[key]

    def _per_element(self, name: str, x: torch.Tensor, a: int, tau: int) -> torch.Tensor:
        """``[τ, N]``: the events of every input element of the block, over the batch: the
        kept counts of the output it reads, else counted here."""
        src = self._source.get(name)
        if src in self._unread and self._filled.get(src, 0) < a + tau:
            # an Input is counted by its first reader, block by block, for every reader
            self._add_events(src, self._produce(src, x, a))
            if a + tau >= self._tb[0]:
                del self._unread[src]
        kept = self._elem.get(src) if src is not None else None
        if kept is None or self._filled.get(src, 0) < a + tau:
            return nonzero_by_element(x).reshape(tau, -1)
        self._read[src] += tau
        if self._read[src] >= self._readers[src] * kept.shape[0]:
            del self._elem[src]
        return kept[a:a + tau].reshape(tau, -1)

    def _synapse(self, name: str, node: nir.NIRNode, x: torch.Tensor, start: int | None,
                 steps: int | None) -> None:
        a, tau, _ = self._block(x, name, start, steps)
        shape = tuple(int(s) for s in x.shape[2:])
        acc = self._synapses.get(name)
        if acc is None or acc.shape != shape:
            fmap, dense_step = self._fanout(name, node, shape)
            kind = synapse_kind(self.graph, name, self._tags, self._preds)
            scales = {self._scales[p] for p in self._preds[name]}
            pooled = kind != "AC" and None not in scales and len(scales) == 1
            acc = self._synapses[name] = _SynapseSteps(
                shape, fmap, dense_step, np.zeros(self._tb[0], dtype=np.float64), kind,
                np.zeros(self._tb[0], dtype=np.float64) if pooled else None,
                scales.pop() if pooled else 1.0)
        # SOPs of a step = Σ_i (events of input element i over the batch) · fanout_i: one
        # event per non-zero input (NeuroBench), n events for a count of n
        if any(self._tags[p] == "count" for p in self._preds[name]):
            per_elem = torch.sum(x, 1, dtype=torch.float64).cpu().reshape(tau, -1)
        else:
            per_elem = self._per_element(name, x, a, tau)
        if name in self._late:  # in a cycle: the executor gives it whole, never blocked
            per_elem = _previous_step(per_elem)
        # integer events × integer fan-outs: every partial sum is an integer below 2^53,
        # so the matrix-vector product is exact in any order
        acc.steps[a:a + tau] = (per_elem @ acc.fanout).numpy()
        if acc.events is not None:
            # pooled events: an input value v is scale·v events (v ≥ 0 by construction)
            ev = torch.sum(x, 1, dtype=torch.float64).cpu().reshape(tau, -1) * acc.scale
            if name in self._late:
                ev = _previous_step(ev)
            acc.events[a:a + tau] = (ev @ acc.fanout).numpy()

    def _neuron_steps(self, name: str, node: nir.NIRNode, x: torch.Tensor) -> _NeuronSteps:
        acc = self._neurons.get(name)
        if acc is None:
            t = self._tb[0] if self._tb else int(x.shape[0])
            acc = self._neurons[name] = _NeuronSteps(
                neurons=int(np.prod(x.shape[2:], dtype=np.int64)),
                driven=np.zeros(t, dtype=np.int64),
                spikes=np.zeros(t, dtype=np.float64) if is_spiking(node) else None)
        return acc

    def _neuron(self, name: str, node: nir.NIRNode, x: torch.Tensor | None,
                y: torch.Tensor, start: int | None, steps: int | None) -> None:
        a, tau, _ = self._block(y, name, start, steps)
        acc = self._neuron_steps(name, node, y if x is None else x)
        if x is not None:  # the input as seen now, else as counted before the neuron ran
            acc.driven[a:a + tau] = nonzero_per_step(x).numpy()
        acc.pending = None
        if acc.spikes is not None:
            if self._tags[name] == "count":
                acc.spikes[a:a + tau] = y.reshape(tau, -1).sum(1).cpu().numpy()
            else:  # counted per element: the synapses this output feeds reuse it
                acc.spikes[a:a + tau] = self._produce(name, y, a).reshape(tau, -1).sum(1)

    def counts(self) -> Counts:
        """The counts of everything seen so far, nodes in graph order."""
        params = {}
        for name, node in self.graph.nodes.items():
            pc = _param_count(name, node)
            if pc is not None:
                params[name] = pc
        t, b = self._tb or (0, 0)
        synapses, neurons = {}, {}
        for name, node in self.graph.nodes.items():
            if name in self._synapses:
                s = self._synapses[name]
                events = (float(s.steps.sum()) / b if s.kind == "AC" else
                          None if s.events is None else float(s.events.sum()) / b)
                synapses[name] = SynapseCount(
                    node=name, op=type(node).__name__, kind=s.kind, effective_events=events,
                    predecessors=list(self._preds[name]),
                    neurobench=isinstance(node, NEUROBENCH_TYPES), in_shape=s.shape,
                    effective=float(s.steps.sum()) / b, dense=s.dense_step * t,
                    effective_per_step=s.steps / b, dense_per_step=s.dense_step,
                    synapses=int(round(float(s.fanout.sum().item()))),
                    connections=int(round(s.dense_step)))
            elif name in self._neurons:
                n = self._neurons[name]
                neurons[name] = NeuronCount(
                    node=name, op=type(node).__name__, spiking=n.spikes is not None,
                    neurons=n.neurons, updates_dense=float(n.neurons * t),
                    updates_driven=int(n.driven.sum()) / b, driven_per_step=n.driven / b,
                    spikes=None if n.spikes is None else float(n.spikes.sum()) / b,
                    spikes_per_step=None if n.spikes is None else n.spikes / b)
        for name, y in list(self._unread.items()):  # Inputs no reader counted
            self._add_events(name, nonzero_by_element(y[self._filled.get(name, 0):]))
            del self._unread[name]
        inputs = {k: self._inputs[k] / b for k in self.graph.nodes if k in self._inputs}
        return Counts(time_steps=t, batch=b, synapses=synapses, neurons=neurons,
                      params=params, input_events=inputs)


def count_events(graph: nir.NIRGraph, records: MappingABC[str, Any], *,
                 spike_inputs: bool | Iterable[str] = False) -> Counts:
    """Exact event counts of one recorded run (``run_reference(..., record=True)``, or
    any backend's records).

    Per node: synaptic operations of every synapse node (effective and dense, AC or MAC
    tagged from the graph), neuron updates (dense, driven), spikes, parameters. Values
    are summed over time steps and averaged per sample (NeuroBench's convention); bias
    is excluded from SOPs. ``spike_inputs`` declares Input nodes that carry binary
    events (their first layer is then AC, as NeuroBench would find on such data).
    Recurrent graphs: see the module docstring (a recurrent synapse's events at step t
    are the spikes of step t − 1 × fan-out). Nested subgraphs are flattened first, as
    the reference does (records keyed ``sub.x``). The reference counts without records
    (:func:`count_run`, :class:`EventCounter`): the same numbers.
    """
    counter = EventCounter(graph, spike_inputs=spike_inputs)
    graph = counter.graph
    preds = predecessors(graph)
    feedback = set(feedback_edges(graph))
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            if name in records and getattr(records[name], "output", None) is not None:
                counter(name, None, _record(records, name, "output"))
        elif isinstance(node, SYNAPSE_TYPES):
            counter(name, _node_input(records, name, preds[name], feedback), None)
        elif is_neuron(node):
            x = _node_input(records, name, preds[name], feedback)
            counter(name, x, _record(records, name, "output"))
    return counter.counts()


def count_run(graph: nir.NIRGraph, inputs: Any, *, dt: float | None = None,
              spike_inputs: bool | Iterable[str] = False,
              dtype: torch.dtype = torch.float64,
              record: bool | Iterable[str] = False) -> tuple[Any, Counts]:
    """Run the reference (float64 by default) on ``inputs`` ``[T, B, ...]``, counting its
    events while it runs (:class:`EventCounter`: no records kept for the counting).

    Returns ``(outputs, counts)``, or ``((outputs, records), counts)`` when ``record``
    asks for records (of the nodes named, or all).
    """
    from nirbridge.backends.reference import run_reference

    counter = EventCounter(graph, spike_inputs=spike_inputs)
    got = run_reference(graph, inputs, dt=dt, dtype=dtype, record=record, observe=counter)
    return got, counter.counts()


__all__ = ["COUNT_BLOCK_ELEMENTS", "Counts", "EventCounter", "NeuronCount", "ParamCount",
           "SynapseCount", "count_events", "count_run", "fanout_map", "merge_counts",
           "nonzero_by_element", "nonzero_per_step", "recurrent_synapses"]
