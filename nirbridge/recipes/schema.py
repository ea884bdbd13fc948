"""The recipe's settings: the dataclasses :func:`~nirbridge.recipes.load.load_recipe`
fills, the Lava modes and the check metrics (the schema is in :mod:`nirbridge.recipes`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Echo = Callable[[str], None]

MODES = ("floating_pt", "fixed_pt")
#: Samples Lava confirms by default: every sample of a set this small (the digits test
#: split has 360), else the first this many (Lava runs 100-1,000 steps/s).
LAVA_SAMPLES_DEFAULT = 360
#: Short names of the Lava modes in tables and metric names.
MODE_SHORT = {"floating_pt": "float", "fixed_pt": "fixed"}

#: Check metrics: name → (description, unit, Lava mode it needs or None).
METRICS: dict[str, tuple[str, str, str | None]] = {
    "torch_accuracy": ("accuracy of the PyTorch model", "%", None),
    "reference_accuracy": ("accuracy of the float64 reference run of the .nir", "%", None),
    "reference_torch_diff": ("max |Δ| between reference and torch outputs", "", None),
    "float_accuracy": ("accuracy in Lava floating_pt", "%", "floating_pt"),
    "fixed_accuracy": ("accuracy in fixed point (emulator, every sample)", "%", "fixed_pt"),
    "float_accuracy_drop": ("reference − Lava floating_pt accuracy", " pt", "floating_pt"),
    "fixed_accuracy_drop": ("reference − fixed-point accuracy (every sample)", " pt",
                            "fixed_pt"),
    "float_spike_agreement": ("identical spikes, Lava floating_pt vs reference", "%",
                              "floating_pt"),
    "fixed_spike_agreement": ("identical spikes, fixed point vs reference (every sample)",
                              "%", "fixed_pt"),
    "float_prediction_agreement": ("same predicted class, floating_pt vs reference", "%",
                                   "floating_pt"),
    "fixed_prediction_agreement": ("same predicted class, fixed point vs reference", "%",
                                   "fixed_pt"),
    "lava_fixed_identical": ("Lava fixed_pt samples whose integers equal the emulator's",
                             "%", "fixed_pt"),
}


@dataclass(frozen=True)
class ModelSpec:
    """What to deploy: ``factory(**kwargs)`` + ``checkpoint``, or a ``.nir`` file (read as
    ``framework``'s exporter wrote it, when given). ``dt``: the time step (None: 1.0 for
    a factory's export, the file's own for a ``.nir``)."""

    factory: str | None
    kwargs: dict[str, Any]
    checkpoint: Path | None
    nir: Path | None
    dt: float | None = None
    framework: str | None = None

    @property
    def neuron(self) -> str | None:
        """The neuron kind named in the factory's arguments, if any."""
        v = self.kwargs.get("neuron")
        return None if v is None else str(v)


@dataclass(frozen=True)
class DataSpec:
    """The data set (a :func:`nirbridge.datasets.open_source` spelling), split, encoding,
    rate seed and ``root`` (the folder of a ``tonic:NAME`` data set)."""

    dataset: str
    split: str = "test"
    encoding: str = "direct"
    seed: int = 0
    root: Path | None = None


@dataclass(frozen=True)
class SimulationSpec:
    """Time steps, samples and Lava settings. ``samples``: the first samples of the split
    through every stage but Lava (None: all); ``lava_samples``: the first samples Lava
    confirms (None: all when there are at most :data:`LAVA_SAMPLES_DEFAULT`, else that
    many; 0: Lava does not run, the emulator's scores stand alone); ``batch_size``:
    samples per batch of the streamed stages."""

    steps: int
    samples: int | None = None
    modes: tuple[str, ...] = MODES
    target: str = "loihi2"
    timeout_s: float = 600.0
    lava_samples: int | None = None
    batch_size: int = 128

    def lava_count(self, n: int) -> int:
        """How many of ``n`` samples Lava runs."""
        return min(n, LAVA_SAMPLES_DEFAULT if self.lava_samples is None
                   else self.lava_samples)


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
    #: ``[verify] backends``: the backends :func:`nirbridge.verify.verify` holds to their
    #: tolerances on the test inputs after the other stages (empty: no verify stage).
    verify: tuple[str, ...] = ()
    #: ``[profile] time_step_s``: seconds per time step on the chip, for static energy on
    #: every target (None: each target's published step time, if any)
    time_step_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The recipe's settings as plain JSON values."""
        m, d, s, t = self.model, self.data, self.simulation, self.train
        return {
            "path": str(self.path), "name": self.name, "description": self.description,
            "model": {"factory": m.factory, "kwargs": dict(m.kwargs),
                      "checkpoint": None if m.checkpoint is None else str(m.checkpoint),
                      "nir": None if m.nir is None else str(m.nir), "dt": m.dt,
                      "from": m.framework},
            "data": {"dataset": d.dataset, "split": d.split, "encoding": d.encoding,
                     "seed": d.seed, "root": None if d.root is None else str(d.root)},
            "simulation": {"steps": s.steps, "samples": s.samples, "modes": list(s.modes),
                           "target": s.target, "timeout_s": s.timeout_s,
                           "lava_samples": s.lava_samples, "batch_size": s.batch_size},
            "targets": list(self.targets), "time_step_s": self.time_step_s,
            "checks": {c.key: c.bound for c in self.checks},
            "train": {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
                      "seed": t.seed},
            "output_dir": str(self.output_dir),
            "verify": {"backends": list(self.verify)} if self.verify else None,
        }


def format_value(v: float | None, key: str) -> str:
    """A check's measured value as text, in the unit of the check's metric."""
    if v is None:
        return "not measured"
    if key.endswith("reference_torch_diff"):
        return f"{v:.2g}"
    unit = " points" if key.endswith("_drop") else "%"
    return f"{v:.2f}{unit}"


def kwargs_text(kwargs: Mapping[str, Any]) -> str:
    """A factory's keyword arguments as they would be written in a call: ``neuron='lif'``."""
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


__all__ = ["LAVA_SAMPLES_DEFAULT", "MODES", "MODE_SHORT", "METRICS", "Check", "DataSpec",
           "Echo", "ModelSpec", "Recipe", "SimulationSpec", "TrainSpec", "format_value",
           "kwargs_text"]
