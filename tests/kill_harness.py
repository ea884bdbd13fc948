"""Kill the real ``nirbridge`` command at chosen points and look for what it left.

Used by ``tests/test_kill.py`` (a seeded, bounded set) and ``scripts/soak_kills.py``
(many more, by hand). Each case runs ``python -m nirbridge ...`` in its own session with
a private ``TMPDIR`` and an environment marker that every process it starts inherits
(Lava's included), so that its processes are found in ``/proc`` even after they have
been reparented. Just before the signal, the ``/dev/shm`` files those processes map or
hold open are noted; after it, the checks are:

* no process of the case is alive (SIGTERM/SIGINT/SIGHUP: when the command has exited;
  SIGKILL: within :data:`KILL_GRACE_S`);
* none of the noted ``/dev/shm`` files exists (same times);
* the private ``TMPDIR`` holds nothing but the stale temporary folders a SIGKILL may
  leave to the next command (after SIGTERM/SIGINT: nothing at all; after a SIGKILL
  during a Lava run: nothing of the run);
* the output folder holds only complete outputs (each one readable whole) and, after a
  SIGKILL only, hidden temporary files that carry the dead command's pid;
* after SIGTERM/SIGINT the command exits with ``128 + signal``, with no traceback on
  stderr (or, if it had already finished, with 0 or killed by the signal while the
  interpreter was exiting, after ``main()`` returned).

A signal in the first ~0.15 s of the interpreter's start-up, before ``nirbridge``'s
``main()`` installs its handlers, meets Python's defaults (nothing has been written yet);
the cases' points start after that (:data:`START_S`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MARK = "NIRBRIDGE_KILL_CASE"
KILL_GRACE_S = 5.0
#: Earliest signal point of a case: the interpreter has started and ``main()`` runs.
START_S = 0.3
REPO = Path(os.environ.get("NIRBRIDGE_KILL_REPO") or Path(__file__).resolve().parent.parent)


#: What nirbridge's temporary names carry: its pid after ``nirbridge-`` (docs/processes.md).
_OWNER = re.compile(r"(?:\A|\.)nirbridge-(\d+)-")


def owner_pid(name: str) -> int | None:
    m = _OWNER.search(name)
    return int(m.group(1)) if m else None


@dataclass
class Case:
    """One command to start and stop: ``argv`` after ``nirbridge``; ``sig`` sent
    ``delay`` seconds after start, or, when ``after_child``, ``delay`` seconds after the
    first process it starts (the Lava run's) appears."""

    name: str
    argv: list[str]
    sig: int
    delay: float
    after_child: bool = False
    outputs: list[str] = field(default_factory=list)  # relative to the case folder


@dataclass
class Outcome:
    case: Case
    returncode: int | None
    stderr: str
    child_seen: bool
    problems: list[str]
    seconds: float
    stop_s: float | None = None  # from the signal to the command's exit


# ------------------------------------------------------------------------------ /proc
def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "X"


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARK=marker``."""
    want = f"{MARK}={marker}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if want in env and _state(int(entry)) not in ("Z", "X"):
            out.append(int(entry))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def forks(pid: int, marker: str) -> list[int]:
    """Processes of the case forked from the command (the same command line: a Lava
    run's process, Lava's own), not programs it runs (``ldconfig`` from an import)."""
    me = _cmdline(pid)
    return [p for p in marked_pids(marker) if p != pid and me and _cmdline(p) == me]


def shm_used_by(pids: Iterable[int]) -> set[str]:
    """``/dev/shm`` files (not semaphores) that ``pids`` map or hold open."""
    names: set[str] = set()
    for pid in pids:
        paths = []
        try:
            with open(f"/proc/{pid}/maps") as fh:
                paths += [ln.split(None, 5)[5].strip() for ln in fh
                          if len(ln.split(None, 5)) == 6]
        except OSError:
            pass
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
        except OSError:
            pass
        for p in paths:
            if p.startswith("/dev/shm/") and not p.endswith("(deleted)"):
                name = os.path.basename(p)
                if not name.startswith("sem."):
                    names.add(name)
    return names


# ----------------------------------------------------------------------------- a case
def _env(tmpdir: Path, marker: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TMPDIR=str(tmpdir), PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]), **{MARK: marker})
    env.pop("NIRBRIDGE_DEBUG", None)
    return env


def start(case: Case, folder: Path) -> tuple[subprocess.Popen, Path, str]:
    """Start ``case`` in ``folder`` (its outputs go there; its TMPDIR is ``folder/tmp``)."""
    folder.mkdir(parents=True, exist_ok=True)
    # short: multiprocessing's socket paths in it must stay within AF_UNIX's 108 bytes
    tmpdir = Path(tempfile.mkdtemp(prefix="nbkill-", dir="/tmp"))
    marker = f"{os.getpid()}-{case.name}-{time.monotonic_ns()}"
    # stderr to a file, not a pipe: an orphan holding the pipe must not make us wait
    with open(folder.parent / f"{folder.name}.stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nirbridge", *case.argv], cwd=folder,
                                env=_env(tmpdir, marker), stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    return proc, tmpdir, marker


def _wait_for(cond: Callable[[], bool], limit: float, step: float = 0.02) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def run_case(case: Case, folder: Path, check_output: Callable[[Path], str | None],
             child_limit: float = 60.0) -> Outcome:
    """Run ``case`` in ``folder``, signal it, and check what is left (see the module).
    ``check_output(path)``: why an output file that exists is not whole (None: fine)."""
    t0 = time.monotonic()
    proc, tmpdir, marker = start(case, folder)
    child_seen = False
    if case.after_child:
        child_seen = _wait_for(lambda: proc.poll() is not None or bool(forks(proc.pid, marker)),
                               child_limit)
        child_seen = child_seen and proc.poll() is None
    end = time.monotonic() + max(case.delay, 0.0 if case.after_child else START_S)
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    noted_pids = marked_pids(marker)
    noted_shm = shm_used_by(noted_pids)
    sent = None
    if proc.poll() is None:
        child_seen = child_seen or bool(forks(proc.pid, marker))
        sent = time.monotonic()
        try:
            os.kill(proc.pid, case.sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return Outcome(case, None, "", child_seen, ["did not end within 60 s of the signal"],
                       time.monotonic() - t0)
    err = (folder.parent / f"{folder.name}.stderr").read_text(errors="replace")
    stop_s = None if sent is None else time.monotonic() - sent
    killed = case.sig == signal.SIGKILL
    problems: list[str] = []
    grace = KILL_GRACE_S if killed else 0.0

    def left() -> list[str]:
        out = []
        alive = marked_pids(marker)
        if alive:
            out.append(f"processes alive: {alive}")
        shm = sorted(n for n in noted_shm if os.path.exists(f"/dev/shm/{n}"))
        if shm:
            out.append(f"/dev/shm files left: {shm}")
        run_dirs = [n for n in os.listdir(tmpdir) if not killed or "-lava-" in n
                    or n.startswith("pymp-")]
        if run_dirs:
            out.append(f"TMPDIR holds {run_dirs}")
        return out

    if not _wait_for(lambda: not left(), grace, 0.05):
        problems += left()
    if killed:
        strays = [n for n in os.listdir(tmpdir) if owner_pid(n) != proc.pid]
        if strays:
            problems.append(f"TMPDIR holds unrecognisable leftovers {strays}")
    rc = proc.returncode
    if not killed:
        # a signal after main() returned meets Python's default handler: the command
        # had finished (its outputs are there) and the interpreter was exiting
        finished = bool(case.outputs) and all((folder / o).exists() for o in case.outputs)
        if rc not in (0, 128 + case.sig) and not (finished and rc == -case.sig):
            problems.append(f"exit code {rc}, expected {128 + case.sig} (or 0)")
        if "Traceback" in err or "Exception ignored" in err:
            problems.append(f"stderr shows a traceback: {err[-800:]}")
    problems += _check_outputs(folder, case, proc.pid, killed, check_output)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return Outcome(case, rc, err, child_seen, problems, time.monotonic() - t0, stop_s)


def _check_outputs(folder: Path, case: Case, pid: int, killed: bool,
                   check_output: Callable[[Path], str | None]) -> list[str]:
    problems = []
    for name in os.listdir(folder):
        if not name.startswith("."):
            continue
        if not killed:
            problems.append(f"temporary file left beside the outputs: {name}")
        elif owner_pid(name) != pid:
            problems.append(f"unrecognisable temporary file beside the outputs: {name}")
    for out in case.outputs:
        path = folder / out
        if path.exists():
            why = check_output(path)
            if why:
                problems.append(f"{out} is not whole: {why}")
    return problems


def run_cases(cases: list[tuple[Case, Path]], check_output: Callable[[Path], str | None],
              parallel: int = 2) -> list[Outcome]:
    """Run ``cases`` (each with its own folder), ``parallel`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda cf: run_case(cf[0], cf[1], check_output), cases))
