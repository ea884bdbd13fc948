"""Temporary files carry their owner's pid and are swept once it is dead; outputs appear
whole (several files together) or not at all, also on a full disk (issue 13)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kill_cases import make_files

from nirbridge import _files
from nirbridge._files import (
    atomic_path,
    make_temp_dir,
    owner_pid,
    save_npz,
    stale_temp_paths,
    sweep_stale,
    temp_dir,
    write_files,
)
from nirbridge.errors import NirbridgeError

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("inputs"))


def _cli(args, cwd, env=None, preexec_fn=None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "nirbridge", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, preexec_fn=preexec_fn, timeout=300)


# ------------------------------------------------------------------------------ naming
def test_temporary_names_carry_the_pid_and_the_block_removes_them(tmp_path):
    path = Path(make_temp_dir("probe", tmp_path))
    assert path.name.startswith(f"nirbridge-{os.getpid()}-probe-")
    assert owner_pid(path.name) == os.getpid()
    _files.remove_tree(path)
    with pytest.raises(KeyboardInterrupt), temp_dir("x") as d:
        assert owner_pid(Path(d).name) == os.getpid()
        raise KeyboardInterrupt  # what SIGINT/SIGTERM become in the CLI
    assert not Path(d).exists()
    for foreign in ("nirbridge-lava-abcdefgh", "nirbridge-12-x", "pymp-abcdefgh",
                    "nirbridge-12-lava-abc", ".out.nir.abcdefgh.tmp", "mine-12-x-abcdefgh"):
        assert owner_pid(foreign) is None, foreign
    assert owner_pid(".out.nir.nirbridge-77-w-ab_cd123.tmp") == 77


def test_sweep_removes_only_what_dead_processes_left(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    made = {}
    for who, pid in (("dead", dead), ("alive", alive), ("me", os.getpid())):
        d = tmp_path / f"nirbridge-{pid}-lava-{who[:4]:_<8}"
        d.mkdir()
        (d / "probe0.npz").write_bytes(b"x")
        made[who] = d
    hidden = tmp_path / f".out.npz.nirbridge-{dead}-w-abcdefgh.tmp"
    hidden.write_bytes(b"partial")
    foreign = [tmp_path / "pymp-abcdefgh", tmp_path / "nirbridge-lava-abcdefgh",
               tmp_path / f"notnirbridge-{dead}-x-abcdefgh"]
    for f in foreign:
        f.mkdir()
    assert sorted(stale_temp_paths(tmp_path)) == sorted([made["dead"], hidden])
    assert stale_temp_paths(tmp_path, target="other.npz") == []
    assert sweep_stale(tmp_path, target="out.npz") == [hidden] and not hidden.exists()
    assert sweep_stale(tmp_path) == [made["dead"]]
    assert made["alive"].exists() and made["me"].exists() and all(f.exists() for f in foreign)


# ------------------------------------------------------------------------ atomic files
def test_atomic_path_sweeps_a_dead_writer_s_leftover_and_cleans_up_on_interrupt(tmp_path):
    target = tmp_path / "out.npz"
    stale = tmp_path / f".out.npz.nirbridge-{_dead_pid()}-w-abcdefgh.tmp"
    live = tmp_path / f".out.npz.nirbridge-{os.getppid()}-w-abcdefgh.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"someone else's")
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        assert owner_pid(tmp.name) == os.getpid() and tmp.parent == tmp_path
        assert not stale.exists()  # swept when the write began
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name])
    save_npz(target, {"a": np.arange(3), "dt": np.asarray(0.5)})
    with np.load(target) as z:
        assert z["a"].tolist() == [0, 1, 2] and float(z["dt"]) == 0.5


def _folder(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir()) if not p.is_dir()}


def test_files_written_together_or_not_at_all(tmp_path, monkeypatch):
    md, a, b = tmp_path / "r.md", tmp_path / "r_a.png", tmp_path / "r_b.png"
    write_files({a: b"A1", b: b"B1", md: b"M1"}, md)
    assert _folder(tmp_path) == {"r.md": b"M1", "r_a.png": b"A1", "r_b.png": b"B1"}
    before = _folder(tmp_path)
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 5:  # the images are in place, the report is next: undo them
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(_files.os, "replace", failing)
    with pytest.raises(KeyboardInterrupt):
        write_files({a: b"A2", b: b"B2", md: b"M2"}, md)
    monkeypatch.setattr(_files.os, "replace", real)
    assert _folder(tmp_path) == before  # the old report whole, nothing hidden left
    # a part that cannot be written (a full disk): nothing new appears, and the error is
    # one line naming the report and the part
    calls.clear()

    def full(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(_files.os, "replace", full)
    with pytest.raises(NirbridgeError, match=r"cannot write .*s\.md \(its file s_a\.png\): "
                       r"No space left on device \(the disk is full"):
        write_files({tmp_path / "s_b.png": b"B", tmp_path / "s_a.png": b"A",
                     tmp_path / "s.md": b"M"}, tmp_path / "s.md")
    monkeypatch.setattr(_files.os, "replace", real)
    assert _folder(tmp_path) == before
    (tmp_path / "t_a.png").mkdir()  # a folder is never replaced
    with pytest.raises(NirbridgeError, match=r"t\.md \(its file t_a\.png\): it is a directory"):
        write_files({tmp_path / "t_a.png": b"A", tmp_path / "t.md": b"M"}, tmp_path / "t.md")
    assert _folder(tmp_path) == before and (tmp_path / "t_a.png").is_dir()


# -------------------------------------------------------------------------- full disk
def _file_size_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))


@pytest.mark.parametrize("argv, name", [
    (["run", "{f}/m.nir", "--input", "{f}/x.npy", "-o", "out.npz"], "out.npz"),
    (["export", "{f}/models.py:make", "--input-shape", "4", "-o", "out.nir"], "out.nir"),
    (["profile", "{f}/m.nir", "--input", "{f}/x.npy", "--report", "out.md"], "out.md"),
    (["profile", "{f}/m.nir", "--input", "{f}/x.npy", "--json", "out.json"], "out.json"),
])
def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(argv, name, files,
                                                                      tmp_path):
    out = _cli([a.format(f=files) for a in argv], tmp_path, preexec_fn=_file_size_limit)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert err.count("\n") == 0, err  # no traceback, no "Exception ignored" lines
    assert f"cannot write {name}" in err and "File too large" in err
    assert list(tmp_path.iterdir()) == []


def test_the_next_command_sweeps_what_a_killed_one_left(files, tmp_path):
    """After a SIGKILL: the pid-named leftovers in TMPDIR and beside an output are
    removed by the next nirbridge command; a live process's are not."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    left = [tmpdir / f"nirbridge-{dead}-lava-abcdefgh", tmp_path / f".out.npz.nirbridge-"
            f"{dead}-w-abcdefgh.tmp"]
    kept = [tmpdir / f"nirbridge-{alive}-lava-abcdefgh", tmpdir / "pymp-abcdefgh"]
    for p in (left[0], *kept):
        p.mkdir()
    left[1].write_bytes(b"partial")
    env = dict(os.environ, TMPDIR=str(tmpdir))
    out = _cli(["run", f"{files}/m.nir", "--input", f"{files}/x.npy", "-o", "out.npz"],
               tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
    with np.load(tmp_path / "out.npz") as z:
        assert z["output"].shape == (12, 2, 3)
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == json.dumps(
        ["out.npz", "tmp"])
