"""Content checksums of ``.nir`` files: what nirbridge wrote is what it reads back.

HDF5's own Fletcher-32 checksum covers a chunk's bytes only: a corruption of the chunk
index (which says where the chunk is) makes the library return the fill value (zeros) for
the whole array without ever checking it. So :func:`nirbridge.io.write` also stores

- for every dataset, the SHA-256 of what a reader gets from it (its path, dtype, shape,
  the ``nirbridge_pytype`` and ``nirbridge_broadcast`` attributes that decide how it is
  decoded, and its values), all in one root dataset ``nirbridge_sha256`` (``n x 32``
  bytes, in the order of the walk: one read, where an attribute per dataset cost ~25 us
  each to write, census and read on a 10,000-node graph's 40,000 datasets);
- on the root group, the attribute ``nirbridge_checksum``: the SHA-256 of the whole
  structure, in order: every group's path, tag and entry names (node names, field names),
  every dataset's path and checksum, the ``version`` and the ``nirbridge_compat`` mode.

:class:`Checker` recomputes both while the file is decoded (the same walk, one read of
each dataset) and refuses a mismatch naming the node and field. Files nirbridge wrote
before the table (format 1: the digest as each dataset's attribute ``nirbridge_sha256``)
are verified the same way from those attributes. Files without the root attribute
(other tools', and nirbridge's before checksums existed) read as before and are reported
*unverified*; a file with dataset checksums or the table but no root checksum is corrupt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from nirbridge.errors import CorruptFileError

#: Root dataset holding the SHA-256 of every dataset, in the order of the walk (an
#: ``(n, 32)`` uint8 array: one read instead of an attribute per dataset).
DIGESTS_NAME = "nirbridge_sha256"
#: Dataset attribute holding the SHA-256 (hex) of the dataset's content (format 1: files
#: of nirbridge before the table; still verified).
DIGEST_ATTR = "nirbridge_sha256"
#: Root attribute holding the SHA-256 (hex) of the file's structure and dataset checksums.
ROOT_ATTR = "nirbridge_checksum"
_FORMAT_1 = b"nirbridge-checksum-1"
_FORMAT = b"nirbridge-checksum-2"


@dataclasses.dataclass(frozen=True)
class Integrity:
    """Whether a file's content was verified against its checksums (``verified``), and
    in words why (``detail``)."""

    verified: bool
    detail: str

    @property
    def label(self) -> str:
        return "verified" if self.verified else "unverified"


def field_name(path: str) -> str:
    """``/node/nodes/sub/nodes/fc1/metadata/a`` as ``node 'sub.fc1' field 'metadata.a'``
    (the words of an error message)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] != ["node"]:
        return f"entry {path!r}"
    parts = parts[1:]
    names: list[str] = []
    while len(parts) >= 2 and parts[0] == "nodes":
        names.append(parts[1])
        parts = parts[2:]
    field = ".".join(parts)
    if not names:
        return f"graph field {field!r}" if field else "the graph"
    node = ".".join(names)
    return f"node {node!r} field {field!r}" if field else f"node {node!r}"


def _update_value(h: Any, raw: Any) -> None:
    if raw is None:
        h.update(b"N")
    elif isinstance(raw, bytes):
        h.update(b"B%d:" % len(raw) + raw)
    elif isinstance(raw, np.ndarray) and raw.dtype.kind == "O":
        h.update(b"O" + repr(raw.shape).encode())
        for item in raw.reshape(-1).tolist():
            data = item if isinstance(item, bytes) else repr(item).encode()
            h.update(b"%d:" % len(data) + data)
    else:
        arr = np.asarray(raw)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        h.update(b"A" + arr.dtype.str.encode() + repr(arr.shape).encode())
        h.update(arr.reshape(-1).view(np.uint8) if arr.dtype.kind != "V" else arr.tobytes())


def leaf_digest(path: str, raw: Any, tag: str | None, shape_attr: Any) -> str:
    """The checksum of one dataset: ``raw`` is what h5py returned for ``ds[()]``."""
    h = hashlib.sha256(_FORMAT_1)  # the same in both formats: only the root differs
    shown = None if shape_attr is None else [int(d) for d in np.asarray(shape_attr).reshape(-1)]
    h.update(repr((path, tag, shown)).encode())
    _update_value(h, raw)
    return h.hexdigest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _corrupt_table(why: str) -> CorruptFileError:
    return CorruptFileError(f"the checksum table ({DIGESTS_NAME}) {why}: the file is corrupt; "
                            "re-export it or copy it again")


def digest_table(raw: Any) -> np.ndarray:
    """The stored :data:`DIGESTS_NAME` dataset as an ``(n, 32)`` uint8 array; raises
    :class:`CorruptFileError` for anything else."""
    arr = np.asarray(raw) if raw is not None else None
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 32:
        shown = None if arr is None else f"{arr.dtype} {list(arr.shape)}"
        raise _corrupt_table(f"is {shown}, not n x 32 bytes")
    return arr


class Checker:
    """Collects the checksums of a file's walk (groups and datasets, in order); with
    ``verify``, compares each dataset's with the stored one as it goes: the table's
    entry in walk order (``table``, format 2) or the dataset's own attribute (format 1,
    files of nirbridge before the table)."""

    def __init__(self, *, verify: bool, sealed: bool, table: np.ndarray | None = None,
                 legacy: bool = False) -> None:
        self.verify = verify
        self.sealed = sealed
        self.table = table
        self.legacy = legacy and table is None
        self.leaves: dict[str, str] = {}
        self.orphans: list[str] = []
        self._root = hashlib.sha256(_FORMAT_1 if self.legacy else _FORMAT)

    @property
    def reads_attributes(self) -> bool:
        """Whether :meth:`dataset` needs each dataset's :data:`DIGEST_ATTR` (format 1,
        or an unsealed file, where one is a sign of a lost root checksum)."""
        return self.verify and (self.legacy or not self.sealed)

    def group(self, path: str, tag: str | None, names: list[str]) -> None:
        self._root.update(repr(("group", path, tag, names)).encode())

    def dataset(self, path: str, raw: Any, tag: str | None, shape_attr: Any,
                stored: Any) -> None:
        digest = leaf_digest(path, raw, tag, shape_attr)
        index = len(self.leaves)
        self.leaves[path] = digest
        self._root.update(repr(("dataset", path, digest)).encode())
        if not self.verify:
            return
        stored_text = _text(stored)
        if not self.sealed:
            if stored_text is not None:
                self.orphans.append(path)
            return
        if self.table is not None:
            if index < len(self.table) and self.table[index].tobytes() != \
                    bytes.fromhex(digest):
                raise CorruptFileError(f"{field_name(path)}: checksum mismatch: the file is "
                                       "corrupt; re-export it or copy it again")
            return  # a count that differs is the structure's mismatch (result)
        if stored_text is None:
            raise CorruptFileError(f"{field_name(path)}: its checksum is missing: the file is "
                                   "corrupt; re-export it or copy it again")
        if stored_text != digest:
            raise CorruptFileError(f"{field_name(path)}: checksum mismatch: the file is "
                                   "corrupt; re-export it or copy it again")

    def root_digest(self, compat: Any) -> str:
        h = self._root.copy()
        h.update(repr(("compat", _text(compat))).encode())
        return h.hexdigest()

    def table_bytes(self) -> np.ndarray:
        """The leaves' digests as the ``(n, 32)`` table :func:`~nirbridge.io.write`
        stores."""
        data = b"".join(bytes.fromhex(d) for d in self.leaves.values())
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, 32)

    def result(self, stored_root: Any, compat: Any) -> Integrity:
        """The file's :class:`Integrity`; raises :class:`CorruptFileError` when the stored
        root checksum does not match the walk."""
        if not self.sealed:
            if self.orphans:
                raise CorruptFileError(
                    f"{field_name(self.orphans[0])} carries a checksum but the file's root "
                    f"checksum ({ROOT_ATTR}) is missing: the file is corrupt")
            if self.table is not None:
                raise _corrupt_table(f"is present but the file's root checksum ({ROOT_ATTR}) "
                                     "is missing")
            return Integrity(False, "no checksums (written by another tool, or by nirbridge "
                                    "before it stored them)")
        mismatch = self.table is not None and len(self.table) != len(self.leaves)
        if mismatch or _text(stored_root) != self.root_digest(compat):
            raise CorruptFileError(
                "the graph structure (node names, types, fields, edges, metadata): checksum "
                "mismatch: the file is corrupt; re-export it or copy it again")
        return Integrity(True, f"SHA-256 of {len(self.leaves)} datasets and the structure")


__all__ = ["Checker", "DIGESTS_NAME", "DIGEST_ATTR", "Integrity", "ROOT_ATTR", "digest_table",
           "field_name", "leaf_digest"]
