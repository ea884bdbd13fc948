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
from h5py import h5pl

from nirbridge.errors import FileFormatError
from nirbridge.io.integrity import DIGEST_ATTR, ROOT_ATTR, Checker, Integrity
from nirbridge.io.isolated import call_isolated
from nirbridge.io.safety import DEFAULT_MAX_BYTES, census

#: HDF5 attribute holding the Python type of a value HDF5 alone would not restore.
TYPE_ATTR = "nirbridge_pytype"
#: HDF5 attribute of a dataset holding a smaller array that the reader broadcasts to the
#: shape it gives (a custom node's per-layer or per-channel parameter).
BROADCAST_ATTR = "nirbridge_broadcast"
#: Root attribute: the ``compat`` mode nirbridge wrote the file with.
COMPAT_ATTR = "nirbridge_compat"
#: Seconds a read may take before its declared data is known (opening, the structure walk)
#: and added to the limit for a small file; see :func:`read_time_limit`.
BASE_READ_S = 10.0
#: Bytes per second of declared data the time limit allows (measured: a 90 MB file in
#: ~0.8 s, ~110 MB/s, on a loaded 2-core machine, checksums and transfer included).
READ_RATE = 50e6


@dataclasses.dataclass(frozen=True)
class FileTree:
    """A decoded file: ``data`` (the ``node`` group as dicts and values), ``version`` (the
    root ``version`` or None), ``integrity`` and ``declared_bytes``."""

    data: Any
    version: str | None
    integrity: Integrity
    declared_bytes: int


def read_time_limit(declared_bytes: int) -> float:
    """The default time limit of a read whose file declares ``declared_bytes``:
    :data:`BASE_READ_S` plus one second per :data:`READ_RATE` bytes."""
    return BASE_READ_S + declared_bytes / READ_RATE


def _tag(obj: h5py.HLObject) -> str | None:
    tag = obj.attrs.get(TYPE_ATTR)
    if isinstance(tag, bytes):
        tag = tag.decode()
    return None if tag is None else str(tag)


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


def _read_dataset(ds: h5py.Dataset, checker: Checker) -> Any:
    tag = _tag(ds)
    shape = ds.attrs.get(BROADCAST_ATTR)
    raw = None if ds.shape is None else ds[()]  # ds.shape None: an empty (null) dataset
    checker.dataset(ds.name, raw, tag, shape, ds.attrs.get(DIGEST_ATTR))
    if raw is None:
        return None
    info = h5py.check_string_dtype(ds.dtype)
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
                f"dataset {ds.name!r} of shape {list(np.shape(value))} does not broadcast to "
                f"its {BROADCAST_ATTR} shape {list(shape)}: the file is corrupt") from exc
    conv = None if tag is None else _CONVERTERS.get(tag)
    return value if conv is None else conv(value)


def _read_item(item: Any, checker: Checker) -> Any:
    if isinstance(item, h5py.Group):
        tag = _tag(item)
        names = list(item.keys())
        checker.group(item.name, tag, names)
        if tag in ("list", "tuple"):
            seq = [_read_item(item[str(i)], checker) for i in range(len(item))]
            return seq if tag == "list" else tuple(seq)
        out = {}
        for key in names:
            child = item[key]
            if isinstance(child, (h5py.Group, h5py.Dataset)):
                out[key] = _read_item(child, checker)
        return out
    return _read_dataset(item, checker)


def _walk(f: h5py.File, checker: Checker) -> tuple[Any, str | None]:
    if "node" not in f or not isinstance(f["node"], h5py.Group):
        raise FileFormatError(
            f"is an HDF5 file but not a NIR graph: it has no 'node' group (top-level "
            f"entries: {', '.join(f.keys()) or 'none'})")
    data = _read_item(f["node"], checker)
    raw = f.get("version")
    version = None
    if isinstance(raw, h5py.Dataset):
        value = _read_dataset(raw, checker)
        version = value.decode() if isinstance(value, bytes) else str(value)
    return data, version


def _open(source: Path) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except Exception as exc:
        raise FileFormatError(
            f"not a readable HDF5 file (not HDF5, truncated or corrupt: {exc}); re-export it "
            "or copy it again") from exc


def _child_read(progress: Callable[[int], None], source: str, max_bytes: int
                ) -> tuple[Any, str | None, bool, str, int]:
    # no filter plugin may load in the reader (census refuses unknown filter ids too)
    while h5pl.size():
        h5pl.remove(0)
    with _open(Path(source)) as f:
        declared = census(f, max_bytes).declared_bytes
        progress(declared)
        checker = Checker(verify=True, sealed=ROOT_ATTR in f.attrs)
        data, version = _walk(f, checker)
        integrity = checker.result(f.attrs.get(ROOT_ATTR), f.attrs.get(COMPAT_ATTR))
    return data, version, integrity.verified, integrity.detail, declared


def load_tree(source: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> FileTree:
    """``source`` decoded in a child process: see the module docs. ``max_bytes`` bounds
    the declared data (default :data:`~nirbridge.io.safety.DEFAULT_MAX_BYTES`);
    ``timeout_s`` bounds the whole read (default :func:`read_time_limit` of the declared
    data). Errors carry no file name (the caller adds it)."""
    limit_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    if not source.is_file():
        raise FileFormatError("is not a regular file (a device, pipe or socket); give a "
                              ".nir file")

    def budget(declared: int) -> float:
        return timeout_s if timeout_s is not None else read_time_limit(declared)

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
    :mod:`nirbridge.io.integrity`)."""
    checker = Checker(verify=False, sealed=False)
    _walk(f, checker)
    for path, digest in checker.leaves.items():
        f[path].attrs[DIGEST_ATTR] = np.bytes_(digest)
    f.attrs[ROOT_ATTR] = np.bytes_(checker.root_digest(f.attrs.get(COMPAT_ATTR)))
    return Integrity(True, f"SHA-256 of {len(checker.leaves)} datasets and the structure")


def unseal(f: h5py.File) -> None:
    """Remove the checksums from the file ``f`` (open for writing), so that a file edited
    by hand reads as another tool's, *unverified*, instead of as corrupt."""
    if ROOT_ATTR in f.attrs:
        del f.attrs[ROOT_ATTR]

    def drop(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and DIGEST_ATTR in obj.attrs:
            del obj.attrs[DIGEST_ATTR]

    f.visititems(drop)


__all__ = ["BASE_READ_S", "BROADCAST_ATTR", "COMPAT_ATTR", "FileTree", "READ_RATE",
           "TYPE_ATTR", "load_tree", "read_time_limit", "seal", "unseal"]
