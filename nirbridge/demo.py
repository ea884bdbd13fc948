"""The main job's demo: the default deployment, the digits recipes end to end.

``nirbridge demo`` runs ``deploy/digits_{lif,arlif,klif,dalif}.toml`` (direct encoding),
``deploy/digits_arlif_rate.toml`` (rate-encoded spike input) and
``deploy/digits_seq_{alif,cubalif}.toml`` (sequential digits, one image row per step, on a
recurrent ALIF or CubaLIF network): each trained network (residual conv SNNs and the
recurrent ones; checkpoints committed in ``deploy/checkpoints/``) is exported to NIR and
every sample of the test split (360) is scored in PyTorch, by the float64 reference
executor and by the fixed-point emulator (the ``fixed`` backend); the first 96 samples
(``lava_samples``) are deployed to Lava's Loihi 2 simulation in floating_pt and
bit-accurate fixed_pt, each fixed_pt sample checked to hold the emulator's integers
exactly; then every recipe is profiled. The seconds of each stage are printed; every recipe
writes its ``.nir`` file and JSON/HTML reports under ``OUT_DIR/<recipe>/``, and the demo
prints one summary table (also written to ``OUT_DIR/summary.md`` and ``summary.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from nirbridge.data import encode, load_split
from nirbridge.errors import CheckFailed, RecipeError

#: The default deployment: one recipe per neuron type on direct-encoded digits, AR-LIF on
#: rate-encoded (spike) input, and recurrent ALIF and CubaLIF networks on sequential digits.
DEMO_RECIPES = ("digits_lif", "digits_arlif", "digits_klif", "digits_dalif", "digits_arlif_rate",
                "digits_seq_alif", "digits_seq_cubalif")


#: How to read the energy columns of the summary (printed under it, and in summary.md).
COMPARISON = (
    "How to read the energies: all are model estimates per sample from the exact event "
    "counts of the run, and they include different things. loihi2 charges Loihi 1's "
    "per-event costs (pre-silicon simulation, Davies et al. 2018) as a proxy, plus the "
    "static power of one Loihi 2 chip measured by Intel (0.23 W, lava-dl's PilotNet "
    "benchmark) over T x 153 us per step (derived from the throughput measured there): "
    "on a small network the static part dominates, and '≥' marks a lower bound where a "
    "term is unpublished "
    "(graded multiply-accumulates). cmos45-fp32 counts fp32 arithmetic only (Horowitz "
    "2014: 0.9 pJ add, 4.6 pJ multiply-add), the convention of most SNN papers; "
    "cmos45-fp32-sram adds the SRAM reads and writes each operation needs (20 pJ per "
    "64-bit access of a 32 kB SRAM), which cost more than the arithmetic. gpu-h100 prices "
    "every dense product at the board's peak efficiency (a lower bound). Figures labelled "
    "measured come from silicon, derived ones are arithmetic on published figures, "
    "simulated and proxy ones are models; `nirbridge profile --target T` shows each term "
    "with its source.")


def digits_inputs(n: int = 32, steps: int = 8) -> torch.Tensor:
    """The first ``n`` digit scans of the test split (the last 360 samples of
    scikit-learn's digits), direct-encoded: ``[T, n, 1, 8, 8]`` float64 in [0, 1]."""
    split = load_split("digits", "test").head(n)
    return torch.from_numpy(encode(split.images, "direct", steps))


def deploy_dir() -> Path:
    """The repository's ``deploy/`` directory (recipes and checkpoints): the one in the
    current directory if it holds the demo's recipes, else the one beside the package."""
    for d in (Path.cwd() / "deploy", Path(__file__).resolve().parent.parent / "deploy"):
        if (d / f"{DEMO_RECIPES[0]}.toml").is_file():
            return d
    raise RecipeError("cannot find the deploy/ directory with the demo's recipes; run "
                      "the demo from the repository's root")


def run_demo(out_dir: Path, echo: Callable[[str], None] = print, samples: int | None = None,
             recipes: Sequence[str | Path] | None = None, progress: bool | None = None, *,
             lava_samples: int | None = None, workers: int | None = None,
             cluster: str | None = None) -> int:
    """Run the default deployment (``recipes``: names in ``deploy/`` or paths) and print
    the summary table and the seconds of each stage; returns 0 when every check passed,
    else raises :class:`CheckFailed` (exit code 3) after printing and writing everything.
    ``lava_samples``, ``workers``, ``cluster``: as
    :func:`~nirbridge.recipes.execute.execute_recipe` takes them."""
    from nirbridge.recipes import (
        execute_recipe,
        format_run,
        load_recipe,
        summary_table,
        timing_table,
        write_recipe_reports,
    )
    from nirbridge.report import _jsonable, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in recipes or DEMO_RECIPES:
        p = Path(r)
        paths.append(p if p.suffix == ".toml" else deploy_dir() / f"{r}.toml")
    loaded = [load_recipe(p) for p in paths]  # every recipe checked before anything runs
    t_start = time.perf_counter()
    runs = []
    for i, recipe in enumerate(loaded, 1):
        echo(f"=== recipe {i}/{len(loaded)}: {recipe.path} "
             f"({time.perf_counter() - t_start:.0f} s elapsed)")
        rdir = out_dir / recipe.name
        run = execute_recipe(recipe, echo=echo, samples=samples, out_dir=rdir,
                             progress=progress, lava_samples=lava_samples, workers=workers,
                             cluster=cluster)
        echo("")
        echo(format_run(run))
        for w in write_recipe_reports(run, rdir / "report.json", rdir / "report.html"):
            echo(f"wrote {w}")
        echo("")
        runs.append(run)
    table = summary_table(runs)
    md = summary_table(runs, markdown=True)
    n = sorted({r.samples for r in runs})
    nl = sorted({r.lava_samples for r in runs})
    echo(f"Summary: {'/'.join(map(str, n))} test samples per model scored by torch, the "
         f"float64 reference and the fixed-point emulator; the first "
         f"{'/'.join(map(str, nl))} confirmed on Lava (floating_pt, and fixed_pt integer "
         f"by integer against the emulator); accuracies in %, energy per sample (model "
         f"estimates)")
    echo(table)
    echo("\n" + COMPARISON)
    echo("\nSeconds per stage:")
    echo(timing_table(runs))
    (out_dir / "summary.md").write_text(md + "\n\n" + COMPARISON + "\n\n"
                                        + timing_table(runs, markdown=True) + "\n")
    write_json(_jsonable({"runs": [r.summary() for r in runs]}), out_dir / "summary.json")
    echo(f"\nwrote {out_dir / 'summary.md'}, {out_dir / 'summary.json'} and one report per "
         f"recipe under {out_dir}/; total {time.perf_counter() - t_start:.0f} s")
    failed = [f"{r.recipe.name}: {f}" for r in runs for f in r.failed]
    if failed:
        raise CheckFailed(f"{len(failed)} check(s) failed: " + "; ".join(failed))
    return 0


__all__ = ["COMPARISON", "DEMO_RECIPES", "deploy_dir", "digits_inputs", "run_demo"]
