"""Running a recipe: every stage from the torch model to the profile, and the checks
(:func:`execute_recipe`); the measurements land in a :class:`RecipeRun`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge.backends import get as get_backend
from nirbridge.data import is_spike_encoding
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
    samples: int  #: samples through the streamed stages (torch, reference, emulator)
    lava_samples: int = 0  #: the first samples Lava ran
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
    stream: Any = None  #: the :class:`~nirbridge.recipes.stream.StreamResult`
    lava_fixed_mismatch: list[int] = field(default_factory=list)  #: samples Lava ≠ emulator

    @property
    def failed(self) -> list[str]:
        """The failed checks, failed stages and sanity findings, as text."""
        out = [f"{c.key} ({c.text}; measured {format_value(c.value, c.key)})"
               for c in self.checks if not c.passed]
        out += [f"stage {s} failed: {e}" for s, e in self.errors.items()]
        out += [f"sanity: {f.message}" for f in self.findings]
        return out

    @property
    def total_seconds(self) -> float:
        """Wall time of every stage, each counted once: the streamed stage's wall time
        (``stream``) and not its parts (torch, reference, counting, calibration,
        emulator), nor the emulator's confirmation runs inside the Lava stages."""
        parts = ("torch", "reference", "counting", "calibration", "emulator",
                 "emulator_confirm")
        return sum(v for k, v in self.seconds.items() if k not in parts)

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
            "lava_samples": self.lava_samples, "dataset": self.recipe.data.dataset,
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


def recipe_source(recipe: Recipe) -> Any:
    """The recipe's data set split (:func:`nirbridge.datasets.open_source`)."""
    from nirbridge.datasets import open_source

    d = recipe.data
    return open_source(d.dataset, d.split, root=d.root, base=Path(recipe.path).parent)


def _sample_count(recipe: Recipe, source: Any, samples: int | None) -> int:
    n = samples or recipe.simulation.samples or len(source)
    if n > len(source):
        raise RecipeError(f"{recipe.path}: field 'simulation.samples': {n} samples asked "
                          f"for; the {recipe.data.dataset} {recipe.data.split} split has "
                          f"{len(source)}")
    return n


def recipe_batches(recipe: Recipe, samples: int | None = None, *,
                   batch_size: int | None = None) -> tuple[int, Any]:
    """``(n, batches)``: the number of samples the recipe evaluates and an iterator of
    encoded ``(inputs [T, B, ...], labels [B])`` batches over them, streamed from its
    data set (``[simulation] batch_size`` samples each unless ``batch_size`` is given)."""
    source = recipe_source(recipe)
    n = _sample_count(recipe, source, samples)
    d, sim = recipe.data, recipe.simulation
    try:
        it = source.batches(n, batch_size or sim.batch_size, d.encoding, sim.steps, d.seed)
    except NirbridgeError as exc:
        raise RecipeError(f"{recipe.path}: field 'data.dataset': {exc}") from exc
    return n, it


def recipe_inputs(recipe: Recipe, samples: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs ``[T, N, ...]`` and labels ``[N]`` of the recipe's split, all in
    memory (for small sets: training, tests; the recipe's own stages stream).

    The digits encoding is drawn over the whole split first, so the first ``samples``
    samples get the same spikes whatever ``samples`` is.
    """
    _, it = recipe_batches(recipe, samples)
    xs, ys = zip(*it, strict=True)
    return np.concatenate(xs, axis=1), np.concatenate(ys)


#: Training samples the fixed-point mantissas are calibrated on (never the scored split).
CALIBRATION_SAMPLES = 256


def calibration_inputs(recipe: Recipe) -> np.ndarray | None:
    """The first :data:`CALIBRATION_SAMPLES` samples of the recipe's ``train`` split,
    encoded as the recipe encodes (``[T, B, ...]``), for
    :func:`nirbridge.quantize.calibrate.calibrate`; None where the data set has no train
    split or the recipe scores the train split itself (then the plain rule is used)."""
    from nirbridge.datasets import open_source

    d = recipe.data
    if d.split == "train":
        return None
    try:
        src = open_source(d.dataset, "train", root=d.root, base=Path(recipe.path).parent)
        n = min(CALIBRATION_SAMPLES, len(src))
        x, _ = next(iter(src.batches(n, n, d.encoding, recipe.simulation.steps, d.seed)))
    except (NirbridgeError, StopIteration):
        return None
    return x


def _resolve_dt(recipe: Recipe, graph: Any, dt: float | None, option: str) -> Any:
    from nirbridge.passes import resolve_dt

    try:
        return resolve_dt(graph, dt, require=True, option=option,
                          hint="give model.dt in the recipe or --dt, or model.from / --from "
                               "FRAMEWORK")
    except NirbridgeError as exc:
        raise RecipeError(f"{recipe.path}: field 'model.dt': {recipe.model.nir}: "
                          f"{exc}") from exc


def lava_options(workers: int | None = None, cluster: str | None = None) -> dict[str, Any]:
    """The parallel options given for the Lava backends' ``run``: only those set, so that
    a run without them works with a backend that does not take them."""
    if workers is not None and workers < 1:
        raise RecipeError(f"--workers {workers}: give a positive number of processes")
    return {k: v for k, v in (("workers", workers), ("cluster", cluster)) if v is not None}


def execute_recipe(recipe: Recipe, *, echo: Echo = lambda s: None,
                   samples: int | None = None, out_dir: Path | None = None,
                   progress: bool | None = None, dt: float | None = None,
                   framework: str | None = None, strict: bool = False,
                   lava_samples: int | None = None, workers: int | None = None,
                   cluster: str | None = None, check: bool = True) -> RecipeRun:
    """Run every stage of ``recipe`` and evaluate its checks; never raises for a failed
    check or a failed Lava stage (they are recorded in the returned :class:`RecipeRun`).

    Every sample of the recipe's split (``samples``, else ``[simulation] samples``, else
    all) is streamed in batches through torch, the float64 reference and the fixed-point
    emulator (:mod:`nirbridge.recipes.stream`); Lava runs the first ``lava_samples``
    (else ``[simulation] lava_samples``, else :meth:`SimulationSpec.lava_count`), and in
    fixed_pt every one of them must hold the emulator's integers (check
    ``lava_fixed_identical``). ``out_dir`` overrides the output directory (where
    ``model.nir`` is written). ``echo`` receives one line per stage, with its time;
    ``progress`` shows tqdm bars (None: only on a terminal). ``dt`` and ``framework``
    override ``model.dt`` and ``model.from``; the sanity findings of the reference run
    (:mod:`nirbridge.sanity`) count as failed checks, and ``strict`` refuses a
    forward-Euler step with dt/τ > 1 before anything runs. ``workers``/``cluster`` go to
    the Lava backends' ``run`` (only when given). ``check``: before anything runs, a
    recipe that runs Lava is refused (:class:`CheckFailed`) when its graph breaks a
    design rule of ``[simulation] target`` (:func:`nirbridge.profile.rules.check_graph`).
    """
    import torch

    from nirbridge.api import read, to_nir, write
    from nirbridge.io.read import from_framework
    from nirbridge.passes import TimeStep
    from nirbridge.profile import estimate_energy, load_profile, map_to_chip
    from nirbridge.recipes.stream import stream_stages
    from nirbridge.sanity import check_time_step, refuse

    sim = recipe.simulation
    out_dir = Path(out_dir or recipe.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if samples is not None and samples < 1:
        raise RecipeError(f"--samples {samples}: give a positive number")
    if lava_samples is not None and lava_samples < 0:
        raise RecipeError(f"--lava-samples {lava_samples}: give a number >= 0 (0: no Lava)")
    if framework is not None and recipe.model.factory is not None:
        raise RecipeError(f"{recipe.path}: --from {framework} applies to a recipe of a .nir "
                          "file (model.nir); this one exports model.factory")
    parallel = lava_options(workers, cluster)
    n, batches = recipe_batches(recipe, samples)
    try:
        first = next(batches)
    except NirbridgeError as exc:
        raise RecipeError(f"{recipe.path}: field 'data.dataset': {exc}") from exc
    n_lava = min(n, lava_samples) if lava_samples is not None else sim.lava_count(n)
    run = RecipeRun(recipe=recipe, samples=n, lava_samples=n_lava)
    fixed = "fixed_pt" in sim.modes
    lava_modes = sim.modes if n_lava else ()
    qat = recipe.model.qat_checkpoint
    qat = fixed and qat is not None and qat.is_file()  # else its checks fail: not measured
    stages = 3 + len(lava_modes) + bool(recipe.verify and n_lava) + qat
    stage = 0
    what = (f"{n} {recipe.data.dataset} {recipe.data.split} samples ({recipe.data.encoding}, "
            f"T = {sim.steps}, batches of {sim.batch_size})")

    def step(text: str) -> float:
        nonlocal stage
        stage += 1
        echo(f"[{recipe.name} {stage}/{stages}] {text}")
        return time.perf_counter()

    def done(key: str, t0: float | None, text: str) -> None:
        if t0 is not None:
            run.seconds[key] = time.perf_counter() - t0
        echo(f"      {text} ({run.seconds[key]:.1f} s)")

    # --- model, export
    model = None
    if recipe.model.factory is not None:
        t0 = step(f"torch model {recipe.model.factory}({kwargs_text(recipe.model.kwargs)}) + "
                  f"{recipe.model.checkpoint.name if recipe.model.checkpoint else ''}: "
                  f"export to NIR, write, read back")
        model = _build_model(recipe)
        export_dt = dt if dt is not None else recipe.model.dt
        graph = to_nir(model, torch.from_numpy(first[0][0, :1]).float(),
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
    if check and lava_modes and load_profile(sim.target).mapper is not None:
        from nirbridge.profile.rules import check_graph, refuse_unfit

        refuse_unfit([check_graph(graph, sim.target, dt=run.dt)], echo=echo)
    if strict:
        refuse(check_time_step(graph, run.dt))

    # --- every sample: torch, reference, emulator (streamed)
    t0 = step(f"every sample, streamed: {what}: {'torch, ' if model is not None else ''}"
              f"{'fixed-point emulator, ' if fixed else ''}float64 reference executor, "
              f"{timestep.line}")

    def chained() -> Any:
        yield first
        try:
            yield from batches
        except NirbridgeError as exc:
            raise RecipeError(f"{recipe.path}: field 'data.dataset': {exc}") from exc

    res = stream_stages(graph, chained(), n=n, dt=run.dt, model=model, fixed=fixed,
                        target=sim.target, lava_n=n_lava, progress=progress,
                        spike_inputs=is_spike_encoding(recipe.data.encoding),
                        calibration=calibration_inputs(recipe) if fixed else None)
    run.stream = res
    run.seconds.update({k: v for k, v in res.seconds.items() if v})
    labels = res.labels
    m = run.metrics
    if res.torch_pred is not None:
        m["torch_accuracy"] = _pct((res.torch_pred == labels).mean())
        m["reference_torch_diff"] = res.torch_diff
    m["reference_accuracy"] = _pct((res.reference_pred == labels).mean())
    if res.fixed_pred is not None:
        m["fixed_accuracy"] = _pct((res.fixed_pred == labels).mean())
        m["fixed_accuracy_drop"] = m["reference_accuracy"] - m["fixed_accuracy"]
        m["fixed_spike_agreement"] = _pct(res.fixed_spike_agreement)
        m["fixed_prediction_agreement"] = _pct((res.fixed_pred == res.reference_pred).mean())
    run.seconds["stream"] = time.perf_counter() - t0
    done("stream", None, "; ".join(
        ([f"torch {m['torch_accuracy']:.2f}% ({run.seconds.get('torch', 0):.1f} s)"]
         if "torch_accuracy" in m else []) +
        [f"reference {m['reference_accuracy']:.2f}% ({run.seconds['reference']:.1f} s)"] +
        ([f"max |Δ| vs torch {m['reference_torch_diff']:.2g}"] if "torch_accuracy" in m
         else []) +
        ([f"emulator {m['fixed_accuracy']:.2f}%, spikes identical to the reference "
          f"{m['fixed_spike_agreement']:.3f}% ({run.seconds['emulator']:.1f} s)"]
         if fixed else [])))
    run.findings = res.findings
    for f in run.findings:
        echo(f"      warning: {f.message}")

    if qat:
        from nirbridge.recipes.qat_stage import qat_stage

        step(f"QAT checkpoint {recipe.model.qat_checkpoint.name}: every sample, streamed "
             f"(torch, reference, emulator); Lava fixed_pt on the first {n_lava}")
        # qat_stage times its parts, "qat" (streamed) and "lava_qat", without overlap
        text = qat_stage(run, first, recipe_batches(recipe, samples), n_lava=n_lava,
                         progress=progress, parallel=parallel, lava_stage=_lava_stage)
        echo(f"      {text} ({run.seconds['qat'] + run.seconds.get('lava_qat', 0.0):.1f} s)")

    # --- Lava, on the first n_lava samples
    x_sub, y_sub = res.lava_x, res.lava_labels
    ref_sub = None
    if not n_lava:
        echo("      Lava not run: lava_samples = 0 (the emulator's scores stand alone)")
    for mode in lava_modes:
        short = MODE_SHORT[mode]
        t0 = step(f"Lava {mode} ({sim.target} simulation), first {n_lava} of {n} samples × "
                  f"{sim.steps} steps" + (", each confirmed against the emulator's integers"
                                          if mode == "fixed_pt" else ""))
        try:
            if ref_sub is None:
                ref_sub = get_backend("reference").run(graph, x_sub, record=True, dt=run.dt)
            _lava_stage(run, graph, mode, x_sub, y_sub, ref_sub, res.quant, progress,
                        parallel)
        except NirbridgeError as exc:
            run.errors[f"lava_{short}"] = str(exc).splitlines()[0]
            done(f"lava_{short}", t0, f"FAILED: {run.errors[f'lava_{short}']}")
            continue
        done(f"lava_{short}", t0, f"accuracy {m[f'lava_{short}_accuracy']:.2f}%, spikes "
             f"identical to the reference {m[f'lava_{short}_spike_agreement']:.3f}%" + (
                 f"; integers identical to the emulator on "
                 f"{m['lava_fixed_identical']:.2f}% of {n_lava} samples"
                 if mode == "fixed_pt" else ""))

    # --- profile
    t0 = step(f"profile: event counts of {n} samples, energy on {', '.join(recipe.targets)}")
    run.counts = res.counts
    for tname in recipe.targets:
        prof = load_profile(tname)
        run.energies.append(estimate_energy(run.counts, prof,
                                            time_step_s=recipe.time_step_s))
        if prof.mapper is not None:
            run.mappings.append(map_to_chip(graph, prof, run.counts))
    node = next((k for k, c in run.counts.neurons.items() if c.spiking), None)
    if node is not None:
        from nirbridge.report import raster_from_records

        run.raster, run.raster_node = raster_from_records(res.first_records, node), node
    done("profile", t0, f"{run.sops:.4g} SOPs per sample")

    # --- verify
    if recipe.verify and not n_lava:
        run.errors["verify"] = "no samples kept for it (lava_samples = 0)"
    elif recipe.verify:
        t0 = step(f"verify: {', '.join(recipe.verify)} against the reference, per layer, "
                  f"on the first {n_lava} samples")
        if ref_sub is None:
            ref_sub = get_backend("reference").run(graph, x_sub, record=True, dt=run.dt)
        _verify_stage(run, graph, x_sub, y_sub, ref_sub)
        done("verify", t0, "; ".join(
            f"{b.backend} {'PASS' if b.passed else 'FAIL'}"
            for b in run.verification.backends) if run.verification is not None
            else f"FAILED: {run.errors['verify']}")

    # --- checks
    for c in recipe.checks:
        value = m.get(c.metric)
        run.checks.append(CheckResult(c.key, c.text, value, c.passes(value)))
    if "fixed_pt" in lava_modes and not any(c.metric == "lava_fixed_identical"
                                           for c in recipe.checks):
        value = m.get("lava_fixed_identical")
        run.checks.append(CheckResult(
            "lava_fixed_identical", f"Lava fixed_pt integers identical to the emulator's on "
            f"every confirmed sample ({n_lava})", value, value == 100.0))
    if "qat_lava_fixed_identical" in m and not any(
            c.metric == "qat_lava_fixed_identical" for c in recipe.checks):
        value = m["qat_lava_fixed_identical"]
        run.checks.append(CheckResult(
            "qat_lava_fixed_identical", "QAT: Lava fixed_pt integers identical to the "
            f"emulator's on every confirmed sample ({n_lava})", value, value == 100.0))
    if run.verification is not None:
        v = run.verification
        ran = v.verified
        value = _pct(sum(b.passed for b in ran) / len(ran)) if ran else None
        run.checks.append(CheckResult(
            "verify", f"verify: {', '.join(recipe.verify)} within their tolerances "
            f"(backends passing)", value, v.passed))
    return run


def _lava_stage(run: RecipeRun, graph: Any, mode: str, x: np.ndarray, labels: np.ndarray,
                ref: Any, quant: Any, progress: bool | None,
                parallel: dict[str, Any]) -> None:
    """One Lava mode on the kept samples against the reference; in fixed_pt with the
    emulator's quantization, and each sample's integers compared with the emulator's."""
    from nirbridge.deploy import BACKEND_OF_MODE, DeployResult
    from nirbridge.recipes.stream import identical_samples
    from nirbridge.verify import compare

    sim, short, m = run.recipe.simulation, MODE_SHORT[mode], run.metrics
    options: dict[str, Any] = dict(timeout_s=sim.timeout_s, progress=progress, **parallel)
    if mode == "fixed_pt":
        options["quant"] = quant
    cmp = compare(graph, x, "reference", BACKEND_OF_MODE[mode], labels=labels,
                  options_b=options, result_a=ref, dt=run.dt)
    res = DeployResult.from_comparison(cmp, mode, sim.target)
    res.dt_source = run.dt_source
    run.deploys[mode] = res
    m[f"lava_{short}_accuracy"] = _pct(res.lava_accuracy)
    m[f"lava_{short}_spike_agreement"] = _pct(res.spike_agreement)
    if mode == "floating_pt":
        m["float_accuracy"] = _pct(res.lava_accuracy)
        m["float_accuracy_drop"] = _pct(res.accuracy_drop)
        m["float_spike_agreement"] = _pct(res.spike_agreement)
        m["float_prediction_agreement"] = _pct(res.prediction_agreement)
        return
    t0 = time.perf_counter()
    emu = get_backend("fixed").run(graph, x, record=True, dt=run.dt, quant=quant)
    run.seconds["emulator_confirm"] = time.perf_counter() - t0
    if not (emu.info.get("fixed_records") and cmp.result_b.info.get("fixed_records")):
        raise RecipeError("the fixed-point runs recorded no integers to compare")
    same = identical_samples(emu, cmp.result_b)
    run.lava_fixed_mismatch = [int(i) for i in np.flatnonzero(~same)]
    m["lava_fixed_identical"] = _pct(same.mean())


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


__all__ = ["CALIBRATION_SAMPLES", "CheckResult", "RecipeRun", "calibration_inputs",
           "execute_recipe", "lava_options", "recipe_batches",
           "recipe_inputs", "recipe_source"]
