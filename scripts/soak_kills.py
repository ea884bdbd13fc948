#!/usr/bin/env python
"""Soak test, by hand: many more kill cases than ``tests/test_kill.py`` runs.

    PYTHONPATH=$PWD python scripts/soak_kills.py --per-command 200 --parallel 2

Runs the real ``nirbridge`` command (``export``, ``run``, ``profile``, ``deploy``) and
sends SIGTERM, SIGINT or SIGKILL at seeded random points (a share of them while a long
Lava run is up), then checks that no process, ``/dev/shm`` file or temporary folder of
the command is left, and that every output is whole or absent (see
``tests/kill_harness.py``). Also compares ``/dev/shm`` before and after the whole soak
(other programs on the machine may add entries: the ones left are listed, not judged).
Prints one line per case, then a summary; exit status 1 if any case found a problem.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))


def main() -> int:
    from kill_cases import COMMANDS, make_files, run_command_cases, summary

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-command", type=int, default=100)
    p.add_argument("--commands", default=",".join(COMMANDS))
    p.add_argument("--lava-share", type=float, default=0.4,
                   help="share of run/profile/deploy cases signalled during a Lava run")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--seed", type=int, default=20_13)
    args = p.parse_args()
    shm_before = set(os.listdir("/dev/shm"))
    root = Path(tempfile.mkdtemp(prefix="soak-kills-"))
    files = make_files(root / "inputs")
    outcomes = []
    t0 = time.monotonic()
    for i, command in enumerate(args.commands.split(",")):
        share = 0.0 if command == "export" else args.lava_share
        got = run_command_cases(command, files, root / command, args.per_command,
                                seed=args.seed + i, lava_share=share,
                                parallel=args.parallel)
        print(summary(got), flush=True)
        outcomes += got
    bad = [o for o in outcomes if o.problems]
    stops = [o.stop_s for o in outcomes if o.stop_s is not None
             and o.case.sig != 9 and o.returncode not in (0, None)]
    lava_kills = [o for o in outcomes if o.case.after_child and o.case.sig == 9]
    print(f"\n{len(outcomes)} cases in {time.monotonic() - t0:.0f} s: {len(bad)} with "
          f"problems; {len(lava_kills)} SIGKILLs during a Lava run")
    if stops:
        print(f"SIGTERM/SIGINT to exit: median {statistics.median(stops):.2f} s, max "
              f"{max(stops):.2f} s over {len(stops)} cases")
    hidden = sorted(str(f.relative_to(root)) for f in root.glob("*/*/.*"))
    print(f"hidden temporary files SIGKILL left beside outputs (the next write of that "
          f"output sweeps them): {len(hidden)} {hidden[:5]}")
    new_shm = sorted(set(os.listdir("/dev/shm")) - shm_before)
    print(f"/dev/shm entries new since the start (any program's): {new_shm or 'none'}")
    for o in bad:
        print(f"PROBLEM {o.case.name}: {'; '.join(o.problems)}\n  {o.case.argv}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
