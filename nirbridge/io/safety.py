"""What a ``.nir`` file may contain before any of its data is read.

An HDF5 file can make its reader open other files (external links, external raw storage,
virtual datasets), run filter plugins, follow links in loops and allocate whatever its
headers declare. :func:`census` walks the file's links and object headers with h5py's
low-level API, reading no dataset, and refuses (:class:`~nirbridge.errors.UnsafeFileError`,
naming the dataset) everything a graph file does not need:

- external links, and soft links that are dangling, lead through another soft or external
  link, or point at a group (a loop);
- datasets whose raw data lives in other files (``H5Pset_external``), virtual datasets,
  and filters other than HDF5's built-in ones (an unknown filter id makes libhdf5 load a
  plugin, i.e. run code);
- hard-link loops, nesting deeper than :data:`MAX_DEPTH` and more than
  :data:`MAX_LINKS` links;
- declared sizes (every dataset's shape × item size, or its chunk when larger, and every
  attribute's) summing past ``max_bytes``: a decompression bomb (a small gzip dataset
  declaring a huge shape) is refused here, before anything is allocated.

A user block (arbitrary bytes before the HDF5 superblock) is harmless: the library only
skips it, so it is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import h5py
from h5py import h5a, h5d, h5g, h5l, h5o, h5s, h5t, h5z

from nirbridge.errors import UnsafeFileError

#: The default bound on a file's declared data, in bytes (2 GiB): ~20 times a float64
#: ResNet-18 (90 MB), and what a reader can hold twice (file and graph) on an 8 GB machine.
DEFAULT_MAX_BYTES = 2 * 2**30
#: The most links (entries of groups) a file may hold: a 10,000-node graph has ~80,000.
MAX_LINKS = 1_000_000
#: The deepest group nesting a file may have (nirbridge writes at most ~6 levels).
MAX_DEPTH = 64
#: The census reports its counts so far every this many links (see :func:`census`).
PROGRESS_EVERY = 4096
#: HDF5's built-in filters (compiled into libhdf5 or registered by h5py); any other id
#: would make libhdf5 search its plugin path and load a shared library.
SAFE_FILTERS = frozenset({h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32,
                          h5z.FILTER_SZIP, h5z.FILTER_NBIT, h5z.FILTER_SCALEOFFSET,
                          h5z.FILTER_LZF})


@dataclasses.dataclass(frozen=True)
class Census:
    """What a file declares: ``declared_bytes`` (datasets and attributes), ``links``,
    ``datasets``."""

    declared_bytes: int
    links: int
    datasets: int


def size_text(n: int) -> str:
    """``n`` bytes in a short human form (``1.5 GiB``)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _space_points(space: h5s.SpaceID) -> tuple[int, tuple[int, ...]]:
    kind = space.get_simple_extent_type()
    if kind == h5s.NULL:
        return 0, ()
    if kind == h5s.SCALAR:
        return 1, ()
    shape = tuple(int(d) for d in space.shape)
    n = 1
    for d in shape:
        n *= d
    return n, shape


class _Walk:
    def __init__(self, fid: h5py.h5f.FileID, max_bytes: int,
                 progress: Callable[[Census], None] | None) -> None:
        self.fid = fid
        self.max_bytes = max_bytes
        self.progress = progress
        self.declared = 0
        self.links = 0
        self.datasets = 0

    def counts(self) -> Census:
        return Census(self.declared, self.links, self.datasets)

    def refuse(self, path: str, why: str) -> UnsafeFileError:
        return UnsafeFileError(f"entry {path!r} is {why}: a .nir file must be "
                               "self-contained, so nirbridge does not read it")

    def add(self, path: str, nbytes: int, what: str) -> None:
        self.declared += nbytes
        if self.declared > self.max_bytes:
            raise UnsafeFileError(
                f"{what} {path!r} declares {size_text(nbytes)}, which brings the file's "
                f"declared data to {size_text(self.declared)}, past the read limit of "
                f"{size_text(self.max_bytes)} ({self.max_bytes} bytes); nothing was "
                "allocated. If you trust the file, raise the limit with --max-bytes "
                "(read(..., max_bytes=))")

    def attributes(self, obj: h5o.ObjectID, path: str) -> None:
        for i in range(h5o.get_info(obj).num_attrs):
            attr = h5a.open(obj, index=i)
            n, _ = _space_points(attr.get_space())
            name = attr.get_name().decode(errors="replace")
            self.add(f"{path}@{name}", n * attr.get_type().get_size(), "attribute")

    def dataset(self, ds: h5d.DatasetID, path: str) -> None:
        self.datasets += 1
        dcpl = ds.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5d.VIRTUAL:
            raise self.refuse(path, "a virtual dataset (its data lives in other files)")
        if dcpl.get_external_count() > 0:
            name = dcpl.get_external(0)[0].decode(errors="replace")
            raise self.refuse(path, f"a dataset stored in an external file ({name!r})")
        for i in range(dcpl.get_nfilters()):
            code = dcpl.get_filter(i)[0]
            if code not in SAFE_FILTERS:
                raise self.refuse(path, f"a dataset with filter id {code} (not one of HDF5's "
                                        "built-in filters: reading it would load a plugin)")
        n, _ = _space_points(ds.get_space())
        itemsize = ds.get_type().get_size()
        nbytes = n * itemsize
        if layout == h5d.CHUNKED:
            chunk = 1
            for d in dcpl.get_chunk():
                chunk *= int(d)
            nbytes = max(nbytes, chunk * itemsize)  # a chunk is decoded whole
        self.add(path, nbytes, "dataset")

    def soft_link(self, group_path: str, path: str, target: bytes) -> None:
        """A soft link may only name an existing dataset of this file, reached through
        hard links."""
        text = target.decode(errors="replace")
        full = text if text.startswith("/") else f"{group_path.rstrip('/')}/{text}"
        parts = [p for p in full.split("/") if p and p != "."]
        if ".." in parts:
            raise self.refuse(path, f"a soft link to {text!r} (a relative path out)")
        here = h5g.open(self.fid, b"/")
        for k, part in enumerate(parts):
            name = part.encode()
            if not here.links.exists(name):
                raise self.refuse(path, f"a dangling soft link to {text!r}")
            if here.links.get_info(name).type != h5l.TYPE_HARD:
                raise self.refuse(path, f"a soft link to {text!r} through another link")
            obj = h5o.open(here, name)
            if k < len(parts) - 1:
                if not isinstance(obj, h5g.GroupID):
                    raise self.refuse(path, f"a dangling soft link to {text!r}")
                here = obj
            elif not isinstance(obj, h5d.DatasetID):
                raise self.refuse(path, f"a soft link to {text!r}, which is not a dataset "
                                        "(links to groups can loop)")
            else:
                self.dataset(obj, path)
        if not parts:
            raise self.refuse(path, f"a soft link to {text!r}, the root group (a loop)")

    def group(self, gid: h5g.GroupID, path: str, ancestors: tuple[int, ...]) -> None:
        if len(ancestors) > MAX_DEPTH:
            raise UnsafeFileError(f"group {path!r} is nested deeper than {MAX_DEPTH} levels; "
                                  "nirbridge does not read the file")
        self.attributes(gid, path)
        entries: list[tuple[bytes, int]] = []

        def collect(name: bytes, info: h5l.LinkInfo) -> None:
            entries.append((name, info.type))

        gid.links.iterate(collect, info=True)
        for name, kind in entries:
            self.links += 1
            if self.links > MAX_LINKS:
                raise UnsafeFileError(f"group {path!r}: the file has more than {MAX_LINKS} "
                                      "links; nirbridge does not read it")
            if self.progress is not None and self.links % PROGRESS_EVERY == 0:
                self.progress(self.counts())
            child = f"{path.rstrip('/')}/{name.decode(errors='replace')}"
            if kind == h5l.TYPE_EXTERNAL:
                filename, _ = gid.links.get_val(name)
                raise self.refuse(child, "an external link (to "
                                  f"{filename.decode(errors='replace')!r})")
            if kind == h5l.TYPE_SOFT:
                self.soft_link(path, child, gid.links.get_val(name))
                continue
            if kind != h5l.TYPE_HARD:
                raise self.refuse(child, f"a user-defined link (type {kind})")
            obj = h5o.open(gid, name)
            addr = h5o.get_info(obj).addr
            if addr in ancestors:
                raise self.refuse(child, "a hard link to one of its own parent groups (a loop)")
            if isinstance(obj, h5g.GroupID):
                self.group(obj, child, (*ancestors, addr))
            elif isinstance(obj, h5d.DatasetID):
                self.attributes(obj, child)
                self.dataset(obj, child)
            elif not isinstance(obj, h5t.TypeID):
                raise self.refuse(child, "an object of unknown kind")


def census(f: h5py.File, max_bytes: int = DEFAULT_MAX_BYTES, *,
           progress: Callable[[Census], None] | None = None) -> Census:
    """Walk every link and object header of the open file ``f`` (no dataset is read) and
    refuse what a self-contained graph file cannot hold (see the module docs); returns
    the file's :class:`Census`. Raises :class:`~nirbridge.errors.UnsafeFileError` naming
    the dataset (or attribute, ``path@name``). ``progress`` receives the counts so far
    every :data:`PROGRESS_EVERY` links (the reader's time limit grows with them)."""
    walk = _Walk(f.id, int(max_bytes), progress)
    root = h5g.open(f.id, b"/")
    walk.group(root, "/", (h5o.get_info(root).addr,))
    return walk.counts()


__all__ = ["Census", "DEFAULT_MAX_BYTES", "MAX_DEPTH", "MAX_LINKS", "PROGRESS_EVERY",
           "SAFE_FILTERS", "census", "size_text"]
