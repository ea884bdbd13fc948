"""HDF5 to plain values: the part of reading a ``.nir`` file that runs libhdf5.

:func:`load_tree` opens the file in a child process (:mod:`nirbridge.io.isolated`), checks
it (:func:`nirbridge.io.safety.census`: nothing outside the file, declared sizes bounded),
decodes the ``node`` group into dicts, lists, strings, numbers and numpy arrays while
verifying the checksums (:mod:`nirbridge.io.integrity`), and hands the result back; the
parent builds the graph (:mod:`nirbridge.io.read`). :func:`seal` is the writer's half: the
same walk over a file just written, storing the checksums.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5, h5a, h5d, h5g, h5o, h5p, h5pl, h5s, h5t

from nirbridge.errors import FileFormatError
from nirbridge.io.integrity import (
    DIGEST_ATTR,
    DIGESTS_NAME,
    ROOT_ATTR,
    Checker,
    Integrity,
    digest_table,
)
from nirbridge.io.isolated import call_isolated
from nirbridge.io.safety import DEFAULT_MAX_BYTES, Census, census

#: HDF5 attribute holding the Python type of a value HDF5 alone would not restore.
TYPE_ATTR = "nirbridge_pytype"
#: HDF5 attribute of a dataset holding a smaller array that the reader broadcasts to the
#: shape it gives (a custom node's per-layer or per-channel parameter).
BROADCAST_ATTR = "nirbridge_broadcast"
#: Root attribute: the ``compat`` mode nirbridge wrote the file with.
COMPAT_ATTR = "nirbridge_compat"
#: Seconds a read may take before its size is known (opening, the first links of the
#: structure walk) and added to the limit of every file; see :func:`read_time_limit`.
BASE_READ_S = 10.0
#: Bytes per second of declared data the time limit allows (measured: a 90 MB file in
#: ~0.8 s, ~110 MB/s, on a loaded 2-core machine, checksums and transfer included).
READ_RATE = 50e6
#: Seconds the time limit allows per link (group entry: a node, a field, a metadata
#: value). Measured on the loaded 2-core machine: ~0.1 ms per link for census, decode,
#: checksums and transfer together (a 10,000-node chain, 60,003 links, in ~6 s), so
#: this is a ~10x margin; a small corrupt file (tens of links) is still stopped after
#: ~10 s, and the largest file the census accepts (MAX_LINKS) gets ~17 min.
READ_S_PER_LINK = 1e-3


@dataclasses.dataclass(frozen=True)
class FileTree:
    """A decoded file: ``data`` (the ``node`` group as dicts and values), ``version`` (the
    root ``version`` or None), ``integrity`` and ``declared_bytes``."""

    data: Any
    version: str | None
    integrity: Integrity
    declared_bytes: int


def read_time_limit(declared_bytes: int, links: int = 0) -> float:
    """The default time limit of a read whose file declares ``declared_bytes`` and holds
    ``links`` group entries: :data:`BASE_READ_S`, plus one second per :data:`READ_RATE`
    bytes, plus :data:`READ_S_PER_LINK` per link. Both counts come from the census,
    which bounds them (``max_bytes``, :data:`~nirbridge.io.safety.MAX_LINKS`), so a
    spinning reader is always stopped."""
    return BASE_READ_S + declared_bytes / READ_RATE + links * READ_S_PER_LINK


_TYPE_B = TYPE_ATTR.encode()
_BROADCAST_B = BROADCAST_ATTR.encode()
_DIGEST_B = DIGEST_ATTR.encode()


def _attr_names(oid: Any) -> set[bytes]:
    names: set[bytes] = set()
    h5a.iterate(oid, names.add)  # add returns None: the iteration goes on
    return names


def _attr(oid: Any, names: set[bytes], name: bytes) -> Any:
    """h5py's ``obj.attrs.get(name)`` without building the high-level objects (the walk
    reads ~60,000 attributes on a 10,000-node graph): vlen strings as ``str``, 0-d values
    as scalars; other dtypes go through h5py's own reader."""
    if name not in names:
        return None
    attr = h5a.open(oid, name)
    shape = attr.shape
    dtype = attr.dtype
    if shape is None or dtype.subdtype is not None or dtype.kind not in "SOiuf":
        return h5py.AttributeManager(_HLProxy(oid))[name]
    arr = np.empty(shape, dtype=dtype)
    attr.read(arr, mtype=h5t.py_create(dtype))
    info = h5t.check_string_dtype(dtype)
    if info is not None and info.length is None:
        arr = np.array([b.decode("utf-8", "surrogateescape") for b in arr.flat],
                       dtype=dtype).reshape(arr.shape)
    return arr[()] if arr.ndim == 0 else arr


class _HLProxy:
    """The one attribute h5py's ``AttributeManager`` reads from its parent."""

    def __init__(self, oid: Any) -> None:
        self.id = oid


def _tag_text(tag: Any) -> str | None:
    if isinstance(tag, bytes):
        tag = tag.decode()
    return None if tag is None else str(tag)


def raw_value(dsid: h5d.DatasetID) -> Any:
    """What h5py's ``ds[()]`` returns for the dataset ``dsid`` (None for an empty, null
    dataset), read with the low-level API where the dtype is a plain number or a
    variable-length string (a ~5x shorter path per dataset), through h5py otherwise."""
    space = dsid.get_space()
    kind = space.get_simple_extent_type()
    if kind == h5s.NULL:
        return None
    tid = dsid.get_type()
    dtype = dsid.dtype
    plain = isinstance(tid, (h5t.TypeIntegerID, h5t.TypeFloatID))
    if not plain and isinstance(tid, h5t.TypeStringID) and tid.is_variable_str():
        info = h5t.check_string_dtype(dtype)
        plain = info is not None and info.length is None
    if not plain or kind not in (h5s.SCALAR, h5s.SIMPLE):
        return h5py.Dataset(dsid)[()]
    arr = np.empty(() if kind == h5s.SCALAR else tuple(space.shape), dtype=dtype)
    if arr.size:
        dsid.read(h5s.ALL, h5s.ALL, arr, mtype=h5t.py_create(dtype))
    return arr[()] if arr.ndim == 0 else arr


def _decode_strings(raw: Any, encoding: str) -> Any:
    if isinstance(raw, bytes):
        return raw.decode(encoding)
    arr = np.asarray(raw)
    return np.array([b.decode(encoding) if isinstance(b, bytes) else str(b)
                     for b in arr.reshape(-1).tolist()], dtype=object).reshape(arr.shape)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
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


def _read_dataset(dsid: h5d.DatasetID, path: str, checker: Checker) -> Any:
    names = _attr_names(dsid)
    tag = _tag_text(_attr(dsid, names, _TYPE_B))
    shape = _attr(dsid, names, _BROADCAST_B)
    raw = raw_value(dsid)
    stored = _attr(dsid, names, _DIGEST_B) if checker.reads_attributes else None
    checker.dataset(path, raw, tag, shape, stored)
    if raw is None:
        return None
    info = h5py.check_string_dtype(dsid.dtype)
    if info is not None:
        value = _decode_strings(raw, info.encoding)
        if tag == "list":
            return list(np.asarray(value).tolist())
        if tag == "tuple":
            return tuple(np.asarray(value).tolist())
        if tag == "ndarray":
            return np.array(np.asarray(value).tolist(), dtype=str)
        return value
    value = raw
    if shape is not None:  # a custom node's parameter, stored unbroadcast
        try:
            value = np.array(np.broadcast_to(value, tuple(int(d) for d in shape)))
        except ValueError as exc:
            raise FileFormatError(
                f"dataset {path!r} of shape {list(np.shape(value))} does not broadcast to "
                f"its {BROADCAST_ATTR} shape {list(shape)}: the file is corrupt") from exc
    conv = None if tag is None else _CONVERTERS.get(tag)
    return value if conv is None else conv(value)


def _link_names(gid: h5g.GroupID) -> list[bytes]:
    """The group's entries in the order h5py's ``keys()`` gives them (creation order
    where the group tracks it, else by name)."""
    order = gid.get_create_plist().get_link_creation_order()
    index = h5.INDEX_CRT_ORDER if order & h5p.CRT_ORDER_TRACKED else h5.INDEX_NAME
    names: list[bytes] = []
    gid.links.iterate(names.append, idx_type=index)
    return names


def _read_item(oid: Any, path: str, checker: Checker) -> Any:
    if not isinstance(oid, h5g.GroupID):
        return _read_dataset(oid, path, checker)
    tag = _tag_text(_attr(oid, _attr_names(oid), _TYPE_B))
    raw_names = _link_names(oid)
    names = [n.decode("utf-8", "surrogateescape") for n in raw_names]
    checker.group(path, tag, names)
    base = path.rstrip("/") + "/"
    if tag in ("list", "tuple"):
        index = {n: raw for n, raw in zip(names, raw_names, strict=True)}
        seq = []
        for i in range(len(names)):
            key = str(i)
            if key not in index:
                raise KeyError(f"list group {path!r} has no entry {key!r}")
            seq.append(_read_item(h5o.open(oid, index[key]), base + key, checker))
        return seq if tag == "list" else tuple(seq)
    out = {}
    for key, raw in zip(names, raw_names, strict=True):
        child = h5o.open(oid, raw)
        if isinstance(child, (h5g.GroupID, h5d.DatasetID)):
            out[key] = _read_item(child, base + key, checker)
    return out


def _walk(f: h5py.File, checker: Checker) -> tuple[Any, str | None]:
    root = f.id
    info = root.links.get_info(b"node") if root.links.exists(b"node") else None
    node = h5o.open(root, b"node") if info is not None else None
    if not isinstance(node, h5g.GroupID):
        raise FileFormatError(
            f"is an HDF5 file but not a NIR graph: it has no 'node' group (top-level "
            f"entries: {', '.join(f.keys()) or 'none'})")
    data = _read_item(node, "/node", checker)
    version = None
    if root.links.exists(b"version"):
        raw = h5o.open(root, b"version")
        if isinstance(raw, h5d.DatasetID):
            value = _read_dataset(raw, "/version", checker)
            version = value.decode() if isinstance(value, bytes) else str(value)
    return data, version


def _open(source: Path) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except Exception as exc:
        raise FileFormatError(
            f"not a readable HDF5 file (not HDF5, truncated or corrupt: {exc}); re-export it "
            "or copy it again") from exc


def _stored_table(f: h5py.File) -> np.ndarray | None:
    """The root checksum table (format 2), or None where the file has none."""
    name = DIGESTS_NAME.encode()
    if not f.id.links.exists(name):
        return None
    obj = h5o.open(f.id, name)
    return digest_table(raw_value(obj) if isinstance(obj, h5d.DatasetID) else None)


def _child_read(progress: Callable[[int], None], source: str, max_bytes: int
                ) -> tuple[Any, str | None, bool, str, int]:
    # no filter plugin may load in the reader (census refuses unknown filter ids too)
    while h5pl.size():
        h5pl.remove(0)
    def report(counts: Census) -> None:
        progress([counts.declared_bytes, counts.links])

    with _open(Path(source)) as f:
        counts = census(f, max_bytes, progress=report)
        report(counts)
        declared = counts.declared_bytes
        table = _stored_table(f)
        checker = Checker(verify=True, sealed=ROOT_ATTR in f.attrs, table=table,
                          legacy=True)
        data, version = _walk(f, checker)
        integrity = checker.result(f.attrs.get(ROOT_ATTR), f.attrs.get(COMPAT_ATTR))
    return data, version, integrity.verified, integrity.detail, declared


def load_tree(source: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> FileTree:
    """``source`` decoded in a child process: see the module docs. ``max_bytes`` bounds
    the declared data (default :data:`~nirbridge.io.safety.DEFAULT_MAX_BYTES`);
    ``timeout_s`` bounds the whole read (default :func:`read_time_limit` of the declared
    data and links, growing as the census counts them). Errors carry no file name (the
    caller adds it)."""
    limit_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    if not source.is_file():
        raise FileFormatError("is not a regular file (a device, pipe or socket); give a "
                              ".nir file")

    def budget(counts: list[int]) -> float:
        if timeout_s is not None:
            return timeout_s
        declared, links = (int(v) for v in counts)
        return read_time_limit(declared, links)

    result = call_isolated(
        _child_read, str(source), limit_bytes,
        first_limit_s=timeout_s if timeout_s is not None else BASE_READ_S,
        budget=budget, memory_bytes=2 * limit_bytes,
        what=lambda s: f"could not be read within {s:.3g} s (libhdf5 was stopped; the file "
                       "is corrupt or hostile); if it is a large file you trust, give more "
                       "time with --read-timeout")
    data, version, verified, detail, declared = result
    return FileTree(data, version, Integrity(verified, detail), declared)


def seal(f: h5py.File) -> Integrity:
    """Store the checksums of the file ``f``, open for writing and complete (see
    :mod:`nirbridge.io.integrity`): one walk that reads every dataset back, as
    :func:`load_tree` will, and stores its digest."""
    checker = Checker(verify=False, sealed=False)
    _walk(f, checker)
    return _store_seal(f, checker)


def seal_steps(f: h5py.File, steps: list[list[Any]]) -> Integrity:
    """:func:`seal` from the writer's record of what it created (``["group", path, tag,
    names]``, ``["dataset", path, dataset, tag, broadcast shape, known]``, in creation
    order) instead of a walk of the file: the same checksums (tested), without opening
    every object and listing its links and attributes again. A dataset is read back, as
    the reader will, unless ``known`` is ``(raw,)``: what the writer stored and a
    reader gets (a small plain array or string). The reader's walk visits ``/node``
    then ``/version``."""
    checker = Checker(verify=False, sealed=False)
    tail = []
    for step in steps:
        if step[1] != "/node" and not step[1].startswith("/node/"):
            tail.append(step)
            continue
        _seal_step(checker, step)
    for step in tail:
        if step[1] == "/version":
            _seal_step(checker, step)
    return _store_seal(f, checker)


def _seal_step(checker: Checker, step: list[Any]) -> None:
    if step[0] == "group":
        checker.group(step[1], step[2], list(step[3]))
    else:
        raw = raw_value(step[2].id) if step[5] is None else step[5][0]
        checker.dataset(step[1], raw, step[3], step[4], None)


def _store_seal(f: h5py.File, checker: Checker) -> Integrity:
    if DIGESTS_NAME in f:
        del f[DIGESTS_NAME]
    f.create_dataset(DIGESTS_NAME, data=checker.table_bytes())
    f.attrs[ROOT_ATTR] = np.bytes_(checker.root_digest(f.attrs.get(COMPAT_ATTR)))
    return Integrity(True, f"SHA-256 of {len(checker.leaves)} datasets and the structure")


def unseal(f: h5py.File) -> None:
    """Remove the checksums from the file ``f`` (open for writing), so that a file edited
    by hand reads as another tool's, *unverified*, instead of as corrupt."""
    if ROOT_ATTR in f.attrs:
        del f.attrs[ROOT_ATTR]
    if DIGESTS_NAME in f:
        del f[DIGESTS_NAME]

    def drop(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and DIGEST_ATTR in obj.attrs:
            del obj.attrs[DIGEST_ATTR]

    f.visititems(drop)


__all__ = ["BASE_READ_S", "BROADCAST_ATTR", "COMPAT_ATTR", "FileTree", "READ_RATE",
           "READ_S_PER_LINK",
           "TYPE_ATTR", "load_tree", "raw_value", "read_time_limit", "seal", "seal_steps",
           "unseal"]
