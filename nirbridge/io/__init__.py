"""Read and write ``.nir`` files (NIR's HDF5 layout), nirbridge's custom nodes included.

Layout (the same as ``nir.write``): a root dataset ``version`` and a group ``node`` holding
the graph as a dict: ``type`` = ``"NIRGraph"``, ``nodes/<name>/<field>`` (each node's
``to_dict()``: its type name, parameters, flags and ``metadata``), ``edges`` (an ``(n, 2)``
array of node names) and ``metadata``. Custom nodes are written exactly like standard ones,
under their own type name (their :data:`nirbridge.neurons.NEURONS` entry).

Values keep their type through a round trip: arrays keep dtype and shape; strings are
HDF5 variable-length strings; Python ``bool``/``int``/``float``/``complex``, ``None``,
``bytes``, lists, tuples and 0-d arrays, which HDF5 would turn into numpy scalars or arrays,
carry a small attribute (``nirbridge_pytype``) that :func:`read` uses to restore them and
that other readers ignore. Dicts become groups, in insertion order. Arrays of 16 or more
numbers carry HDF5's Fletcher-32 checksum, so corrupted weights fail to read instead of
loading silently; they are stored for speed: weights raw (they do not compress), a value
repeated over a whole array as the dataset's HDF5 fill value (no data; every HDF5 reader
returns the full array), values repeating along an axis gzip-1 compressed after a byte
shuffle, and a custom node's per-layer or per-channel parameter as the smaller array with
the attribute ``nirbridge_broadcast`` (the full shape), which :func:`read` broadcasts back
(no stock reader reads custom nodes). Files written with gzip by earlier versions read as
before. A value nothing of this can store (an arbitrary
object) makes :func:`write` fail with a message naming the node and the field, and no file
is left behind: files are written to a temporary file in the target directory and moved
into place with ``os.replace``.

``write(..., compat="lossy")`` writes standard NIR nodes only, so that stock ``nir.read``
and tools built on it (snnTorch, Norse, ...) can load the file: see :func:`lossy_graph` for
the approximations. :func:`read` reads nirbridge's own files and files written by stock NIR
or other tools; every problem ends in a :mod:`nirbridge.errors` exception naming the file,
the node and the field. Every file is untrusted: it must be self-contained and declare at
most ``max_bytes`` (:mod:`nirbridge.io.safety`), is decoded in a child process with a time
limit (:mod:`nirbridge.io.isolated`), and the SHA-256 checksums :func:`write` stores are
verified (:mod:`nirbridge.io.integrity`; :func:`read_file` says verified or unverified).
See docs/file_safety.md.
"""

from nirbridge.io.decode import unseal
from nirbridge.io.integrity import Integrity
from nirbridge.io.lossy import (
    LOSSY_KEY,
    ORIGINAL_KEY,
    LossyExportWarning,
    lossy_graph,
    restore_custom_nodes,
)
from nirbridge.io.read import ReadResult, read, read_file
from nirbridge.io.safety import DEFAULT_MAX_BYTES
from nirbridge.io.write import COMPAT_MODES, write
from nirbridge.passes import graph_dt

__all__ = [
    "COMPAT_MODES",
    "DEFAULT_MAX_BYTES",
    "Integrity",
    "LOSSY_KEY",
    "LossyExportWarning",
    "ORIGINAL_KEY",
    "graph_dt",
    "lossy_graph",
    "ReadResult",
    "read",
    "read_file",
    "restore_custom_nodes",
    "unseal",
    "write",
]
