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
the alignment discards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from nirbridge.errors import LoweringError, NirbridgeError, ShapeMismatchError
from nirbridge.passes import predecessors, topological_order

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


class Lowerer:
    """What the floating_pt and fixed_pt lowerers share: the processes and connections
    built so far, one stream per lowered node, delay lines, and the walk over the graph
    in topological order (each subclass lowers one node in :meth:`_lower_node`)."""

    def __init__(self, graph: nir.NIRGraph, mode: str, dt: float, sparse: bool | str) -> None:
        self.graph, self.mode, self.dt, self.sparse = graph, mode, dt, sparse
        self.procs: dict[str, ProcSpec] = {}
        self.connections: list[tuple[str, str]] = []
        self.streams: dict[str, Stream] = {}
        self.preds = predecessors(graph)

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

    def lower(self) -> None:
        """Lower every node, in topological order."""
        for name in topological_order(self.graph):
            node = self.graph.nodes[name]
            try:
                self._lower_node(name, node)
            except NirbridgeError:
                raise
            except Exception as exc:  # a layer that fails on its input: name it
                raise LoweringError(f"node '{name}' ({type(node).__name__}) cannot be lowered: "
                                    f"{exc}") from exc

    def _lower_node(self, name: str, node: nir.NIRNode) -> None:  # pragma: no cover
        raise NotImplementedError


__all__ = [
    "DELAY", "DENSE", "FIXED_NEURON", "FLOAT_NEURON", "LIF_MONITOR", "MODES", "MONITOR",
    "PASS", "PROCS", "SOURCE", "SPARSE", "LavaNetwork", "Lowerer", "NeuronContext",
    "NeuronLowering", "ProcSpec", "Stream", "check_connected", "check_same_shapes",
    "process_label",
]
