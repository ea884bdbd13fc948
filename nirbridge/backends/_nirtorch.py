"""What the ``norse`` and ``sinabs`` backends share: both frameworks read a NIR graph with
nirtorch 2.6's ``nirtorch.load`` (Norse's ``from_nir`` and Sinabs' ``from_nir`` are that
call with their own node mapping), which builds a ``GraphExecutor``.

Facts about that executor (nirtorch 2.6, ``graph_executor.py``) the backends respect:

- It runs the nodes in a **depth-first pre-order** from the Input node, successors in
  edge order (``nirtorch.graph_utils.trace_execution``), not in a topological order. An
  edge into a node that this order runs *before* its source (a back edge of a cycle, but
  also the second branch of a join such as a residual add) reads the source's value
  cached at the previous call, and nothing at the first: :func:`late_edges`. Norse calls
  the executor once per time step, so such an edge is a one-step delay; Sinabs calls it
  once for the whole sequence, so the edge carries nothing at all.
- Only the first Input node gets the data; a node its mapping turns into ``None`` is
  skipped (its successors lose that input); node names have ``.`` replaced by ``_``.
- ``GraphExecutorState.cache`` holds every node's output of the last call: the records.

Nothing here imports a framework; :func:`load` imports nirtorch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends.inputs import as_number_array
from nirbridge.backends.reference import check_graph_input
from nirbridge.errors import InputError, SimulationError
from nirbridge.graph import Edge, feedback_edges, strongly_connected_components


def sanitized(name: str) -> str:
    """The module name nirtorch gives node ``name`` (``nirtorch.utils.sanitize_name``)."""
    from nirtorch.utils import sanitize_name

    return sanitize_name(name)


def inputs_of(graph: nir.NIRGraph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]


def executor_order(graph: nir.NIRGraph) -> list[str]:
    """The order nirtorch's executor runs ``graph`` (flat, one Input node) in: nirtorch's
    own ``trace_execution`` from the Input, successors in edge order."""
    from nirtorch.graph_utils import trace_execution

    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if dst not in succ[src]:
            succ[src].append(dst)
    (first,) = inputs_of(graph)[:1] or [next(iter(graph.nodes))]
    return trace_execution(first, lambda n: succ[n])


def late_edges(graph: nir.NIRGraph, order: list[str] | None = None) -> list[Edge]:
    """The edges whose destination the executor runs no later than their source (see the
    module docstring), in edge order."""
    order = executor_order(graph) if order is None else order
    pos = {n: k for k, n in enumerate(order)}
    return [(s, d) for s, d in graph.edges if s in pos and d in pos and pos[s] >= pos[d]]


def graph_reasons(graph: nir.NIRGraph, framework: str,
                  node_reasons: Callable[[str, nir.NIRNode], list[str]]
                  ) -> tuple[nir.NIRGraph | None, list[str]]:
    """The checks both frameworks' ``check`` start with: what no backend can run
    (:func:`~nirbridge.backends._base.graph_issues`; then ``(None, reasons)``), what the
    executor cannot run (:func:`structure_reasons`) and each node by the framework's own
    ``node_reasons(name, node)``; with the flattened graph for the framework's own rules."""
    from nirbridge.backends._base import graph_issues
    from nirbridge.graph import flatten_subgraphs

    reasons = graph_issues(graph)
    if reasons:
        return None, reasons
    flat = flatten_subgraphs(graph)
    reasons = structure_reasons(flat, framework)
    for name, node in flat.nodes.items():
        reasons += node_reasons(name, node)
    return flat, reasons


def structure_reasons(graph: nir.NIRGraph, framework: str) -> list[str]:
    """Why the executor cannot run flat ``graph`` as a whole: several Input nodes, nodes
    it never reaches from the Input, names that collide once sanitized."""
    reasons = []
    inputs = inputs_of(graph)
    if len(inputs) > 1:
        reasons.append(f"graph has {len(inputs)} Input nodes ({', '.join(inputs)}); "
                       f"{framework}'s executor (nirtorch 2.6) feeds only the first one")
    else:
        reached = set(executor_order(graph))
        missed = [n for n in graph.nodes if n not in reached]
        if missed:
            reasons.append(f"nodes {', '.join(missed)} are not reachable from the Input "
                           f"node; {framework}'s executor (nirtorch 2.6) never runs them")
    by_name: dict[str, list[str]] = {}
    for n in graph.nodes:
        by_name.setdefault(sanitized(n), []).append(n)
    for module, names in by_name.items():
        if len(names) > 1:
            reasons.append(f"nodes {', '.join(names)} all become torch module {module!r} in "
                           "nirtorch ('.' is replaced by '_'); rename them")
    return reasons


def cycle_edges(graph: nir.NIRGraph) -> list[Edge]:
    """The edges that lie on a cycle (both ends in one strongly connected component)."""
    comp_of = {n: k for k, comp in enumerate(strongly_connected_components(graph))
               for n in comp}
    return [(s, d) for s, d in graph.edges if s in comp_of and comp_of[s] == comp_of.get(d)]


def misordered_cycles(graph: nir.NIRGraph, late: Iterable[Edge]) -> list[str]:
    """Where the executor's delayed edges on a cycle are not NIR's feedback edges
    (:func:`nirbridge.graph.feedback_edges`): no nirbridge graph says what it computes."""
    late = set(late)
    back = set(feedback_edges(graph))
    odd = [e for e in cycle_edges(graph) if (e in back) != (e in late)]
    return [f"edge {s} → {d}: nirtorch's executor (depth-first order) and NIR's reading "
            "disagree on which edge of this cycle carries the previous step's value"
            for s, d in odd]


def delayed(graph: nir.NIRGraph, edges: Iterable[Edge], dt: float) -> nir.NIRGraph:
    """``graph`` with a one-step ``nir.Delay`` on each of ``edges`` (acyclic ones: what a
    late edge computes when the executor is called once per step)."""
    edges = list(edges)
    if not edges:
        return graph
    nodes = dict(graph.nodes)
    new_edges = []
    for src, dst in graph.edges:
        if (src, dst) not in edges:
            new_edges.append((src, dst))
            continue
        name = f"{src}_late_to_{dst}"
        nodes[name] = nir.Delay(delay=np.array([float(dt)]))
        new_edges += [(src, name), (name, dst)]
    return nir.NIRGraph(nodes=nodes, edges=new_edges, metadata=dict(graph.metadata or {}),
                        type_check=False)


def late_note(src: str, dst: str, effect: str) -> str:
    return (f"edge {src} → {dst}: the executor (nirtorch 2.6, depth-first from the Input) "
            f"runs {dst} before {src}, so {dst} {effect}")


@contextlib.contextmanager
def quiet_load() -> Iterator[None]:
    """Silence nirtorch's deprecation of ``nirtorch.load``: Norse 1.1 and Sinabs 3.1 call
    it; the warning is for them, not for the user of this backend."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "nirtorch.load", DeprecationWarning)
        yield


def load(graph: nir.NIRGraph, model_map: Callable[[nir.NIRNode], Any]) -> torch.nn.Module:
    """``nirtorch.load(graph, model_map)``, the call both frameworks' ``from_nir`` make."""
    import nirtorch

    with quiet_load():
        return nirtorch.load(graph, model_map)


def check_order(model: torch.nn.Module, graph: nir.NIRGraph, framework: str) -> None:
    """The executor's own order must be the one :func:`executor_order` predicts (the
    readings rely on it)."""
    got = [n.name for n in model.execution_order]
    want = [sanitized(n) for n in executor_order(graph)]
    if got != want:
        raise SimulationError(f"{framework}'s executor runs the nodes in the order "
                              f"{got}, not {want} as nirbridge read nirtorch's; the reading "
                              "notes would be wrong: report this (nirtorch version?)")


_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_dtype(options: dict[str, Any]) -> torch.dtype:
    """The backend option ``dtype`` (default float64) as a torch dtype."""
    value = options.get("dtype", "float64")
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if value not in _DTYPES:
        raise InputError(f"backend option dtype={value!r}; use 'float64' (the framework's "
                         "parameters in float64 arithmetic) or 'float32' (as it runs natively)")
    return _DTYPES[value]


def one_input(graph: nir.NIRGraph, inputs: Any, dtype: torch.dtype) -> torch.Tensor:
    """The inputs ``[T, B, ...]`` of the graph's one Input node, checked, on the CPU."""
    (name,) = inputs_of(graph)
    if isinstance(inputs, dict):
        if set(inputs) != {name}:
            raise InputError(f"inputs given for {sorted(inputs)}; the graph's Input node is "
                             f"'{name}'")
        inputs = inputs[name]
    x = torch.as_tensor(as_number_array(inputs, f"input for node '{name}'"))
    return check_graph_input(graph, name, x.detach()).to("cpu", dtype)


class InputRecorder:
    """Forward pre-hooks that keep the input each named module receives, per call."""

    def __init__(self, model: torch.nn.Module, names: Iterable[str]) -> None:
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self._handles = []
        modules = dict(model.named_children())
        for name in names:
            mod = modules.get(sanitized(name))
            if mod is None:
                continue
            self.inputs[name] = []
            self._handles.append(mod.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(_mod: torch.nn.Module, args: tuple) -> None:
            if args and torch.is_tensor(args[0]):
                self.inputs[name].append(args[0].detach())

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


__all__ = ["InputRecorder", "check_order", "cycle_edges", "delayed", "executor_order",
           "inputs_of", "late_edges", "late_note", "load", "misordered_cycles", "one_input",
           "quiet_load", "run_dtype", "sanitized", "structure_reasons"]
