"""Graph utilities: predecessors, orders, feedback edges, strongly connected components,
algebraic loops, subgraph flattening and delays in steps.

Every pass and backend reads a graph's structure through these functions, so that they
all agree on which edges close cycles and in which order nodes run. They look at one level
of a graph: a nested ``nir.NIRGraph`` node is one opaque node here (edges naming
``"sub.node"`` are skipped); :func:`flatten_subgraphs` first when the inside matters.

Recurrence (the full text, with what other NIR tools do, is ``docs/recurrence.md``):

- A **feedback edge** is an edge that closes a cycle. It carries the *previous* time
  step's value of its source; at t = 0 it carries zero. Every other edge carries the
  current step's value. Through a recurrent ``Affine`` this means the recurrent input at
  t = 0 is zero, *not* the Affine's bias (its bias arrives from t = 1 on, with
  ``W·s[t-1]``), as in nirtorch's executors (Norse's ``from_nir``).
- Which edges are feedback edges (:func:`feedback_edges`): the back edges of a
  depth-first search that starts at the Input nodes (in the graph's node order), visits
  successors in edge order and then starts again at every node it has not reached, in
  node order. A back edge is one into a node whose search is still open (an ancestor).
  Removing them leaves an acyclic graph, and the search's reverse post-order is a
  topological order of it in which exactly these edges go backward. For the cycles
  exporters write (a neuron and its recurrent synapse, entered from the feed-forward
  path) the back edge is the edge back into the node where the path from the Input enters
  the cycle: the edge nirtorch reads from the previous step.
- :func:`execution_order`: every node after all its non-feedback predecessors (for an
  acyclic graph, exactly :func:`topological_order`). :func:`schedule`: the strongly
  connected components in that spirit, one :class:`Unit` each, a cyclic component as one
  unit run step by step.
- An **algebraic loop** is a cycle with no neuron (:func:`nirbridge.neurons.is_neuron`)
  and no ``nir.Delay`` on it: its value at a time step would depend on itself through
  nothing that holds state. :func:`check_algebraic_loops` refuses it, naming exactly the
  nodes of one such cycle per loop.
- A ``nir.Delay`` delays by whole time steps at the graph's dt (:func:`delay_steps`). On
  a cycle it adds its steps to the one step the feedback edge already carries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import nir
import numpy as np

from nirbridge.errors import GraphError, InvalidParameterError
from nirbridge.neurons import is_neuron

Edge = tuple[str, str]

#: How far from a whole number of steps a ``nir.Delay`` may be (relative above one step).
DELAY_TOLERANCE = 1e-9


# ------------------------------------------------------------------------ neighbours


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Each node's sources, in edge order (edges naming unknown nodes are skipped here;
    :func:`check_edge_names` reports them)."""
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if dst in preds and src in preds:
            preds[dst].append(src)
    return preds


def successors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Each node's targets, in edge order (edges naming unknown nodes are skipped)."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if dst in succ and src in succ:
            succ[src].append(dst)
    return succ


def check_edge_names(graph: nir.NIRGraph) -> None:
    """Raise :class:`GraphError` for the first edge naming a node the graph lacks."""
    for src, dst in graph.edges:
        missing = [end for end in (src, dst) if end not in graph.nodes]
        if missing:
            raise GraphError(f"edge ({src!r} → {dst!r}) names node {missing[0]!r}, which "
                             "is not in the graph; remove the edge or add the node")


# ----------------------------------------------------------------- feedback and order


def feedback_edges(graph: nir.NIRGraph) -> list[Edge]:
    """The edges that close cycles (see the module docstring for the rule), each once,
    in the order of ``graph.edges``. Empty for an acyclic graph."""
    succ = successors(graph)
    names = list(graph.nodes)
    roots = [n for n in names if isinstance(graph.nodes[n], nir.Input)] + names
    open_, done = set(), set()
    back: set[Edge] = set()
    for root in roots:
        if root in open_ or root in done:
            continue
        open_.add(root)
        work = [(root, iter(succ[root]))]
        while work:
            v, it = work[-1]
            for w in it:
                if w in open_:
                    back.add((v, w))
                elif w not in done:
                    open_.add(w)
                    work.append((w, iter(succ[w])))
                    break
            else:
                work.pop()
                open_.discard(v)
                done.add(v)
    out: list[Edge] = []
    for src, dst in graph.edges:
        if (src, dst) in back:
            back.discard((src, dst))
            out.append((src, dst))
    return out


def _kahn(graph: nir.NIRGraph, skip: set[Edge]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm (FIFO, nodes in graph order) ignoring the edges in ``skip`` and
    edges naming unknown nodes: ``(order, nodes it could not place)``."""
    names = list(graph.nodes)
    indeg = dict.fromkeys(names, 0)
    succ: dict[str, list[str]] = {n: [] for n in names}
    for src, dst in graph.edges:
        if src in indeg and dst in indeg and (src, dst) not in skip:
            indeg[dst] += 1
            succ[src].append(dst)
    ready = deque(n for n in names if indeg[n] == 0)
    order: list[str] = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    seen = set(order)
    return order, [n for n in names if n not in seen]


def execution_order(graph: nir.NIRGraph) -> list[str]:
    """Every node, each after all its predecessors except through feedback edges
    (:func:`feedback_edges`). For an acyclic graph this is :func:`topological_order`.
    Edges naming unknown nodes are ignored."""
    order, rest = _kahn(graph, set(feedback_edges(graph)))
    return order + rest  # rest is empty: without its back edges the graph is acyclic


def topological_order(graph: nir.NIRGraph, *, strict: bool = True) -> list[str]:
    """Node names in an order where every node follows all its predecessors.

    ``strict``: an edge naming a missing node, or a cycle, raises :class:`GraphError`
    (the message names one cycle's nodes exactly). Otherwise such edges are skipped and a
    cyclic graph gets its :func:`execution_order` (for passes that must never raise, such
    as shape inference). Code that runs recurrent graphs uses :func:`execution_order` or
    :func:`schedule`; code that cannot calls :func:`refuse_recurrent` first.
    """
    if strict:
        check_edge_names(graph)
    order, rest = _kahn(graph, set())
    if not rest:
        return order
    if strict:
        raise GraphError(f"graph has a cycle ({format_cycle(find_cycle(graph) or rest)}); "
                         "recurrent graphs are not supported here yet")
    return execution_order(graph)


# --------------------------------------------------------------------------- components


def _tarjan(names: Sequence[str], succ: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of the graph ``succ`` restricted to
    ``names`` (iterative: no recursion limit on long chains)."""
    allowed = set(names)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    for root in names:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(succ[root]))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in allowed:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(comp)
    return comps


def _has_cycle(comp: Sequence[str], succ: Mapping[str, Sequence[str]]) -> bool:
    return len(comp) > 1 or comp[0] in succ[comp[0]]


@dataclass(frozen=True)
class Unit:
    """One step of a :func:`schedule`: a node, or a strongly connected component with a
    cycle (``cyclic``), its nodes in :func:`execution_order`."""

    nodes: tuple[str, ...]
    cyclic: bool


def schedule(graph: nir.NIRGraph) -> list[Unit]:
    """The graph's strongly connected components, in an order where each follows every
    component feeding it (Kahn's algorithm on the components, FIFO, by their first node
    in graph order; for an acyclic graph the units are :func:`topological_order`'s nodes
    one by one). A cyclic unit runs step by step; the others can run over the whole time
    axis at once. Edges naming unknown nodes are ignored."""
    succ = successors(graph)
    names = list(graph.nodes)
    pos = {n: i for i, n in enumerate(execution_order(graph))}
    rank = {n: i for i, n in enumerate(names)}
    comps = sorted((sorted(c, key=pos.__getitem__) for c in _tarjan(names, succ)),
                   key=lambda c: min(rank[n] for n in c))
    comp_of = {n: i for i, c in enumerate(comps) for n in c}
    indeg = [0] * len(comps)
    for src, dst in graph.edges:
        if src in comp_of and dst in comp_of and comp_of[src] != comp_of[dst]:
            indeg[comp_of[dst]] += 1
    ready = deque(i for i in range(len(comps)) if indeg[i] == 0)
    units: list[Unit] = []
    while ready:
        i = ready.popleft()
        units.append(Unit(tuple(comps[i]), _has_cycle(comps[i], succ)))
        for n in comps[i]:
            for m in succ[n]:
                j = comp_of[m]
                if j != i:
                    indeg[j] -= 1
                    if indeg[j] == 0:
                        ready.append(j)
    return units


def strongly_connected_components(graph: nir.NIRGraph) -> list[list[str]]:
    """Every strongly connected component (single nodes included), in :func:`schedule`
    order, each one's nodes in :func:`execution_order`."""
    return [list(u.nodes) for u in schedule(graph)]


def cyclic_components(graph: nir.NIRGraph) -> list[list[str]]:
    """The strongly connected components that hold a cycle (two or more nodes, or one
    node with an edge to itself), in :func:`schedule` order."""
    return [list(u.nodes) for u in schedule(graph) if u.cyclic]


def is_recurrent(graph: nir.NIRGraph) -> bool:
    """Whether ``graph`` has a cycle (at this level; flatten subgraphs first)."""
    return bool(_kahn(graph, set())[1])


# ------------------------------------------------------------------------------ cycles


def _shortest_cycle(start: str, within: set[str],
                    succ: Mapping[str, Sequence[str]]) -> list[str]:
    """The nodes of a shortest cycle through ``start`` inside ``within`` (breadth
    first), starting at ``start``; empty if there is none."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in succ[v]:
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])  # type: ignore[arg-type]
                return path[::-1]
            if w in within and w not in parent:
                parent[w] = v
                queue.append(w)
    return []


def format_cycle(cycle: Iterable[str]) -> str:
    """``a -> b -> a`` for the cycle ``[a, b]``."""
    nodes = list(cycle)
    return " -> ".join([*nodes, nodes[0]]) if nodes else ""


def find_cycle(graph: nir.NIRGraph) -> list[str] | None:
    """The nodes of one cycle (a shortest one through the first node of the first cyclic
    component, in order, without repeating the first), or None for an acyclic graph."""
    succ = successors(graph)
    for comp in cyclic_components(graph):
        return _shortest_cycle(comp[0], set(comp), succ)
    return None


def _breaks_loops(node: nir.NIRNode) -> bool:
    # A subgraph left unflattened may hold a neuron: never call its cycle algebraic.
    return is_neuron(node) or isinstance(node, (nir.Delay, nir.NIRGraph))


def algebraic_loops(graph: nir.NIRGraph) -> list[list[str]]:
    """One cycle per algebraic loop: per strongly connected component of the graph
    without its neurons and ``nir.Delay`` nodes that still holds a cycle, the nodes of a
    shortest cycle through its first node in graph order. Every node listed is on that
    cycle, and no neuron or delay is. Empty when every cycle holds state."""
    succ = successors(graph)
    names = [n for n, node in graph.nodes.items() if not _breaks_loops(node)]
    keep = set(names)
    sub = {n: [m for m in succ[n] if m in keep] for n in names}
    rank = {n: i for i, n in enumerate(graph.nodes)}
    loops = []
    for comp in sorted(_tarjan(names, sub), key=lambda c: min(rank[n] for n in c)):
        if _has_cycle(comp, sub):
            start = min(comp, key=rank.__getitem__)
            loops.append(_shortest_cycle(start, set(comp), sub))
    return loops


def check_algebraic_loops(graph: nir.NIRGraph) -> None:
    """Raise :class:`GraphError` naming each algebraic loop's cycle (one line)."""
    loops = algebraic_loops(graph)
    if loops:
        what = "; ".join(format_cycle(c) for c in loops)
        raise GraphError(f"algebraic loop{'s' if len(loops) > 1 else ''} ({what}): a cycle "
                         "with no neuron and no nir.Delay on it makes a value depend on "
                         "itself within one time step; put a neuron or a Delay on the cycle")


def refuse_recurrent(graph: nir.NIRGraph, what: str) -> None:
    """Raise :class:`GraphError` if ``graph`` has a cycle: ``recurrent graphs are not
    supported by {what} yet (cycle: a -> b -> a)``, for code that cannot run cycles."""
    cycle = find_cycle(graph)
    if cycle:
        raise GraphError(f"recurrent graphs are not supported by {what} yet "
                         f"(cycle: {format_cycle(cycle)})")


# --------------------------------------------------------------------------- subgraphs


def _port(name: str, sub: nir.NIRGraph, kind: type, edge: Edge) -> str:
    ports = [k for k, v in sub.nodes.items() if isinstance(v, kind)]
    if len(ports) != 1:
        raise GraphError(f"edge ({edge[0]!r} → {edge[1]!r}) names subgraph {name!r}, which "
                         f"has {len(ports)} {kind.__name__} nodes ({', '.join(ports) or 'none'});"
                         f" name one of them ('{name}.<node>')")
    return f"{name}.{ports[0]}"


def flatten_subgraphs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with every nested ``nir.NIRGraph`` node replaced by its nodes.

    A subgraph ``sub``'s node ``x`` becomes node ``sub.x`` (nested subgraphs first, so
    ``sub.inner.x``). An edge into ``sub`` (or into ``sub.<its Input>``) connects to
    whatever that Input feeds, an edge out of ``sub`` (or ``sub.<its Output>``) from
    whatever feeds that Output: the subgraph's Input and Output nodes are removed, edges
    passing through them keep their place in the edge list (the order inputs are summed).
    The graph's metadata is kept, the nodes are the same objects. A graph without
    subgraphs is returned as is. Raises :class:`GraphError` for an edge naming no node or
    a subgraph with several Inputs/Outputs by its name, and for a flattened name the graph
    already has.
    """
    if not any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        return graph
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[Edge] = []
    ports: list[str] = []
    subs: dict[str, nir.NIRGraph] = {}

    def add(name: str, node: nir.NIRNode, where: str) -> None:
        if name in nodes:
            raise GraphError(f"flattening {where} gives node name {name!r}, which the graph "
                             "already has; rename one of them")
        nodes[name] = node

    for name, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            add(name, node, f"node {name!r}")
            continue
        flat = subs[name] = flatten_subgraphs(node)
        for inner, n in flat.nodes.items():
            add(f"{name}.{inner}", n, f"subgraph {name!r}")
            if isinstance(n, (nir.Input, nir.Output)):
                ports.append(f"{name}.{inner}")
        edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in flat.edges]

    for src, dst in graph.edges:
        edge = (src, dst)
        s = _port(src, subs[src], nir.Output, edge) if src in subs else src
        d = _port(dst, subs[dst], nir.Input, edge) if dst in subs else dst
        for end in (s, d):
            if end not in nodes:
                raise GraphError(f"edge ({src!r} → {dst!r}) names node {end!r}, which is "
                                 "not in the graph; remove the edge or add the node")
        edges.append((s, d))

    for p in ports:  # the subgraphs' Input/Output nodes: connect through them
        into = [u for u, v in edges if v == p and u != p]
        through: list[Edge] = []
        for u, v in edges:
            if v == p:
                continue
            if u == p:
                through += [(w, v) for w in into]
            else:
                through.append((u, v))
        edges = through
        del nodes[p]
    meta = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def has_subgraphs(graph: nir.NIRGraph) -> bool:
    """Whether any node of ``graph`` is a nested ``nir.NIRGraph``."""
    return any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values())


# ------------------------------------------------------------------------------ delays


def delay_steps(node: nir.Delay, dt: float, name: str = "delay") -> np.ndarray:
    """A ``nir.Delay``'s ``delay`` (time units) as whole time steps at ``dt`` (an int64
    array of the delay's shape). Each must be a whole number ≥ 1 within
    :data:`DELAY_TOLERANCE` (relative above one step); else
    :class:`InvalidParameterError` naming the node, the value and the dt."""
    delay = np.asarray(node.delay, dtype=np.float64)
    steps = delay / float(dt)
    near = np.rint(steps)
    with np.errstate(invalid="ignore"):
        off = np.abs(steps - near) > DELAY_TOLERANCE * np.maximum(1.0, np.abs(steps))
        bad = ~np.isfinite(steps) | off | (near < 1)
    if bad.any():
        i = tuple(int(k) for k in np.argwhere(bad)[0]) if bad.ndim else ()
        raise InvalidParameterError(
            f"node {name!r} (Delay): delay {float(delay[i]):g} at index {i} is "
            f"{float(steps[i]):.12g} time steps at dt = {float(dt):g}; a delay must be a "
            "whole number of steps ≥ 1 (change the delay or the dt)")
    return near.astype(np.int64)


__all__ = [
    "DELAY_TOLERANCE",
    "Edge",
    "Unit",
    "algebraic_loops",
    "check_algebraic_loops",
    "check_edge_names",
    "cyclic_components",
    "delay_steps",
    "execution_order",
    "feedback_edges",
    "find_cycle",
    "flatten_subgraphs",
    "format_cycle",
    "has_subgraphs",
    "is_recurrent",
    "predecessors",
    "refuse_recurrent",
    "schedule",
    "strongly_connected_components",
    "successors",
    "topological_order",
]
