"""Seeded mutations of nirbridge's own .nir files (the fuzz test and scripts/soak_files.py):
byte flips, truncations, zeroed ranges, and corruptions aimed at HDF5's structures (chunk
index B-trees, heaps, dataset data, the superblock and root headers)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

KINDS = ("flip", "truncate", "zero", "chunk_index", "data", "header", "heap")


def small_files(folder: Path) -> list[Path]:
    """Two small nirbridge files: the tiny graph (arrays < 16 values: stored contiguous,
    without Fletcher-32) and a 16-neuron one (chunked arrays with Fletcher-32, a fill-value
    array, a gzip array, string and list metadata)."""
    from tiny_graph import tiny_graph

    from nirbridge import io

    rng = np.random.default_rng(7)
    n = 16
    big = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([n])),
            "fc": nir.Affine(rng.normal(size=(n, n)), rng.normal(size=n) * 0.1),
            "lif": nir.LIF(tau=np.full(n, 4.0), r=np.ones(n), v_leak=np.zeros(n),
                           v_threshold=np.tile([0.3, 0.5], n // 2), v_reset=np.zeros(n)),
            "output": nir.Output(np.array([n])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": 1.0, "note": "fuzz", "tags": ["a", "b"], "nested": {"k": 3}},
        type_check=False)
    paths = [folder / "tiny.nir", folder / "wide.nir"]
    io.write(paths[0], tiny_graph())
    io.write(paths[1], big)
    return paths


def _signatures(data: bytes, sig: bytes) -> list[int]:
    out, at = [], data.find(sig)
    while at >= 0:
        out.append(at)
        at = data.find(sig, at + 1)
    return out


def data_ranges(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every dataset's stored data (contiguous or its chunks)."""
    out: list[tuple[int, int]] = []

    def visit(_name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.shape is None:
            return
        dsid = obj.id
        if obj.chunks is None:
            off = dsid.get_offset()
            if off is not None and dsid.get_storage_size():
                out.append((int(off), int(dsid.get_storage_size())))
            return
        for i in range(dsid.get_num_chunks()):
            info = dsid.get_chunk_info(i)
            out.append((int(info.byte_offset), int(info.size)))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


@dataclasses.dataclass(frozen=True)
class Mutant:
    kind: str
    detail: str
    data: bytes


def mutate(original: bytes, ranges: list[tuple[int, int]], rng: np.random.Generator
           ) -> Mutant:
    """One seeded mutation of ``original`` (``ranges``: :func:`data_ranges`)."""
    buf = bytearray(original)
    size = len(buf)
    kind = KINDS[int(rng.integers(len(KINDS)))]

    def flip_at(pos: int, count: int = 1) -> str:
        for k in range(count):
            p = min(size - 1, pos + k)
            buf[p] ^= int(rng.integers(1, 256))
        return f"flip {count} at {pos}"

    if kind == "truncate":
        cut = int(rng.integers(0, size))
        return Mutant(kind, f"to {cut} bytes", bytes(buf[:cut]))
    if kind == "zero":
        pos, n = int(rng.integers(0, size)), int(rng.integers(1, 257))
        buf[pos:pos + n] = bytes(len(buf[pos:pos + n]))
        detail = f"{n} bytes at {pos}"
    elif kind == "chunk_index":
        trees = [t for t in _signatures(original, b"TREE") if original[t + 4] == 1]
        if not trees:
            return mutate(original, ranges, rng)
        t = trees[int(rng.integers(len(trees)))]
        if rng.random() < 0.5:  # no chunk left in the index: the library's fill value
            buf[t + 6:t + 8] = b"\0\0"
            detail = f"entries of B-tree at {t} zeroed"
        else:
            detail = flip_at(t + 8 + int(rng.integers(0, 48)), int(rng.integers(1, 4)))
    elif kind == "data" and ranges:
        off, n = ranges[int(rng.integers(len(ranges)))]
        detail = flip_at(off + int(rng.integers(0, max(1, n))), int(rng.integers(1, 3)))
    elif kind == "header":
        detail = flip_at(int(rng.integers(0, min(size, 4096))), int(rng.integers(1, 3)))
    elif kind == "heap":
        heaps = (_signatures(original, b"GCOL") + _signatures(original, b"HEAP")
                 + _signatures(original, b"SNOD"))
        if not heaps:
            return mutate(original, ranges, rng)
        h = heaps[int(rng.integers(len(heaps)))]
        detail = flip_at(h + int(rng.integers(4, 96)), int(rng.integers(1, 4)))
    else:
        detail = flip_at(int(rng.integers(0, size)), int(rng.integers(1, 4)))
    return Mutant(kind, detail, bytes(buf))


def same(a: Any, b: Any) -> bool:
    """Deep, bitwise equality of graph values (arrays: dtype, shape and bits)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind in "OUS":
            return a.tolist() == b.tolist()
        return a.tobytes() == b.tobytes()
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and np.isnan(a):
        return bool(np.isnan(b))
    return bool(a == b)


def graph_fields(graph: nir.NIRGraph) -> dict[str, Any]:
    """Everything of a graph that a command can see, as plain values."""
    nodes = {}
    for name, node in graph.nodes.items():
        fields = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
        nodes[name] = {"type": type(node).__name__, **fields}
    return {"nodes": nodes, "edges": [tuple(e) for e in graph.edges],
            "metadata": dict(graph.metadata or {})}
