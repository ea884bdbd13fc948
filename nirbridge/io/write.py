"""Writing ``.nir`` files: values and graphs to NIR's HDF5 layout (:mod:`nirbridge.io`)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from nirbridge._files import atomic_hdf5
from nirbridge.errors import GraphError, InvalidParameterError, NirbridgeError
from nirbridge.io.decode import BROADCAST_ATTR, COMPAT_ATTR, TYPE_ATTR, seal_steps
from nirbridge.io.lossy import LossyExportWarning, lossy_graph
from nirbridge.neurons import custom_nodes
from nirbridge.passes import validate

#: The ``compat`` values :func:`write` accepts.
COMPAT_MODES = ("native", "lossy")

_COMPRESS_MIN_SIZE = 16  # arrays smaller than this are stored uncompressed


def _lcpl(coding: int) -> h5p.PropLCID:
    lcpl = h5p.create(h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    lcpl.set_char_encoding(coding)
    return lcpl


class _Plain:
    """Creates small unchunked datasets as h5py's ``create_dataset(key, data=arr)`` does
    (same datatype, dataspace, no time stamps, link name encoding), with the low-level
    API: ~half the time per dataset, the bulk of a many-node graph's write."""

    def __init__(self) -> None:
        self.dcpl = h5p.create(h5p.DATASET_CREATE)
        self.dcpl.set_obj_track_times(False)
        self.lcpl = {h5t.CSET_ASCII: _lcpl(h5t.CSET_ASCII), h5t.CSET_UTF8: _lcpl(h5t.CSET_UTF8)}
        self.types: dict[np.dtype, h5t.TypeID] = {}

    def __call__(self, group: h5py.Group, key: str, arr: np.ndarray) -> h5py.Dataset:
        try:
            name, coding = key.encode("ascii"), h5t.CSET_ASCII
        except UnicodeEncodeError:
            name, coding = key.encode("utf8"), h5t.CSET_UTF8
        tid = self.types.get(arr.dtype)
        if tid is None:
            tid = self.types[arr.dtype] = h5t.py_create(arr.dtype, logical=True)
        space = h5s.create(h5s.SCALAR) if arr.ndim == 0 else h5s.create_simple(arr.shape)
        dsid = h5d.create(group.id, name, tid, space, dcpl=self.dcpl, lcpl=self.lcpl[coding])
        if arr.size:
            dsid.write(h5s.ALL, h5s.ALL, arr)
        return h5py.Dataset(dsid)


_PLAIN = _Plain()
_STR = h5py.string_dtype()


class _Target:
    """A group being written, and the reader's walk of what is written under it, in the
    reader's order (:func:`~nirbridge.io.decode.seal_steps` seals the file from it
    without walking it again): ``["group", path, tag, names]`` and ``["dataset", path,
    dataset, tag, broadcast shape, known]``, each step as its object is created."""

    __slots__ = ("group", "path", "steps", "index")

    def __init__(self, group: h5py.Group, path: str, steps: list[list[Any]],
                 index: dict[str, list[Any]]) -> None:
        self.group = group
        self.path = path
        self.steps = steps
        self.index = index

    def _add(self, key: str, step: list[Any]) -> None:
        self.steps.append(step)
        self.index[step[1]] = step
        parent = self.index.get(self.path)
        if parent is not None:
            parent[3].append(key)

    def create_group(self, key: str) -> _Target:
        path = f"{self.path}/{key}"
        self._add(key, ["group", path, None, []])
        return _Target(self.group.create_group(key, track_order=True), path, self.steps,
                       self.index)

    def added(self, key: str, ds: h5py.Dataset, known: tuple[Any] | None = None
              ) -> h5py.Dataset:
        """Record ``ds``; ``known``: ``(raw,)``, what a reader will get from it, where the
        writer knows it exactly (else the seal reads it back)."""
        self._add(key, ["dataset", f"{self.path}/{key}", ds, None, None, known])
        return ds

    def create_dataset(self, key: str, **options: Any) -> h5py.Dataset:
        return self.added(key, self.group.create_dataset(key, **options))

    def plain(self, key: str, arr: np.ndarray) -> h5py.Dataset:
        # what h5py's ds[()] returns for it: the same dtype and shape, a scalar for 0-d,
        # UTF-8 bytes for a string (the seal then needs no read back: ~40 us a dataset)
        raw = arr.reshape(-1)[0].encode("utf-8") if arr.dtype.kind == "O" else \
            (arr[()] if arr.ndim == 0 else arr)
        return self.added(key, _PLAIN(self.group, key, arr), (raw,))

    def tag(self, key: str, obj: h5py.Dataset | _Target, tag: str) -> None:
        (obj.group if isinstance(obj, _Target) else obj).attrs[TYPE_ATTR] = tag
        step = self.index[f"{self.path}/{key}"]
        step[2 if step[0] == "group" else 3] = tag

    def broadcast(self, key: str, ds: h5py.Dataset, shape: tuple[int, ...]) -> None:
        ds.attrs[BROADCAST_ATTR] = value = np.array(shape, dtype=np.int64)
        self.index[f"{self.path}/{key}"][4] = value


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


def _bits(arr: np.ndarray) -> np.ndarray | None:
    """``arr``'s values as unsigned integers of the same width (equal bits, so that -0.0
    and 0.0 differ and NaN equals itself), or None for other dtypes."""
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize not in (1, 2, 4, 8):
        return None
    return np.ascontiguousarray(arr).view(f"u{arr.dtype.itemsize}")


def broadcast_source(arr: np.ndarray) -> np.ndarray | None:
    """The smallest array that ``np.broadcast_to`` turns back into ``arr`` bit for bit
    (length 1 along every axis whose values all repeat), or None when there is none
    smaller (or the dtype is not a number)."""
    bits = _bits(arr)
    if bits is None:
        return None
    src = bits
    for axis in range(arr.ndim):
        if src.shape[axis] < 2:
            continue
        first = src.take([0], axis=axis)
        # a weight tensor differs between its first two slices: no full pass over it
        if not np.array_equal(src.take([1], axis=axis), first):
            continue
        if np.array_equal(src, np.broadcast_to(first, src.shape)):
            src = first
    if src.size == bits.size:
        return None
    return np.ascontiguousarray(src).view(arr.dtype)


def _one_chunk(arr: np.ndarray) -> tuple[int, ...] | bool:
    # one chunk per array (HDF5 caps a chunk at 4 GiB): one checksum, one read
    return tuple(arr.shape) if arr.nbytes < 2**30 else True


def _write_array(group: _Target, key: str, arr: np.ndarray,
                 unbroadcast: bool = False) -> h5py.Dataset:
    """Store ``arr`` as ``group[key]``; every reader of HDF5 gets ``arr`` back, except for
    ``unbroadcast`` arrays (see below), which :func:`read` restores.

    Arrays of 16 or more numbers are chunked and carry HDF5's Fletcher-32 checksum, so
    corrupted values fail to read, loudly, instead of loading silently. How they are
    stored is chosen for speed (measured in bench/export_resnet18.py):

    - one value repeated (a parameter given one value per layer and broadcast to every
      neuron): no data at all, the value is the dataset's HDF5 fill value, which every
      HDF5 reader returns for the whole array (stock ``nir.read`` included);
    - values repeating along some axis (a per-channel parameter broadcast over the
      feature map): with ``unbroadcast`` (a custom node's parameter: no stock reader
      reads those nodes) the smaller array and the attribute ``nirbridge_broadcast`` (the
      full shape); otherwise gzip level 1 after HDF5's byte shuffle, which makes such
      runs ~1000x smaller at ~40 MB/s;
    - anything else (weights): raw. Trained float64 weights do not compress: gzip saved
      6 % of a ResNet-18's weights at ten times the write time and twenty times the read
      time of storing them raw.
    """
    if arr.dtype.kind in "UO":
        flat = arr.reshape(-1).tolist()
        if not all(isinstance(v, str) for v in flat):
            raise TypeError(f"an array of dtype {arr.dtype} holding non-strings")
        data = np.array(flat, dtype=object).reshape(arr.shape)
        return group.create_dataset(key, data=data, dtype=h5py.string_dtype())
    if arr.ndim == 0 or arr.size < _COMPRESS_MIN_SIZE:
        if arr.dtype.kind in "biuf" and arr.dtype.isnative:
            # (np.ascontiguousarray would make a 0-d array 1-d)
            return group.plain(key, arr if arr.flags.c_contiguous else arr.copy())
        return group.create_dataset(key, data=arr, dtype=arr.dtype)
    src = broadcast_source(arr)
    if src is not None and src.size == 1:
        return group.create_dataset(key, shape=arr.shape, dtype=arr.dtype,
                                    chunks=_one_chunk(arr), fletcher32=True,
                                    fillvalue=src.reshape(-1)[0])
    if src is not None and unbroadcast:
        ds = _write_array(group, key, src)
        group.broadcast(key, ds, arr.shape)
        return ds
    opts: dict[str, Any] = {"chunks": _one_chunk(arr), "fletcher32": True}
    if src is not None:
        opts.update(compression="gzip", compression_opts=1, shuffle=True)
    return group.create_dataset(key, data=arr, dtype=arr.dtype, **opts)


def _write_value(group: _Target, key: str, value: Any, where: str, path: str) -> None:
    """Write ``value`` as ``group[key]`` (dataset or group), tagging types HDF5 would lose."""
    key = _check_key(key, where, path)
    field = f"{path}.{key}" if path else key
    value = _as_array(value)
    try:
        tag: str | None = None
        if isinstance(value, Mapping):
            _write_dict(group.create_group(key), value, where, field)
            return
        if isinstance(value, (list, tuple)):
            tag = "list" if isinstance(value, list) else "tuple"
            kind = _sequence_kind(value)
            if kind is not None or len(value) == 0:
                obj: h5py.Dataset | _Target = (
                    _write_array(group, key, np.array(value, dtype=object))
                    if kind is str else _write_array(group, key, np.asarray(value)))
            else:
                obj = group.create_group(key)
                for i, item in enumerate(value):
                    _write_value(obj, str(i), item, where, field)
            group.tag(key, obj, tag)
            return
        if value is None:
            obj = group.create_dataset(key, data=h5py.Empty("f"))
            tag = "none"
        elif isinstance(value, (str, np.str_)):
            obj = group.plain(key, np.array(str(value), dtype=_STR))
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
            group.tag(key, obj, tag)
    except NirbridgeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InvalidParameterError(
            f"{where}: field '{field}' = {shown} cannot be stored in a .nir file ({exc}); "
            "use numbers, strings, bools, None, arrays, lists, tuples or dicts of them"
        ) from exc


def _write_dict(group: _Target, data: Mapping, where: str, path: str = "") -> None:
    for key, value in data.items():
        _write_value(group, key, value, where, path)


# ================================================================= graph to plain dicts


def _node_dict(name: str, node: nir.NIRNode) -> dict[str, Any]:
    """The dict ``write`` stores for ``node`` (a subgraph becomes a nested graph dict)."""
    if isinstance(node, nir.NIRGraph):
        return _graph_dict(node, f"{name}.")
    try:
        if type(node).to_dict is nir.NIRNode.to_dict:
            # NIRNode.to_dict deep-copies every array (dataclasses.asdict): ~0.2 s for a
            # ResNet-18; the writer only reads them
            data = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)
                    if f.name not in ("input_type", "output_type")}
        else:
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


def _write_graph_dict(group: _Target, data: dict[str, Any], prefix: str = "") -> None:
    group.plain("type", np.array("NIRGraph", dtype=_STR))
    nodes = group.create_group("nodes")
    customs = custom_nodes()  # once: it builds a dict
    for name, node in data["nodes"].items():
        sub = nodes.create_group(name)
        if node.get("type") == "NIRGraph":
            _write_graph_dict(sub, node, f"{prefix}{name}.")
            continue
        where = f"node {prefix + name!r} ({node['type']})"
        custom = customs.get(node["type"])
        params = set(custom.PARAMS) if custom is not None else set()
        for key, value in node.items():
            if (key in params and isinstance(value, np.ndarray) and value.ndim >= 1
                    and value.dtype.kind in "fiu"):
                # a custom node's parameter: no stock reader reads the node, so it may be
                # stored unbroadcast (read() broadcasts it back)
                _write_array(sub, _check_key(key, where, ""), value, unbroadcast=True)
            else:
                _write_value(sub, key, value, where, "")
    _write_array(group, "edges", data["edges"])
    where = f"subgraph {prefix[:-1]!r}" if prefix else "graph"
    _write_value(group, "metadata", data["metadata"], where, "")


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
    with atomic_hdf5(target, track_order=True) as f:
        root = _Target(f, "", [], {})
        root.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        f.attrs[COMPAT_ATTR] = compat
        _write_graph_dict(root.create_group("node"), data)
        seal_steps(f, root.steps)
    for note in notes:
        warnings.warn(note, LossyExportWarning, stacklevel=2)


__all__ = ["BROADCAST_ATTR", "COMPAT_MODES", "TYPE_ATTR", "broadcast_source", "write"]
