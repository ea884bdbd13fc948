"""What every backend implements: the :class:`Backend` protocol and its :class:`RunResult`.

A backend is an object with a ``name``, a one-line ``description`` and two methods:

- ``check(graph, **options) -> list[str]``: why it cannot run ``graph`` (empty: it can).
  Cheap: it lowers or quantizes at most, it never simulates.
- ``run(graph, inputs, *, record=False, dt=None, **options) -> RunResult``: run
  ``inputs`` ``[T, B, ...]`` (numpy or torch; a dict by Input node for several inputs).
- ``reading(graph, **options) -> Reading``: where the backend computes something other
  than what NIR defines (a framework reading ``IF`` as its own multi-spike neuron, a
  ``tau`` read at another dt ...): each departure as a note, and, where known, the graph
  it does compute in nirbridge's exact nodes. It still runs the graph; ``verify`` reports
  the notes and measures the difference. Empty for a backend that follows the spec.

and a ``tolerance`` (:class:`Tolerance`): the agreement with the float64 reference it
promises, which ``nirbridge verify`` holds it to.

:mod:`nirbridge.backends` lists the backends in its ``BACKENDS`` table. This module
holds only what they share, so that a backend imports it without importing the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from nirbridge.errors import InputError, NirbridgeError

if TYPE_CHECKING:  # listing the backends imports neither torch nor NIR
    import nir

#: What ``record=`` takes: True (every node), False/None, or node names.
Record = bool | Iterable[str] | None


@dataclass
class RunResult:
    """What every backend's ``run`` returns.

    ``outputs``: float64 numpy ``[T, B, ...]`` in real units (spikes are 0/1), a dict by
    Output node when the graph has several. ``records``: per recorded node a
    :class:`~nirbridge.backends.reference.RunRecord` (``input``, ``output`` and
    ``states`` as float64 torch tensors ``[T, B, ...]`` in real units, the type
    :func:`~nirbridge.profile.count_events` reads); empty unless ``record`` was set.
    ``info``: how the run went. Every backend gives ``backend`` (its name), ``dt`` and
    ``seconds`` (timings, ``wall`` at least); the others are the backend's own:

    - Lava: ``mode``, ``runs``, ``steps``, ``child_pids``, ``counts`` (non-zero outputs
      per node, sample and neuron), ``workers``, ``cluster`` and ``shards`` (the samples
      ``(start, stop)`` of each run);
    - fixed point (``fixed``, ``lava-fixed``): ``quantized`` (the
      :class:`~nirbridge.quantize.QuantizedGraph` run), ``quantization`` (one dict per
      quantized node: its layer report, ``node``, ``saturated`` events in this run or
      None where not reported), ``saturations`` (per neuron and state field), and
      ``fixed_records`` (the integers themselves per recorded node, as
      :class:`~nirbridge.quantize.FixedPointRecord`; None unless recorded).
    """

    outputs: Any
    records: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def output(self) -> np.ndarray:
        """The outputs of a graph with one Output node (``InputError`` otherwise)."""
        if isinstance(self.outputs, dict):
            raise InputError(f"the graph has several Output nodes ({', '.join(self.outputs)}); "
                             "read RunResult.outputs by name")
        return self.outputs


@dataclass(frozen=True)
class Tolerance:
    """The agreement with the float64 reference a backend promises on a graph it reads as
    NIR defines it (``nirbridge verify`` passes or fails it on this).

    ``spikes``: ``"exact"`` (every spike identical), ``"rounding"`` (identical except where
    the run's own float rounding decides a value within rounding of a threshold: ``verify``
    counts those and accepts a divergence that starts only there), or ``"bound"`` (at least
    ``min_spike_agreement`` of the spikes identical: fixed point). ``graded_rel``: the
    largest relative difference of graded (non-spike) outputs. ``why``: where the bound
    comes from (a measurement, the run's dtype).
    """

    spikes: str = "exact"
    graded_rel: float = 1e-9
    min_spike_agreement: float = 1.0
    why: str = ""


#: What a float64 backend promises: the reference's own spikes and values.
EXACT = Tolerance("exact", 1e-9, 1.0, "float64, the reference's own arithmetic")


@dataclass
class Reading:
    """How a backend reads a graph where it departs from the NIR spec (see the module
    documentation): ``notes``, one per departure, naming the node, the field and the
    value; ``graph``, what it computes instead in nirbridge's exact nodes (None where it
    reads the graph as NIR defines it, or where that is not known)."""

    notes: list[str] = field(default_factory=list)
    graph: nir.NIRGraph | None = None

    @property
    def faithful(self) -> bool:
        """The backend computes the graph as NIR defines it."""
        return not self.notes


@runtime_checkable
class Backend(Protocol):
    """A way to run a NIR graph (see the module's documentation)."""

    name: str
    description: str
    tolerance: Tolerance

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why this backend cannot run ``graph`` with ``options`` (empty: it can)."""
        ...

    def run(self, graph: nir.NIRGraph, inputs: Any, *, record: Record = False,
            dt: float | None = None, **options: Any) -> RunResult:
        """Run ``graph`` on ``inputs`` ``[T, B, ...]``; see :class:`RunResult`."""
        ...

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """Where this backend's reading of ``graph`` departs from the NIR spec."""
        ...


def to_numpy(outputs: Any) -> Any:
    """Outputs (a tensor, an array or a dict of them) as float64 numpy arrays on the CPU."""
    if isinstance(outputs, Mapping):
        return {k: to_numpy(v) for k, v in outputs.items()}
    if hasattr(outputs, "detach"):  # a torch tensor, on any device
        outputs = outputs.detach().cpu().numpy()
    return np.asarray(outputs, dtype=np.float64)


def check_options(backend: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse options a backend does not take, naming them and the ones it does."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"backend '{backend}' has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(allowed) or 'none'}")


def graph_issues(graph: nir.NIRGraph) -> list[str]:
    """Structural reasons no backend can run ``graph``: a subgraph that does not flatten,
    an edge to a missing node, an algebraic loop (a cycle with no neuron and no
    ``nir.Delay``: one line naming exactly its nodes), no Input or Output node. Cycles
    through a neuron or a delay are fine (every backend runs them as the reference
    does); what a backend cannot run of them its own ``check`` says."""
    import nir

    from nirbridge.graph import check_algebraic_loops, check_edge_names, flatten_subgraphs

    try:
        graph = flatten_subgraphs(graph)
        check_edge_names(graph)
        check_algebraic_loops(graph)
    except NirbridgeError as exc:
        return [str(exc)]
    reasons = []
    if not any(isinstance(n, nir.Input) for n in graph.nodes.values()):
        reasons.append("graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in graph.nodes.values()):
        reasons.append("graph has no Output node")
    return reasons


def runnable(backend: Backend, graph: nir.NIRGraph, options: Mapping[str, Any]
             ) -> nir.NIRGraph:
    """``graph`` flattened, if ``backend.check`` finds no reason it cannot run it with
    ``options``; else a ``LoweringError`` listing the reasons."""
    from nirbridge.errors import LoweringError
    from nirbridge.graph import flatten_subgraphs

    reasons = backend.check(graph, **options)
    if reasons:
        raise LoweringError(f"the {backend.name} backend cannot run this graph: "
                            + "; ".join(reasons))
    return flatten_subgraphs(graph)


def error_reason(exc: NirbridgeError) -> str:
    """The first line of an error, as a ``check`` reason."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


__all__ = ["EXACT", "Backend", "Reading", "Record", "RunResult", "Tolerance", "check_options",
           "error_reason", "graph_issues", "runnable", "to_numpy"]
