"""Loading a recipe: parse the TOML and check every field (:func:`load_recipe`).

Every error is a :class:`~nirbridge.errors.RecipeError` naming the file and the field
(the wording is :mod:`nirbridge.config`'s, shared with the target profiles).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nirbridge.backends.inputs import check_allocation
from nirbridge.config import Table, load_toml
from nirbridge.data import ENCODINGS, IMAGE_SHAPES, min_steps
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


def _file(root: Table, value: str, fld: str, must_exist: bool) -> Path:
    """``value`` as a path, relative paths resolved against the recipe's directory."""
    recipe = Path(str(root.source))
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (recipe.parent / p).resolve()
    if must_exist and not p.is_file():
        raise root.fail(fld, f"file '{p}' does not exist" + (
            " (train it with `nirbridge train " + str(recipe) + "`)"
            if fld == "model.checkpoint" else ""))
    return p


def _inside(root: Table, value: str, fld: str) -> Path:
    """``value`` (a path the recipe writes) resolved against the recipe's folder, symlinks
    followed, refused unless it stays inside that folder (absolute paths and ``..``
    escapes included)."""
    base = Path(str(root.source)).resolve().parent
    p = Path(value).expanduser()
    p = (p if p.is_absolute() else base / p).resolve()
    if not p.is_relative_to(base):
        raise root.fail(fld, f"'{value}' resolves to '{p}', outside the recipe's folder "
                             f"'{base}': a recipe writes only inside its folder; give a "
                             "relative path there (deploy --out-dir chooses another place)")
    return p


def _factory_spec(root: Table, spec: str) -> str:
    """``FILE.py:NAME`` with a relative file resolved against the recipe's folder (not the
    current directory); module specs unchanged."""
    target, sep, name = spec.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target) and not Path(target).is_absolute():
        target = str((Path(str(root.source)).resolve().parent / target).resolve())
        return f"{target}:{name}"
    return spec


def _folder(root: Table, value: str, fld: str) -> Path:
    """``value`` as an existing folder, relative to the recipe's directory."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (Path(str(root.source)).parent / p).resolve()
    if not p.is_dir():
        raise root.fail(fld, f"folder '{p}' does not exist")
    return p


def _check_dataset(root: Table, d: DataSpec) -> None:
    """The data set opens (files present, tonic installed, the factory imports): every
    error before anything runs; opening reads only its index, not its samples."""
    from nirbridge.datasets import open_source

    if d.dataset.startswith("tonic:") and d.root is None:
        raise root.fail("data.root", f"missing; dataset {d.dataset!r} reads tonic's folder "
                                     "(its save_to): give root = \"FOLDER\"")
    if d.root is not None and not d.dataset.startswith("tonic:"):
        raise root.fail("data.root", "only with dataset = 'tonic:NAME'")
    try:
        open_source(d.dataset, d.split, root=d.root, base=Path(str(root.source)).parent)
    except NirbridgeError as exc:
        raise root.fail("data.dataset", str(exc)) from None


def _target(root: Table, name: str, fld: str, need_quantization: bool = False) -> str:
    """A target profile name (or a path, resolved against the recipe) that loads."""
    from nirbridge.profile import list_profiles, load_profile

    ref = name
    if name.endswith(".toml") or "/" in name:
        ref = str(_file(root, name, fld, must_exist=True))
    try:
        prof = load_profile(ref)
    except NirbridgeError as exc:
        raise root.fail(fld, f"unknown target '{name}': {exc} (shipped targets: "
                             f"{', '.join(list_profiles())})") from None
    if need_quantization and prof.quantization is None:
        raise root.fail(fld, f"target '{name}' has no [quantization] table: Lava simulates "
                             "Loihi 2; use loihi2 or a profile derived from it")
    return ref


def _check_factory(root: Table, spec: str, kwargs: dict[str, Any]) -> None:
    """The factory imports and builds a torch module from ``kwargs``."""
    import torch

    from nirbridge.factory import load_factory

    try:
        factory = load_factory(spec)
    except NirbridgeError as exc:
        raise root.fail("model.factory", str(exc)) from None
    try:
        model = factory(**kwargs)
    except Exception as exc:
        fld = "model.kwargs.neuron" if "neuron" in kwargs and "neuron" in str(exc) else (
            "model.kwargs")
        raise root.fail(fld, f"factory '{spec}' failed with these arguments: "
                             f"{type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise root.fail("model.factory", f"'{spec}' returned {type(model).__name__}, not a "
                                         "torch.nn.Module")


def load_recipe(path: str | Path, *, require_checkpoint: bool = True) -> Recipe:
    """Load and schema-check a recipe (see :mod:`nirbridge.recipes`).

    A recipe is code: it names a Python factory (and may name a data-set factory) that
    this function imports and calls to check that it builds. That happens only after every
    field, path and name has been checked, so a recipe with a schema error runs nothing.
    ``output.dir`` must stay inside the recipe's folder (relative to it; absolute paths,
    ``..`` escapes and symlinks out are refused); a ``FILE.py:NAME`` factory is resolved
    against the recipe's folder.

    Raises :class:`RecipeError` naming the file and the field for a missing field, a
    wrong type, an unknown field, data set, encoding, mode or target, fewer steps than the
    encoding needs (``rows``: one per image row), a factory that does
    not import or build, a missing checkpoint (unless ``require_checkpoint`` is false, as
    for training) or ``.nir`` file, or a check on a metric the recipe does not measure.
    """
    path = Path(path)
    root = load_toml(path, error=RecipeError, what="recipe")
    root.reject_unknown(("name", "description", "model", "data", "simulation", "profile",
                         "checks", "train", "output", "verify"))
    name = root.string("name")
    if not name or any(c in name for c in "/\\"):
        raise root.fail("name", f"{name!r} must be a non-empty name without slashes")
    description = root.string("description", required=False, default="")

    # --- model
    m = root.table("model", known=("factory", "kwargs", "checkpoint", "nir", "dt", "from"))
    if ("factory" in m) == ("nir" in m):
        raise root.fail("model.factory", "give either model.factory (with model.checkpoint) "
                                         "or model.nir, not both" if "nir" in m else
                        "missing; give a string MODULE_OR_FILE:FACTORY (or model.nir)")
    dt = m.number("dt", required=False, default=None, above=0)
    if "factory" in m:
        if "from" in m:
            raise m.fail("from", "only with model.nir: it names the framework whose exporter "
                                 "wrote the file")
        factory = _factory_spec(root, m.string("factory"))
        kwargs = m.typed("kwargs", (dict,), required=False, default={})
        checkpoint = _file(root, m.string("checkpoint"), "model.checkpoint",
                           require_checkpoint)
        model = ModelSpec(factory, dict(kwargs), checkpoint, None, dt)
    else:
        if "checkpoint" in m or "kwargs" in m:
            raise m.fail("checkpoint" if "checkpoint" in m else "kwargs",
                         "only with model.factory; a .nir file holds its own weights")
        nir_path = _file(root, m.string("nir"), "model.nir", True)
        framework = m.string("from", required=False, default=None)
        if framework is not None:
            from nirbridge.export.frontends import FRONTENDS

            if framework not in FRONTENDS:
                raise m.fail("from", f"unknown framework {framework!r}; known: "
                                     f"{', '.join(sorted(FRONTENDS))}")
        model = ModelSpec(None, {}, None, nir_path, dt, framework)

    # --- data
    d = root.table("data", known=("dataset", "split", "encoding", "seed", "root"))
    dspec = DataSpec(
        dataset=d.string("dataset"),
        split=d.choice("split", ("test", "train"), required=False, default="test"),
        encoding=d.choice("encoding", ENCODINGS),
        seed=d.integer("seed", required=False, default=0, minimum=0),
        root=(None if "root" not in d else _folder(root, d.string("root"), "data.root")),
    )

    # --- simulation
    s = root.table("simulation", known=("steps", "samples", "modes", "target", "timeout_s",
                                        "lava_samples", "batch_size"))
    modes = s.strings("modes", required=False, default=list(MODES), choices=MODES)
    target = s.string("target", required=False, default="loihi2")
    sim = SimulationSpec(
        steps=s.integer("steps", minimum=1),
        samples=s.integer("samples", required=False, default=None, minimum=1),
        modes=tuple(dict.fromkeys(modes)),
        target=_target(root, target, "simulation.target", need_quantization=True),
        timeout_s=s.number("timeout_s", required=False, default=600.0, above=0),
        lava_samples=s.integer("lava_samples", required=False, default=None, minimum=0),
        batch_size=s.integer("batch_size", required=False, default=128, minimum=1),
    )
    shape = IMAGE_SHAPES.get(dspec.dataset)
    if shape is not None:  # one sample's encoded input must fit: before anything opens
        try:
            check_allocation(sim.steps * 8 * math.prod(shape), f"{sim.steps} steps of one "
                                                               "sample")
        except NirbridgeError as exc:
            raise s.fail("steps", str(exc)) from None
    if shape is not None and sim.steps < min_steps(dspec.encoding, shape):
        raise s.fail("steps", f"{sim.steps} is too few for encoding '{dspec.encoding}': it "
                              f"presents one image row per step and {dspec.dataset} images "
                              f"have {shape[-2]} rows; give steps >= {shape[-2]}")

    # --- profile
    p = root.table("profile", known=("targets", "time_step_s"))
    names = p.strings("targets")
    time_step_s = p.number("time_step_s", required=False, above=0)
    if not names:
        raise p.fail("targets", "is empty; name at least one target profile")
    targets = [_target(root, t, f"profile.targets[{i}]") for i, t in enumerate(names)]

    # --- checks
    c = root.table("checks", required=False)
    checks = []
    for key in c.keys():
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or metric not in METRICS:
            raise c.fail(key, "unknown check; use min_METRIC or max_METRIC "
                              f"with METRIC one of {', '.join(METRICS)}")
        needs = METRICS[metric][2]
        if needs is not None and needs not in sim.modes:
            raise c.fail(key, f"needs Lava {needs}, which simulation.modes does not run")
        if metric in ("torch_accuracy", "reference_torch_diff") and model.factory is None:
            raise c.fail(key, "needs a torch model (model.factory); this recipe deploys a "
                              ".nir file")
        checks.append(Check(key, kind, metric, c.number(key)))

    # --- train
    t = root.table("train", required=False, known=("epochs", "batch_size", "lr", "seed"))
    train = TrainSpec(
        epochs=t.integer("epochs", required=False, default=20, minimum=1),
        batch_size=t.integer("batch_size", required=False, default=64, minimum=1),
        lr=t.number("lr", required=False, default=1e-2, above=0),
        seed=t.integer("seed", required=False, default=0, minimum=0),
    )

    # --- output
    o = root.table("output", required=False, known=("dir",))
    # the default is the caller's current folder (nirbridge's choice, not the recipe's)
    out_dir = (_inside(root, o.string("dir"), "output.dir") if "dir" in o
               else Path(f"out/{name}"))
    verify = _verify_backends(root)

    # Only now, with every field checked, does any code the recipe names run: the data
    # set opens (a MODULE:FACTORY data set imports and calls it), then the factory.
    _check_dataset(root, dspec)
    if model.factory is not None:
        _check_factory(root, model.factory, model.kwargs)
    return Recipe(path=path, name=name, description=description, model=model, data=dspec,
                  simulation=sim, targets=tuple(targets), checks=tuple(checks), train=train,
                  output_dir=out_dir, verify=verify, time_step_s=time_step_s)


def _verify_backends(root: Table) -> tuple[str, ...]:
    """``[verify] backends``: known backend names (aliases resolved), at least one."""
    from nirbridge.backends import get

    if "verify" not in root:
        return ()
    v = root.table("verify", known=("backends",))
    names = v.strings("backends")
    if not names:
        raise v.fail("backends", "is empty; name at least one backend (or drop [verify])")
    out = []
    for i, n in enumerate(names):
        try:
            out.append(get(n).name)
        except NirbridgeError as exc:
            raise v.fail(f"backends[{i}]", str(exc)) from None
    return tuple(dict.fromkeys(out))


__all__ = ["load_recipe"]
