"""The ``nirbridge`` command.

Every sub-command turns a :class:`nirbridge.errors.NirbridgeError` (and any other failure)
into one line on stderr and a non-zero exit code (``--debug`` shows the traceback), and
writes its output files atomically, so a failed command never leaves a partial file.

The commands that run or lower a file take ``--dt`` and ``--from FRAMEWORK`` (the dt rules
are :func:`nirbridge.passes.resolve_dt`'s), print the dt they use in one line and record
it in every output; they warn about the sanity findings of :mod:`nirbridge.sanity`
(``--strict``: refuse a forward-Euler step with dt/τ > 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from nirbridge._files import atomic_path
from nirbridge._version import __version__
from nirbridge.describe import describe as describe  # moved; importable from here as before
from nirbridge.errors import CheckFailed, ExportError, InputError, NirbridgeError
from nirbridge.factory import load_factory, load_weights
from nirbridge.textfmt import text_table

log = logging.getLogger("nirbridge")


# ----------------------------------------------------------------------------- helpers
def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise InputError(f"--input-shape {text!r} is not a comma-separated list of integers "
                         "(e.g. 1,28,28)") from None
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"--input-shape {text!r} must list positive sizes (e.g. 1,28,28)")
    return shape


def load_array(path: str, what: str = "--input") -> Any:
    import numpy as np

    if not Path(path).is_file():
        raise InputError(f"{what} file '{path}' does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{what} file '{path}' is not a .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{what} file '{path}' holds several arrays; give one .npy array")
    return arr


def warn(args: argparse.Namespace, message: str) -> None:
    """One warning line on stderr, named like the command's errors."""
    print(f"nirbridge {args.command}: warning: {message}", file=sys.stderr)


def load_graph(args: argparse.Namespace, *, require_dt: bool, warn_findings: bool = True
               ) -> tuple[Any, Any, list[Any]]:
    """``args.file`` read, with ``--from``'s reading applied (its notes printed), the dt
    resolved (``--dt``, else the file's; ``require_dt``: refuse a file without one) and
    printed, and the time-step sanity findings warned about (``--strict``: refused).
    Returns ``(graph, TimeStep, findings)``."""
    from nirbridge.api import read
    from nirbridge.io.read import from_framework
    from nirbridge.passes import resolve_dt
    from nirbridge.sanity import check_time_step, refuse

    graph = read(args.file)
    try:
        if getattr(args, "framework", None):
            graph, notes = from_framework(graph, args.framework, dt=args.dt)
            for note in notes:
                print(f"--from {args.framework}: {note}")
        step = resolve_dt(graph, args.dt, require=require_dt, option="--dt")
    except NirbridgeError as exc:
        raise type(exc)(f"{args.file}: {exc}") from exc
    print(step.line)
    findings = check_time_step(graph, step.dt)
    if getattr(args, "strict", False):
        refuse(findings)
    if warn_findings:
        for f in findings:
            warn(args, f.message)
    return graph, step, findings


def warn_reading(args: argparse.Namespace, backend: Any, graph: Any, dt: float) -> None:
    """Say where ``backend`` computes something other than NIR's meaning of ``graph``
    (its :meth:`reading` notes, at most 5 here; ``nirbridge verify`` measures them)."""
    from nirbridge.passes import with_dt

    notes = backend.reading(with_dt(graph, dt)).notes
    for note in notes[:5]:
        warn(args, f"{backend.name} departs from the NIR spec: {note}")
    if len(notes) > 5:
        warn(args, f"{backend.name}: {len(notes) - 5} more departures (nirbridge verify "
                   "lists and measures them)")


def run_section(backend: str, step: Any, findings: list[Any]) -> tuple[str, list[list[str]],
                                                                      list[str]]:
    """The report section of a run: backend, dt and where it came from, findings."""
    rows = [["backend", "dt", "dt from", "sanity"],
            [backend, f"{step.dt:g}", step.source,
             "ok" if not findings else f"{len(findings)} finding(s)"]]
    return "Run", rows, [f.message for f in findings]


# ---------------------------------------------------------------------------- commands
def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from nirbridge.api import to_nir, write

    factory = load_factory(args.model)
    try:
        model = factory()
    except Exception as exc:
        raise ExportError(f"factory '{args.model}' failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"factory '{args.model}' returned {type(model).__name__}, "
                          "not a torch.nn.Module")
    if args.weights:
        load_weights(model, args.weights)
    sample = torch.zeros((args.batch, *parse_shape(args.input_shape)))
    graph = to_nir(model, sample, dt=args.dt)
    write(args.output, graph, compat=args.compat)
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
          f"dt={args.dt}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from nirbridge.api import read
    from nirbridge.io.read import from_framework
    from nirbridge.passes import dt_conventions, resolve_dt
    from nirbridge.sanity import check_time_step

    graph = read(args.file)
    notes: list[str] = []
    if args.framework:
        graph, notes = from_framework(graph, args.framework, dt=args.dt)
    if args.dt is not None:
        graph.metadata = {**(graph.metadata or {}), "dt": resolve_dt(graph, args.dt,
                                                                     option="--dt").dt}
    info = describe(graph)
    findings = []
    if info["dt"] is not None:
        step = resolve_dt(graph, args.dt, option="--dt")
        info["dt_source"] = step.source
        findings = check_time_step(graph, step.dt)
    info["notes"] = notes
    info["sanity"] = [f.to_dict() for f in findings]
    for f in findings:
        warn(args, f.message)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [("node", "type", "input", "output", "params", "fires")]
    for n in info["nodes"]:
        rows.append((n["name"], n["type"] + (" *" if n["custom"] else ""),
                     "x".join(map(str, n["input_shape"] or [])) or "?",
                     "x".join(map(str, n["output_shape"] or [])) or "?",
                     str(n["parameters"]), n.get("compare", "")))
    print(text_table(rows))
    dt = info["dt"] if info["dt"] is not None else (
        f"none in the file (run, deploy, profile and export-netx need --dt or --from "
        f"FRAMEWORK: {dt_conventions() or 'no front-end available'})")
    print(f"\n{len(info['nodes'])} nodes, {len(info['edges'])} edges, "
          f"{info['parameters']} parameters, dt = {dt}")
    for note in notes:
        print(f"--from {args.framework}: {note}")
    if info["custom_nodes"]:
        print(f"custom nodes (*): {', '.join(info['custom_nodes'])}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.backends import get
    from nirbridge.sanity import check_run, neuron_names

    graph, step, _ = load_graph(args, require_dt=False)
    x = load_array(args.input)
    if x.ndim < 3:
        raise InputError(f"--input '{args.input}' has shape {x.shape}; expected [T, B, ...]")
    backend = get(args.backend)
    warn_reading(args, backend, graph, step.dt)
    record = neuron_names(graph) if backend.name == "reference" else False
    res = backend.run(graph, np.asarray(x, dtype=np.float64), dt=step.dt, record=record)
    for f in check_run(graph, res.records) if record else []:
        warn(args, f.message)
    out = res.outputs
    arrays = {f"output_{k}": v for k, v in out.items()} if isinstance(out, dict) else {
        "output": out}
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    arrays["dt"] = np.asarray(step.dt)
    with atomic_path(args.output) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    print(f"wrote {args.output}: {shapes}, dt")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.backends import get
    from nirbridge.graph import flatten_subgraphs
    from nirbridge.neurons import is_neuron
    from nirbridge.profile import (
        count_events,
        count_run,
        estimate_energy,
        load_profile,
        map_to_chip,
    )
    from nirbridge.report import build_report, format_table, raster_from_records, write_report
    from nirbridge.sanity import check_run

    profiles = [load_profile(t) for t in (args.target or ["loihi2", "cmos45-fp32"])]
    graph, step, findings = load_graph(args, require_dt=True)
    x = np.asarray(load_array(args.input), dtype=np.float64)
    warn_reading(args, get(args.backend), graph, step.dt)
    if args.backend == "reference":
        # counted while it runs; records only of what the sanity check and raster read
        keep = [n for n, node in flatten_subgraphs(graph).nodes.items() if is_neuron(node)]
        (_, records), counts = count_run(graph, x, dt=step.dt, spike_inputs=args.spike_inputs,
                                         record=keep + ([args.raster] if args.raster else []))
    else:
        records = get(args.backend).run(graph, x, record=True, dt=step.dt).records
        counts = count_events(graph, records, spike_inputs=args.spike_inputs)
    ran = check_run(graph, records, where=f"{args.backend} run",
                    spikes={n: c.spikes for n, c in counts.neurons.items()})
    for f in ran:
        warn(args, f.message)
    findings = findings + ran
    energies = [estimate_energy(counts, p) for p in profiles]
    mappings = []
    for p in profiles:
        if p.mapper is not None:
            mappings.append(map_to_chip(graph, p, counts))
    doc = build_report(counts, energies, mappings, model=str(args.file),
                       meta={"backend": args.backend, "input": str(args.input),
                             "dt": step.dt, "dt_source": step.source,
                             "sanity": [f.to_dict() for f in findings]})
    print(format_table(doc))
    if args.json:
        write_report(doc, args.json)
        print(f"wrote {args.json}")
    if args.report:
        node = args.raster or next((n for n, c in counts.neurons.items() if c.spiking), None)
        raster = raster_from_records(records, node) if node else None
        write_report(doc, args.report, raster=raster, raster_node=node,
                     sections=[run_section(args.backend, step, findings)])
        print(f"wrote {args.report}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    import numpy as np

    from nirbridge.deploy import deploy_graph, format_deploy

    if str(args.file).endswith(".toml"):
        from nirbridge.recipes import run_recipe

        return run_recipe(args.file, echo=print, json_path=args.json, report_path=args.report,
                          samples=args.samples, dt=args.dt, framework=args.framework,
                          strict=args.strict, lava_samples=args.lava_samples,
                          workers=args.workers, cluster=args.cluster)
    if args.input is None:
        raise InputError("deploy FILE.nir needs --input IN.npy ([T, B, ...])")
    from nirbridge.profile import load_profile

    profile = load_profile(args.target)  # a name or a TOML path; schema-checked
    if profile.quantization is None:
        raise InputError(f"--target {args.target!r} has no [quantization] table: Lava "
                         "simulates Loihi 2; use loihi2 or a profile derived from it")
    graph, step, _ = load_graph(args, require_dt=True, warn_findings=False)
    x = load_array(args.input)
    labels = load_array(args.labels, "--labels") if args.labels else None
    result = deploy_graph(graph, x, mode="fixed_pt" if args.fixed_point else "floating_pt",
                          target=args.target, labels=labels, steps=args.steps,
                          timeout_s=args.timeout, dt=step.dt, workers=args.workers,
                          cluster=args.cluster)
    result.dt_source = step.source
    print(format_deploy(result))
    if args.output:
        with atomic_path(args.output) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, output=result.outputs_lava, reference=result.outputs_reference,
                         dt=np.asarray(step.dt))
        print(f"wrote {args.output}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2, default=float))
        print(f"wrote {args.json}")
    if not result.sound:
        raise CheckFailed(f"not a sound deployment: {len(result.findings)} sanity "
                          f"finding(s); first: {result.findings[0]['message']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """The agreement matrix (:func:`nirbridge.verify.verify`): exit 0 when every backend
    that ran agrees within its tolerance, 3 when one does not or when none besides the
    reference could run (nothing was verified), 2 for bad input."""
    from nirbridge.backends import names
    from nirbridge.verify import verify

    graph, step, _ = load_graph(args, require_dt=False)
    x = load_array(args.input)
    if x.ndim < 3:
        raise InputError(f"--input '{args.input}' has shape {x.shape}; expected [T, B, ...]")
    labels = load_array(args.labels, "--labels") if args.labels else None
    wanted = names() if args.backends is None else [
        b.strip() for b in args.backends.split(",") if b.strip()]
    if not wanted:
        raise InputError(f"--backends {args.backends!r} names no backend; give e.g. "
                         f"{','.join(names())}")
    result = verify(graph, x, wanted, dt=step.dt, labels=labels, model=str(args.file))
    print(result.to_text())
    for path, write in ((args.json, result.write_json), (args.report, result.write_html)):
        if path:
            write(path)
            print(f"wrote {path}")
    if not result.passed:
        raise CheckFailed("verify: " + result.summary())
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from nirbridge.profile import list_profiles, load_profile

    rows = [("target", "kind", "prices", "evidence", "description")]
    for name in list_profiles():
        p = load_profile(name)
        rows.append(tuple(map(str, (name, p.kind, p.prices, p.evidence, p.description))))
    if args.json:
        print(json.dumps([load_profile(n).to_dict() for n in list_profiles()], indent=2,
                         default=str))
        return 0
    print(text_table(rows, free_last=True))
    return 0


def cmd_export_netx(args: argparse.Namespace) -> int:
    from nirbridge.netx import netx_latency, netx_layers, quantize_for_netx, write_netx

    graph, step, _ = load_graph(args, require_dt=True)
    qgraph = quantize_for_netx(graph, args.target, dt=step.dt)
    n_layers = len(netx_layers(qgraph)) - 1
    write_netx(qgraph, args.output)  # atomic: a failure leaves no file
    print(f"wrote {args.output}: {n_layers} netx layers after the input, latency "
          f"{netx_latency(qgraph)} steps (target {args.target}, dt = {step.dt:g})")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from nirbridge.export_onnx import layout, to_onnx

    graph, step, _ = load_graph(args, require_dt=True)
    model = to_onnx(graph, sequence=args.sequence, dt=step.dt)
    with atomic_path(args.output) as tmp:  # a failure leaves no file
        tmp.write_bytes(model.SerializeToString())
    states = len(layout(model)["states"])
    print(f"wrote {args.output}: {'sequence (Scan)' if args.sequence else 'step'} model, "
          f"opset {model.opset_import[0].version}, {states} state tensors, dt = {step.dt:g}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from nirbridge.api import write
    from nirbridge.io.read import import_graph
    from nirbridge.passes import resolve_dt
    from nirbridge.sanity import check_time_step, refuse

    if args.framework is None and args.dt is None:
        raise InputError("import needs --from FRAMEWORK (its reading of its own files) "
                         "and/or --dt DT (the time step to record)")
    graph, notes = import_graph(args.file, args.framework, dt=args.dt)
    for note in notes:
        print(f"--from {args.framework}: {note}" if args.framework else note)
    step = resolve_dt(graph, require=True, option="--dt")
    findings = check_time_step(graph, step.dt)
    if args.strict:
        refuse(findings)
    for f in findings:
        warn(args, f.message)
    write(args.output, graph)
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {step.line}; later commands "
          "need neither --dt nor --from")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nirbridge.recipes import load_recipe
    from nirbridge.train import train_recipe

    recipe = load_recipe(args.recipe, require_checkpoint=False)
    train_recipe(recipe, echo=print, epochs=args.epochs, output=args.output,
                 threads=args.threads)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nirbridge.demo import run_demo

    return run_demo(Path(args.out_dir), echo=print, samples=args.samples,
                    lava_samples=args.lava_samples, workers=args.workers,
                    cluster=args.cluster)


# -------------------------------------------------------------------------------- main
def _lava_parallel_options(p: argparse.ArgumentParser, *, recipes: bool) -> None:
    """``--workers``/``--cluster`` (passed to the Lava backends' run only when given) and,
    for recipes, ``--lava-samples``."""
    if recipes:
        p.add_argument("--lava-samples", type=int,
                       help="recipes: samples Lava confirms (default: the recipe's "
                            "[simulation] lava_samples, else all up to 360)")
    p.add_argument("--workers", type=int,
                   help="Lava: shard the samples over N child processes")
    p.add_argument("--cluster", help="Lava: run the shards on this distributed cluster "
                                     "(its scheduler ADDRESS)")


def _backend_help(what: str) -> str:
    """``--backend``'s help: every name of the backend table and its aliases. The option
    stays free text so that an unknown name gets the backends' own one-line error."""
    from nirbridge.backends import ALIASES, names

    aliases = ", ".join(f"{a} = {b}" for a, b in ALIASES.items())
    return (f"{what}: {', '.join(names())}" + (f" ({aliases})" if aliases else "") +
            "; default reference")


def _backend_names() -> list[str]:
    from nirbridge.backends import names

    return names()


def _frameworks() -> str:
    from nirbridge.export.frontends import FRONTENDS

    return "|".join(FRONTENDS)


def _dt_options(p: argparse.ArgumentParser, *, strict: bool = True,
                dt_help: str = "time step (default: the file's metadata['dt'])") -> None:
    """``--dt``, ``--from FRAMEWORK`` and (``strict``) ``--strict``. ``--from`` stays free
    text so that an unknown name gets the one-line error listing the known ones."""
    p.add_argument("--dt", type=float, help=dt_help)
    p.add_argument("--from", dest="framework", metavar="FRAMEWORK",
                   help=f"read the file as {_frameworks()} wrote it: that framework's dt "
                        "convention and its known semantic differences (notes printed)")
    if strict:
        p.add_argument("--strict", action="store_true",
                       help="refuse a forward-Euler neuron with dt/τ > 1 instead of warning")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nirbridge",
        description="Export PyTorch SNNs to NIR, run them on backends, deploy and profile.",
    )
    p.add_argument("--version", action="version", version=f"nirbridge {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("export", help="export a torch model to a .nir file")
    e.add_argument("model", help="MODULE_OR_FILE:FACTORY, a callable returning the nn.Module")
    e.add_argument("--input-shape", required=True, help="one sample's shape, e.g. 1,28,28")
    e.add_argument("--weights", help="checkpoint (state_dict) loaded with weights_only=True")
    e.add_argument("--dt", type=float, default=1.0, help="time step recorded in the graph")
    e.add_argument("--batch", type=int, default=1, help="batch size of the tracing sample")
    e.add_argument("--compat", choices=("native", "lossy"), default="native",
                   help="'lossy' writes standard NIR nodes only (approximating custom ones)")
    e.add_argument("-o", "--output", required=True, help="output .nir file")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("inspect", help="show a .nir file's nodes, shapes and parameters")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _dt_options(i, strict=False, dt_help="the time step to show and check the graph at")
    i.set_defaults(func=cmd_inspect)

    r = sub.add_parser("run", help="run a .nir graph on inputs [T, B, ...]")
    r.add_argument("file")
    r.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    r.add_argument("--backend", default="reference", help=_backend_help("backend"))
    _dt_options(r, dt_help="time step (default: the file's metadata['dt']; a file without "
                           "one runs at dt = 1 with a warning)")
    r.add_argument("-o", "--output", required=True,
                   help="output .npz (holds 'output' and 'dt')")
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("profile", help="count SOPs, neuron updates, spikes; price energy")
    pr.add_argument("file")
    pr.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    pr.add_argument("--backend", default="reference",
                    help=_backend_help("backend whose run is counted"))
    pr.add_argument("--target", action="append",
                    help="target profile name or TOML path (repeatable; default loihi2 and "
                         "cmos45-fp32); see `nirbridge targets`")
    pr.add_argument("--spike-inputs", action="store_true",
                    help="the input carries binary events: first layer counts as AC")
    _dt_options(pr, dt_help="time step (default: the file's metadata['dt']; a file "
                            "without one is refused)")
    pr.add_argument("--json", help="write the JSON report here")
    pr.add_argument("--report", help="write an HTML (.html) or Markdown (.md) report with plots")
    pr.add_argument("--raster", help="node whose spike raster the report plots")
    pr.set_defaults(func=cmd_profile)

    dp = sub.add_parser("deploy", help="run a .nir graph (or a recipe .toml) in Lava's "
                        "Loihi 2 simulation and compare it with the reference")
    dp.add_argument("file", help="FILE.nir, or a deployment recipe RECIPE.toml")
    dp.add_argument("--target", default="loihi2",
                    help="loihi2, or a TOML profile with a [quantization] table")
    dp.add_argument("--fixed-point", action="store_true",
                    help="bit-accurate fixed_pt models (default floating_pt)")
    dp.add_argument("--input", help=".npy array shaped [T, B, ...] (T = 1 repeats it)")
    dp.add_argument("--labels", help=".npy integer class per sample: report accuracy")
    dp.add_argument("--steps", type=int, help="time steps T (truncate, or repeat a 1-step input)")
    dp.add_argument("--timeout", type=float, default=600.0,
                    help="time limit in seconds of each Lava run (default 600)")
    dp.add_argument("--samples", type=int, help="recipes: override the number of test samples")
    _lava_parallel_options(dp, recipes=True)
    dp.add_argument("-o", "--output", help="write Lava and reference outputs to this .npz")
    dp.add_argument("--json", help="write the deployment report as JSON")
    dp.add_argument("--report", help="recipes: write the HTML report here")
    _dt_options(dp, dt_help="time step (default: the file's metadata['dt'], or the recipe's "
                            "model.dt; a file without one is refused)")
    dp.set_defaults(func=cmd_deploy)

    vf = sub.add_parser("verify", help="run a .nir graph on every backend that can run it "
                        "and print the agreement matrix with the float64 reference")
    vf.add_argument("file")
    vf.add_argument("--input", required=True, help=".npy array shaped [T, B, ...]")
    vf.add_argument("--backends", help="comma-separated backends (default: every one, "
                    f"{','.join(_backend_names())}); lava = lava-float")
    vf.add_argument("--labels", help=".npy integer class per sample: report accuracies")
    vf.add_argument("--json", help="write the matrix as JSON here")
    vf.add_argument("--report", help="write the HTML report (heat map) here")
    _dt_options(vf, dt_help="time step of every run (default: the file's metadata['dt']; "
                            "a file without one runs at dt = 1 with a warning)")
    vf.set_defaults(func=cmd_verify)

    tg = sub.add_parser("targets", help="list the target profiles and their evidence")
    tg.add_argument("--json", action="store_true")
    tg.set_defaults(func=cmd_targets)

    nx = sub.add_parser("export-netx", help="write a .nir graph as a lava-dl netx HDF5 "
                        "network (fixed point, CUBA neurons)")
    nx.add_argument("file")
    nx.add_argument("-o", "--output", required=True, help="output netx file (e.g. model.net)")
    nx.add_argument("--target", default="loihi2",
                    help="target profile name or TOML path for quantization (default loihi2)")
    _dt_options(nx, dt_help="time step the decays are quantized for (default: the file's "
                            "metadata['dt']; a file without one is refused)")
    nx.set_defaults(func=cmd_export_netx)

    ox = sub.add_parser("export-onnx", help="write a .nir graph as an ONNX model (float32, "
                        "standard operators): one time step with explicit states, or "
                        "--sequence over [T, B, ...]")
    ox.add_argument("file")
    ox.add_argument("-o", "--output", required=True, help="output ONNX file (model.onnx)")
    ox.add_argument("--sequence", action="store_true",
                    help="a Scan model over the whole input [T, B, ...] (default: the step "
                         "model, states in and out; see docs/onnx.md)")
    _dt_options(ox, dt_help="time step the model is built for (default: the file's "
                            "metadata['dt']; a file without one is refused)")
    ox.set_defaults(func=cmd_export_onnx)

    im = sub.add_parser("import", help="write another tool's .nir file in the exact "
                        "nirbridge form, with its dt and provenance in the metadata")
    im.add_argument("file")
    _dt_options(im, dt_help="time step to record (default: the framework's convention)")
    im.add_argument("-o", "--output", required=True, help="output .nir file")
    im.set_defaults(func=cmd_import)

    t = sub.add_parser("train", help="train a recipe's model (BPTT, surrogate gradient) "
                       "and write its checkpoint")
    t.add_argument("recipe", help="deployment recipe RECIPE.toml (its [train] table)")
    t.add_argument("--epochs", type=int, help="override [train] epochs")
    t.add_argument("-o", "--output", help="checkpoint path (default: model.checkpoint)")
    t.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="the default deployment: the digits recipes of deploy/ "
                       "(LIF, AR-LIF, KLIF, DA-LIF; AR-LIF rate-encoded; recurrent ALIF "
                       "and CubaLIF on sequential digits) end to end, and their summary "
                       "table")
    d.add_argument("--out-dir", default="out", help="where to write the demo's files")
    d.add_argument("--samples", type=int,
                   help="test samples per recipe (default: the recipes' own, 360)")
    _lava_parallel_options(d, recipes=True)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except NirbridgeError as exc:
        if args.debug:
            raise
        print(f"nirbridge {args.command}: error: {exc}".splitlines()[0], file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nirbridge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for the user; --debug shows it
        if args.debug:
            raise
        msg = f"nirbridge {args.command}: internal error: {type(exc).__name__}: {exc}"
        print(msg.splitlines()[0] + " (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
