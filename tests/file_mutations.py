"""Seeded mutations of nirbridge's own .nir files (the fuzz test and scripts/soak_files.py):
byte flips, truncations, zeroed ranges, and corruptions aimed at HDF5's structures (chunk
index B-trees, heaps, dataset data, the superblock and root headers)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
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


@dataclasses.dataclass
class Tally:
    """Outcomes of a fuzz run: ``counts`` per outcome; the cases that break the rules
    (``silent``: read without error but different or unverified; ``crashes``: not a
    one-line nirbridge error); the mutants that read, and those refused, per file."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    silent: list[str] = dataclasses.field(default_factory=list)
    crashes: list[str] = dataclasses.field(default_factory=list)
    slowest_s: float = 0.0
    readable: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)
    refused: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


def fuzz_reads(files: list[Path], folder: Path, seed: int, count: int, *,
               timeout_s: float = 3.0, progress: Callable[[int, Tally], None] | None = None
               ) -> Tally:
    """``count`` seeded mutants, spread over ``files``, each read with ``read_file`` (a
    time limit of ``timeout_s``): every read must end in a one-line
    :class:`~nirbridge.errors.NirbridgeError` or give the unmutated graph, verified."""
    import time

    from nirbridge import io
    from nirbridge.errors import NirbridgeError

    rng = np.random.default_rng(seed)
    tally = Tally()
    target = folder / "mutant"
    target.mkdir(exist_ok=True)
    refs = {p: (p.read_bytes(), data_ranges(p), graph_fields(io.read(p))) for p in files}
    for i in range(count):
        src = files[i % len(files)]
        original, ranges, ref = refs[src]
        mutant = mutate(original, ranges, rng)
        path = target / src.name
        path.write_bytes(mutant.data)
        start = time.monotonic()
        where = f"#{i} {src.name} {mutant.kind} {mutant.detail}"
        try:
            got = io.read_file(path, timeout_s=timeout_s)
        except NirbridgeError as exc:
            msg = str(exc)
            tally.add("stopped by the time limit" if "within" in msg
                      else f"refused: {type(exc).__name__}")
            if "\n" in msg or not msg.startswith(str(path)):
                tally.crashes.append(f"{where}: message {msg!r}")
            tally.refused.setdefault(src.name, []).append(mutant.data)
        except BaseException as exc:  # noqa: BLE001 - a crash is what is counted
            tally.crashes.append(f"{where}: {type(exc).__name__}: {exc}")
            tally.add("crash")
        else:
            if got.integrity.verified and same(graph_fields(got.graph), ref):
                tally.add("read, identical")
                tally.readable.setdefault(src.name, []).append(mutant.data)
            else:
                tally.silent.append(f"{where}: {got.integrity}")
                tally.add("SILENTLY DIFFERENT")
        tally.slowest_s = max(tally.slowest_s, time.monotonic() - start)
        if progress is not None:
            progress(i + 1, tally)
    return tally


def command_argvs(folder: Path, nir_path: Path) -> dict[str, list[str]]:
    """Every command that reads a .nir file, on ``nir_path`` with outputs in ``folder``."""
    x = folder / "x.npy"
    f, o = str(nir_path), str(folder)
    return {
        "inspect": ["inspect", f, "--json"],
        "run": ["run", f, "--input", str(x), "-o", f"{o}/r.npz"],
        "profile": ["profile", f, "--input", str(x), "--json", f"{o}/p.json"],
        "verify": ["verify", f, "--input", str(x), "--backends", "reference,fixed",
                   "--json", f"{o}/v.json"],
        "deploy": ["deploy", f, "--fixed-point", "--input", str(x), "--json", f"{o}/d.json"],
        "export-netx": ["export-netx", f, "-o", f"{o}/n.net"],
        "export-onnx": ["export-onnx", f, "-o", f"{o}/o.onnx"],
        "import": ["import", f, "--dt", "1", "-o", f"{o}/i.nir"],
    }


def _untimed(value: Any) -> Any:
    """A JSON report without its wall-clock timings (``seconds``, ``lava_seconds``)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _outputs(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix == ".npz":
            with np.load(p) as z:  # a zip's entries carry the time of writing
                out[p.name] = {k: z[k] for k in z.files}
        elif p.suffix == ".json":
            out[p.name] = _untimed(json.loads(p.read_text()))
        elif p.suffix in (".onnx", ".net", ".nir"):
            out[p.name] = p.read_bytes()
    return out


def run_command(argv: list[str], out_dir: Path) -> tuple[int, str, str, dict[str, Any]]:
    """``nirbridge ARGV`` through ``main()``: exit code, stdout, stderr, output files."""
    import contextlib
    import io as _io

    from nirbridge.cli import main

    for p in out_dir.iterdir():
        if p.suffix in (".npz", ".json", ".onnx", ".net", ".nir"):
            p.unlink()
    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue(), _outputs(out_dir)
