"""Read and write ``.nir`` files (NIR's HDF5 layout), nirbridge's custom nodes included.

Layout (the same as ``nir.write``): a root dataset ``version`` and a group ``node`` holding
the graph as a dict: ``type`` = ``"NIRGraph"``, ``nodes/<name>/<field>`` (each node's
``to_dict()``: its type name, parameters, flags and ``metadata``), ``edges`` (an ``(n, 2)``
array of node names) and ``metadata``. Custom nodes are written exactly like standard ones,
under their own type name (:data:`nirbridge.nodes.CUSTOM_NODES`).

Values keep their type through a round trip: arrays keep dtype and shape; strings are
HDF5 variable-length strings; Python ``bool``/``int``/``float``/``complex``, ``None``,
``bytes``, lists, tuples and 0-d arrays, which HDF5 would turn into numpy scalars or arrays,
carry a small attribute (``nirbridge_pytype``) that :func:`read` uses to restore them and
that other readers ignore. Dicts become groups, in insertion order. Arrays of 16 or more
values are gzip-compressed and carry HDF5's Fletcher-32 checksum, so corrupted weights fail
to read instead of loading silently. A value nothing of this can store (an arbitrary
object) makes :func:`write` fail with a message naming the node and the field, and no file
is left behind: files are written to a temporary file in the target directory and moved
into place with ``os.replace``.

``write(..., compat="lossy")`` writes standard NIR nodes only, so that stock ``nir.read``
and tools built on it (snnTorch, Norse, ...) can load the file: see :func:`lossy_graph` for
the approximations. :func:`read` reads nirbridge's own files and files written by stock NIR
or other tools; every problem ends in a :mod:`nirbridge.errors` exception naming the file,
the node and the field.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from nirbridge._files import atomic_path
from nirbridge.errors import (
    FileFormatError,
    GraphError,
    InvalidParameterError,
    MissingParameterError,
    NirbridgeError,
    UnknownNodeError,
)
from nirbridge.nodes import (
    ALIF,
    ARLIF,
    CLIF,
    CUSTOM_NODES,
    DALIF,
    KLIF,
    CustomNeuron,
    SubtractiveLIF,
)
from nirbridge.passes import graph_dt, infer_shapes, strip_batch_dims, validate

log = logging.getLogger(__name__)

#: HDF5 attribute holding the Python type of a value HDF5 alone would not restore.
TYPE_ATTR = "nirbridge_pytype"
#: Metadata key marking a node of a lossy file (value: the original custom node type), and,
#: in the graph's metadata, the dict ``{node name: original type}`` of approximated nodes.
LOSSY_KEY = "nirbridge_lossy"
#: Metadata key of a lossy node holding the original node's fields (params, flags, metadata).
ORIGINAL_KEY = "nirbridge_original"
#: The ``compat`` values :func:`write` accepts.
COMPAT_MODES = ("native", "lossy")

_COMPRESS_MIN_SIZE = 16  # arrays smaller than this are stored uncompressed
_EPS = 1e-12  # smallest 1 − β a lossy leaky node may have (β ≥ 1 cannot leak)


class LossyExportWarning(UserWarning):
    """A custom node was replaced by an approximate standard NIR node (``compat="lossy"``)."""


# ====================================================================== writing values


def _check_key(key: Any, where: str, path: str) -> str:
    if not isinstance(key, str):
        raise InvalidParameterError(
            f"{where}: key {key!r} of field '{path}' is a {type(key).__name__}; keys of a "
            ".nir file must be strings")
    if not key or "/" in key or key == ".":
        raise InvalidParameterError(
            f"{where}: key {key!r} of field '{path}' cannot be an HDF5 name (empty, '.' or "
            "containing '/'); rename it")
    return key


def _sequence_kind(seq: list | tuple) -> type | None:
    """The common Python scalar type of ``seq``'s items (bool/int/float/str), else None."""
    kinds = {type(v) for v in seq}
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in (bool, int, float, str):
            return kind
    return None


def _as_array(value: Any) -> Any:
    """torch tensors (duck-typed, so torch is not imported here) as numpy arrays."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def _write_array(group: h5py.Group, key: str, arr: np.ndarray) -> h5py.Dataset:
    if arr.dtype.kind in "UO":
        flat = arr.reshape(-1).tolist()
        if not all(isinstance(v, str) for v in flat):
            raise TypeError(f"an array of dtype {arr.dtype} holding non-strings")
        data = np.array(flat, dtype=object).reshape(arr.shape)
        return group.create_dataset(key, data=data, dtype=h5py.string_dtype())
    opts: dict[str, Any] = {}
    if arr.ndim >= 1 and arr.size >= _COMPRESS_MIN_SIZE:
        # chunked anyway for gzip, so a checksum costs 4 bytes a chunk: corrupted weights
        # fail to read, loudly, instead of loading silently
        opts.update(compression="gzip", fletcher32=True)
    return group.create_dataset(key, data=arr, dtype=arr.dtype, **opts)


def _write_value(group: h5py.Group, key: str, value: Any, where: str, path: str) -> None:
    """Write ``value`` as ``group[key]`` (dataset or group), tagging types HDF5 would lose."""
    key = _check_key(key, where, path)
    field = f"{path}.{key}" if path else key
    value = _as_array(value)
    try:
        tag: str | None = None
        if isinstance(value, Mapping):
            _write_dict(group.create_group(key, track_order=True), value, where, field)
            return
        if isinstance(value, (list, tuple)):
            tag = "list" if isinstance(value, list) else "tuple"
            kind = _sequence_kind(value)
            if kind is not None or len(value) == 0:
                obj: h5py.Dataset | h5py.Group = (
                    _write_array(group, key, np.array(value, dtype=object))
                    if kind is str else _write_array(group, key, np.asarray(value)))
            else:
                obj = group.create_group(key, track_order=True)
                for i, item in enumerate(value):
                    _write_value(obj, str(i), item, where, field)
            obj.attrs[TYPE_ATTR] = tag
            return
        if value is None:
            obj = group.create_dataset(key, data=h5py.Empty("f"))
            tag = "none"
        elif isinstance(value, (str, np.str_)):
            obj = group.create_dataset(key, data=str(value), dtype=h5py.string_dtype())
        elif isinstance(value, (bytes, np.bytes_)):
            obj = group.create_dataset(key, data=np.frombuffer(bytes(value), dtype=np.uint8))
            tag = "bytes"
        elif isinstance(value, bool):
            obj, tag = group.create_dataset(key, data=np.bool_(value)), "bool"
        elif isinstance(value, int):
            obj, tag = group.create_dataset(key, data=np.int64(value)), "int"
        elif isinstance(value, float):
            obj, tag = group.create_dataset(key, data=np.float64(value)), "float"
        elif isinstance(value, complex):
            obj, tag = group.create_dataset(key, data=np.complex128(value)), "complex"
        elif isinstance(value, np.generic) and value.dtype.kind in "biufc":
            obj = group.create_dataset(key, data=value)
        elif isinstance(value, np.ndarray):
            obj = _write_array(group, key, value)
            tag = "ndarray" if value.ndim == 0 or value.dtype.kind == "U" else None
        else:
            raise TypeError(f"unsupported type {type(value).__module__}.{type(value).__name__}")
        if tag is not None:
            obj.attrs[TYPE_ATTR] = tag
    except NirbridgeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InvalidParameterError(
            f"{where}: field '{field}' = {shown} cannot be stored in a .nir file ({exc}); "
            "use numbers, strings, bools, None, arrays, lists, tuples or dicts of them"
        ) from exc


def _write_dict(group: h5py.Group, data: Mapping, where: str, path: str = "") -> None:
    for key, value in data.items():
        _write_value(group, key, value, where, path)


# ================================================================= graph to plain dicts


def _node_dict(name: str, node: nir.NIRNode) -> dict[str, Any]:
    """The dict ``write`` stores for ``node`` (a subgraph becomes a nested graph dict)."""
    if isinstance(node, nir.NIRGraph):
        return _graph_dict(node, f"{name}.")
    try:
        data = node.to_dict()
    except NirbridgeError:
        raise
    except Exception as exc:
        raise InvalidParameterError(
            f"node {name!r} ({type(node).__name__}) cannot be serialised: "
            f"{type(exc).__name__}: {exc}") from exc
    data["type"] = type(node).__name__
    return data


def _graph_dict(graph: nir.NIRGraph, prefix: str = "") -> dict[str, Any]:
    nodes = {}
    for name, node in graph.nodes.items():
        _check_key(name, f"graph{' ' + prefix[:-1] if prefix else ''}", "nodes")
        nodes[name] = _node_dict(f"{prefix}{name}", node)
    edges = list(graph.edges)
    for edge in edges:
        if len(edge) != 2 or not all(isinstance(e, str) for e in edge):
            raise GraphError(f"field 'edges': entry {edge!r} is not a pair of node names")
    edge_array = np.array([list(e) for e in edges], dtype=object).reshape(-1, 2)
    meta = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    return {"type": "NIRGraph", "nodes": nodes, "edges": edge_array, "metadata": dict(meta)}


def _write_graph_dict(group: h5py.Group, data: dict[str, Any], prefix: str = "") -> None:
    group.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
    nodes = group.create_group("nodes", track_order=True)
    for name, node in data["nodes"].items():
        sub = nodes.create_group(name, track_order=True)
        if node.get("type") == "NIRGraph":
            _write_graph_dict(sub, node, f"{prefix}{name}.")
        else:
            _write_dict(sub, node, f"node {prefix + name!r} ({node['type']})")
    _write_array(group, "edges", data["edges"])
    where = f"subgraph {prefix[:-1]!r}" if prefix else "graph"
    _write_value(group, "metadata", data["metadata"], where, "")


# ===================================================================== lossy fallback


def _leaky(beta: np.ndarray, gain: np.ndarray, const: np.ndarray, v_threshold: np.ndarray,
           v_reset: np.ndarray, dt: float, metadata: dict[str, Any]) -> tuple[nir.NIRNode, str]:
    """The standard node whose sub-threshold step is ``v ← β·v + gain·x + const`` at ``dt``.

    NIR's LIF step is ``v ← v + (dt/τ)(v_leak − v + R·x)``, so ``τ = dt/(1−β)``,
    ``R = gain/(1−β)``, ``v_leak = const/(1−β)``. ``β = 1`` everywhere with no constant is
    ``nir.IF(r = gain)`` (IF integrates ``v ← v + R·x``, specs/neurons.md).
    """
    shape = np.broadcast_shapes(*(np.shape(a) for a in (beta, gain, const, v_threshold,
                                                        v_reset)))

    def full(a: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(a, dtype=np.float64), shape))

    beta, gain, const = full(beta), full(gain), full(const)
    v_threshold, v_reset = full(v_threshold), full(v_reset)
    one_minus = 1.0 - beta
    if np.all(one_minus == 0) and np.all(const == 0):
        return nir.IF(r=gain, v_threshold=v_threshold, v_reset=v_reset,
                      metadata=metadata), ""
    note = ""
    if np.any(one_minus < _EPS):
        note = (f"; {int((one_minus < _EPS).sum())} neuron(s) have decay ≥ 1, clamped to "
                f"1 − {_EPS:g}")
        one_minus = np.maximum(one_minus, _EPS)
    node = nir.LIF(tau=dt / one_minus, r=gain / one_minus, v_leak=const / one_minus,
                   v_threshold=v_threshold, v_reset=v_reset, metadata=metadata)
    return node, note


def _lossy_subtractive_lif(node: SubtractiveLIF, dt: float, meta: dict) -> tuple[Any, str]:
    shape = node.shape
    lif = nir.LIF(tau=node.tau, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                  v_reset=np.zeros(shape), metadata=meta)
    return lif, "subtractive reset v ← v − v_th becomes a hard reset to 0"


def _lossy_dalif(node: DALIF, dt: float, meta: dict) -> tuple[Any, str]:
    new, note = _leaky(node.beta, node.alpha, 0.0, node.v_threshold, 0.0, dt, meta)
    lost = ("exact (hard reset to 0)" if node.reset == "hard"
            else "soft reset v ← v − v_th becomes a hard reset to 0")
    return new, lost + note


def _lossy_klif(node: KLIF, dt: float, meta: dict) -> tuple[Any, str]:
    inv_tau = 1.0 / node.tau
    gain = inv_tau if node.decay_input else np.ones_like(node.tau)
    v_reset = np.zeros(node.shape) if node.soft_reset else node.v_reset
    if node.scale_reset:  # the state is h (before k): threshold v_th/k
        new, note = _leaky(1.0 - inv_tau, gain, node.v_reset * inv_tau,
                           node.v_threshold / np.maximum(node.k, _EPS), v_reset, dt, meta)
    else:  # the state is f = k·h
        k = node.k
        new, note = _leaky(k * (1.0 - inv_tau), k * gain, k * node.v_reset * inv_tau,
                           node.v_threshold, v_reset, dt, meta)
    lost = "the relu floor of f = relu(k·h) and the initial state v = v_r are lost"
    if node.soft_reset:
        lost += "; soft reset becomes a hard reset to 0"
    return new, lost + note


def _lossy_arlif(node: ARLIF, dt: float, meta: dict) -> tuple[Any, str]:
    new, note = _leaky(node.decay, 1.0, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, ("the input-dependent threshold (tanh_a·tanh(x)) and the adaptive soft "
                 "reset through m become a fixed threshold and a hard reset to 0" + note)


def _lossy_clif(node: CLIF, dt: float, meta: dict) -> tuple[Any, str]:
    new, note = _leaky(1.0 - 1.0 / node.tau, 1.0, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, ("the complementary state m and the soft reset v ← v − v_th − σ(m) become "
                 "a hard reset to 0" + note)


def _lossy_alif(node: ALIF, dt: float, meta: dict) -> tuple[Any, str]:
    new, note = _leaky(node.alpha, 1.0 - node.alpha, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, ("the adaptive threshold b (rho, beta) and the reset by subtraction of A on "
                 "the next step become a fixed threshold and a hard reset to 0" + note)


#: Custom node type → function ``(node, dt, metadata) → (standard node, what is lost)``.
LOSSY_APPROXIMATIONS: dict[str, Callable[[Any, float, dict], tuple[nir.NIRNode, str]]] = {
    "SubtractiveLIF": _lossy_subtractive_lif,
    "DALIF": _lossy_dalif,
    "KLIF": _lossy_klif,
    "ARLIF": _lossy_arlif,
    "CLIF": _lossy_clif,
    "ALIF": _lossy_alif,
}


def _original_fields(node: CustomNeuron) -> dict[str, Any]:
    data = {p: np.asarray(getattr(node, p)) for p in node.PARAMS}
    data.update({f: getattr(node, f) for f in node.FLAGS})
    data["metadata"] = dict(node.metadata or {})
    return data


def _lossy_node(name: str, node: CustomNeuron, dt: float) -> tuple[nir.NIRNode, str]:
    typ = type(node).__name__
    approx = LOSSY_APPROXIMATIONS.get(typ)
    if approx is None:
        raise UnknownNodeError(
            f"node {name!r} ({typ}): no lossy approximation is defined for this custom node "
            "type; write it with compat='native' or add one to LOSSY_APPROXIMATIONS")
    meta = {**(node.metadata or {}), "compare": node.compare, LOSSY_KEY: typ,
            ORIGINAL_KEY: _original_fields(node)}
    new, lost = approx(node, dt, meta)
    desc = f"nir.{type(new).__name__}"
    return new, f"node {name!r} ({typ}) written as {desc} at dt = {dt:g}: {lost}"


def _lossy_nodes(graph: nir.NIRGraph, dt: float, prefix: str,
                 replaced: dict[str, str], notes: list[str]) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        qname = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            nodes[name] = _lossy_nodes(node, dt, f"{qname}.", replaced, notes)
        elif isinstance(node, CustomNeuron):
            nodes[name], note = _lossy_node(qname, node, dt)
            replaced[qname] = type(node).__name__
            notes.append(note)
        else:
            nodes[name] = node
    meta = dict(graph.metadata) if isinstance(graph.metadata, Mapping) else {}
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in graph.edges], metadata=meta,
                        type_check=False)


def lossy_graph(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """A copy of ``graph`` with every custom node replaced by a standard NIR approximation.

    Returns the new graph and one line per replaced node saying what was lost. ``graph``
    is not modified (standard nodes are shared). The approximations keep each model's
    sub-threshold dynamics exact at the graph's ``dt`` (``metadata["dt"]``, default 1.0)
    under NIR's forward-Euler LIF step ``v ← v + (dt/τ)(v_leak − v + R·x)``: a model whose
    step is ``v ← β·v + g·x + c`` becomes ``nir.LIF(τ = dt/(1−β), R = g/(1−β),
    v_leak = c/(1−β))``; ``β = 1`` (with ``c = 0``) becomes ``nir.IF(r = g)``; ``β ≥ 1``
    elsewhere is clamped to ``1 − 1e-12``. The firing convention goes to the node's
    ``metadata["compare"]``.

    ============== ================================================ ===================
    custom node    standard node                                    lost
    ============== ================================================ ===================
    SubtractiveLIF LIF(tau, r, v_leak, v_threshold, v_reset = 0)    subtractive reset
    DALIF          LIF(τ = dt/(1−β), r = α/(1−β), v_leak = 0,       soft reset (hard:
                   v_threshold, v_reset = 0); β = 1: IF(r = α)      exact)
    KLIF           state f = k·h: LIF(τ = dt/(1−k(1−1/τ)),          relu floor, v(0) =
                   r = k·g/(1−k(1−1/τ)), v_leak = k·v_r/τ/(1−…),   v_r, soft reset
                   v_threshold, v_reset = v_r (soft: 0)); g = 1/τ
                   (decay_input) or 1; scale_reset: state h, same
                   with k = 1 and v_threshold/k
    ARLIF          LIF(τ = dt/(1−decay), r = 1/(1−decay),           input-dependent
                   v_leak = 0, v_threshold, v_reset = 0)            threshold, m reset
    CLIF           LIF(τ = τ·dt, r = τ, v_leak = 0, v_threshold,    m, soft reset
                   v_reset = 0)
    ALIF           LIF(τ = dt/(1−α), r = 1, v_leak = 0,             adaptation b,
                   v_threshold, v_reset = 0)                        delayed reset
    ============== ================================================ ===================

    (ALIF's ``α = exp(−dt/τ_m)``: the Euler-exact ``τ = dt/(1−α)`` is used rather than the
    continuous ``τ_m = −dt/ln α``, because NIR consumers step LIF with forward Euler.)
    Each replaced node's metadata holds ``nirbridge_lossy`` (its original type) and
    ``nirbridge_original`` (its original fields), and the graph's metadata holds
    ``nirbridge_lossy`` = ``{node name: original type}``; :func:`restore_custom_nodes`
    (or ``read(..., restore_lossy=True)``) undoes the replacement exactly.
    """
    replaced: dict[str, str] = {}
    notes: list[str] = []
    new = _lossy_nodes(graph, graph_dt(graph), "", replaced, notes)
    if replaced:
        new.metadata[LOSSY_KEY] = replaced
    return new, notes


def restore_custom_nodes(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Undo :func:`lossy_graph`: nodes whose metadata records an original custom node
    become that node again (exactly); returns a new graph, ``graph`` is not modified."""
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        meta = getattr(node, "metadata", None) or {}
        if isinstance(node, nir.NIRGraph):
            nodes[name] = restore_custom_nodes(node)
        elif LOSSY_KEY in meta and isinstance(meta.get(ORIGINAL_KEY), Mapping):
            cls = CUSTOM_NODES.get(str(meta[LOSSY_KEY]))
            if cls is None:
                raise UnknownNodeError(
                    f"node {name!r}: metadata '{LOSSY_KEY}' names {meta[LOSSY_KEY]!r}, which "
                    "is not a nirbridge custom node")
            try:
                nodes[name] = cls.from_dict(dict(meta[ORIGINAL_KEY]))
            except NirbridgeError as exc:
                raise type(exc)(f"node {name!r}, metadata '{ORIGINAL_KEY}': {exc}") from exc
        else:
            nodes[name] = node
    meta = {k: v for k, v in (graph.metadata or {}).items() if k != LOSSY_KEY}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta, type_check=False)


# ============================================================================== write


def write(path: str | os.PathLike[str], graph: nir.NIRGraph, compat: str = "native", *,
          check: bool = True) -> None:
    """Write ``graph`` to ``path`` in NIR's HDF5 layout, atomically.

    ``compat="native"`` writes every node as it is, nirbridge's custom nodes included
    (:func:`read` restores them exactly; stock ``nir.read`` rejects their types).
    ``compat="lossy"`` writes standard NIR nodes only (stock ``nir.read`` loads the file):
    each custom node is replaced by an approximation (:func:`lossy_graph`) and a
    :class:`LossyExportWarning` names it. With ``check`` (the default) the graph is first
    validated (:func:`nirbridge.passes.validate`), so a file that :func:`read` would reject
    is never written. The file appears complete or not at all: a failure leaves neither
    the target nor a temporary file behind (an existing target stays untouched).

    Raises :class:`InvalidParameterError` for a bad ``compat`` or a value a ``.nir`` file
    cannot hold (naming the node and field), the errors of ``validate``, and
    :class:`NirbridgeError` when the file system refuses the write.
    """
    if compat not in COMPAT_MODES:
        raise InvalidParameterError(f"compat={compat!r}; use one of {', '.join(COMPAT_MODES)}")
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"write expects a nir.NIRGraph, got {type(graph).__name__}")
    target = Path(path)
    if check:
        validate(graph)
    notes: list[str] = []
    if compat == "lossy":
        graph, notes = lossy_graph(graph)
    data = _graph_dict(graph)
    with atomic_path(target) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        f.attrs["nirbridge_compat"] = compat
        _write_graph_dict(f.create_group("node", track_order=True), data)
    for note in notes:
        warnings.warn(note, LossyExportWarning, stacklevel=2)


# ======================================================================= reading values


def _tag(obj: h5py.HLObject) -> str | None:
    tag = obj.attrs.get(TYPE_ATTR)
    if isinstance(tag, bytes):
        tag = tag.decode()
    return None if tag is None else str(tag)


def _read_dataset(ds: h5py.Dataset) -> Any:
    tag = _tag(ds)
    if ds.shape is None:  # an empty (null) dataset
        return None
    if h5py.check_string_dtype(ds.dtype) is not None:
        value = ds.asstr()[()]
        if tag == "list":
            return list(np.asarray(value).tolist())
        if tag == "tuple":
            return tuple(np.asarray(value).tolist())
        if tag == "ndarray":
            return np.array(np.asarray(value).tolist(), dtype=str)
        return value
    value = ds[()]
    if tag is None:
        return value
    converters: dict[str, Callable[[Any], Any]] = {
        "bool": bool,
        "int": int,
        "float": float,
        "complex": complex,
        "bytes": lambda v: np.asarray(v, dtype=np.uint8).tobytes(),
        "list": lambda v: list(np.asarray(v).tolist()),
        "tuple": lambda v: tuple(np.asarray(v).tolist()),
        "ndarray": np.asarray,
        "none": lambda v: None,
    }
    conv = converters.get(tag)
    return value if conv is None else conv(value)


def _read_item(item: Any) -> Any:
    if isinstance(item, h5py.Group):
        tag = _tag(item)
        if tag in ("list", "tuple"):
            seq = [_read_item(item[str(i)]) for i in range(len(item))]
            return seq if tag == "list" else tuple(seq)
        return {key: _read_item(child) for key, child in item.items()
                if isinstance(child, (h5py.Group, h5py.Dataset))}
    return _read_dataset(item)


# ================================================================= dicts back to nodes


def _standard_classes() -> dict[str, type[nir.NIRNode]]:
    out = {}
    for name in nir.ir.__all__:
        cls = getattr(nir, name, None)
        if isinstance(cls, type) and issubclass(cls, nir.NIRNode) and cls is not nir.NIRNode:
            out[name] = cls
    return out


_STANDARD = _standard_classes()
#: Fields a standard node's dataclass requires but NIR files store under another name.
_FILE_NAMES: dict[type, dict[str, str]] = {
    nir.Input: {"input_type": "shape"},
    nir.Output: {"output_type": "shape"},
}
#: Required dataclass fields that NIR files may omit (their value is then unknown/None).
_OPTIONAL: dict[type, set[str]] = {
    nir.Conv1d: {"input_shape"},
    nir.Conv2d: {"input_shape"},
    nir.Flatten: {"input_type"},
}


def _file_fields(cls: type) -> tuple[list[str], set[str]]:
    """(required fields, all accepted fields) of a standard node type, as in files."""
    rename = _FILE_NAMES.get(cls, {})
    optional = _OPTIONAL.get(cls, set())
    required, accepted = [], {"metadata"}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        fname = rename.get(f.name, f.name)
        accepted.add(fname)
        no_default = f.default is dataclasses.MISSING and \
            f.default_factory is dataclasses.MISSING
        if no_default and f.name not in optional and f.name != "metadata":
            required.append(fname)
    return required, accepted


def _missing(qname: str, typ: str, field: str) -> MissingParameterError:
    return MissingParameterError(
        f"node {qname!r} ({typ}): parameter '{field}' is missing; the file is incomplete or "
        "was written by an incompatible tool")


def _custom_node(qname: str, typ: str, data: dict[str, Any]) -> nir.NIRNode:
    cls = CUSTOM_NODES[typ]
    for p in cls.PARAMS:
        if p not in data:
            raise _missing(qname, typ, p)
    try:
        return cls.from_dict(data)
    except NirbridgeError as exc:
        raise type(exc)(f"node {qname!r}: {exc}") from exc
    except Exception as exc:
        raise InvalidParameterError(
            f"node {qname!r} ({typ}): invalid parameters ({type(exc).__name__}: {exc})"
        ) from exc


def _standard_node(qname: str, typ: str, data: dict[str, Any]) -> nir.NIRNode:
    cls = _STANDARD[typ]
    required, accepted = _file_fields(cls)
    for field in required:
        if field not in data:
            raise _missing(qname, typ, field)
    extra = sorted(set(data) - accepted - {"type"})
    if extra:
        log.warning("node %r (%s): ignoring unknown field(s) %s", qname, typ, extra)
        data = {k: v for k, v in data.items() if k not in extra}
    if cls in (nir.Conv1d, nir.Conv2d):
        data.setdefault("input_shape", None)
    if "metadata" in data and not isinstance(data["metadata"], Mapping):
        raise InvalidParameterError(f"node {qname!r} ({typ}): field 'metadata' is not a group")
    try:
        return cls.from_dict({**data, "type": typ})
    except NirbridgeError as exc:
        raise type(exc)(f"node {qname!r}: {exc}") from exc
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        raise InvalidParameterError(
            f"node {qname!r} ({typ}): its fields {sorted(k for k in data if k != 'metadata')} "
            f"do not make a valid nir.{typ} ({detail})") from exc


def _node_from_dict(qname: str, data: Any) -> nir.NIRNode:
    if not isinstance(data, dict):
        raise FileFormatError(f"node {qname!r} is a dataset, not a group of fields")
    if "type" not in data:
        raise MissingParameterError(f"node {qname!r}: field 'type' is missing")
    typ = data["type"]
    if not isinstance(typ, str):
        raise FileFormatError(f"node {qname!r}: field 'type' = {typ!r} is not a string")
    fields = {k: v for k, v in data.items() if k != "type"}
    if typ == "NIRGraph":
        return _graph_from_dict(data, f"{qname}.")
    if typ in CUSTOM_NODES:
        return _custom_node(qname, typ, fields)
    if typ in _STANDARD:
        return _standard_node(qname, typ, fields)
    raise UnknownNodeError(
        f"node {qname!r} has type {typ!r} (field 'type'), which is neither a NIR node "
        f"({', '.join(sorted(_STANDARD))}) nor a nirbridge custom node "
        f"({', '.join(sorted(CUSTOM_NODES))}); the file needs a newer nirbridge or the tool "
        "that wrote it")


def _edge_name(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise GraphError(f"field 'edges': {value!r} is not a node name")


def _edges(raw: Any, where: str) -> list[tuple[str, str]]:
    if raw is None:
        raise MissingParameterError(f"{where}: field 'edges' is missing")
    arr = np.asarray(raw, dtype=object)
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GraphError(f"{where}: field 'edges' has shape {list(arr.shape)}; expected "
                         "[n, 2] (source, destination) node names")
    return [(_edge_name(a), _edge_name(b)) for a, b in arr.tolist()]


def _graph_from_dict(data: dict[str, Any], prefix: str = "") -> nir.NIRGraph:
    where = f"subgraph {prefix[:-1]!r}" if prefix else "graph"
    nodes_raw = data.get("nodes")
    if not isinstance(nodes_raw, dict):
        raise MissingParameterError(f"{where}: field 'nodes' is missing or not a group")
    nodes = {name: _node_from_dict(f"{prefix}{name}", nd) for name, nd in nodes_raw.items()}
    edges = _edges(data.get("edges"), where)
    meta = data.get("metadata", {})
    if not isinstance(meta, dict):
        raise InvalidParameterError(f"{where}: field 'metadata' is not a group")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


# =============================================================================== read


def read(path: str | os.PathLike[str], *, restore_lossy: bool = False) -> nir.NIRGraph:
    """Read a ``.nir`` file: nirbridge's own (custom nodes restored to their classes) or
    one written by stock NIR or another tool (snnTorch, Norse, ...).

    A batch dimension that other exporters leave on Input/Output nodes is removed
    (:func:`nirbridge.passes.strip_batch_dims`), unknown shapes are inferred
    (:func:`nirbridge.passes.infer_shapes`) and the graph is validated
    (:func:`nirbridge.passes.validate`). With ``restore_lossy``, nodes that a
    lossy write approximated become their original custom nodes again.

    Raises, each with a message naming the file and the node/field:
    :class:`FileFormatError` (missing file, not HDF5, truncated, no NIR graph inside),
    :class:`UnknownNodeError`, :class:`MissingParameterError`,
    :class:`InvalidParameterError` (NaN/inf, invalid values), :class:`GraphError` (edge to
    a missing node, no Input/Output), :class:`ShapeMismatchError`. Nothing else escapes:
    unexpected h5py/NIR exceptions become :class:`FileFormatError`.
    """
    source = Path(path)
    if not source.exists():
        raise FileFormatError(f"{source}: no such file")
    if source.is_dir():
        raise FileFormatError(f"{source}: is a directory, not a .nir file")
    try:
        handle = h5py.File(source, "r")
    except Exception as exc:
        raise FileFormatError(
            f"{source}: not a readable HDF5 file (not HDF5, truncated or corrupt: {exc}); "
            "re-export it or copy it again") from exc
    try:
        with handle as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise FileFormatError(
                    f"is an HDF5 file but not a NIR graph: it has no 'node' group (top-level "
                    f"entries: {', '.join(f.keys()) or 'none'})")
            data = _read_item(f["node"])
        typ = data.get("type")
        if typ != "NIRGraph":
            raise FileFormatError(
                f"holds a single {typ!r} node, not a NIRGraph (field 'node/type')"
                if typ is not None else "the 'node' group has no field 'type'")
        graph = _graph_from_dict(data)
        strip_batch_dims(graph)
        infer_shapes(graph)
        validate(graph)
        if restore_lossy:
            graph = restore_custom_nodes(graph)
    except NirbridgeError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    except Exception as exc:
        raise FileFormatError(
            f"{source}: could not be read as a NIR graph ({type(exc).__name__}: {exc}); the "
            "file may be truncated or written by an incompatible tool") from exc
    return graph


__all__ = [
    "COMPAT_MODES",
    "LOSSY_APPROXIMATIONS",
    "LOSSY_KEY",
    "LossyExportWarning",
    "ORIGINAL_KEY",
    "graph_dt",
    "lossy_graph",
    "read",
    "restore_custom_nodes",
    "write",
]
