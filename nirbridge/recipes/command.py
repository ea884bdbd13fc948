"""``nirbridge deploy RECIPE.toml``: load, run, print and report a recipe
(:func:`run_recipe`)."""

from __future__ import annotations

from pathlib import Path

from nirbridge.errors import CheckFailed
from nirbridge.recipes.execute import execute_recipe
from nirbridge.recipes.load import load_recipe
from nirbridge.recipes.reports import write_recipe_reports
from nirbridge.recipes.schema import Echo
from nirbridge.recipes.tables import format_run, timing_table


def run_recipe(path: str | Path, echo: Echo = print, *, json_path: str | Path | None = None,
               report_path: str | Path | None = None, samples: int | None = None,
               progress: bool | None = None, dt: float | None = None,
               framework: str | None = None, strict: bool = False,
               lava_samples: int | None = None, workers: int | None = None,
               cluster: str | None = None, check: bool = True,
               out_dir: str | Path | None = None) -> int:
    """``nirbridge deploy RECIPE.toml``: run every stage, print the summary, write the
    reports (default ``<output.dir>/report.json`` and ``report.html``). ``dt``,
    ``framework``, ``strict``, ``lava_samples``, ``workers``, ``cluster``: ``--dt``,
    ``--from``, ``--strict``, ``--lava-samples``, ``--workers``, ``--cluster`` (see
    :func:`~nirbridge.recipes.execute.execute_recipe`); ``check`` false: ``--no-check``;
    ``out_dir`` (``--out-dir``): where the outputs and reports go instead of the recipe's
    ``output.dir``.

    Returns 0 when every check passed; raises :class:`CheckFailed` (exit code 3) naming
    the failed checks and sanity findings *after* printing the table and writing the
    reports.
    """
    recipe = load_recipe(path)
    run = execute_recipe(recipe, echo=echo, samples=samples, progress=progress, dt=dt,
                         framework=framework, strict=strict, lava_samples=lava_samples,
                         workers=workers, cluster=cluster, check=check,
                         out_dir=None if out_dir is None else Path(out_dir))
    echo("")
    echo(format_run(run))
    echo("seconds per stage:")
    echo(timing_table([run]))
    out = recipe.output_dir if out_dir is None else Path(out_dir)
    for p in write_recipe_reports(run, json_path or out / "report.json",
                                  report_path or out / "report.html"):
        echo(f"wrote {p}")
    if run.failed:
        raise CheckFailed(f"recipe {recipe.name}: {len(run.failed)} check(s) failed: "
                          + "; ".join(run.failed))
    return 0


__all__ = ["run_recipe"]
