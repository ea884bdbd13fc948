"""``nirbridge deploy``: a .nir graph or a recipe in Lava's Loihi 2 simulation."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nirbridge._files import save_npz, write_bytes
from nirbridge.cli._common import (
    dt_options,
    lava_parallel_options,
    load_array,
    load_calibration,
    load_graph,
    positive_finite_float,
    positive_int,
)
from nirbridge.errors import CheckFailed, InputError


def run_command(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.deploy import deploy_graph, format_deploy

    if args.calibrate and str(args.file).endswith(".toml"):
        raise InputError("--calibrate is for deploy FILE.nir: a recipe calibrates on its "
                         "own training split (drop --calibrate)")
    if args.calibrate and not args.fixed_point:
        raise InputError("--calibrate chooses the fixed-point mantissas: add --fixed-point")
    if str(args.file).endswith(".toml"):
        from nirbridge.recipes import run_recipe

        return run_recipe(args.file, echo=print, json_path=args.json, report_path=args.report,
                          samples=args.samples, dt=args.dt, framework=args.framework,
                          strict=args.strict, lava_samples=args.lava_samples,
                          workers=args.workers, cluster=args.cluster,
                          check=not args.no_check, out_dir=args.out_dir)
    if args.input is None:
        raise InputError("deploy FILE.nir needs --input IN.npy ([T, B, ...])")
    from nirbridge.profile import load_profile

    profile = load_profile(args.target)  # a name or a TOML path; schema-checked
    if profile.quantization is None:
        raise InputError(f"--target {args.target!r} has no [quantization] table: Lava "
                         "simulates Loihi 2; use loihi2 or a profile derived from it")
    graph, step, _ = load_graph(args, require_dt=True, warn_findings=False)
    if not args.no_check:
        from nirbridge.profile.rules import check_graph, refuse_unfit

        refuse_unfit([check_graph(graph, profile, dt=step.dt)], echo=print)
    x = load_array(args.input)
    labels = load_array(args.labels, "--labels") if args.labels else None
    calibration = load_calibration(args.calibrate) if args.calibrate else None
    result = deploy_graph(graph, x, mode="fixed_pt" if args.fixed_point else "floating_pt",
                          target=args.target, labels=labels, steps=args.steps,
                          timeout_s=args.timeout, dt=step.dt, workers=args.workers,
                          cluster=args.cluster, calibration=calibration)
    result.dt_source = step.source
    print(format_deploy(result))
    if args.output:
        save_npz(args.output, {"output": result.outputs_lava,
                               "reference": result.outputs_reference, "dt": np.asarray(step.dt)})
        print(f"wrote {args.output}")
    if args.json:
        write_bytes(args.json, json.dumps(result.to_dict(), indent=2, default=float).encode())
        print(f"wrote {args.json}")
    if not result.sound:
        raise CheckFailed(f"not a sound deployment: {len(result.findings)} sanity "
                          f"finding(s); first: {result.findings[0]['message']}")
    return 0


def add_parser(sub: Any) -> None:
    dp = sub.add_parser("deploy", help="run a .nir graph (or a recipe .toml) in Lava's "
                        "Loihi 2 simulation and compare it with the reference",
                        description="Run a .nir graph, or a deployment recipe, in Lava's "
                        "Loihi 2 simulation and compare it with the reference. A recipe runs "
                        "the Python factory it names ([model] factory, and a MODULE:FACTORY "
                        "data set): trust a recipe as code, like a Makefile. It writes only "
                        "inside its own folder (output.dir) or --out-dir.")
    dp.add_argument("file", help="FILE.nir, or a deployment recipe RECIPE.toml")
    dp.add_argument("--target", default="loihi2",
                    help="loihi2, or a TOML profile with a [quantization] table")
    dp.add_argument("--fixed-point", action="store_true",
                    help="bit-accurate fixed_pt models (default floating_pt)")
    dp.add_argument("--input", help=".npy array shaped [T, B, ...] (T = 1 repeats it)")
    dp.add_argument("--calibrate", metavar="X.npy",
                    help="with --fixed-point: calibration inputs [T, B, ...] to choose each "
                         "layer's mantissas on (as `nirbridge quantize --calibrate`; "
                         "default: the plain rule)")
    dp.add_argument("--labels", help=".npy integer class per sample: report accuracy")
    dp.add_argument("--steps", type=positive_int,
                    help="time steps T (truncate, or repeat a 1-step input)")
    dp.add_argument("--timeout", type=positive_finite_float, default=600.0,
                    help="time limit in seconds of each Lava run (default 600)")
    dp.add_argument("--samples", type=positive_int,
                    help="recipes: override the number of test samples")
    dp.add_argument("--no-check", action="store_true",
                    help="skip the Loihi 2 design-rule check (`nirbridge check`): Lava's "
                         "simulation has no per-core limits, and Loihi 2's per-core ones "
                         "are assumptions")
    lava_parallel_options(dp, recipes=True)
    dp.add_argument("--out-dir", help="recipes: write the outputs and reports here "
                                      "instead of the recipe's output.dir")
    dp.add_argument("-o", "--output", help="write Lava and reference outputs to this .npz")
    dp.add_argument("--json", help="write the deployment report as JSON")
    dp.add_argument("--report", help="recipes: write the HTML report here")
    dt_options(dp, dt_help="time step (default: the file's metadata['dt'], or the recipe's "
                           "model.dt; a file without one is refused)")
    dp.set_defaults(func=run_command)
