"""Soak test of the .nir reader (issue 13): many seeded mutations of nirbridge's own small
files, each read with a time limit; prints progress and the tally, and exits 1 on any
crash, traceback or silently different read. The CI version is tests/test_fuzz_files.py.

    PYTHONPATH=. python scripts/soak_files.py --seed 1 --count 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from file_mutations import Tally, fuzz_reads, small_files  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--timeout", type=float, default=3.0, help="read time limit (s)")
    p.add_argument("--every", type=int, default=100, help="progress line every N mutants")
    args = p.parse_args()
    start = time.monotonic()

    def progress(done: int, tally: Tally) -> None:
        if done % args.every == 0 or done == args.count:
            print(f"{done}/{args.count} in {time.monotonic() - start:.0f} s: "
                  f"{dict(sorted(tally.counts.items()))}, slowest {tally.slowest_s:.1f} s",
                  flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tally = fuzz_reads(small_files(folder), folder, args.seed, args.count,
                           timeout_s=args.timeout, progress=progress)
    for line in tally.crashes + tally.silent:
        print("FAIL", line)
    print(f"seed {args.seed}: {args.count} mutants, {len(tally.crashes)} crashes, "
          f"{len(tally.silent)} silently different, slowest read {tally.slowest_s:.1f} s")
    return 1 if tally.crashes or tally.silent else 0


if __name__ == "__main__":
    sys.exit(main())
