"""Reading ``.nir`` files: NIR's HDF5 layout back to graphs (see :mod:`nirbridge.io`).

Old files (NIR 0.x: Rockpool's, the NIR paper's) read too: their missing fields take NIR's
defaults (no ``v_reset``: 0; no ``metadata``; Conv without ``input_shape``), NIR 0.0's
field names are renamed (``weights`` → ``weight``; a ``Linear`` with a bias is an
``Affine``), and Input/Output nodes declared with the sample's leading batch and time
dimensions (Rockpool's Output ``[1, 1, 1]`` fed by a layer of shape ``[1]``) are
normalised to the layer's shape. An Input/Output declaration that disagrees with its
layer otherwise is reported with both shapes and the likely cause.

:func:`from_framework` and :func:`import_graph` apply a framework's reading of the files
its own exporter writes (its front-end's ``from_file``, its dt convention) and record the
dt and the provenance in the metadata (``nirbridge import``, ``--from``).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np

from nirbridge.errors import (
    FileFormatError,
    GraphError,
    InputError,
    InvalidParameterError,
    MissingParameterError,
    NirbridgeError,
    ShapeMismatchError,
    UnknownNodeError,
)
from nirbridge.graph import flatten_subgraphs
from nirbridge.io.decode import load_tree
from nirbridge.io.integrity import Integrity
from nirbridge.io.lossy import restore_custom_nodes
from nirbridge.neurons import custom_node_class, custom_nodes
from nirbridge.passes import (
    IMPORT_KEY,
    infer_shapes,
    input_shape,
    metadata_dt,
    output_shape,
    strip_batch_dims,
    validate,
)

log = logging.getLogger("nirbridge.io")


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
#: Field names of NIR 0.0 files → today's.
_OLD_FIELDS: dict[str, str] = {"weights": "weight"}
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
    cls = custom_node_class(typ)
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
    for old, new in _OLD_FIELDS.items():
        if old in data and new not in data:
            data = {(new if k == old else k): v for k, v in data.items()}
    if typ == "Linear" and "bias" in data:  # NIR 0.0's Linear had a bias: today's Affine
        typ = "Affine"
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
    if typ in custom_nodes():
        return _custom_node(qname, typ, fields)
    if typ in _STANDARD:
        return _standard_node(qname, typ, fields)
    raise UnknownNodeError(
        f"node {qname!r} has type {typ!r} (field 'type'), which is neither a NIR node "
        f"({', '.join(sorted(_STANDARD))}) nor a nirbridge custom node "
        f"({', '.join(sorted(custom_nodes()))}); the file needs a newer nirbridge or the tool "
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


# ============================================================ old Input/Output shapes


def _io_neighbours(graph: nir.NIRGraph, name: str, node: nir.NIRNode
                   ) -> list[tuple[str, tuple[int, ...] | None]]:
    """(neighbour, the shape it gives or takes) of an Input (its successors) or an
    Output (its predecessors)."""
    if isinstance(node, nir.Input):
        return [(d, input_shape(graph.nodes[d])) for s, d in graph.edges
                if s == name and d in graph.nodes]
    return [(s, output_shape(graph.nodes[s])) for s, d in graph.edges
            if d == name and s in graph.nodes]


def _set_io_shape(node: nir.NIRNode, shape: tuple[int, ...]) -> None:
    node.input_type = {"input": np.array(shape, dtype=np.int64)}
    node.output_type = {"output": np.array(shape, dtype=np.int64)}


def normalise_io_shapes(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Drop the leading batch *and* time dimensions of an Input/Output node declared with
    the sample's full shape ``[B, T, *s]`` (Rockpool and other nirtorch-era exporters,
    e.g. an Output ``[1, 1, 1]`` fed a layer of shape ``[1]``), where every known
    neighbour gives or takes ``s``; a single leading batch dimension is
    :func:`~nirbridge.passes.strip_batch_dims`'s. In place, subgraphs too; returns
    ``graph``."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            normalise_io_shapes(node)
            continue
        if not isinstance(node, (nir.Input, nir.Output)):
            continue
        own = output_shape(node) if isinstance(node, nir.Input) else input_shape(node)
        known = [shape for _, shape in _io_neighbours(graph, name, node) if shape is not None]
        if own is None or len(own) < 3 or not known:
            continue
        if all(shape == own[2:] for shape in known):
            _set_io_shape(node, own[2:])
    if hasattr(graph, "_update_input_output_types"):
        graph._update_input_output_types()
    return graph


def check_io_shapes(graph: nir.NIRGraph, version: str | None = None, prefix: str = ""
                    ) -> None:
    """An Input/Output declaration that disagrees with its neighbouring layer (after the
    leading batch/time dimensions are normalised) raises :class:`ShapeMismatchError`
    naming both shapes and the likely cause; :func:`~nirbridge.passes.validate` reports
    disagreements between layers."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_io_shapes(node, version, f"{prefix}{name}.")
            continue
        if not isinstance(node, (nir.Input, nir.Output)):
            continue
        own = output_shape(node) if isinstance(node, nir.Input) else input_shape(node)
        if own is None:
            continue
        for other, shape in _io_neighbours(graph, name, node):
            if shape is None or shape == own or (len(own) == len(shape) + 1
                                                 and own[1:] == shape):
                continue  # equal, or a leading batch dimension the checks accept
            kind = type(node).__name__
            layer = f"node '{prefix}{other}' ({type(graph.nodes[other]).__name__})"
            io = f"the {kind} node '{prefix}{name}'"
            edge = (f"edge ('{prefix}{name}' → '{prefix}{other}'): {io} declares shape "
                    f"{list(own)} but {layer} takes {list(shape)}"
                    if kind == "Input" else
                    f"edge ('{prefix}{other}' → '{prefix}{name}'): {layer} outputs shape "
                    f"{list(shape)} but {io} declares {list(own)}")
            old = f" (a NIR {version} file)" if version and version.startswith("0.") else ""
            raise ShapeMismatchError(
                f"{edge}; the likely cause is the {kind}'s declaration, not the layer: "
                f"the exporter{old} recorded another sample shape than the layers take; "
                f"re-export the file, or declare the {kind} as {list(shape)}")


# =============================================================================== read


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """A file read by :func:`read_file`: the ``graph``, its ``integrity`` (verified against
    the checksums nirbridge stored, or unverified: a file without them) and the bytes its
    datasets and attributes declare (``declared_bytes``)."""

    graph: nir.NIRGraph
    integrity: Integrity
    declared_bytes: int


def read_file(path: str | os.PathLike[str], *, restore_lossy: bool = False,
              max_bytes: int | None = None, timeout_s: float | None = None) -> ReadResult:
    """:func:`read`, with the file's integrity and declared size."""
    source = Path(path)
    if not source.exists():
        raise FileFormatError(f"{source}: no such file")
    if source.is_dir():
        raise FileFormatError(f"{source}: is a directory, not a .nir file")
    if max_bytes is not None and (isinstance(max_bytes, bool) or int(max_bytes) < 0):
        raise InputError(f"max_bytes = {max_bytes!r}: give a number of bytes >= 0")
    if timeout_s is not None and not (0 < float(timeout_s) < float("inf")):
        raise InputError(f"timeout_s = {timeout_s!r}: give a positive, finite number of "
                         "seconds")
    try:
        tree = load_tree(source, max_bytes=max_bytes, timeout_s=timeout_s)
        data = tree.data
        typ = data.get("type") if isinstance(data, dict) else None
        if typ != "NIRGraph":
            raise FileFormatError(
                f"holds a single {typ!r} node, not a NIRGraph (field 'node/type')"
                if typ is not None else "the 'node' group has no field 'type'")
        graph = _graph_from_dict(data)
        normalise_io_shapes(graph)
        strip_batch_dims(graph)
        infer_shapes(graph)
        check_io_shapes(graph, tree.version)
        validate(graph)
        # every command sees one flat graph: a subgraph's node x is node 'sub.x'
        graph = flatten_subgraphs(graph)
        if restore_lossy:
            graph = restore_custom_nodes(graph)
    except NirbridgeError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    except Exception as exc:
        raise FileFormatError(
            f"{source}: could not be read as a NIR graph ({type(exc).__name__}: {exc}); the "
            "file may be truncated or written by an incompatible tool") from exc
    return ReadResult(graph, tree.integrity, tree.declared_bytes)


def read(path: str | os.PathLike[str], *, restore_lossy: bool = False,
         max_bytes: int | None = None, timeout_s: float | None = None) -> nir.NIRGraph:
    """Read a ``.nir`` file: nirbridge's own (custom nodes restored to their classes) or
    one written by stock NIR or another tool (snnTorch, Norse, ...).

    The file is untrusted: before anything is read it is checked to be self-contained
    (no external links or storage, no virtual datasets: :mod:`nirbridge.io.safety`) and
    to declare at most ``max_bytes`` of data (default 2 GiB); it is decoded in a child
    process that is stopped after ``timeout_s`` (default 10 s plus 1 s per 50 MB
    declared plus 1 ms per link: :func:`nirbridge.io.decode.read_time_limit`); the
    checksums nirbridge stores are verified (:mod:`nirbridge.io.integrity`;
    :func:`read_file` says whether there were any).

    A batch dimension that other exporters leave on Input/Output nodes is removed
    (:func:`nirbridge.passes.strip_batch_dims`), unknown shapes are inferred
    (:func:`nirbridge.passes.infer_shapes`) and the graph is validated
    (:func:`nirbridge.passes.validate`). With ``restore_lossy``, nodes that a
    lossy write approximated become their original custom nodes again. Nested
    subgraphs are flattened (:func:`nirbridge.graph.flatten_subgraphs`: node ``x`` of
    subgraph ``sub`` becomes ``sub.x``), so every command sees one flat graph.

    Raises, each with a message naming the file and the node/field:
    :class:`FileFormatError` (missing file, not HDF5, truncated, no NIR graph inside;
    its subclasses :class:`UnsafeFileError`: not self-contained, past the size or time
    limit, and :class:`CorruptFileError`: a checksum mismatch),
    :class:`UnknownNodeError`, :class:`MissingParameterError`,
    :class:`InvalidParameterError` (NaN/inf, invalid values), :class:`GraphError` (edge to
    a missing node, no Input/Output), :class:`ShapeMismatchError`. Nothing else escapes:
    unexpected h5py/NIR exceptions become :class:`FileFormatError`.
    """
    return read_file(path, restore_lossy=restore_lossy, max_bytes=max_bytes,
                     timeout_s=timeout_s).graph


# ======================================================= a framework's reading of its file


def _frontend(framework: str) -> Any:
    from nirbridge.export.frontends import frontend

    try:
        return frontend(framework)  # an unknown name: one line listing the known ones
    except ImportError as exc:
        raise InputError(f"the {framework} front-end is not available ({exc})") from exc


def _stamp(graph: nir.NIRGraph, dt: float, source: str, provenance: dict[str, Any]
           ) -> nir.NIRGraph:
    meta = dict(graph.metadata) if isinstance(graph.metadata, Mapping) else {}
    meta["dt"] = float(dt)
    meta[IMPORT_KEY] = {**provenance, "dt_source": source}
    graph.metadata = meta
    return graph


def from_framework(graph: nir.NIRGraph, framework: str, *, dt: float | None = None
                   ) -> tuple[nir.NIRGraph, list[str]]:
    """``framework``'s reading of ``graph``, a file its own exporter wrote: its
    front-end's ``from_file`` (the exact nirbridge form, e.g. Sinabs' multi-spike IAF)
    and its dt convention (the front-end's ``DT``), with the notes saying what changed.

    ``dt`` (given by the user) replaces the convention. The result carries
    ``metadata["dt"]`` (when any dt is known) and ``metadata["nirbridge_import"]`` =
    ``{"from", "notes", "dt_source"}``, so that later commands need nothing else. An
    unknown framework raises :class:`~nirbridge.errors.UnsupportedLayerError` listing the
    known ones.
    """
    fe = _frontend(framework)
    label = str(getattr(fe, "FRAMEWORK", framework))
    before = metadata_dt(graph)
    takes_dt = "dt" in inspect.signature(fe.from_file).parameters
    if dt is not None and takes_dt:  # the reading itself depends on the dt (Norse's)
        graph, notes = fe.from_file(graph, dt=float(dt))
    else:
        graph, notes = fe.from_file(graph)
    notes = [str(n) for n in notes]
    infer_shapes(graph)
    validate(graph)
    after = metadata_dt(graph)
    convention = getattr(fe, "DT", None)
    if dt is not None:
        if after is not None and after != float(dt):
            notes.append(f"dt = {float(dt):g} as given, instead of {after:g}")
        value, source = float(dt), f"given with --from {framework}"
    elif after is not None:
        value = after
        source = ("the file's metadata" if after == before else
                  f"{label}'s convention, --from {framework}" if after == convention else
                  f"{label}'s reading, --from {framework}")
    elif convention is not None:
        value, source = float(convention), f"{label}'s convention, --from {framework}"
        notes.append(f"dt = {value:g}: the dt {label}'s exporter writes with (the file "
                     "has none)")
    else:
        return graph, notes  # no dt known: the commands that need one ask for --dt
    return _stamp(graph, value, source, {"from": framework, "notes": notes}), notes


def import_graph(path: str | os.PathLike[str], framework: str | None = None, *,
                 dt: float | None = None, max_bytes: int | None = None,
                 timeout_s: float | None = None) -> tuple[nir.NIRGraph, list[str]]:
    """Read ``path`` (``max_bytes``, ``timeout_s``: :func:`read`'s) and apply
    ``framework``'s reading of it (:func:`from_framework`); without a framework only
    ``dt`` is recorded (an old file that carries none). What ``nirbridge import``
    writes."""
    graph = read(path, max_bytes=max_bytes, timeout_s=timeout_s)
    if framework is not None:
        try:
            return from_framework(graph, framework, dt=dt)
        except NirbridgeError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
    if dt is None:
        raise InputError("import_graph: give a framework or a dt (nothing to import)")
    notes = [f"dt = {float(dt):g} as given"]
    return _stamp(graph, float(dt), "given at import", {"from": None, "notes": notes}), notes


__all__ = ["ReadResult", "check_io_shapes", "from_framework", "import_graph",
           "normalise_io_shapes", "read", "read_file"]
