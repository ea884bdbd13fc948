"""Loading a recipe: parse the TOML and check every field (:func:`load_recipe`).

Every error is a :class:`~nirbridge.errors.RecipeError` naming the file and the field.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nirbridge.data import DATASETS, ENCODINGS
from nirbridge.errors import NirbridgeError, RecipeError
from nirbridge.recipes.schema import (
    METRICS,
    MODES,
    Check,
    DataSpec,
    ModelSpec,
    Recipe,
    SimulationSpec,
    TrainSpec,
)

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

    from nirbridge.factory import load_factory

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


__all__ = ["load_recipe"]
