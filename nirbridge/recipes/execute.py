"""Running a recipe: every stage from the torch model to the profile, and the checks
(:func:`execute_recipe`); the measurements land in a :class:`RecipeRun`."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge.data import encode, is_spike_encoding, load_split
from nirbridge.errors import ExportError, NirbridgeError, RecipeError
from nirbridge.recipes.schema import MODE_SHORT, Echo, Recipe, format_value, kwargs_text


@dataclass
class CheckResult:
    """One check's outcome."""

    key: str
    text: str
    value: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.key, "condition": self.text, "value": self.value,
                "passed": self.passed}


@dataclass
class RecipeRun:
    """Everything one run of a recipe measured (see :func:`execute_recipe`)."""

    recipe: Recipe
    samples: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    deploys: dict[str, Any] = field(default_factory=dict)  #: mode → DeployResult
    errors: dict[str, str] = field(default_factory=dict)  #: stage → error message
    seconds: dict[str, float] = field(default_factory=dict)
    counts: Any = None
    energies: list[Any] = field(default_factory=list)
    mappings: list[Any] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    nir_path: Path | None = None
    raster: np.ndarray | None = None
    raster_node: str | None = None
    dt: float | None = None  #: the time step of every stage
    dt_source: str | None = None  #: where it came from
    findings: list[Any] = field(default_factory=list)  #: :mod:`nirbridge.sanity` findings
    verification: Any = None  #: the ``[verify]`` stage's :class:`~nirbridge.verify.Verification`

    @property
    def failed(self) -> list[str]:
        """The failed checks, failed stages and sanity findings, as text."""
        out = [f"{c.key} ({c.text}; measured {format_value(c.value, c.key)})"
               for c in self.checks if not c.passed]
        out += [f"stage {s} failed: {e}" for s, e in self.errors.items()]
        out += [f"sanity: {f.message}" for f in self.findings]
        return out

    @property
    def sops(self) -> float | None:
        """Effective synaptic operations per sample (reference run)."""
        return None if self.counts is None else float(self.counts.sop_effective)

    def energy_report(self, target: str) -> Any:
        """The :class:`~nirbridge.profile.EnergyReport` of ``target`` (None: not priced)."""
        for e in self.energies:
            if e.profile == target or Path(target).stem == e.profile:
                return e
        return None

    def energy(self, target: str) -> float | None:
        """Energy per sample in joules on ``target`` (None: unknown or not priced)."""
        e = self.energy_report(target)
        return None if e is None else e.total_j

    def summary(self) -> dict[str, Any]:
        """The numbers of the summary table, JSON-able."""
        return {
            "recipe": self.recipe.name, "neuron": self.recipe.model.neuron,
            "encoding": self.recipe.data.encoding, "samples": self.samples,
            "steps": self.recipe.simulation.steps, **self.metrics,
            "sops_per_sample": self.sops,
            "energy_j_per_sample": {e.profile: e.total_j for e in self.energies},
            "seconds": dict(self.seconds), "dt": self.dt,
        }


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def _build_model(recipe: Recipe) -> Any:
    """The recipe's torch module with its checkpoint loaded, in eval mode."""
    from nirbridge.factory import load_factory, load_weights

    spec = recipe.model
    assert spec.factory is not None and spec.checkpoint is not None
    model = load_factory(spec.factory)(**spec.kwargs)
    try:
        load_weights(model, spec.checkpoint)
    except ExportError as exc:
        raise RecipeError(f"{recipe.path}: field 'model.checkpoint': {exc}") from exc
    return model.eval()


def recipe_inputs(recipe: Recipe, samples: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs ``[T, N, ...]`` and labels ``[N]`` of the recipe's split.

    The encoding is drawn over the whole split first, so the first ``samples`` samples
    get the same spikes whatever ``samples`` is.
    """
    d = recipe.data
    split = load_split(d.dataset, d.split)
    x = encode(split.images, d.encoding, recipe.simulation.steps, seed=d.seed)
    n = samples or recipe.simulation.samples
    if n > len(split):
        raise RecipeError(f"{recipe.path}: field 'simulation.samples': {n} samples asked "
                          f"for; the {d.dataset} {d.split} split has {len(split)}")
    return x[:, :n], split.labels[:n]


def _predict(out: np.ndarray) -> np.ndarray:
    from nirbridge.verify import predictions

    return predictions(out)


def _resolve_dt(recipe: Recipe, graph: Any, dt: float | None, option: str) -> Any:
    from nirbridge.passes import resolve_dt

    try:
        return resolve_dt(graph, dt, require=True, option=option,
                          hint="give model.dt in the recipe or --dt, or model.from / --from "
                               "FRAMEWORK")
    except NirbridgeError as exc:
        raise RecipeError(f"{recipe.path}: field 'model.dt': {recipe.model.nir}: "
                          f"{exc}") from exc


def execute_recipe(recipe: Recipe, *, echo: Echo = lambda s: None,
                   samples: int | None = None, out_dir: Path | None = None,
                   progress: bool | None = None, dt: float | None = None,
                   framework: str | None = None, strict: bool = False) -> RecipeRun:
    """Run every stage of ``recipe`` and evaluate its checks; never raises for a failed
    check or a failed Lava stage (they are recorded in the returned :class:`RecipeRun`).

    ``samples`` overrides the recipe's number of samples; ``out_dir`` its output
    directory (where ``model.nir`` is written). ``echo`` receives one line per stage;
    ``progress`` shows tqdm bars of the Lava runs (None: only on a terminal). ``dt`` and
    ``framework`` override the recipe's ``model.dt`` and ``model.from``; the sanity
    findings of the reference run (:mod:`nirbridge.sanity`) count as failed checks, and
    ``strict`` refuses a forward-Euler step with dt/τ > 1 before anything runs.
    """
    import torch

    from nirbridge.api import read, to_nir, write
    from nirbridge.backends import get
    from nirbridge.deploy import deploy_graph
    from nirbridge.io.read import from_framework
    from nirbridge.neurons import run_steps
    from nirbridge.passes import TimeStep
    from nirbridge.profile import count_events, estimate_energy, load_profile, map_to_chip
    from nirbridge.sanity import check, check_time_step, refuse

    sim = recipe.simulation
    out_dir = Path(out_dir or recipe.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if samples is not None and samples < 1:
        raise RecipeError(f"--samples {samples}: give a positive number")
    if framework is not None and recipe.model.factory is not None:
        raise RecipeError(f"{recipe.path}: --from {framework} applies to a recipe of a .nir "
                          "file (model.nir); this one exports model.factory")
    x, labels = recipe_inputs(recipe, samples)
    n = int(x.shape[1])
    run = RecipeRun(recipe=recipe, samples=n)
    stages = 4 + len(sim.modes) + bool(recipe.verify)
    stage = 0

    def step(text: str) -> float:
        nonlocal stage
        stage += 1
        echo(f"[{recipe.name} {stage}/{stages}] {text}")
        return time.perf_counter()

    def done(key: str, t0: float, text: str) -> None:
        run.seconds[key] = time.perf_counter() - t0
        echo(f"      {text} ({run.seconds[key]:.1f} s)")

    # --- model, torch accuracy, export
    torch_out = None
    if recipe.model.factory is not None:
        t0 = step(f"torch model {recipe.model.factory}({kwargs_text(recipe.model.kwargs)}) + "
                  f"{recipe.model.checkpoint.name if recipe.model.checkpoint else ''}: "
                  f"accuracy on {n} {recipe.data.dataset} {recipe.data.split} samples "
                  f"({recipe.data.encoding}, T = {sim.steps})")
        model = _build_model(recipe)
        with torch.no_grad():
            torch_out = run_steps(copy.deepcopy(model).double(),
                                  torch.from_numpy(x)).numpy()
        run.metrics["torch_accuracy"] = _pct((_predict(torch_out) == labels).mean())
        done("torch", t0, f"torch accuracy {run.metrics['torch_accuracy']:.2f}%")
        t0 = step("export to NIR, write, read back")
        export_dt = dt if dt is not None else recipe.model.dt
        graph = to_nir(model, torch.from_numpy(x[0, :1]).float(),
                       dt=1.0 if export_dt is None else export_dt)
        run.nir_path = out_dir / "model.nir"
        write(run.nir_path, graph)
        graph = read(run.nir_path)
        timestep = TimeStep(_resolve_dt(recipe, graph, None, "model.dt").dt,
                            "--dt" if dt is not None else "model.dt"
                            if recipe.model.dt is not None else "the export's default")
        done("export", t0, f"wrote {run.nir_path}: {len(graph.nodes)} nodes")
    else:
        t0 = step(f"read {recipe.model.nir}")
        graph = read(recipe.model.nir)
        run.nir_path = recipe.model.nir
        notes: list[str] = []
        if framework or recipe.model.framework:
            try:
                graph, notes = from_framework(graph, framework or recipe.model.framework)
            except NirbridgeError as exc:
                raise RecipeError(f"{recipe.path}: field 'model.from': {exc}") from exc
        given = dt if dt is not None else recipe.model.dt
        timestep = _resolve_dt(recipe, graph, given, "--dt" if dt is not None else "model.dt")
        done("export", t0, f"{len(graph.nodes)} nodes" + "".join(f"; {n}" for n in notes))
    run.dt, run.dt_source = timestep.dt, timestep.source
    if strict:
        refuse(check_time_step(graph, run.dt))

    # --- reference
    t0 = step(f"float64 reference executor, {timestep.line}")
    ref = get("reference").run(graph, x, record=True, dt=run.dt)  # reused by every stage
    ref_out, records = ref.outputs, ref.records
    run.metrics["reference_accuracy"] = _pct((_predict(ref_out) == labels).mean())
    text = f"reference accuracy {run.metrics['reference_accuracy']:.2f}%"
    if torch_out is not None:
        diff = float(np.abs(ref_out - torch_out).max())
        run.metrics["reference_torch_diff"] = diff
        text += f", max |Δ| vs torch {diff:.2g}"
    done("reference", t0, text)
    run.findings = check(graph, run.dt, records)
    for f in run.findings:
        echo(f"      warning: {f.message}")

    # --- Lava
    for mode in sim.modes:
        short = MODE_SHORT[mode]
        t0 = step(f"Lava {mode} ({sim.target} simulation), {n} samples × {sim.steps} steps")
        try:
            res = deploy_graph(graph, x, mode=mode, target=sim.target, labels=labels,
                               timeout_s=sim.timeout_s, progress=progress, reference=ref,
                               dt=run.dt)
        except NirbridgeError as exc:
            run.errors[f"lava_{short}"] = str(exc).splitlines()[0]
            done(f"lava_{short}", t0, f"FAILED: {run.errors[f'lava_{short}']}")
            continue
        run.deploys[mode] = res
        run.metrics[f"{short}_accuracy"] = _pct(res.lava_accuracy)
        run.metrics[f"{short}_accuracy_drop"] = _pct(res.accuracy_drop)
        run.metrics[f"{short}_spike_agreement"] = _pct(res.spike_agreement)
        run.metrics[f"{short}_prediction_agreement"] = _pct(res.prediction_agreement)
        done(f"lava_{short}", t0, f"accuracy {run.metrics[f'{short}_accuracy']:.2f}%, "
                                  f"spikes identical "
                                  f"{run.metrics[f'{short}_spike_agreement']:.3f}%")

    # --- profile
    t0 = step(f"profile: event counts, energy on {', '.join(recipe.targets)}")
    run.counts = count_events(graph, records,
                              spike_inputs=is_spike_encoding(recipe.data.encoding))
    for tname in recipe.targets:
        prof = load_profile(tname)
        run.energies.append(estimate_energy(run.counts, prof))
        if prof.mapper is not None:
            run.mappings.append(map_to_chip(graph, prof, run.counts))
    node = next((k for k, c in run.counts.neurons.items() if c.spiking), None)
    if node is not None:
        from nirbridge.report import raster_from_records

        run.raster, run.raster_node = raster_from_records(records, node), node
    done("profile", t0, f"{run.sops:.4g} SOPs per sample")

    # --- verify
    if recipe.verify:
        t0 = step(f"verify: {', '.join(recipe.verify)} against the reference, per layer")
        _verify_stage(run, graph, x, labels, ref)
        done("verify", t0, "; ".join(
            f"{b.backend} {'PASS' if b.passed else 'FAIL'}"
            for b in run.verification.backends) if run.verification is not None
            else f"FAILED: {run.errors['verify']}")

    # --- checks
    for c in recipe.checks:
        value = run.metrics.get(c.metric)
        run.checks.append(CheckResult(c.key, c.text, value, c.passes(value)))
    if run.verification is not None:
        v = run.verification
        ran = v.verified
        value = _pct(sum(b.passed for b in ran) / len(ran)) if ran else None
        run.checks.append(CheckResult(
            "verify", f"verify: {', '.join(recipe.verify)} within their tolerances "
            f"(backends passing)", value, v.passed))
    return run


def _verify_stage(run: RecipeRun, graph: Any, x: np.ndarray, labels: np.ndarray,
                  ref: Any) -> None:
    """The ``[verify]`` stage: :func:`nirbridge.verify.verify` of the recipe's backends on
    its test inputs, reusing the reference run; the fixed-point backends quantize for the
    recipe's target and the Lava ones get its time limit, as the Lava stages do."""
    from nirbridge.verify import verify

    sim = run.recipe.simulation
    options: dict[str, dict[str, Any]] = {}
    for name in run.recipe.verify:
        opts: dict[str, Any] = {}
        if name in ("fixed", "lava-fixed"):
            opts["target"] = sim.target
        if name.startswith("lava"):
            opts["timeout_s"] = sim.timeout_s
        if opts:
            options[name] = opts
    try:
        run.verification = verify(graph, x, run.recipe.verify, dt=run.dt, labels=labels,
                                  options=options, reference=ref, model=run.recipe.name)
    except NirbridgeError as exc:
        run.errors["verify"] = str(exc).splitlines()[0]


__all__ = ["CheckResult", "RecipeRun", "execute_recipe", "recipe_inputs"]
