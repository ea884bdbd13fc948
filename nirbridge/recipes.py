"""Deployment recipes: one TOML file says what to deploy, where, and what must hold.

``nirbridge deploy RECIPE.toml`` (:func:`run_recipe`) runs, with progress lines:

1. the model: the factory called with its keyword arguments and the checkpoint loaded
   (``torch.load(weights_only=True)``), or a ``.nir`` file;
2. the data: the recipe's split of the data set, encoded over ``steps`` time steps;
3. torch accuracy (the trained module, float64);
4. export to NIR, written to the output directory and read back;
5. reference accuracy (nirbridge's float64 executor on the file read back) and the
   largest output difference from torch;
6. Lava floating_pt and 7. Lava fixed_pt (Loihi 2 simulation; per-layer spike agreement
   with the reference, prediction agreement, accuracy);
8. profile: event counts of the reference run, energy per target, chip mapping;

then prints one summary table, writes the JSON and HTML reports, and fails with
:class:`~nirbridge.errors.CheckFailed` (exit code 3) when a check is not met.

Recipe schema (every error names the file and the field)::

    name = "digits_lif"                          # str: names the outputs
    description = "..."                          # str, optional

    [model]                                      # factory + checkpoint, or nir
    factory = "nirbridge.examples:digits_conv_snn"   # MODULE_OR_FILE:FACTORY
    kwargs = {neuron = "lif"}                    # optional: the factory's arguments
    checkpoint = "checkpoints/digits_lif.pt"     # state_dict, relative to the recipe
    # nir = "model.nir"                          # instead of factory: a NIR file
    dt = 1.0                                     # optional: the graph's time step

    [data]
    dataset = "digits"                           # see nirbridge.data.DATASETS
    split = "test"                               # optional: test (default) | train
    encoding = "direct"                          # direct | rate | latency
    seed = 0                                     # optional: seed of the rate encoding

    [simulation]
    steps = 8                                    # time steps per sample
    samples = 360                                # samples through every stage
    modes = ["floating_pt", "fixed_pt"]          # optional: Lava modes run (default both)
    target = "loihi2"                            # optional: simulated target (quantization)
    timeout_s = 600.0                            # optional: time limit of each Lava run

    [profile]
    targets = ["loihi2", "cmos45-fp32"]          # energy per sample for each profile

    [checks]                                     # optional; min_/max_ + metric
    max_fixed_accuracy_drop = 1.0                # percentage points
    min_fixed_spike_agreement = 99.0             # percent

    [train]                                      # optional: `nirbridge train RECIPE`
    epochs = 20
    batch_size = 64
    lr = 0.01
    seed = 0

    [output]
    dir = "out/digits_lif"                       # optional (default out/<name>), relative
                                                 # to the current directory

Check metrics (:data:`METRICS`): accuracies and agreements in percent, accuracy drops in
percentage points (reference accuracy − Lava accuracy on the same samples),
``reference_torch_diff`` as an absolute output difference. A check whose metric could
not be measured (its stage failed) fails.
"""

from __future__ import annotations

import copy
import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge.data import DATASETS, ENCODINGS, encode, is_spike_encoding, load_split
from nirbridge.errors import CheckFailed, NirbridgeError, RecipeError

Echo = Callable[[str], None]

MODES = ("floating_pt", "fixed_pt")
#: Short names of the Lava modes in tables and metric names.
MODE_SHORT = {"floating_pt": "float", "fixed_pt": "fixed"}

#: Check metrics: name → (description, unit, Lava mode it needs or None).
METRICS: dict[str, tuple[str, str, str | None]] = {
    "torch_accuracy": ("accuracy of the PyTorch model", "%", None),
    "reference_accuracy": ("accuracy of the float64 reference run of the .nir", "%", None),
    "reference_torch_diff": ("max |Δ| between reference and torch outputs", "", None),
    "float_accuracy": ("accuracy in Lava floating_pt", "%", "floating_pt"),
    "fixed_accuracy": ("accuracy in Lava fixed_pt", "%", "fixed_pt"),
    "float_accuracy_drop": ("reference − Lava floating_pt accuracy", " pt", "floating_pt"),
    "fixed_accuracy_drop": ("reference − Lava fixed_pt accuracy", " pt", "fixed_pt"),
    "float_spike_agreement": ("identical spikes, Lava floating_pt vs reference", "%",
                              "floating_pt"),
    "fixed_spike_agreement": ("identical spikes, Lava fixed_pt vs reference", "%",
                              "fixed_pt"),
    "float_prediction_agreement": ("same predicted class, floating_pt vs reference", "%",
                                   "floating_pt"),
    "fixed_prediction_agreement": ("same predicted class, fixed_pt vs reference", "%",
                                   "fixed_pt"),
}


# ================================================================================ schema
@dataclass(frozen=True)
class ModelSpec:
    """What to deploy: ``factory(**kwargs)`` + ``checkpoint``, or a ``.nir`` file."""

    factory: str | None
    kwargs: dict[str, Any]
    checkpoint: Path | None
    nir: Path | None
    dt: float = 1.0

    @property
    def neuron(self) -> str | None:
        """The neuron kind named in the factory's arguments, if any."""
        v = self.kwargs.get("neuron")
        return None if v is None else str(v)


@dataclass(frozen=True)
class DataSpec:
    """The data set, split and encoding."""

    dataset: str
    split: str = "test"
    encoding: str = "direct"
    seed: int = 0


@dataclass(frozen=True)
class SimulationSpec:
    """Time steps, samples and Lava settings."""

    steps: int
    samples: int
    modes: tuple[str, ...] = MODES
    target: str = "loihi2"
    timeout_s: float = 600.0


@dataclass(frozen=True)
class TrainSpec:
    """Training settings for :mod:`nirbridge.train`."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    seed: int = 0


@dataclass(frozen=True)
class Check:
    """``metric`` must be ``>= bound`` (``kind == "min"``) or ``<= bound`` (``"max"``)."""

    key: str  #: the recipe's field name, e.g. ``max_fixed_accuracy_drop``
    kind: str
    metric: str
    bound: float

    def passes(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.kind == "min" else value <= self.bound

    @property
    def text(self) -> str:
        unit = METRICS[self.metric][1]
        return f"{self.metric} {'≥' if self.kind == 'min' else '≤'} {self.bound:g}{unit}"


@dataclass(frozen=True)
class Recipe:
    """A deployment recipe, loaded and schema-checked by :func:`load_recipe`."""

    path: Path
    name: str
    description: str
    model: ModelSpec
    data: DataSpec
    simulation: SimulationSpec
    targets: tuple[str, ...]
    checks: tuple[Check, ...]
    train: TrainSpec
    output_dir: Path

    def to_dict(self) -> dict[str, Any]:
        """The recipe's settings as plain JSON values."""
        m, d, s, t = self.model, self.data, self.simulation, self.train
        return {
            "path": str(self.path), "name": self.name, "description": self.description,
            "model": {"factory": m.factory, "kwargs": dict(m.kwargs),
                      "checkpoint": None if m.checkpoint is None else str(m.checkpoint),
                      "nir": None if m.nir is None else str(m.nir), "dt": m.dt},
            "data": {"dataset": d.dataset, "split": d.split, "encoding": d.encoding,
                     "seed": d.seed},
            "simulation": {"steps": s.steps, "samples": s.samples, "modes": list(s.modes),
                           "target": s.target, "timeout_s": s.timeout_s},
            "targets": list(self.targets),
            "checks": {c.key: c.bound for c in self.checks},
            "train": {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
                      "seed": t.seed},
            "output_dir": str(self.output_dir),
        }


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
               dict: "a table", list: "an array"}


class _Fields:
    """Typed access to a recipe's tables; every error names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, fld: str, msg: str) -> RecipeError:
        return RecipeError(f"{self.path}: field '{fld}': {msg}")

    def get(self, table: Mapping[str, Any], key: str, fld: str, types: tuple[type, ...],
            required: bool = True, default: Any = None) -> Any:
        if key not in table:
            if required:
                want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
                raise self.fail(fld, f"missing; give {want}")
            return default
        v = table[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise self.fail(fld, f"has type {type(v).__name__} ({v!r}); expected {want}")
        return v

    def number(self, table: Mapping[str, Any], key: str, fld: str, required: bool = True,
               default: float | None = None, positive: bool = False) -> float | None:
        v = self.get(table, key, fld, (int, float), required, default)
        if v is None:
            return None
        v = float(v)
        if not math.isfinite(v) or (positive and v <= 0):
            raise self.fail(fld, f"{v} must be a finite number{' > 0' if positive else ''}")
        return v

    def integer(self, table: Mapping[str, Any], key: str, fld: str, required: bool = True,
                default: int | None = None, minimum: int = 1) -> int | None:
        v = self.get(table, key, fld, (int,), required, default)
        if v is not None and v < minimum:
            raise self.fail(fld, f"{v} must be at least {minimum}")
        return v

    def choice(self, table: Mapping[str, Any], key: str, fld: str,
               choices: Sequence[str], required: bool = True, default: str | None = None
               ) -> str | None:
        v = self.get(table, key, fld, (str,), required, default)
        if v is not None and v not in choices:
            raise self.fail(fld, f"'{v}' is unknown; use one of {', '.join(choices)}")
        return v

    def table(self, data: Mapping[str, Any], key: str, known: Sequence[str],
              required: bool = True) -> dict[str, Any]:
        t = self.get(data, key, key, (dict,), required, {})
        self.unknown(t, known, f"{key}.")
        return t

    def unknown(self, table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
        extra = sorted(set(table) - set(known))
        if extra:
            raise self.fail(f"{where}{extra[0]}", "unknown field; known fields here: "
                                                  f"{', '.join(sorted(known))}")

    def file(self, value: str, fld: str, must_exist: bool) -> Path:
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = (self.path.parent / p).resolve()
        if must_exist and not p.is_file():
            raise self.fail(fld, f"file '{p}' does not exist" + (
                " (train it with `nirbridge train " + str(self.path) + "`)"
                if fld == "model.checkpoint" else ""))
        return p


def _target(f: _Fields, name: str, fld: str, need_quantization: bool = False) -> str:
    """A target profile name (or a path, resolved against the recipe) that loads."""
    from nirbridge.profile import list_profiles, load_profile

    ref = name
    if name.endswith(".toml") or "/" in name:
        ref = str(f.file(name, fld, must_exist=True))
    try:
        prof = load_profile(ref)
    except NirbridgeError as exc:
        raise f.fail(fld, f"unknown target '{name}': {exc} (shipped targets: "
                          f"{', '.join(list_profiles())})") from None
    if need_quantization and prof.quantization is None:
        raise f.fail(fld, f"target '{name}' has no [quantization] table: Lava simulates "
                          "Loihi 2; use loihi2 or a profile derived from it")
    return ref


def _check_factory(f: _Fields, spec: str, kwargs: dict[str, Any]) -> None:
    """The factory imports and builds a torch module from ``kwargs``."""
    import torch

    from nirbridge.cli import load_factory

    try:
        factory = load_factory(spec)
    except NirbridgeError as exc:
        raise f.fail("model.factory", str(exc)) from None
    try:
        model = factory(**kwargs)
    except Exception as exc:
        fld = "model.kwargs.neuron" if "neuron" in kwargs and "neuron" in str(exc) else (
            "model.kwargs")
        raise f.fail(fld, f"factory '{spec}' failed with these arguments: "
                          f"{type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise f.fail("model.factory", f"'{spec}' returned {type(model).__name__}, not a "
                                      "torch.nn.Module")


def load_recipe(path: str | Path, *, require_checkpoint: bool = True) -> Recipe:
    """Load and schema-check a recipe (see the module docstring).

    Raises :class:`RecipeError` naming the file and the field for a missing field, a
    wrong type, an unknown field, data set, encoding, mode or target, a factory that does
    not import or build, a missing checkpoint (unless ``require_checkpoint`` is false, as
    for training) or ``.nir`` file, or a check on a metric the recipe does not measure.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from exc
    f = _Fields(path)
    f.unknown(data, ("name", "description", "model", "data", "simulation", "profile",
                     "checks", "train", "output"), "")
    name = f.get(data, "name", "name", (str,))
    if not name or any(c in name for c in "/\\"):
        raise f.fail("name", f"{name!r} must be a non-empty name without slashes")
    description = f.get(data, "description", "description", (str,), False, "")

    # --- model
    m = f.table(data, "model", ("factory", "kwargs", "checkpoint", "nir", "dt"))
    if ("factory" in m) == ("nir" in m):
        raise f.fail("model.factory", "give either model.factory (with model.checkpoint) "
                                      "or model.nir, not both" if "nir" in m else
                     "missing; give a string MODULE_OR_FILE:FACTORY (or model.nir)")
    dt = f.number(m, "dt", "model.dt", False, 1.0, positive=True)
    if "factory" in m:
        factory = f.get(m, "factory", "model.factory", (str,))
        kwargs = f.get(m, "kwargs", "model.kwargs", (dict,), False, {})
        ckpt_s = f.get(m, "checkpoint", "model.checkpoint", (str,))
        checkpoint = f.file(ckpt_s, "model.checkpoint", require_checkpoint)
        _check_factory(f, factory, kwargs)
        model = ModelSpec(factory, dict(kwargs), checkpoint, None, dt)
    else:
        if "checkpoint" in m or "kwargs" in m:
            raise f.fail("model.checkpoint" if "checkpoint" in m else "model.kwargs",
                         "only with model.factory; a .nir file holds its own weights")
        nir_path = f.file(f.get(m, "nir", "model.nir", (str,)), "model.nir", True)
        model = ModelSpec(None, {}, None, nir_path, dt)

    # --- data
    d = f.table(data, "data", ("dataset", "split", "encoding", "seed"))
    dspec = DataSpec(
        dataset=f.choice(d, "dataset", "data.dataset", sorted(DATASETS)),
        split=f.choice(d, "split", "data.split", ("test", "train"), False, "test"),
        encoding=f.choice(d, "encoding", "data.encoding", ENCODINGS),
        seed=f.integer(d, "seed", "data.seed", False, 0, minimum=0),
    )

    # --- simulation
    s = f.table(data, "simulation", ("steps", "samples", "modes", "target", "timeout_s"))
    modes = f.get(s, "modes", "simulation.modes", (list,), False, list(MODES))
    for i, mode in enumerate(modes):
        if not isinstance(mode, str) or mode not in MODES:
            raise f.fail(f"simulation.modes[{i}]", f"{mode!r} is unknown; use "
                                                   f"{' or '.join(MODES)}")
    target = f.get(s, "target", "simulation.target", (str,), False, "loihi2")
    sim = SimulationSpec(
        steps=f.integer(s, "steps", "simulation.steps"),
        samples=f.integer(s, "samples", "simulation.samples"),
        modes=tuple(dict.fromkeys(modes)),
        target=_target(f, target, "simulation.target", need_quantization=True),
        timeout_s=f.number(s, "timeout_s", "simulation.timeout_s", False, 600.0,
                           positive=True),
    )

    # --- profile
    p = f.table(data, "profile", ("targets",))
    names = f.get(p, "targets", "profile.targets", (list,))
    if not names:
        raise f.fail("profile.targets", "is empty; name at least one target profile")
    targets = []
    for i, t in enumerate(names):
        if not isinstance(t, str):
            raise f.fail(f"profile.targets[{i}]", f"has type {type(t).__name__} ({t!r}); "
                                                  "expected a string")
        targets.append(_target(f, t, f"profile.targets[{i}]"))

    # --- checks
    c = f.get(data, "checks", "checks", (dict,), False, {})
    checks = []
    for key in c:
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or metric not in METRICS:
            raise f.fail(f"checks.{key}", "unknown check; use min_METRIC or max_METRIC "
                                          f"with METRIC one of {', '.join(METRICS)}")
        needs = METRICS[metric][2]
        if needs is not None and needs not in sim.modes:
            raise f.fail(f"checks.{key}", f"needs Lava {needs}, which simulation.modes "
                                          "does not run")
        if metric in ("torch_accuracy", "reference_torch_diff") and model.factory is None:
            raise f.fail(f"checks.{key}", "needs a torch model (model.factory); this "
                                          "recipe deploys a .nir file")
        checks.append(Check(key, kind, metric, f.number(c, key, f"checks.{key}")))

    # --- train
    t = f.table(data, "train", ("epochs", "batch_size", "lr", "seed"), required=False)
    train = TrainSpec(
        epochs=f.integer(t, "epochs", "train.epochs", False, 20),
        batch_size=f.integer(t, "batch_size", "train.batch_size", False, 64),
        lr=f.number(t, "lr", "train.lr", False, 1e-2, positive=True),
        seed=f.integer(t, "seed", "train.seed", False, 0, minimum=0),
    )

    # --- output
    o = f.table(data, "output", ("dir",), required=False)
    out_dir = Path(f.get(o, "dir", "output.dir", (str,), False, f"out/{name}"))

    return Recipe(path=path, name=name, description=description, model=model, data=dspec,
                  simulation=sim, targets=tuple(targets), checks=tuple(checks), train=train,
                  output_dir=out_dir)


# =========================================================================== running
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

    @property
    def failed(self) -> list[str]:
        """The failed checks and failed stages, as text."""
        out = [f"{c.key} ({c.text}; measured {_fmt_value(c.value, c.key)})"
               for c in self.checks if not c.passed]
        out += [f"stage {s} failed: {e}" for s, e in self.errors.items()]
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
            "seconds": dict(self.seconds),
        }


def _fmt_value(v: float | None, key: str) -> str:
    if v is None:
        return "not measured"
    if key.endswith("reference_torch_diff"):
        return f"{v:.2g}"
    unit = " points" if key.endswith("_drop") else "%"
    return f"{v:.2f}{unit}"


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def _build_model(recipe: Recipe) -> Any:
    """The recipe's torch module with its checkpoint loaded, in eval mode."""
    import torch

    from nirbridge.cli import load_factory

    spec = recipe.model
    assert spec.factory is not None and spec.checkpoint is not None
    model = load_factory(spec.factory)(**spec.kwargs)
    if not spec.checkpoint.is_file():
        raise RecipeError(f"{recipe.path}: field 'model.checkpoint': file "
                          f"'{spec.checkpoint}' does not exist")
    try:
        state = torch.load(spec.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RecipeError(f"{recipe.path}: field 'model.checkpoint': cannot load "
                          f"'{spec.checkpoint}' with weights_only=True: "
                          f"{type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise RecipeError(f"{recipe.path}: field 'model.checkpoint': '{spec.checkpoint}' "
                          f"does not fit the model: {exc}") from exc
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
    from nirbridge.deploy import predictions

    return predictions(out)


def execute_recipe(recipe: Recipe, *, echo: Echo = lambda s: None,
                   samples: int | None = None, out_dir: Path | None = None,
                   progress: bool | None = None) -> RecipeRun:
    """Run every stage of ``recipe`` and evaluate its checks; never raises for a failed
    check or a failed Lava stage (they are recorded in the returned :class:`RecipeRun`).

    ``samples`` overrides the recipe's number of samples; ``out_dir`` its output
    directory (where ``model.nir`` is written). ``echo`` receives one line per stage;
    ``progress`` shows tqdm bars of the Lava runs (None: only on a terminal).
    """
    import torch

    from nirbridge.api import read, to_nir, write
    from nirbridge.backends.reference import run_reference
    from nirbridge.deploy import deploy_graph
    from nirbridge.neurons import run_steps
    from nirbridge.profile import count_events, estimate_energy, load_profile, map_to_chip

    sim = recipe.simulation
    out_dir = Path(out_dir or recipe.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if samples is not None and samples < 1:
        raise RecipeError(f"--samples {samples}: give a positive number")
    x, labels = recipe_inputs(recipe, samples)
    n = int(x.shape[1])
    run = RecipeRun(recipe=recipe, samples=n)
    stages = 4 + len(sim.modes)
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
        t0 = step(f"torch model {recipe.model.factory}({_kwargs(recipe.model.kwargs)}) + "
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
        graph = to_nir(model, torch.from_numpy(x[0, :1]).float(), dt=recipe.model.dt)
        run.nir_path = out_dir / "model.nir"
        write(run.nir_path, graph)
        graph = read(run.nir_path)
        done("export", t0, f"wrote {run.nir_path}: {len(graph.nodes)} nodes")
    else:
        t0 = step(f"read {recipe.model.nir}")
        graph = read(recipe.model.nir)
        run.nir_path = recipe.model.nir
        done("export", t0, f"{len(graph.nodes)} nodes")

    # --- reference
    t0 = step("float64 reference executor")
    ref_out, records = run_reference(graph, torch.from_numpy(x), record=True)
    ref_out = ref_out.numpy()
    run.metrics["reference_accuracy"] = _pct((_predict(ref_out) == labels).mean())
    text = f"reference accuracy {run.metrics['reference_accuracy']:.2f}%"
    if torch_out is not None:
        diff = float(np.abs(ref_out - torch_out).max())
        run.metrics["reference_torch_diff"] = diff
        text += f", max |Δ| vs torch {diff:.2g}"
    done("reference", t0, text)

    # --- Lava
    for mode in sim.modes:
        short = MODE_SHORT[mode]
        t0 = step(f"Lava {mode} ({sim.target} simulation), {n} samples × {sim.steps} steps")
        try:
            res = deploy_graph(graph, x, mode=mode, target=sim.target, labels=labels,
                               timeout_s=sim.timeout_s, progress=progress)
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

    # --- checks
    for c in recipe.checks:
        value = run.metrics.get(c.metric)
        run.checks.append(CheckResult(c.key, c.text, value, c.passes(value)))
    return run


def _kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# ============================================================================ output
def _si(j: float | None) -> str:
    if j is None:
        return "n/a"
    for scale, unit in ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j:.3g} J"


def energy_cell(e: Any) -> str:
    """An energy per sample for a table: the total, or ``≥ known terms`` when a charged
    constant is unpublished (the total is then unknown), or ``n/a``."""
    if e is None:
        return "n/a"
    if e.total_j is not None:
        return _si(e.total_j)
    return f"≥ {_si(e.known_j)}" if e.known_j else "n/a"


def _p(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}%"


def _grid(rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stage_rows(run: RecipeRun) -> list[list[str]]:
    """The per-stage summary of one run: header first."""
    m = run.metrics
    rows = [["stage", "accuracy", "Δ vs reference", "spikes identical", "same prediction",
             "seconds"]]
    if "torch_accuracy" in m:
        rows.append(["torch (trained module)", _p(m["torch_accuracy"]),
                     f"max |Δ| {m.get('reference_torch_diff', 0.0):.1g}", "-", "-",
                     f"{run.seconds.get('torch', 0.0):.1f}"])
    rows.append(["reference (.nir, float64)", _p(m.get("reference_accuracy")), "-", "-",
                 "-", f"{run.seconds.get('reference', 0.0):.1f}"])
    for mode in run.recipe.simulation.modes:
        short = MODE_SHORT[mode]
        if f"lava_{short}" in run.errors:
            rows.append([f"Lava {mode}", "FAILED", run.errors[f"lava_{short}"][:40], "-",
                         "-", f"{run.seconds.get(f'lava_{short}', 0.0):.1f}"])
            continue
        drop = m.get(f"{short}_accuracy_drop")
        rows.append([f"Lava {mode}", _p(m.get(f"{short}_accuracy")),
                     "-" if drop is None else f"{0.0 - drop:+.2f} pt",
                     _p(m.get(f"{short}_spike_agreement"), 3),
                     _p(m.get(f"{short}_prediction_agreement")),
                     f"{run.seconds.get(f'lava_{short}', 0.0):.1f}"])
    return rows


def format_run(run: RecipeRun) -> str:
    """One recipe's summary: the stage table, SOPs and energy, and the checks."""
    r = run.recipe
    lines = [f"{r.name}: {r.model.factory or r.model.nir}"
             f"{' (' + _kwargs(r.model.kwargs) + ')' if r.model.kwargs else ''}, "
             f"{r.data.dataset} {r.data.split} split, {run.samples} samples, "
             f"T = {r.simulation.steps}, {r.data.encoding} encoding",
             _grid(stage_rows(run))]
    if run.counts is not None:
        c = run.counts
        lines.append(f"per sample: {c.sop_effective:.4g} SOPs ({c.sop_ac:.4g} AC, "
                     f"{c.sop_mac:.4g} MAC; dense {c.sop_dense:.4g}), {c.spikes:.4g} spikes")
        lines.append("energy per sample (model estimates): " + "; ".join(
            f"{e.profile} {energy_cell(e)}" + (f" (known terms; unpublished: "
                                              f"{', '.join(e.missing)})" if e.missing else "")
            for e in run.energies))
    for cr in run.checks:
        lines.append(f"check {'PASS' if cr.passed else 'FAIL'}: {cr.text} "
                     f"(measured {_fmt_value(cr.value, cr.key)})")
    for s, e in run.errors.items():
        lines.append(f"stage FAILED: {s}: {e}")
    return "\n".join(lines)


def summary_table(runs: Sequence[RecipeRun], targets: Sequence[str] | None = None, *,
                  markdown: bool = False) -> str:
    """One row per run: the README's table (accuracies in %, spikes identical float /
    fixed in %, SOPs and energy per sample on each target; ``≥`` marks a total of which
    only the known terms could be priced)."""
    if targets is None:
        targets = list(dict.fromkeys(e.profile for r in runs for e in r.energies))
    header = ["recipe", "neuron", "input", "samples", "torch", "reference", "Lava float",
              "Lava fixed", "spikes identical float / fixed", "SOPs/sample",
              *[f"energy {t}" for t in targets]]
    rows = [header]
    for r in runs:
        m = r.metrics
        rows.append([
            r.recipe.name, r.recipe.model.neuron or "-",
            f"{r.recipe.data.encoding}, T={r.recipe.simulation.steps}", str(r.samples),
            _p(m.get("torch_accuracy")), _p(m.get("reference_accuracy")),
            _p(m.get("float_accuracy")), _p(m.get("fixed_accuracy")),
            f"{_p(m.get('float_spike_agreement'))} / {_p(m.get('fixed_spike_agreement'))}",
            "-" if r.sops is None else f"{r.sops:,.0f}",
            *[energy_cell(r.energy_report(t)) for t in targets],
        ])
    return _grid(rows, markdown)


def build_recipe_report(run: RecipeRun) -> dict[str, Any]:
    """The JSON document: the profiling report (:data:`nirbridge.report.REPORT_SCHEMA`)
    of the reference run, with the recipe, the stage metrics, the per-layer Lava
    agreement and the checks under ``meta``."""
    from nirbridge.report import build_report

    meta = {
        "kind": "deployment",
        "recipe": run.recipe.to_dict(),
        "samples": run.samples,
        "summary": run.summary(),
        "deploy": {mode: res.to_dict() for mode, res in run.deploys.items()},
        "errors": dict(run.errors),
        "checks": [c.to_dict() for c in run.checks],
        "passed": not run.failed,
        "nir": None if run.nir_path is None else str(run.nir_path),
    }
    return build_report(run.counts, run.energies, run.mappings, model=run.recipe.name,
                        meta=meta)


def _report_sections(run: RecipeRun) -> list[tuple[str, list[list[str]], list[str]]]:
    sections: list[tuple[str, list[list[str]], list[str]]] = []
    r = run.recipe
    sections.append(("Deployment summary", stage_rows(run), [
        f"{r.data.dataset} {r.data.split} split, {run.samples} samples, T = "
        f"{r.simulation.steps}, {r.data.encoding} encoding; Lava simulates "
        f"{r.simulation.target}",
        "spikes identical: fraction of (step, sample, neuron) entries of every spiking "
        "layer equal to the reference's", *[f"stage failed: {s}: {e}"
                                            for s, e in run.errors.items()]]))
    if run.checks:
        sections.append(("Checks", [["check", "condition", "measured", "result"], *[
            [c.key, c.text, _fmt_value(c.value, c.key), "pass" if c.passed else "FAIL"]
            for c in run.checks]], []))
    for mode, res in run.deploys.items():
        rows = [["layer", "type", "spikes ref", "spikes Lava", "identical", "first diff"]]
        rows += [[la.node, la.op, f"{la.reference_spikes:.1f}", f"{la.lava_spikes:.1f}",
                  f"{100 * la.identical:.3f}%",
                  "-" if la.first_divergent_step is None else str(la.first_divergent_step)]
                 for la in res.layers]
        sections.append((f"Lava {mode}: agreement per layer (spikes per sample)", rows, [
            f"output: {100 * res.output_identical:.3f}% identical values, max |Δ| "
            f"{res.output_max_abs_diff:.3g}"]))
    return sections


def _accuracy_plot(run: RecipeRun) -> bytes | None:
    names, values = [], []
    for key, label in (("torch_accuracy", "torch"), ("reference_accuracy", "reference"),
                       ("float_accuracy", "Lava float"), ("fixed_accuracy", "Lava fixed")):
        if run.metrics.get(key) is not None:
            names.append(label)
            values.append(run.metrics[key])
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nirbridge.report import _png

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(range(len(names)), values, color=["C0", "C1", "C2", "C3"][:len(names)])
    for b, v in zip(bars, values, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom",
                fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(max(0.0, min(values) - 10), 100.5)
    ax.set_ylabel("accuracy, %")
    ax.set_title(f"{run.recipe.name}: accuracy per stage ({run.samples} samples)")
    return _png(fig)


def _agreement_plot(run: RecipeRun) -> bytes | None:
    if not run.deploys:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nirbridge.report import _png

    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.8 / len(run.deploys)
    lows = []
    for i, (mode, res) in enumerate(run.deploys.items()):
        vals = [100 * la.identical for la in res.layers]
        lows += vals
        ax.bar(np.arange(len(vals)) + (i - (len(run.deploys) - 1) / 2) * width, vals,
               width, label=f"Lava {mode}")
        ax.set_xticks(range(len(vals)), [la.node for la in res.layers])
    ax.set_ylim(max(0.0, min(lows, default=100.0) - 2), 100.2)
    ax.set_ylabel("identical spikes, %")
    ax.set_title("Spike agreement with the reference per layer")
    ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def write_recipe_reports(run: RecipeRun, json_path: str | Path | None,
                         html_path: str | Path | None) -> list[Path]:
    """Write the JSON and/or HTML (or Markdown) report of a run; returns the paths."""
    from nirbridge.report import write_report

    doc = build_recipe_report(run)
    written = []
    if json_path:
        written.append(write_report(doc, json_path))
    if html_path:
        plots = {}
        for key, make in (("accuracy", _accuracy_plot), ("agreement", _agreement_plot)):
            png = make(run)
            if png is not None:
                plots[key] = png
        written.append(write_report(doc, html_path, raster=run.raster,
                                    raster_node=run.raster_node,
                                    sections=_report_sections(run), extra_plots=plots,
                                    title=f"nirbridge deployment: {run.recipe.name}"))
    return written


def run_recipe(path: str | Path, echo: Echo = print, *, json_path: str | Path | None = None,
               report_path: str | Path | None = None, samples: int | None = None,
               progress: bool | None = None) -> int:
    """``nirbridge deploy RECIPE.toml``: run every stage, print the summary, write the
    reports (default ``<output.dir>/report.json`` and ``report.html``).

    Returns 0 when every check passed; raises :class:`CheckFailed` (exit code 3) naming
    the failed checks *after* printing the table and writing the reports.
    """
    recipe = load_recipe(path)
    run = execute_recipe(recipe, echo=echo, samples=samples, progress=progress)
    echo("")
    echo(format_run(run))
    out = recipe.output_dir
    for p in write_recipe_reports(run, json_path or out / "report.json",
                                  report_path or out / "report.html"):
        echo(f"wrote {p}")
    if run.failed:
        raise CheckFailed(f"recipe {recipe.name}: {len(run.failed)} check(s) failed: "
                          + "; ".join(run.failed))
    return 0


__all__ = ["METRICS", "Check", "CheckResult", "DataSpec", "ModelSpec", "Recipe",
           "RecipeRun", "SimulationSpec", "TrainSpec", "build_recipe_report", "energy_cell",
           "execute_recipe", "format_run", "load_recipe", "recipe_inputs", "run_recipe",
           "summary_table", "write_recipe_reports"]
