"""Fuzzing nirbridge's own .nir files (issue 13): 300 seeded mutations (byte flips,
truncations, zeroed ranges, chunk-index, heap, header and data corruptions) read with a
time limit, then a subset through every command that reads a .nir file (in-process
``main()``) and through real processes. Each must end in a one-line error or give exactly
the unmutated file's outputs: 0 hangs, 0 crashes, 0 tracebacks, 0 silently different.
``scripts/soak_files.py`` runs the same for longer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from file_mutations import command_argvs, fuzz_reads, run_command, same, small_files

SEED = 13
COUNT = 300
READABLE_PER_COMMAND = 2
REFUSED_PER_COMMAND = 3


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    files = small_files(folder)
    return folder, files, fuzz_reads(files, folder, SEED, COUNT, timeout_s=3.0)


def test_300_mutants_read_identically_or_fail_in_one_line(fuzzed):
    _, _, tally = fuzzed
    assert sum(tally.counts.values()) == COUNT
    assert tally.crashes == [] and tally.silent == []
    assert tally.slowest_s < 10  # the 3 s limit plus a fork: a bound on a hang only
    # the fuzz reaches both outcomes (a mutation of unused bytes reads)
    assert tally.counts.get("read, identical", 0) > 0
    assert tally.counts.get("refused: CorruptFileError", 0) > 0


def test_every_command_gives_the_unmutated_outputs_or_one_line(fuzzed, tmp_path):
    folder, files, tally = fuzzed
    tiny = files[0]
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "x.npy", (np.random.default_rng(0).random((8, 2, 2)) < 0.5) * 1.0)
    mutant = tmp_path / "m" / tiny.name  # one path: messages and outputs name it
    mutant.parent.mkdir()
    readable = tally.readable.get(tiny.name, [])[:READABLE_PER_COMMAND]
    refused = tally.refused.get(tiny.name, [])
    assert readable and len(refused) >= REFUSED_PER_COMMAND
    rng = np.random.default_rng(SEED)
    problems = []
    for name, argv in command_argvs(out, mutant).items():
        mutant.write_bytes(tiny.read_bytes())
        base = run_command(argv, out)
        assert base[0] == 0, (name, base[2])
        picks = [refused[int(i)] for i in rng.choice(len(refused), REFUSED_PER_COMMAND,
                                                     replace=False)]
        for data in [*readable, *picks]:
            mutant.write_bytes(data)
            rc, stdout, stderr, outputs = run_command(argv, out)
            if rc == 0:
                if stdout != base[1] or not same(outputs, base[3]):
                    problems.append(f"{name}: exit 0 with other outputs")
            elif (rc != 2 or stderr.count("\n") != 1 or "Traceback" in stderr
                  or "internal error" in stderr or outputs):
                problems.append(f"{name}: rc {rc}, stderr {stderr!r}, outputs {list(outputs)}")
    assert problems == []


def test_a_real_process_ends_in_one_line_on_a_refused_mutant(fuzzed, tmp_path):
    folder, files, tally = fuzzed
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for k, data in enumerate(tally.refused.get(files[1].name, [])[:1]):
        path = tmp_path / f"m{k}.nir"
        path.write_bytes(data)
        proc = subprocess.run([sys.executable, "-m", "nirbridge", "inspect", str(path),
                               "--json", "--read-timeout", "3"],
                              capture_output=True, text=True, timeout=30, env=env)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr
