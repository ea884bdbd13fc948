"""How the command ends when told to (issue 13): signals become exceptions that run every
cleanup, a closed stdout pipe is quiet, ``--timeout`` is validated, and a Lava run's own
process enforces its time limit even when nobody asks it to stop."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from kill_harness import shm_used_by
from tiny_graph import needs_lava, tiny_graph, tiny_inputs

import nirbridge
from nirbridge._files import pid_alive
from nirbridge.cli import main
from nirbridge.cli._common import positive_finite_float as positive_seconds
from nirbridge.cli._signals import Interrupted, interrupts_as_exceptions
from nirbridge.errors import InputError, SimulationTimeout

REPO = Path(__file__).resolve().parent.parent


def _env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports nirbridge from this checkout (and
    ``paths``)."""
    path = os.pathsep.join([str(REPO), *map(str, paths), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    nirbridge.write(folder / "tiny.nir", tiny_graph())
    np.save(folder / "x.npy", tiny_inputs())
    return folder


def test_sigterm_and_sigint_become_an_exception_once_and_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cleaned = []
    with interrupts_as_exceptions():
        for sig in (signal.SIGTERM,):
            with pytest.raises(Interrupted) as info:
                try:
                    os.kill(os.getpid(), sig)
                    time.sleep(5)  # the handler raises before this ends
                finally:
                    cleaned.append(sig)
                    os.kill(os.getpid(), signal.SIGINT)  # a second signal: ignored
                    time.sleep(0.05)
        assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
        assert isinstance(info.value, KeyboardInterrupt)
    assert cleaned == [signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_in_a_deferred_block_is_raised_when_the_block_ends():
    """torch's import calls Python back from C++, where an exception aborts the process
    (SIGABRT, seen once in the soak): the CLI defers signals across it."""
    reached = []
    with interrupts_as_exceptions() as guard:
        with pytest.raises(Interrupted) as info:
            with guard.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("end of the block")  # the handler did not raise here
        assert info.value.exit_code == 130 and reached == ["end of the block"]


def test_a_signal_while_the_program_imports_ends_it_at_once():
    """In the program's start-up (build_parser imports torch, nothing is made yet) a
    signal ends the process at once with 130 and one line, instead of being held until
    torch's import ends (~1.5 s, ~6 s under load): nothing after it in the block runs."""
    script = (
        "import os, signal, sys, time\n"
        "from nirbridge.cli._signals import interrupts_as_exceptions\n"
        "with interrupts_as_exceptions() as guard:\n"
        "    with guard.deferred(exit_now=True):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(0.5)\n"
        "        print('still running')\n")
    env = _env()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 130 and out.stdout == ""
    assert out.stderr == "nirbridge: interrupted (SIGINT)\n"


def test_a_closed_stdout_pipe_ends_the_command_quietly(tiny):
    read, write = os.pipe()
    os.close(read)  # closed before the command writes anything: every write fails
    env = _env()
    out = subprocess.run([sys.executable, "-m", "nirbridge", "inspect", str(tiny / "tiny.nir"),
                          "--json"], stdout=write, stderr=subprocess.PIPE, text=True, env=env,
                         timeout=120)
    os.close(write)
    assert out.returncode == 141, out.stderr
    assert out.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m nirbridge inspect "
                       f"{tiny / 'tiny.nir'} --json | head -c 10"],
        capture_output=True, text=True, env=env, timeout=120)
    assert len(shell.stdout) == 10 and shell.stdout.startswith("{")
    assert shell.returncode in (0, 141) and shell.stderr == "", shell.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "ten"])
@pytest.mark.parametrize("command", ["run", "profile", "verify", "deploy"])
def test_timeout_must_be_a_finite_positive_number(command, value, tiny, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, str(tiny / "tiny.nir"), "--input", str(tiny / "x.npy"), "-o" if
              command == "run" else "--json", str(tiny / "o"), f"--timeout={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--timeout" in err and repr(value) in err
    assert not (tiny / "o").exists()


def test_timeout_is_refused_where_no_lava_runs(tiny, capsys):
    assert positive_seconds("2.5") == 2.5 and math.isfinite(positive_seconds("1e3"))
    rc = main(["run", str(tiny / "tiny.nir"), "--input", str(tiny / "x.npy"), "-o",
               str(tiny / "o.npz"), "--timeout", "5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "--timeout 5" in err and "'reference'" in err
    rc = main(["verify", str(tiny / "tiny.nir"), "--input", str(tiny / "x.npy"),
               "--backends", "reference,fixed", "--timeout", "5"])
    assert rc == 2 and "names no Lava backend" in capsys.readouterr().err
    assert not (tiny / "o.npz").exists()


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -3.0])
def test_a_lava_run_refuses_a_limit_that_is_no_limit(bad, tmp_path, monkeypatch):
    from nirbridge.backends.lava import run_lava

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(InputError, match="time limit of a Lava run must be a finite"):
        run_lava(tiny_graph(), tiny_inputs(), timeout_s=bad)
    assert list(tmp_path.iterdir()) == []  # the run's folder is gone too


@pytest.mark.lava
@needs_lava
def test_the_run_s_own_process_enforces_the_time_limit(tmp_path):
    """Nobody polls the run (its parent is busy): past its limit the run's process stops
    itself, its Lava processes and their shared memory, and says why."""
    from test_lava_float import _branch_graph, _inputs

    from nirbridge._files import make_temp_dir
    from nirbridge.backends import lava as lava_backend
    from nirbridge.backends.lava.child import ChildRun, process_group_members
    from nirbridge.backends.lava.plan import plan_run

    net = lava_backend.lower(_branch_graph("lif>"))
    net.replace_process("neuron", "lava_fault_procs.faulty:FaultyNeuron", kind="hang", at=4)
    scratch = make_temp_dir("lava", tmp_path)
    x = {net.inputs[0]: _inputs("lif>").astype(np.float64)}
    plan = plan_run(net, x, set(), scratch)
    run = ChildRun(plan, net.mode, 2.0, lambda n: None, scratch=scratch)
    run.start()
    t0 = time.monotonic()
    seen: set[str] = set()
    while run._proc.is_alive() and time.monotonic() - t0 < 60:
        members = process_group_members(run.pid)
        seen |= shm_used_by(members)
        time.sleep(0.1)
    alone = time.monotonic() - t0
    assert not run._proc.is_alive(), "the run's process did not stop itself"
    assert alone >= 3.5  # its own limit: the parent's 2 s + 2 s, and not before
    assert process_group_members(run.pid) == []
    assert seen and not [n for n in seen if os.path.exists(f"/dev/shm/{n}")]
    assert not Path(scratch).exists()  # it removed its folder itself
    with pytest.raises(SimulationTimeout, match="time limit of 2 s"):
        run.finish()


def test_a_signal_while_the_finished_program_exits_is_ignored(tiny):
    """A SIGINT after the command has ended (its outputs whole) meets the interpreter's
    exit handlers: it is ignored there (exit 0, nothing on stderr), not raised as a
    KeyboardInterrupt inside torch's or multiprocessing's handlers ("Exception ignored
    in atexit callback", their cleanup skipped). The program's own atexit handler,
    registered first, runs last: the signal comes during the teardown."""
    out_file = tiny / "exit-signal.json"
    script = (
        "import atexit, os, signal, sys, time\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
        "from nirbridge.cli import main\n"
        f"sys.argv = ['nirbridge', 'inspect', {str(tiny / 'tiny.nir')!r}, '--json']\n"
        "sys.exit(main())\n")
    env = _env()
    with open(out_file, "w") as fh:
        out = subprocess.run([sys.executable, "-c", script], stdout=fh,
                             stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out_file.read_text().startswith("{")
    # a caller's main([...]) gets its own handlers back
    before = signal.getsignal(signal.SIGINT)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        assert main(["inspect", str(tiny / "tiny.nir")]) == 0
    assert signal.getsignal(signal.SIGINT) is before


_KILLED_WHILE_READING = """
import os, signal, sys, time
import numpy as np
from test_lava_float import _branch_graph, _inputs
from nirbridge._files import new_temp_dir_path
from nirbridge.backends import lava as lava_backend
from nirbridge.backends.lava.child import ChildRun
from nirbridge.backends.lava.plan import plan_run

net = lava_backend.lower(_branch_graph("lif>"))
scratch = new_temp_dir_path("lava")
plan = plan_run(net, {net.inputs[0]: _inputs("lif>").astype(np.float64)}, set(), scratch)
assert not os.path.exists(scratch), "the parent made the run's folder"
run = ChildRun(plan, net.mode, 60.0, lambda n: None, scratch=scratch)
run.start()
while not run.poll(0.1):
    pass
assert run.succeeded and os.listdir(scratch), "the run wrote no probes"
print(scratch, run.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # while it would read the probes
"""


@pytest.mark.lava
@needs_lava
def test_a_parent_killed_after_the_run_leaves_no_folder(tmp_path):
    """The kill-test window that CI once caught: the run has succeeded and the parent is
    killed before it has read the probes and removed the folder. The parent never makes
    the run's folder (the run's process does, so a SIGKILL during planning leaves
    nothing) and the run's process waits for the parent's release or its death, then
    removes it: within 5 s nothing of the run is left."""
    tests = Path(__file__).resolve().parent
    env = _env(tests, TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _KILLED_WHILE_READING], capture_output=True,
                         text=True, env=env, timeout=180)
    assert out.returncode == -signal.SIGKILL, out.stderr
    scratch, pid = out.stdout.split()
    assert Path(scratch).parent == tmp_path
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and (os.path.exists(scratch) or pid_alive(int(pid))):
        time.sleep(0.05)
    assert not os.path.exists(scratch), "the run's folder outlived its parent by 5 s"
    assert not pid_alive(int(pid)), "the run's process outlived its parent by 5 s"
    assert [p.name for p in tmp_path.iterdir()] == []


def test_the_command_s_first_imports_are_light():
    """Until main() installs its handlers, a Ctrl-C meets Python's default (a
    KeyboardInterrupt traceback; seen in the kill soak on a loaded machine): importing
    the command's module must not import numpy, torch, nir or h5py (build_parser does,
    with signals held), so that this window is the interpreter's start-up alone."""
    env = _env()
    out = subprocess.run(
        [sys.executable, "-c", "import sys, nirbridge.cli, nirbridge.__main__\n"
         "print(sorted(m for m in ('numpy', 'torch', 'nir', 'h5py', 'scipy') "
         "if m in sys.modules))"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    import nirbridge.cli as cli

    assert cli.describe is nirbridge.describe.describe  # moved names still import from here
    assert nirbridge.to_nir is nirbridge.api.to_nir
