"""The plan of a lowered network: process recipes, streams, and the base of both lowerers.

A :class:`LavaNetwork` holds no Lava object: it is a list of :class:`ProcSpec` recipes
(``"module:Class"`` and keyword arguments), their connections and one :class:`Stream` per
NIR node, built again into Lava Processes in the run's own process (:mod:`.child`).
Processes are named by ``"module:Class"`` strings, never imported here, because Lava may
only be imported once :mod:`nirbridge._lava_compat` is installed, and only in the process
that runs it.

Latency convention
------------------
Every ``Dense``/``Sparse`` delays its output by one step (Lava's synapses send at step
``k + 1`` what they received at step ``k``); neurons, pass-throughs and the source add
no delay. The lowering gives every node's output stream a latency ``L`` (the number of
synapses on its path from the input) and, where paths of different latency meet (a
residual add), inserts ``Delay`` lines on the shorter paths (:meth:`Lowerer.delayed`), so
that every node sees all its inputs aligned. The runner then places sample ``b`` at steps
``b·T .. b·T + T − 1`` of one long Lava run, runs ``B·T + max L`` steps, and reads
**reference step ``t`` of sample ``b`` of a node of latency ``L`` at Lava step ``k = b·T +
t + L``** (0-based; Lava's ``time_step`` is ``k + 1``). Outputs and records returned are
aligned that way: index ``t`` of a returned array is reference step ``t``. Stateful
processes reset their state to its initial value right before the step where their
sample starts (``(k − L) mod T = 0``), so samples do not leak into each other, and what
crosses a sample boundary through a synapse or a delay line arrives only at steps that
the alignment discards. Two things shift a value from one reference step to a later one
and so could carry it into the next sample: a feedback edge (one step) and a
``nir.Delay`` (its steps); both send zero where the reference has nothing yet (a gate on
the feedback edge at each sample's first step, the delay line's first steps of each
sample). Recurrent graphs: see :class:`Lowerer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from nirbridge.errors import LoweringError, NirbridgeError, ShapeMismatchError
from nirbridge.graph import (
    check_algebraic_loops,
    delay_steps,
    execution_order,
    feedback_edges,
    find_cycle,
    format_cycle,
    predecessors,
)

MODES: tuple[str, ...] = ("floating_pt", "fixed_pt")

#: The package of nirbridge's own Lava Processes (Lava classes only: see its docstring).
PROCS = "nirbridge.backends.lava.procs"
SOURCE = "lava.proc.io.source:RingBuffer"
DENSE = "lava.proc.dense.process:Dense"
SPARSE = "lava.proc.sparse.process:Sparse"
DELAY = f"{PROCS}.plumbing:Delay"
PASS = f"{PROCS}.plumbing:PassThrough"
MONITOR = f"{PROCS}.plumbing:Monitor"
LIF_MONITOR = f"{PROCS}.plumbing:LIFMonitor"
#: The one floating_pt neuron Process (any registered neuron, with its own torch step).
FLOAT_NEURON = f"{PROCS}.neurons:FloatNeuron"
#: The one integer neuron Process (any registered integer model).
FIXED_NEURON = f"{PROCS}.fixed:FixedNeuron"


# ------------------------------------------------------------------------- the plan
@dataclass
class ProcSpec:
    """One Lava Process of a lowered network, as a recipe built in the run's process.

    ``process`` is ``"module:Class"``; ``kwargs`` its static keyword arguments. At run
    time the runner adds ``data`` (sources), ``period``/``offset`` (``stateful``
    processes: samples' length T and this process's ``latency``) and ``probe`` (where
    ``probe`` is true and the output is observed).
    """

    key: str
    process: str
    kwargs: dict[str, Any]
    size: int
    node: str | None = None
    role: str = "helper"  # source | synapse | neuron | helper
    in_port: str | None = "a_in"
    out_port: str | None = "s_out"
    latency: int = 0
    stateful: bool = False
    probe: bool = False
    state_vars: tuple[str, ...] = ()  # Vars a monitor reads by reference (Lava's own LIF)

    @property
    def class_name(self) -> str:
        return self.process.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Stream:
    """What flows out of a lowered NIR node: which process sends it, its latency, the
    node's per-sample shape, a bias still to be added (or None), whether it carries
    graded values (True) or spikes, and (fixed_pt) the fractional bits of its integers."""

    proc: str
    latency: int
    shape: tuple[int, ...]
    bias: np.ndarray | None
    graded: bool
    frac: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class LavaNetwork:
    """A NIR graph lowered to Lava: process recipes, connections and per-node streams.

    Holds no Lava object (it is built again for every run, in the run's process).
    ``quant``: for fixed_pt, the :class:`~nirbridge.quantize.QuantizedGraph` it was built
    from (the golden model's parameters and formats).
    """

    graph: nir.NIRGraph
    mode: str
    dt: float
    procs: dict[str, ProcSpec]
    connections: list[tuple[str, str]]
    streams: dict[str, Stream]
    inputs: list[str]
    outputs: list[str]
    neurons: list[str]
    quant: Any = None

    @property
    def max_latency(self) -> int:
        """The largest latency of any stream: the steps a run needs beyond ``B·T``."""
        return max((s.latency for s in self.streams.values()), default=0)

    def latency(self, node: str) -> int:
        """Steps by which the Lava output of ``node`` lags the reference."""
        return self.streams[node].latency

    def describe(self) -> str:
        """A table of the processes: key, Lava class, size, latency and NIR node."""
        rows = [f"{'process':<28} {'class':<16} {'size':>7} {'latency':>7}  node"]
        for spec in self.procs.values():
            rows.append(f"{spec.key:<28} {spec.class_name:<16} {spec.size:>7} "
                        f"{spec.latency:>7}  {spec.node or ''}")
        return "\n".join(rows)

    def replace_process(self, node: str, process: str, *, stateful: bool = False,
                        probe: bool = False, **kwargs: Any) -> None:
        """Swap the Process of ``node`` for ``process`` (``"module:Class"``), e.g. a model
        under development. It receives ``shape``, the node's pending ``bias`` and
        ``kwargs``; ``stateful``/``probe`` say whether it takes ``period``/``offset`` and
        ``probe`` (otherwise a Monitor observes it)."""
        if node not in self.procs:
            raise LoweringError(f"node '{node}' has no process of its own to replace "
                                f"(processes: {', '.join(self.procs)})")
        spec = self.procs[node]
        new = dict(shape=(spec.size,), **kwargs)
        if "bias" in spec.kwargs:
            new.setdefault("bias", spec.kwargs["bias"])
        self.procs[node] = dataclasses.replace(spec, process=process, kwargs=new,
                                               stateful=stateful, probe=probe)


def process_label(net: LavaNetwork, node: str) -> str:
    """The Lava Process a node runs on: its class, and for the generic integer neuron
    the integer model it runs (``"FixedNeuron(arlif)"``)."""
    spec = net.procs[node]
    layer = net.quant.layers.get(node) if net.quant is not None else None
    if "params" in spec.kwargs and getattr(layer, "kind", None):
        return f"{spec.class_name}({layer.kind})"
    return spec.class_name


# ----------------------------------------------------------------- neuron lowerings
@dataclass
class NeuronContext:
    """What a neuron lowering knows besides the node: its name, shape, dt and mode; for
    fixed_pt also its quantized form (``quant``, a
    :class:`~nirbridge.quantize.QuantizedNeuron`) and the lowering's ``options``."""

    name: str
    shape: tuple[int, ...]
    dt: float
    mode: str
    quant: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class NeuronLowering:
    """The Process that implements a neuron node: ``process`` (``"module:Class"``), its
    keyword arguments, and how it behaves in a network."""

    process: str
    params: dict[str, Any]
    graded: bool = False     # sends values (LI, I, CubaLI) instead of spikes
    probe: bool = True       # records and counts its own output (takes ``probe``)
    stateful: bool = True    # takes ``period``/``offset`` and resets between samples
    state_vars: tuple[str, ...] = ()  # with probe=False: Vars a monitor reads by reference


# ----------------------------------------------------------------- the lowerers' base
def check_same_shapes(name: str, preds: list[str], streams: list[Stream]) -> None:
    """The streams summed into node ``name`` must all have one shape."""
    if len({s.shape for s in streams}) > 1:
        got = ", ".join(f"'{p}' {s.shape}" for p, s in zip(preds, streams, strict=True))
        raise ShapeMismatchError(f"node '{name}' sums inputs of different shapes: {got}")


def check_connected(procs: Mapping[str, ProcSpec], connections: list[tuple[str, str]]) -> None:
    """LoweringError unless the processes form one connected network."""
    parent = {k: k for k in procs}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in connections:
        parent[find(a)] = find(b)
    roots = {find(k) for k in procs}
    if len(roots) > 1:
        raise LoweringError(f"the graph has {len(roots)} unconnected parts; Lava runs one "
                            "connected network: run the parts as separate graphs")


#: The longest ``nir.Delay`` the Lava lowering takes, in time steps (Loihi 2's synaptic
#: delays hold up to 62 steps).
MAX_DELAY_STEPS = 62


class Lowerer:
    """What the floating_pt and fixed_pt lowerers share: the processes and connections
    built so far, one stream per lowered node, delay lines, the latency plan and the
    feedback edges (each subclass lowers one node in :meth:`_lower_node` and says in
    :meth:`steps` how many Lava steps a node adds).

    Latencies of recurrent graphs. Nodes are lowered in
    :func:`~nirbridge.graph.execution_order`, each from the streams of its non-feedback
    predecessors; a feedback edge ``u → v`` is connected once everything is lowered. It
    carries ``u``'s value of the previous step, which Lava delivers at ``v``'s latency
    exactly when ``L(u) = L_in(v) + 1``: the one step of Lava's Dense on a recurrent
    synapse is the feedback edge's one step. Where ``L(u)`` is smaller a delay line makes
    up the difference; where it is larger (a loop with more synapses than feedback
    edges) the latency of ``v`` is raised where the loop allows it (:meth:`plan`), else
    the graph is refused naming the loop. A gate on every feedback edge
    (:class:`~nirbridge.backends.lava.procs.plumbing.PassThrough` with ``zero_below=1``)
    sends zero at the first step of each sample, where the reference has zero and Lava
    would carry the previous sample's last value; the pending bias of the feedback stream
    (a recurrent Affine's) is added there, before the gate, so that it first counts at
    t = 1 as in the reference. A ``nir.Delay`` becomes a delay line of its steps that
    keeps the latency of its input (and is zero for the first steps of every sample).
    """

    def __init__(self, graph: nir.NIRGraph, mode: str, dt: float, sparse: bool | str) -> None:
        self.graph, self.mode, self.dt, self.sparse = graph, mode, dt, sparse
        self.procs: dict[str, ProcSpec] = {}
        self.connections: list[tuple[str, str]] = []
        self.streams: dict[str, Stream] = {}
        self.preds = predecessors(graph)
        self.feedback = set(feedback_edges(graph))
        #: per node, its sources over edges that carry this step's value / the previous one
        self.ff_preds = {n: [p for p in ps if (p, n) not in self.feedback]
                         for n, ps in self.preds.items()}
        self.fb_preds = {n: [p for p in ps if (p, n) in self.feedback]
                         for n, ps in self.preds.items()}
        #: per node with feedback inputs, the process they are connected into
        self.fb_target: dict[str, str] = {}
        #: the planned latency of every node's inputs (:meth:`plan`)
        self.lat_in: dict[str, int] = {}
        #: the per-sample shape of every lowered node's inputs (checks feedback inputs)
        self.in_shape: dict[str, tuple[int, ...]] = {}

    def add(self, spec: ProcSpec) -> str:
        if spec.key in self.procs:
            raise LoweringError(f"process key '{spec.key}' is used twice; rename the node")
        self.procs[spec.key] = spec
        return spec.key

    def connect(self, src: str, dst: str) -> None:
        self.connections.append((src, dst))

    def delayed(self, name: str, pred: str, stream: Stream, latency: int) -> str:
        """The process sending ``stream`` (the input of ``name`` from ``pred``) at
        ``latency``: its own, or a delay line added after it on a shorter path."""
        if stream.latency >= latency:
            return stream.proc
        key = self.add(ProcSpec(f"{name}/delay<{pred}", DELAY,
                                dict(shape=(stream.size,), delay=latency - stream.latency),
                                stream.size, latency=latency))
        self.connect(stream.proc, key)
        return key

    def inputs_of(self, name: str) -> int:
        """How many edges feed ``name`` (feedback edges included)."""
        return len(self.preds[name])

    # ------------------------------------------------------------------ the plan
    def steps(self, name: str, node: nir.NIRNode) -> int:  # pragma: no cover
        """Lava steps the lowering of ``node`` adds to its inputs' latency."""
        raise NotImplementedError

    def plan(self) -> None:
        """Every node's input latency :attr:`lat_in`: the latest of its non-feedback
        inputs, raised where a feedback input ``u`` needs it (``L(u) − 1``), iterated to
        the least fixed point (longest paths; feed-forward graphs: one pass, the plain
        latencies). A loop whose synapses add more steps than its feedback edges allow
        has none: refused naming it."""
        order = execution_order(self.graph)
        add = {n: int(self.steps(n, self.graph.nodes[n])) for n in order}
        out: dict[str, int] = {}
        parent: dict[str, str] = {}
        for _ in range(len(order) + 1):
            changed = ""
            for n in order:
                best, via = 0, ""
                cands = [(out[p], p) for p in self.ff_preds[n]]
                cands += [(out[u] - 1, u) for u in self.fb_preds[n] if u in out]
                if cands:
                    best, via = max(cands)
                if self.lat_in.get(n) != best or n not in out:
                    changed = n
                self.lat_in[n], out[n] = best, best + add[n]
                if via:
                    parent[n] = via
            if not changed:
                return
        self._refuse_loop(changed, parent, add)

    def _refuse_loop(self, start: str, parent: dict[str, str], add: dict[str, int]) -> None:
        node = start
        for _ in range(len(add)):  # walk back onto the loop that keeps growing
            node = parent.get(node, node)
        loop, cur = [node], parent.get(node)
        while cur is not None and cur != node and len(loop) <= len(add):
            loop.append(cur)
            cur = parent.get(cur)
        if cur != node:  # the walk found no loop (it cannot): name one cycle of the graph
            loop = list(reversed(find_cycle(self.graph) or [start]))
        loop.reverse()
        pairs = list(zip(loop, loop[1:] + loop[:1], strict=True))
        entry = [i for i, edge in enumerate(pairs) if edge in self.feedback]
        if entry:  # name it from where its feedback edge enters it
            first = (entry[0] + 1) % len(loop)
            loop = loop[first:] + loop[:first]
            pairs = list(zip(loop, loop[1:] + loop[:1], strict=True))
        fb = sum(edge in self.feedback for edge in pairs)
        syn = sum(add[n] for n in loop)
        raise LoweringError(
            f"loop ({format_cycle(loop)}) cannot run on Lava as the reference runs it: its "
            f"Dense/Sparse synapses delay it by {syn} Lava steps, but its {fb} feedback "
            f"edge{'s' if fb != 1 else ''} delay{'' if fb != 1 else 's'} it by {fb} "
            f"step{'s' if fb != 1 else ''} in NIR; a loop may hold at most one synapse per "
            "feedback edge")

    # -------------------------------------------------------------- the walk
    def lower(self) -> None:
        """Plan the latencies, lower every node in execution order, then connect the
        feedback edges."""
        check_algebraic_loops(self.graph)
        self.plan()
        for name in execution_order(self.graph):
            node = self.graph.nodes[name]
            try:
                self._lower_node(name, node)
            except NirbridgeError:
                raise
            except Exception as exc:  # a layer that fails on its input: name it
                raise LoweringError(f"node '{name}' ({type(node).__name__}) cannot be lowered: "
                                    f"{exc}") from exc
            if self.fb_preds[name] and name not in self.fb_target:
                raise LoweringError(f"node '{name}' ({type(node).__name__}) cannot take a "
                                    "recurrent input on Lava")
        self.connect_feedback()

    def connect_feedback(self) -> None:
        """Each feedback edge ``u → v``: ``u``'s stream, delayed to ``L_in(v) + 1``, then
        a gate (zero at each sample's first step; the pending bias added before it) into
        ``v``'s :attr:`fb_target`."""
        seen: dict[tuple[str, str], int] = {}
        for u, v in self.graph.edges:
            if (u, v) not in self.feedback:
                continue
            s = self.streams[u]
            want = self.in_shape.get(v)
            if want is not None and s.shape != want:
                raise ShapeMismatchError(f"node '{v}' sums inputs of different shapes: its "
                                         f"recurrent input '{u}' {s.shape}, the others {want}")
            latency = self.lat_in[v]
            n = seen[(u, v)] = seen.get((u, v), 0) + 1
            tag = f"{u}" if n == 1 else f"{u}#{n}"
            key = s.proc
            if s.latency < latency + 1:
                key = self.add(ProcSpec(f"{v}/delay<{tag}", DELAY,
                                        dict(shape=(s.size,), delay=latency + 1 - s.latency),
                                        s.size, latency=latency))
                self.connect(s.proc, key)
            gate = self.add(ProcSpec(f"{v}/feedback<{tag}", PASS,
                                     dict(shape=(s.size,), ops=tuple(self.fb_ops(v, s)),
                                          zero_below=1),
                                     s.size, latency=latency, stateful=True))
            self.connect(key, gate)
            self.connect(gate, self.fb_target[v])

    def fb_ops(self, name: str, stream: Stream) -> list[tuple[str, Any]]:
        """The ops a feedback stream into ``name`` goes through before its gate."""
        return [("add", stream.bias)] if stream.bias is not None else []

    def _lower_node(self, name: str, node: nir.NIRNode) -> None:  # pragma: no cover
        raise NotImplementedError


def delay_of(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...]) -> np.ndarray:
    """A ``nir.Delay``'s steps per element of its flat stream (at most
    :data:`MAX_DELAY_STEPS`, else a :class:`LoweringError` naming the node)."""
    steps = delay_steps(node, dt, name)
    try:
        flat = np.broadcast_to(steps, shape).ravel().copy()
    except ValueError:
        raise ShapeMismatchError(f"node '{name}' (Delay): delay of shape {steps.shape} does "
                                 f"not fit its input {shape}") from None
    longest = int(flat.max(initial=0))
    if longest > MAX_DELAY_STEPS:
        raise LoweringError(f"node '{name}' (Delay): {longest} time steps at dt = {dt:g}; "
                            f"Lava delays hold at most {MAX_DELAY_STEPS} steps")
    return flat


__all__ = [
    "DELAY", "DENSE", "FIXED_NEURON", "FLOAT_NEURON", "LIF_MONITOR", "MAX_DELAY_STEPS",
    "MODES", "MONITOR", "PASS", "PROCS", "SOURCE", "SPARSE", "LavaNetwork", "Lowerer",
    "NeuronContext", "NeuronLowering", "ProcSpec", "Stream", "check_connected",
    "check_same_shapes", "delay_of", "process_label",
]
