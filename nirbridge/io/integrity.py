"""Content checksums of ``.nir`` files: what nirbridge wrote is what it reads back.

HDF5's own Fletcher-32 checksum covers a chunk's bytes only: a corruption of the chunk
index (which says where the chunk is) makes the library return the fill value (zeros) for
the whole array without ever checking it. So :func:`nirbridge.io.write` also stores

- on every dataset, the attribute ``nirbridge_sha256``: the SHA-256 of what a reader gets
  from it (its path, dtype, shape, the ``nirbridge_pytype`` and ``nirbridge_broadcast``
  attributes that decide how it is decoded, and its values);
- on the root group, the attribute ``nirbridge_checksum``: the SHA-256 of the whole
  structure, in order: every group's path, tag and entry names (node names, field names),
  every dataset's path and checksum, the ``version`` and the ``nirbridge_compat`` mode.

:class:`Checker` recomputes both while the file is decoded (the same walk, one read of
each dataset) and refuses a mismatch naming the node and field. Files without the root
attribute (other tools', and nirbridge's before checksums existed) read as before and are
reported *unverified*; a file with dataset checksums but no root checksum is corrupt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from nirbridge.errors import CorruptFileError

#: Dataset attribute holding the SHA-256 (hex) of the dataset's content.
DIGEST_ATTR = "nirbridge_sha256"
#: Root attribute holding the SHA-256 (hex) of the file's structure and dataset checksums.
ROOT_ATTR = "nirbridge_checksum"
_FORMAT = b"nirbridge-checksum-1"


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
    h = hashlib.sha256(_FORMAT)
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


class Checker:
    """Collects the checksums of a file's walk (groups and datasets, in order); with
    ``verify``, compares each dataset's with its stored attribute as it goes; with
    ``on_digest``, hands each dataset's ``(id, digest)`` to it (the writer's seal stores
    the digest while the dataset is open: no second lookup by path)."""

    def __init__(self, *, verify: bool, sealed: bool,
                 on_digest: Callable[[Any, str], None] | None = None) -> None:
        self.verify = verify
        self.sealed = sealed
        self.on_digest = on_digest
        self.leaves: dict[str, str] = {}
        self.orphans: list[str] = []
        self._root = hashlib.sha256(_FORMAT)

    def group(self, path: str, tag: str | None, names: list[str]) -> None:
        self._root.update(repr(("group", path, tag, names)).encode())

    def dataset(self, path: str, raw: Any, tag: str | None, shape_attr: Any,
                stored: Any, oid: Any = None) -> None:
        digest = leaf_digest(path, raw, tag, shape_attr)
        self.leaves[path] = digest
        self._root.update(repr(("dataset", path, digest)).encode())
        if self.on_digest is not None:
            self.on_digest(oid, digest)
        if not self.verify:
            return
        stored_text = _text(stored)
        if not self.sealed:
            if stored_text is not None:
                self.orphans.append(path)
            return
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

    def result(self, stored_root: Any, compat: Any) -> Integrity:
        """The file's :class:`Integrity`; raises :class:`CorruptFileError` when the stored
        root checksum does not match the walk."""
        if not self.sealed:
            if self.orphans:
                raise CorruptFileError(
                    f"{field_name(self.orphans[0])} carries a checksum but the file's root "
                    f"checksum ({ROOT_ATTR}) is missing: the file is corrupt")
            return Integrity(False, "no checksums (written by another tool, or by nirbridge "
                                    "before it stored them)")
        if _text(stored_root) != self.root_digest(compat):
            raise CorruptFileError(
                "the graph structure (node names, types, fields, edges, metadata): checksum "
                "mismatch: the file is corrupt; re-export it or copy it again")
        return Integrity(True, f"SHA-256 of {len(self.leaves)} datasets and the structure")


__all__ = ["Checker", "DIGEST_ATTR", "Integrity", "ROOT_ATTR", "field_name", "leaf_digest"]
