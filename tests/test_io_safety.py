"""A .nir file is self-contained and bounded (issue 13): external links, external raw
storage (a regular file, /dev/urandom, a named pipe), virtual datasets, soft links out,
link loops and decompression bombs are refused before anything is read, naming the
dataset; the reader runs in a child process that a time limit stops and that dies with
its parent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from tiny_graph import tiny_graph

from nirbridge import io
from nirbridge.cli import main
from nirbridge.errors import FileFormatError, UnsafeFileError
from nirbridge.io.isolated import call_isolated

WEIGHT = "node/nodes/fc/weight"


def _own_file(folder: Path) -> Path:
    path = folder / "model.nir"
    io.write(path, tiny_graph())
    return path


def _replace_weight(path: Path, make) -> None:
    """Replace fc's weight (shape [3, 2]) by what ``make(group, name)`` creates."""
    with h5py.File(path, "r+") as f:
        io.unseal(f)
        group = f["node/nodes/fc"]
        del group["weight"]
        make(group, "weight")


def _external(target: str):
    return lambda g, k: g.create_dataset(k, shape=(3, 2), dtype="f8",
                                         external=[(target, 0, 48)])


def _hostile(folder: Path, case: str) -> Path:
    path = _own_file(folder)
    other = folder / "secret.bin"
    other.write_bytes(np.arange(6, dtype="f8").tobytes())
    if case == "external_link":
        donor = folder / "donor.h5"
        with h5py.File(donor, "w") as f:
            f.create_dataset("w", data=np.ones((3, 2)))
        _replace_weight(path, lambda g, k: g.__setitem__(k, h5py.ExternalLink(str(donor), "/w")))
    elif case == "external_file":
        _replace_weight(path, _external(str(other)))
    elif case == "external_device":
        _replace_weight(path, _external("/dev/urandom"))
    elif case == "external_fifo":
        fifo = folder / "pipe"
        os.mkfifo(fifo)
        _replace_weight(path, _external(str(fifo)))
    elif case == "virtual":
        def make(g, k):
            layout = h5py.VirtualLayout(shape=(3, 2), dtype="f8")
            layout[:] = h5py.VirtualSource(str(folder / "donor.h5"), "w", shape=(3, 2))
            g.create_virtual_dataset(k, layout)
        _replace_weight(path, make)
    elif case == "soft_dangling":
        _replace_weight(path, lambda g, k: g.__setitem__(k, h5py.SoftLink("/nowhere/w")))
    elif case == "soft_to_group":
        _replace_weight(path, lambda g, k: g.__setitem__(k, h5py.SoftLink("/node")))
    elif case == "hard_loop":
        _replace_weight(path, lambda g, k: g.__setitem__(k, g))
    elif case == "bomb":  # a gzip dataset of a few bytes declaring 80 GB
        _replace_weight(path, lambda g, k: g.create_dataset(
            k, shape=(100_000, 100_000), dtype="f8", chunks=(1000, 1000), compression="gzip"))
    else:
        raise AssertionError(case)
    return path


CASES = {  # case: what the one-line error must say
    "external_link": "external link",
    "external_file": "external file ('",
    "external_device": "external file ('/dev/urandom')",
    "external_fifo": "external file ('",
    "virtual": "virtual dataset",
    "soft_dangling": "dangling soft link",
    "soft_to_group": "not a dataset",
    "hard_loop": "loop",
    "bomb": "past the read limit",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_file_reaching_outside_itself_or_declaring_too_much_is_refused(case, tmp_path,
                                                                       capsys):
    path = _hostile(tmp_path, case)
    assert main(["inspect", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing of the other file, nothing decoded
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "/node/nodes/fc/weight" in err and CASES[case] in err, err
    if case == "bomb":
        assert "74.5 GiB" in err and "--max-bytes" in err


def test_hostile_files_are_refused_by_the_real_cli_within_the_bound(tmp_path):
    """The cases a hang would show (named pipe, device) and the bomb, through real
    processes: each ends with a one-line error; the timeout only bounds a hang."""
    code = ("import sys, time, json; from nirbridge.cli import main\n"
            "out = []\n"
            "for p in sys.argv[1:]:\n"
            "    t = time.monotonic(); rc = main(['inspect', p, '--json'])\n"
            "    out.append([rc, time.monotonic() - t])\n"
            "print(json.dumps(out))\n")
    paths = []
    for case in ("external_fifo", "external_device", "bomb", "external_link"):
        folder = tmp_path / case
        folder.mkdir()
        paths.append(str(_hostile(folder, case)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True,
                          text=True, timeout=60, env=env)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [rc for rc, _ in results] == [2, 2, 2, 2]
    assert all(seconds < 10 for _, seconds in results)  # a bound on a hang only
    assert len(proc.stderr.strip().splitlines()) == 4 and "Traceback" not in proc.stderr


def test_max_bytes_raises_the_bound_and_a_low_one_refuses_an_ordinary_file(tmp_path, capsys):
    path = _own_file(tmp_path)
    assert main(["inspect", str(path), "--max-bytes", "10"]) == 2
    err = capsys.readouterr().err
    assert "past the read limit of 10 bytes" in err and "--max-bytes" in err
    assert main(["inspect", str(path), "--max-bytes", "1MiB"]) == 0
    assert main(["inspect", str(path), "--max-bytes", "lots"]) == 2
    assert "--max-bytes 'lots' is not a size" in capsys.readouterr().err
    with pytest.raises(UnsafeFileError, match="declares"):
        io.read(path, max_bytes=100)


def test_a_bomb_that_lies_about_its_chunk_is_stopped_by_the_memory_cap(tmp_path):
    """A chunk declared as 8 KB whose gzip stream inflates to 512 MiB: HDF5's deflate filter
    grows its buffer past the declared size, so only the child's address-space cap
    (2 × max_bytes) stops it."""
    path = _own_file(tmp_path)
    comp = zlib.compressobj(9)
    block = bytes(2**20)
    stream = b"".join(comp.compress(block) for _ in range(512)) + comp.flush()
    assert len(stream) < 2**22

    def make(g, k):
        ds = g.create_dataset(k, shape=(3, 2), dtype="f8", chunks=(3, 2),
                              compression="gzip")
        ds.id.write_direct_chunk((0, 0), stream)

    _replace_weight(path, make)
    with pytest.raises(FileFormatError) as err:
        io.read(path, max_bytes=2**20)
    assert "\n" not in str(err.value) and "model.nir" in str(err.value)


def _spin(progress, seconds: float) -> str:
    progress(os.getpid())
    # catastrophic backtracking: the regex engine runs in C and never checks signals
    re.match(r"(a+)+$", "a" * 64 + "b")
    return "finished"


def test_a_reader_spinning_in_c_is_stopped_at_the_time_limit_and_reaped():
    pids: list[int] = []

    def budget(pid: int) -> float:
        pids.append(pid)
        return 1.0

    start = time.monotonic()
    with pytest.raises(UnsafeFileError, match="stopped after 1 s"):
        call_isolated(_spin, 1.0, first_limit_s=5, budget=budget,
                      what=lambda s: f"stopped after {s:g} s")
    assert time.monotonic() - start < 10  # a bound on a hang, not a timing
    assert pids and not Path(f"/proc/{pids[0]}").exists()  # killed and reaped


def test_the_reader_child_dies_with_its_parent(tmp_path):
    code = ("import sys, re, os\n"
            "from nirbridge.io.isolated import call_isolated\n"
            "def spin(progress):\n"
            "    progress(os.getpid()); re.match(r'(a+)+$', 'a' * 64 + 'b')\n"
            "def budget(pid):\n"
            "    print(pid, flush=True); return 600.0\n"
            "call_isolated(spin, first_limit_s=600, budget=budget, what=str)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_named_pipe_or_device_given_as_the_file_is_refused(tmp_path, capsys):
    fifo = tmp_path / "model.nir"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/urandom"):
        assert main(["inspect", path]) == 2
        assert "not a regular file" in capsys.readouterr().err


def test_an_in_file_soft_link_to_a_dataset_still_reads(tmp_path):
    path = _own_file(tmp_path)
    weight = io.read(path).nodes["fc"].weight
    with h5py.File(path, "r+") as f:
        io.unseal(f)
        f["node/store"] = f[WEIGHT][()]
        del f[WEIGHT]
        f[WEIGHT] = h5py.SoftLink("/node/store")
    np.testing.assert_array_equal(io.read(path).nodes["fc"].weight, weight)


def _grows(progress, steps: int) -> str:
    # the budget below allows 1 s per reported step: each report extends the limit
    for k in range(1, steps + 1):
        progress(k)
        time.sleep(0.6)
    return "done"


def test_each_progress_report_extends_the_time_limit():
    # 3 reports, 1.8 s in all: past the first limit (1 s) but within the last (3 s)
    assert call_isolated(_grows, 3, first_limit_s=1, budget=lambda k: float(k),
                         what=str) == "done"
    with pytest.raises(UnsafeFileError, match="stopped at 3"):  # the last limit holds
        call_isolated(_grows, 8, first_limit_s=1, budget=lambda k: float(min(k, 3)),
                      what=lambda s: f"stopped at {s:g}")


def test_the_read_time_limit_counts_the_links_the_census_finds(tmp_path, monkeypatch):
    from nirbridge.io import decode, safety

    assert decode.read_time_limit(0) == decode.BASE_READ_S
    assert decode.read_time_limit(10**8, 60_004) == pytest.approx(
        decode.BASE_READ_S + 10**8 / decode.READ_RATE + 60_004 * decode.READ_S_PER_LINK)
    # a 60-node graph: what the census counts goes to the budget, in steps while it walks
    graph = nir_chain(60)
    path = tmp_path / "chain.nir"
    io.write(path, graph)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(safety, "PROGRESS_EVERY", 64)
    with h5py.File(path, "r") as f:
        counts = safety.census(f, progress=lambda c: seen.append((c.links, c.datasets)))
    assert counts.links > 300 and counts.datasets > 200
    assert [links for links, _ in seen] == list(range(64, counts.links + 1, 64))
    limits = []
    real = decode.read_time_limit
    monkeypatch.setattr(decode, "read_time_limit",
                        lambda b, links=0: limits.append(links) or real(b, links))
    io.read(path)
    assert limits == [*range(64, counts.links + 1, 64), counts.links]  # last: the total
    assert real(counts.declared_bytes, counts.links) < decode.BASE_READ_S + 1


def nir_chain(n: int):
    import nir

    nodes, edges, prev = {"in": nir.Input(np.array([2]))}, [], "in"
    for i in range(n - 2):
        name = f"s{i}" if i % 2 == 0 else f"lif{i}"
        nodes[name] = (nir.Scale(np.ones(2)) if i % 2 == 0 else
                       nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                               v_threshold=np.full(2, 0.5), v_reset=np.zeros(2)))
        edges.append((prev, name))
        prev = name
    nodes["out"] = nir.Output(np.array([2]))
    edges.append((prev, "out"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
