"""Graph passes: checks and transformations of a :class:`nir.NIRGraph`.

The module is organised in sections, one per kind of pass; each pass is a small public
function taking the graph (and its options) and either raising a :mod:`nirbridge.errors`
exception or returning the (possibly transformed) graph:

- **Helpers**: shapes of what flows in and out of a node, node lookup (dotted names reach
  into subgraphs), iteration over nodes.
- **Checks** (:func:`validate` and the ``check_*`` functions it runs, listed in
  :data:`CHECKS`): edges name existing nodes, the graph has an Input and an Output, no
  parameter holds NaN/inf, connected nodes agree on shapes. Checks never modify the graph.
- **Shape inference** (:func:`infer_shapes`): fills in the shapes NIR leaves unknown
  (pooling, Conv without ``input_shape``, Flatten without ``input_type``), and
  :func:`strip_batch_dims`, which removes the batch dimension some exporters leave on Input
  and Output nodes.
- **Time step** (:func:`resolve_dt`, :func:`graph_dt`): the one place of the dt rules
  (explicit dt, else ``metadata["dt"]``, else refuse or fall back with a warning).
- Transformations (batch-norm folding, quantization for a target profile) go in their own
  sections below these.

The graph's structure (predecessors, orders, feedback edges, strongly connected
components, algebraic loops, subgraph flattening) is :mod:`nirbridge.graph`'s;
:func:`predecessors`, :func:`successors` and :func:`topological_order` are importable
from here as before.

Shapes are NIR's: without the batch dimension; an Affine/Linear weight is ``[out, in]``;
Conv input is ``[C, H, W]`` (``[C, N]`` in 1-d). A shape that is ``None`` is *unknown* and
never causes an error; a neuron whose parameters are scalars (shape ``()``) broadcasts to
whatever feeds it, so its shape counts as unknown too. Exporters built on nirtorch (Norse,
snnTorch) give Input and Output nodes the sample's shape *with* its batch dimension
(``[B, 5]`` feeding an Affine of input ``[5]``): the checks accept one extra leading
dimension on an Input or Output node as a batch dimension, and :func:`strip_batch_dims`
removes it (:func:`nirbridge.io.read` does so).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import nir
import numpy as np
from nir.ir.utils import calc_flatten_output

from nirbridge.errors import GraphError, InputError, InvalidParameterError, ShapeMismatchError
from nirbridge.geometry import conv_geometry_of, pool_geometry_of
from nirbridge.graph import predecessors, successors, topological_order
from nirbridge.neurons import is_neuron
from nirbridge.validate_values import check_values

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: Stateless or delaying nodes whose parameters apply element by element.
_ELEMENTWISE = (nir.Delay, nir.Scale, nir.Threshold)

# ----------------------------------------------------------------------------- helpers


def _qualify(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _type_name(node: Any) -> str:
    return type(node).__name__


def _single_shape(types: Any) -> Shape | None:
    """The one shape in a NIR ``input_type``/``output_type`` dict, or None if unknown."""
    if types is None:
        return None
    if isinstance(types, dict):
        if len(types) != 1:
            return None
        (value,) = types.values()
    else:
        value = types
    if value is None:
        return None
    try:
        arr = np.asarray(value)
        if arr.dtype == object or arr.ndim > 1:
            return None
        return tuple(int(d) for d in arr.reshape(-1))
    except (TypeError, ValueError):
        return None


def _broadcasting(node: nir.NIRNode, shape: Shape | None) -> Shape | None:
    # scalar parameters broadcast: a neuron, delay, scale or threshold of shape ()
    if shape == () and (is_neuron(node) or isinstance(node, _ELEMENTWISE)):
        return None
    return shape


def input_shape(node: nir.NIRNode) -> Shape | None:
    """The shape ``node`` expects as input, or None where it is unknown (or broadcasts)."""
    return _broadcasting(node, _single_shape(getattr(node, "input_type", None)))


def output_shape(node: nir.NIRNode) -> Shape | None:
    """The shape ``node`` produces, or None where it is unknown (or broadcasts)."""
    return _broadcasting(node, _single_shape(getattr(node, "output_type", None)))


def find_node(graph: nir.NIRGraph, name: str) -> nir.NIRNode | None:
    """The node called ``name`` in ``graph``; ``"sub.node"`` reaches into subgraph ``sub``."""
    if name in graph.nodes:
        return graph.nodes[name]
    head, sep, rest = name.partition(".")
    if sep and isinstance(graph.nodes.get(head), nir.NIRGraph):
        return find_node(graph.nodes[head], rest)
    return None


def iter_nodes(graph: nir.NIRGraph, prefix: str = "") -> Iterator[tuple[str, nir.NIRNode]]:
    """``(qualified name, node)`` for every node, subgraphs' nodes included (``sub.node``)."""
    for name, node in graph.nodes.items():
        qname = _qualify(prefix, name)
        yield qname, node
        if isinstance(node, nir.NIRGraph):
            yield from iter_nodes(node, f"{qname}.")


def subgraphs(graph: nir.NIRGraph, prefix: str = "") -> Iterator[tuple[str, nir.NIRGraph]]:
    """``(prefix, graph)`` for ``graph`` itself and every nested subgraph."""
    yield prefix, graph
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from subgraphs(node, f"{prefix}{name}.")


def _where(prefix: str) -> str:
    return f" in subgraph '{prefix[:-1]}'" if prefix else ""


def _numeric_fields(node: nir.NIRNode) -> Iterator[tuple[str, np.ndarray]]:
    """``(field name, float/complex array)`` for every numeric parameter of ``node``."""
    if not dataclasses.is_dataclass(node) or isinstance(node, nir.NIRGraph):
        return
    for f in dataclasses.fields(node):
        if f.name in ("input_type", "output_type", "metadata"):
            continue
        value = getattr(node, f.name, None)
        if value is None or isinstance(value, (str, bytes)):
            continue
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            continue
        if arr.dtype.kind in "fc":
            yield f.name, arr


# ------------------------------------------------------------------------------ checks


def check_edges(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Every edge is a pair of names of nodes in the graph; raises :class:`GraphError`."""
    for edge in graph.edges:
        try:
            src, dst = edge
        except (TypeError, ValueError):
            raise GraphError(f"field 'edges'{_where(prefix)}: entry {edge!r} is not a "
                             "(source, destination) pair of node names") from None
        for end in (src, dst):
            if not isinstance(end, str) or find_node(graph, end) is None:
                raise GraphError(
                    f"field 'edges'{_where(prefix)}: edge ({src!r} → {dst!r}) names node "
                    f"{_qualify(prefix, str(end))!r}, which is not in the graph (nodes: "
                    f"{', '.join(sorted(graph.nodes))}); remove the edge or add the node")


def check_io_nodes(graph: nir.NIRGraph, prefix: str = "") -> None:
    """The graph has at least one ``nir.Input`` and one ``nir.Output`` node."""
    for kind in (nir.Input, nir.Output):
        if not any(isinstance(n, kind) for n in graph.nodes.values()):
            raise GraphError(
                f"graph{_where(prefix)} has no {kind.__name__} node (nodes: "
                f"{', '.join(sorted(graph.nodes)) or 'none'}); add a nir.{kind.__name__} node "
                "and connect it")


def check_finite(graph: nir.NIRGraph, prefix: str = "") -> None:
    """No numeric parameter of any node holds NaN or ±inf; raises
    :class:`InvalidParameterError` naming the node and the field."""
    for name, node in graph.nodes.items():
        for field, arr in _numeric_fields(node):
            bad = ~np.isfinite(arr)
            if not bad.any():
                continue
            kinds = sorted({"NaN" if np.isnan(v) else "inf" for v in np.asarray(arr[bad]).ravel()})
            first = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
            raise InvalidParameterError(
                f"node {_qualify(prefix, name)!r} ({_type_name(node)}): parameter '{field}' has "
                f"{int(bad.sum())} non-finite value(s) ({'/'.join(kinds)}), first at index "
                f"{first}; a NaN/inf parameter usually means training diverged: retrain or "
                "fix the value")


def check_shapes(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Connected nodes agree on the shape flowing between them (unknown shapes pass), and
    an Affine's bias fits its output; raises :class:`ShapeMismatchError`."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Affine):
            _check_affine_bias(_qualify(prefix, name), node)
    for src, dst in graph.edges:
        pre, post = find_node(graph, src), find_node(graph, dst)
        if pre is None or post is None:
            continue  # check_edges reports it
        out, inp = output_shape(pre), input_shape(post)
        if out is None or inp is None or out == inp or _batch_only(pre, post, out, inp):
            continue
        q_src, q_dst = _qualify(prefix, src), _qualify(prefix, dst)
        raise ShapeMismatchError(
            f"edge ({q_src!r} → {q_dst!r}): node {q_src!r} ({_type_name(pre)}) outputs shape "
            f"{list(out)} (output_type) but node {q_dst!r} ({_type_name(post)}) expects input "
            f"shape {list(inp)} (input_type); fix the layer sizes (Affine/Linear weights are "
            "[out, in])")


def _batch_only(pre: nir.NIRNode, post: nir.NIRNode, out: Shape, inp: Shape) -> bool:
    """The shapes differ only by a leading batch dimension on an Input or Output node."""
    if isinstance(pre, nir.Input) and len(out) == len(inp) + 1 and out[1:] == inp:
        return True
    return isinstance(post, nir.Output) and len(inp) == len(out) + 1 and inp[1:] == out


def _check_affine_bias(name: str, node: nir.Affine) -> None:
    out = output_shape(node)
    bias = np.asarray(node.bias)
    if out is None:
        return
    try:
        ok = np.broadcast_shapes(bias.shape, out) == out
    except ValueError:
        ok = False
    if not ok:
        raise ShapeMismatchError(
            f"node {name!r} (Affine): parameter 'bias' has shape {list(bias.shape)} but the "
            f"weight {list(np.shape(node.weight))} gives outputs of shape {list(out)}")


#: The checks :func:`validate` runs, in order, on the graph and on every subgraph.
CHECKS: list[Callable[[nir.NIRGraph, str], None]] = [
    check_edges,
    check_io_nodes,
    check_finite,
    check_values,
    check_shapes,
]


def validate(graph: nir.NIRGraph) -> None:
    """Check ``graph`` (and its subgraphs); raise the nirbridge error of the first problem.

    Runs :data:`CHECKS`: :func:`check_edges` (:class:`GraphError`), :func:`check_io_nodes`
    (:class:`GraphError`), :func:`check_finite` (:class:`InvalidParameterError`),
    :func:`~nirbridge.validate_values.check_values` (values in the ranges their equations
    need: :class:`InvalidParameterError`), :func:`check_shapes`
    (:class:`ShapeMismatchError`), and ``metadata["dt"]`` (finite, > 0). Every message
    names the node and the field. The graph is not modified.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"expected a nir.NIRGraph, got {_type_name(graph)}")
    metadata_dt(graph)
    for prefix, sub in subgraphs(graph):
        for check in CHECKS:
            check(sub, prefix)


# --------------------------------------------------------------------------- time step
# The dt rules, in one place: an explicit dt (``--dt``/``dt=``) wins; else the graph's
# ``metadata["dt"]`` (which ``--from FRAMEWORK`` / ``nirbridge import`` set from the
# framework's convention); else commands that lower or deploy refuse the graph
# (:func:`resolve_dt` with ``require=True``), and running it falls back to
# :data:`DT_FALLBACK` with a warning. Every output records the dt used.

#: The dt a graph without ``metadata["dt"]`` runs with where a fallback is allowed.
DT_FALLBACK = 1.0
#: The metadata entry ``nirbridge import`` / ``--from`` write: ``{"from": framework,
#: "notes": [...], "dt_source": ...}``.
IMPORT_KEY = "nirbridge_import"


def _positive_dt(value: Any, what: str) -> float:
    try:
        dt = float(np.asarray(value).item())
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{what} = {value!r} is not a number") from exc
    if not np.isfinite(dt) or dt <= 0:
        raise InvalidParameterError(f"{what} = {dt!r}: the time step must be finite and > 0")
    return dt


def metadata_dt(graph: nir.NIRGraph) -> float | None:
    """``metadata["dt"]`` as a float; None when the graph has none (raises
    :class:`InvalidParameterError` for a value that is not a positive number)."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if meta.get("dt") is None:
        return None
    return _positive_dt(meta["dt"], "graph metadata field 'dt'")


@dataclasses.dataclass(frozen=True)
class TimeStep:
    """The dt a command runs a graph with, and where it came from (``source``)."""

    dt: float
    source: str

    @property
    def line(self) -> str:
        """The one line the commands print: ``dt = 0.0001 (--dt)``."""
        return f"dt = {self.dt:g} ({self.source})"


def _metadata_source(graph: nir.NIRGraph) -> str:
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    imported = meta.get(IMPORT_KEY)
    if isinstance(imported, dict) and imported.get("dt_source"):
        return str(imported["dt_source"])
    return "the file's metadata"


def dt_conventions() -> str:
    """What each framework's own NIR exporter writes its files with (its front-end's
    ``DT``, or its ``DT_RULE`` when the dt is read from the file), for messages."""
    from nirbridge.export.frontends import FRONTENDS, frontend

    parts = []
    for name in FRONTENDS:
        try:
            fe = frontend(name)
        except Exception:  # a front-end that does not import says nothing here
            continue
        label = getattr(fe, "FRAMEWORK", name)
        if getattr(fe, "DT", None) is not None:
            parts.append(f"{label} writes dt = {float(fe.DT):g} (--from {name})")
        elif getattr(fe, "DT_RULE", None):
            parts.append(f"{label}: {fe.DT_RULE} (--from {name})")
    return "; ".join(parts)


def resolve_dt(graph: nir.NIRGraph, dt: float | None = None, *, require: bool = False,
               option: str = "dt=", hint: str | None = None) -> TimeStep:
    """The time step to run or lower ``graph`` with (see the rules above).

    ``dt`` (given as ``option``, e.g. ``--dt``) wins; else ``metadata["dt"]``. Without
    either, ``require`` raises :class:`InputError` saying how to give one (``hint``, by
    default worded for ``option``) and naming the frameworks' conventions (exit code 2);
    otherwise :data:`DT_FALLBACK` is used and a warning logged.
    """
    if dt is not None:
        return TimeStep(_positive_dt(dt, option.rstrip("=")), option.rstrip("="))
    meta = metadata_dt(graph)
    if meta is not None:
        return TimeStep(meta, _metadata_source(graph))
    cli = option.startswith("--")
    how = hint or ("give --dt DT, or --from FRAMEWORK for the dt its exporter uses" if cli
                   else "pass dt=, or read it with nirbridge.io.read.import_graph(path, "
                        "framework)")
    if require:
        conventions = dt_conventions()
        raise InputError(f"the graph has no dt (metadata['dt']) and NIR files carry none by "
                         f"default; {how}" + (f" ({conventions})" if conventions else ""))
    log.warning("graph has no 'dt' in its metadata; using dt = %g (%s)", DT_FALLBACK, how)
    return TimeStep(DT_FALLBACK, "fallback: the file has no dt")


def graph_dt(graph: nir.NIRGraph, dt: float | None = None) -> float:
    """The time step to run ``graph`` with: ``dt`` if given, else ``metadata["dt"]``, else
    :data:`DT_FALLBACK` (logged): :func:`resolve_dt` without ``require``."""
    return resolve_dt(graph, dt).dt


def with_dt(graph: nir.NIRGraph, dt: float) -> nir.NIRGraph:
    """``graph`` with ``metadata["dt"] = dt`` (a new graph sharing its nodes and edges):
    what a stage that reads the dt from the file (a backend's ``reading``) is given when
    the run's dt came from the command line."""
    return nir.NIRGraph(nodes=graph.nodes, edges=list(graph.edges),
                        metadata={**dict(graph.metadata or {}), "dt": float(dt)},
                        type_check=False)


class _FrameworkDt(Mapping[str, "float | None"]):
    """Framework → the dt its own NIR exporter writes with: its front-end's ``DT`` (read
    when asked, so that no front-end is imported before it is needed)."""

    def __getitem__(self, name: str) -> float | None:
        from nirbridge.export.frontends import FRONTENDS, frontend

        if name not in FRONTENDS:
            raise KeyError(name)
        return frontend(name).DT

    def __iter__(self) -> Iterator[str]:
        from nirbridge.export.frontends import FRONTENDS

        return iter(FRONTENDS)

    def __len__(self) -> int:
        from nirbridge.export.frontends import FRONTENDS

        return len(FRONTENDS)


#: Framework → the dt of its NIR exports (each front-end's ``DT``; read-only view).
FRAMEWORK_DT: Mapping[str, float | None] = _FrameworkDt()


# --------------------------------------------------------------------- shape inference


def _pool_output(node: Any, inp: Shape) -> Shape:
    return (inp[0], *pool_geometry_of(node).output_shape(inp[1:]))


def _infer_node(node: nir.NIRNode, inp: Shape, from_input: bool = False) -> None:
    """Set the unknown input/output types of ``node`` from its input shape ``inp``
    (``from_input``: ``inp`` is an Input node's shape, which may lead with a batch dim)."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        if from_input and len(inp) == node.weight.ndim:
            inp = inp[1:]
        if len(inp) != node.weight.ndim - 1:
            return
        node.input_shape = int(inp[1]) if isinstance(node, nir.Conv1d) else tuple(inp[1:])
        node.input_type = {"input": np.array(inp)}
        spatial = conv_geometry_of(node).output_shape(node.input_shape)
        node.output_type = {"output": np.array([node.weight.shape[0], *spatial])}
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if from_input and len(inp) == 4:
            inp = inp[1:]
        if len(inp) != 3:
            return
        node.input_type = {"input": np.array(inp)}
        node.output_type = {"output": np.array(_pool_output(node, inp))}
    elif isinstance(node, nir.Flatten):
        out = calc_flatten_output(list(inp), int(node.start_dim), int(node.end_dim))
        if int(np.prod(out)) != int(np.prod(inp)):
            return
        node.input_type = {"input": np.array(inp)}
        node.output_type = {"output": np.array(out, dtype=np.int64)}
    elif isinstance(node, nir.Output):
        node.input_type = {"input": np.array(inp)}
        node.output_type = {"output": np.array(inp)}


def _strip(shape: Shape | None, neighbours: list[Shape | None]) -> Shape | None:
    """``shape`` without its first dimension if every known neighbour shape (at least one)
    equals that; else None."""
    known = [n for n in neighbours if n is not None]
    if shape is None or not known or len(shape) < 2:
        return None
    return shape[1:] if all(n == shape[1:] for n in known) else None


def strip_batch_dims(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Remove a leading batch dimension from Input and Output nodes, where it is one.

    nirtorch-based exporters (Norse, snnTorch) record the example input's shape, batch
    included, on Input and Output nodes, while NIR shapes exclude the batch. An Input of
    shape ``[B, *s]`` all of whose successors with a known input shape expect ``s`` (and
    likewise an Output fed ``s``) gets shape ``s``. Ambiguous cases are left alone. Modifies
    ``graph`` (and its subgraphs) in place and returns it.
    """
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            strip_batch_dims(node)
        elif isinstance(node, nir.Input):
            succ = [input_shape(graph.nodes[d]) for s, d in graph.edges
                    if s == name and d in graph.nodes]
            new = _strip(output_shape(node), succ)
            if new is not None:
                node.input_type = {"input": np.array(new, dtype=np.int64)}
                node.output_type = {"output": np.array(new, dtype=np.int64)}
        elif isinstance(node, nir.Output):
            pred = [output_shape(graph.nodes[s]) for s, d in graph.edges
                    if d == name and s in graph.nodes]
            new = _strip(input_shape(node), pred)
            if new is not None:
                node.input_type = {"input": np.array(new, dtype=np.int64)}
                node.output_type = {"output": np.array(new, dtype=np.int64)}
    if hasattr(graph, "_update_input_output_types"):
        graph._update_input_output_types()
    return graph


def infer_shapes(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Fill in unknown node shapes by propagating known ones along the edges.

    Sets ``input_type``/``output_type`` (and a Conv's ``input_shape``) of Conv1d/Conv2d,
    SumPool2d, AvgPool2d, Flatten and Output nodes whose input shape is unknown, from the
    output shape of the node feeding them, in topological order, in subgraphs too. Unlike
    ``nir.NIRGraph.infer_types`` it adds no nodes and never raises: shapes it cannot
    infer stay unknown, and disagreements are left for :func:`validate` to report.
    Modifies ``graph`` in place and returns it.
    """
    sources = predecessors(graph)  # once: a scan of the edges per node is quadratic
    for name in topological_order(graph, strict=False):
        node = graph.nodes[name]
        if isinstance(node, nir.NIRGraph):
            infer_shapes(node)
            continue
        if _single_shape(getattr(node, "input_type", None)) is not None:
            continue
        preds = [graph.nodes[src] for src in sources[name]]
        shapes = {output_shape(pre) for pre in preds}
        shapes.discard(None)
        if len(shapes) != 1:
            continue
        from_input = all(isinstance(pre, nir.Input) for pre in preds)
        try:
            _infer_node(node, shapes.pop(), from_input)
        except Exception:  # a shape we cannot compute stays unknown
            continue
    if hasattr(graph, "_update_input_output_types"):
        graph._update_input_output_types()
    return graph


__all__ = [
    "with_dt",
    "CHECKS",
    "DT_FALLBACK",
    "FRAMEWORK_DT",
    "IMPORT_KEY",
    "TimeStep",
    "check_edges",
    "check_finite",
    "check_io_nodes",
    "check_shapes",
    "check_values",
    "dt_conventions",
    "find_node",
    "graph_dt",
    "infer_shapes",
    "input_shape",
    "iter_nodes",
    "metadata_dt",
    "output_shape",
    "predecessors",
    "resolve_dt",
    "strip_batch_dims",
    "subgraphs",
    "successors",
    "topological_order",
    "validate",
]
