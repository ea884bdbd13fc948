"""Kill tests (issue 13): the real ``nirbridge`` command, in its own session with a
private TMPDIR, gets SIGTERM, SIGINT or SIGKILL at seeded random points of ``export``,
``run``, ``profile`` and ``deploy`` (20 per command; Lava runs for deploy and for some
run/profile cases, signalled while Lava's processes are up). Afterwards
(:mod:`kill_harness`): no process of the command is alive, no ``/dev/shm`` file its
processes used exists, TMPDIR holds nothing of the run, and the outputs are whole or
absent — at once after SIGTERM/SIGINT (with exit code 128 + signal and no traceback),
within 5 s after SIGKILL (whose hidden temporary files beside the outputs carry the dead
pid, and which the next write sweeps).

``scripts/soak_kills.py`` runs many more of the same cases by hand.
"""

from __future__ import annotations

import signal

import pytest
from kill_cases import make_files, run_command_cases, summary

from nirbridge._files import stale_temp_paths

PER_COMMAND = 20
#: Share of the cases signalled during a long Lava run (deploy always runs Lava).
LAVA_SHARE = {"export": 0.0, "run": 0.3, "profile": 0.3, "deploy": 0.5}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("kill-inputs"))


@pytest.mark.parametrize("command", [
    "export",
    pytest.param("run", marks=pytest.mark.lava),
    pytest.param("profile", marks=pytest.mark.lava),
    pytest.param("deploy", marks=pytest.mark.lava),
])
def test_nothing_outlives_a_signalled_command(command, files, tmp_path):
    if LAVA_SHARE[command]:
        pytest.importorskip("lava")
    outcomes = run_command_cases(command, files, tmp_path, PER_COMMAND,
                                 seed=1300 + len(command), lava_share=LAVA_SHARE[command])
    report = summary(outcomes)
    print(report)
    bad = [o for o in outcomes if o.problems]
    assert not bad, report
    assert len(outcomes) == PER_COMMAND
    assert {o.case.sig for o in outcomes} == {signal.SIGTERM, signal.SIGINT, signal.SIGKILL}
    signalled = [o for o in outcomes if o.stop_s is not None]
    assert len(signalled) >= PER_COMMAND // 2, "most cases ended before their signal"
    if LAVA_SHARE[command]:
        lava = [o for o in outcomes if o.case.after_child]
        assert lava and all(o.child_seen and o.stop_s is not None for o in lava), \
            "a Lava case was not signalled while its Lava run was up"
        assert any(o.case.sig == signal.SIGKILL for o in lava)
    # what a SIGKILL left beside the outputs carries the dead pid: the next write sweeps it
    for o in outcomes:
        folder = tmp_path / o.case.name
        for out in o.case.outputs:
            assert stale_temp_paths(folder, out) == [
                p for p in folder.iterdir() if p.name.startswith(f".{out}.")]
