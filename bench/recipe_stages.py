"""Benchmark (run by hand, never in the tests): what the main command's recipe costs when
Lava confirms a subset of the samples that the emulator scores, against Lava on every one.

    .venv/bin/python bench/recipe_stages.py [--recipe digits_lif] [--subset 96]
        [--repeats 2]

One recipe of ``deploy/`` is run by :func:`nirbridge.recipes.execute_recipe` (every sample
of the digits test split through torch, the reference and the emulator; Lava floating_pt
and fixed_pt on the first ``lava_samples``), alternating ``lava_samples = --subset`` and
``lava_samples = 360`` (every sample, as the demo did before), ``--repeats`` times each.
It prints, per setting, the min and median of the total and of each stage, the ratio of
the totals, and checks that both settings score every sample identically: the same torch,
reference and fixed-point accuracies; Lava fixed_pt holds the emulator's integers on
every sample it ran.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import nirbridge  # noqa: F401  (before any Lava import)
from nirbridge.recipes import execute_recipe, load_recipe

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("export", "torch", "reference", "counting", "emulator", "lava_float", "lava_fixed",
          "profile")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="digits_lif")
    ap.add_argument("--subset", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    recipe = load_recipe(ROOT / "deploy" / f"{args.recipe}.toml")
    settings = (args.subset, 360)
    times: dict[int, list[dict[str, float]]] = {s: [] for s in settings}
    scores: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for lava in settings:  # alternating: a shared machine loads both alike
                run = execute_recipe(recipe, out_dir=Path(tmp) / str(lava), progress=False,
                                     lava_samples=lava)
                m = run.metrics
                assert m["lava_fixed_identical"] == 100.0, (lava, m["lava_fixed_identical"])
                scores.setdefault(lava, (m["torch_accuracy"], m["reference_accuracy"],
                                         m["fixed_accuracy"], m["fixed_spike_agreement"]))
                times[lava].append({**{k: run.seconds.get(k, 0.0) for k in STAGES},
                                    "total": run.total_seconds})
    assert scores[settings[0]] == scores[settings[1]], scores
    print(f"recipe {args.recipe}: 360 samples scored by torch, reference and emulator; "
          f"Lava on the first {settings[0]} vs all 360; {args.repeats} repeats, alternating")
    print("| stage | " + " | ".join(f"Lava {s}: min / median s" for s in settings) + " |")
    print("|---|" + "---|" * len(settings))
    for k in (*STAGES, "total"):
        cells = []
        for s in settings:
            v = [t[k] for t in times[s]]
            cells.append(f"{min(v):.1f} / {statistics.median(v):.1f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    tot = {s: [t["total"] for t in times[s]] for s in settings}
    print(f"\nall 360 on Lava ÷ first {settings[0]} on Lava, total time: min "
          f"{min(tot[360]) / min(tot[settings[0]]):.2f}×, median "
          f"{statistics.median(tot[360]) / statistics.median(tot[settings[0]]):.2f}×")
    t, r, f, s = scores[settings[0]]
    print(f"scores identical in both settings: torch {t:.2f}%, reference {r:.2f}%, "
          f"fixed point {f:.2f}%, fixed spikes identical {s:.3f}%")


if __name__ == "__main__":
    main()
