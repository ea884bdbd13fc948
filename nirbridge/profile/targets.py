"""Target profiles: one TOML file per hardware target in ``nirbridge/profiles/``, loaded
and schema-checked by :func:`load_profile` (with :mod:`nirbridge.config`, so every error
names the file and the field).

Profile schema::

    name = "loihi"                    # str
    description = "..."               # str
    kind = "neuromorphic"             # neuromorphic | cmos | gpu
    scope = "per_op"                  # per_op | all_in (one figure on SOPs, nothing else)
    prices = "events"                 # events | dense_mac (GPU/CPU: every product)
    neuron_updates = "dense"          # optional: dense (clocked) | driven (event-driven)
    graded_inputs = "values"          # optional: how the chip sees a pooled event input
                                      #   (see GRADED_INPUTS); default "values"
    time_step_s = 1e-3                # optional: a float, or a table {value, source,
                                      #   evidence} (the published step time); absent =
                                      #   unknown (``--time-step`` gives one)
    includes = "..."                  # optional: one sentence, what the model includes
    mapper = "cores"                  # optional: cores | speck | xylo (for map_to_chip)

    [energy]                          # all five entries required, e_nu_idle_pj optional
    e_ac_pj  = {value = 23.6, source = "...", evidence = "simulated"}
    e_mac_pj = {source = "...", evidence = "unknown"}          # no value = unknown
    e_nu_pj  = {value = 81.0, ...}     e_nu_idle_pj = {value = 52.0, ...}
    e_spike_pj = {...}   p_static_w = {...}
    # optional per entry: charged = false  (the energy model deliberately leaves this
    # term out, e.g. the arithmetic-only CMOS convention; listed as "not charged")

    [limits]                          # required for kind = "neuromorphic"
    cores_per_chip = {value = 128, source = "...", assumption = false}
    ...                               # see LIMIT_KEYS

    [quantization]                    # optional (Loihi 2 fixed-point lowering)
    weight_bits = 8 ... [quantization.frac_bits] lif = 6 ...

``evidence`` is one of ``measured`` (silicon measurement), ``simulated`` (pre-silicon
circuit simulation), ``derived`` (arithmetic from published figures), ``proxy`` (a
related chip's figure standing in) or ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nirbridge.config import Table, load_toml
from nirbridge.errors import ProfileError

#: Directory of the profiles shipped with nirbridge (inside the package, so the wheel
#: carries them; ``pyproject.toml`` lists ``profiles/*.toml`` as package data).
PROFILES_DIR = Path(__file__).parent.parent / "profiles"

EVIDENCE = ("measured", "simulated", "derived", "proxy", "unknown")
KINDS = ("neuromorphic", "cmos", "gpu")
SCOPES = ("per_op", "all_in")
PRICES = ("events", "dense_mac")
NU_BASES = ("dense", "driven")
#: How a chip sees a synapse input that carries pooled events (a SumPool2d or AvgPool2d
#: of spikes, e.g. the layer after a pooling layer): ``"events"``, one synaptic operation
#: per event routed (a SumPool output of 3 is 3 events: Speck routes each spike through
#: its pooling stage as one event); ``"values"``, one operation per non-zero value (a
#: graded spike or a multiply carries the whole value, NeuroBench's count). The counts
#: hold both (:attr:`~nirbridge.profile.counting.SynapseCount.effective_events`).
GRADED_INPUTS = ("events", "values")
MAPPERS = ("cores", "speck", "xylo")

#: Required energy entries (unit in the suffix) and the optional one.
ENERGY_KEYS = ("e_ac_pj", "e_mac_pj", "e_nu_pj", "e_spike_pj", "p_static_w")
OPTIONAL_ENERGY_KEYS = ("e_nu_idle_pj",)

#: Known limits: name → meaning. The first ten are required for neuromorphic profiles
#: (a missing value means "unknown / not applicable", explained in its ``source``).
LIMIT_KEYS: dict[str, str] = {
    "cores_per_chip": "cores on one chip",
    "neurons_per_core": "neurons (compartments) per core",
    "synapse_memory_bytes_per_core": "synaptic memory per core, bytes",
    "weight_bits": "bits of one synaptic weight",
    "state_bits": "bits of a neuron state variable",
    "decay_bits": "bits of a decay constant",
    "max_kernel": "largest convolution kernel side",
    "max_features": "most output features (channels) of one layer",
    "input_axons_per_core": "distinct presynaptic sources per core",
    "output_axons_per_core": "output axons (destinations) per core",
    # optional
    "neurons_per_chip": "neurons on one chip",
    "synapses_per_chip": "synapses on one chip",
    "output_neurons_per_chip": "readout neurons on one chip",
    "input_channels_per_chip": "input channels of one chip",
    "kernel_memory_per_core": "kernel memory entries of each core (list, one per core)",
    "neuron_memory_per_core": "neuron memory entries of each core (list, one per core)",
    "bias_memory_per_core": "bias entries per core",
    "max_delay_steps": "longest synaptic or axonal delay, in time steps",
}
REQUIRED_LIMITS = tuple(list(LIMIT_KEYS)[:10])

QUANT_INT_KEYS = ("weight_bits", "weight_exp_min", "weight_exp_max", "state_bits",
                  "decay_bits", "lut_step_log2")
QUANT_FLOAT_KEYS = ("lut_min", "lut_max")

_TRUST = {e: i for i, e in enumerate(EVIDENCE)}  # lower index = more trustworthy


@dataclass(frozen=True)
class Constant:
    """One energy constant: its value (``None`` = no source gives it), source, evidence.

    ``charged`` false means the profile's energy model deliberately leaves this term out
    (the value, if any, is informative only).
    """

    value: float | None
    source: str
    evidence: str
    charged: bool = True


@dataclass(frozen=True)
class Limit:
    """One chip limit; ``assumption`` marks values no source publishes."""

    value: int | float | tuple[int, ...] | None
    source: str
    assumption: bool = False


@dataclass(frozen=True)
class Quantization:
    """Fixed-point formats of a target (used by the Loihi 2 fixed-point lowering)."""

    weight_bits: int
    weight_exp_min: int
    weight_exp_max: int
    state_bits: int
    decay_bits: int
    frac_bits: dict[str, int]
    lut_step_log2: int
    lut_min: float
    lut_max: float


@dataclass(frozen=True)
class Profile:
    """A hardware target profile, loaded and schema-checked from TOML."""

    name: str
    description: str
    kind: str
    scope: str
    prices: str
    time_step_s: float | None
    energy: dict[str, Constant]
    limits: dict[str, Limit] = field(default_factory=dict)
    neuron_updates: str = "dense"
    mapper: str | None = None
    quantization: Quantization | None = None
    path: Path | None = None
    graded_inputs: str = "values"
    #: the step time with its source and evidence (``time_step_s`` is its value)
    time_step: Constant | None = None
    includes: str = ""

    def constant(self, key: str) -> Constant | None:
        return self.energy.get(key)

    def limit(self, key: str) -> int | float | tuple[int, ...] | None:
        lim = self.limits.get(key)
        return None if lim is None else lim.value

    @property
    def evidence(self) -> str:
        """The weakest evidence among the constants this profile charges and knows
        (unknown ones make totals ``None`` and are reported as missing instead)."""
        return weakest_evidence(c.evidence for c in self.energy.values()
                                if c.charged and c.value is not None)

    @property
    def label(self) -> str:
        return energy_label(self.name, self.evidence)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = None if self.path is None else str(self.path)
        return d


def weakest_evidence(labels: Iterable[str]) -> str:
    """The least trustworthy of ``labels`` (order: measured, simulated, derived, proxy,
    unknown); ``"unknown"`` when there is none."""
    labels = list(labels)
    return max(labels, key=lambda e: _TRUST[e]) if labels else "unknown"


def energy_label(profile: str, evidence: str) -> str:
    """The label every energy figure carries."""
    return f"model estimate (profile {profile}, evidence {evidence})"


def list_profiles() -> list[str]:
    """Names of the profiles shipped with nirbridge."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file() or len(p.parts) > 1:
        if not p.is_file():
            raise ProfileError(f"{p}: profile file not found")
        return p
    shipped = PROFILES_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ProfileError(f"no profile named '{name_or_path}': {shipped.name} not found; "
                           f"shipped profiles: {', '.join(list_profiles())} (or give a path "
                           "to a .toml file)")
    return shipped



def _constant(energy: Table, key: str) -> Constant:
    entry = energy.table(key, known=("value", "source", "evidence", "charged"),
                         what="a table {value, source, evidence}")
    value = entry.number("value", required=False, minimum=0)
    source = entry.string("source")
    evidence = entry.choice("evidence", EVIDENCE)
    charged = entry.boolean("charged", required=False)
    if value is not None:
        if evidence == "unknown":
            raise entry.fail("evidence", "'unknown' evidence with a value; give the "
                                         "evidence of the value or omit the value")
    elif evidence != "unknown" and charged is not False:
        raise entry.fail("value", f"missing while evidence is '{evidence}'; give "
                                  "the value or set evidence = \"unknown\"")
    return Constant(value, source, evidence, True if charged is None else charged)


def _time_step(data: Table) -> Constant | None:
    """``time_step_s``: a number (source unstated) or a table {value, source, evidence}
    with a value; absent: ``None`` (unknown)."""
    if "time_step_s" not in data:
        return None
    if isinstance(data.data["time_step_s"], (int, float)) and \
            not isinstance(data.data["time_step_s"], bool):
        ts = data.number("time_step_s", above=0)
        return Constant(ts, "the profile's time_step_s (no source given)", "unknown")
    entry = data.table("time_step_s", known=("value", "source", "evidence"),
                       what="a number or a table {value, source, evidence}")
    ts = entry.number("value", above=0)
    evidence = entry.choice("evidence", EVIDENCE)
    if evidence == "unknown":
        raise entry.fail("evidence", "'unknown' evidence with a value; give the evidence "
                                     "of the value or omit time_step_s")
    return Constant(ts, entry.string("source"), evidence)


def _limit(limits: Table, key: str) -> Limit:
    entry = limits.table(key, known=("value", "source", "assumption"),
                         what="a table {value, source, assumption}")
    value = entry.typed("value", (int, float, list), required=False)
    if isinstance(value, list):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                for v in value):
            raise entry.fail("value", "an array must hold integers only")
        value = tuple(value)
    elif value is not None and value < 0:
        raise entry.fail("value", f"{value} must be ≥ 0")
    source = entry.string("source")
    assumption = entry.boolean("assumption", required=False)
    return Limit(value, source, bool(assumption))


def quantization_from_table(q: Table) -> Quantization:
    """The ``[quantization]`` table ``q`` of a profile, schema-checked: the one parser of
    that table (:func:`load_profile` and
    :meth:`nirbridge.quantize.QuantConfig.from_profile` both use it). Every field is
    required, none other is allowed; ``frac_bits`` is a table of integers by neuron type.
    Range checks beyond these (bit widths, the frac_bits bounds) are
    :class:`~nirbridge.quantize.QuantConfig`'s."""
    q.reject_unknown((*QUANT_INT_KEYS, *QUANT_FLOAT_KEYS, "frac_bits"))
    ints = {k: q.integer(k) for k in QUANT_INT_KEYS}
    floats = {k: float(q.typed(k, (int, float))) for k in QUANT_FLOAT_KEYS}
    fb = q.table("frac_bits", what="a table neuron type → integer")
    frac = {str(k): fb.integer(k) for k in fb}
    if ints["weight_exp_min"] > ints["weight_exp_max"]:
        raise q.fail("weight_exp_min", "is greater than weight_exp_max")
    if floats["lut_min"] >= floats["lut_max"]:
        raise q.fail("lut_min", "must be below lut_max")
    return Quantization(frac_bits=frac, **ints, **floats)


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """Load a target profile by shipped name (``"loihi2"``) or path, schema-checked.

    Raises :class:`ProfileError` naming the file and the field for a missing field, a
    wrong type, an unknown evidence label or an unknown key.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = _resolve(name_or_path)
    data = load_toml(path, error=ProfileError, what="profile")
    data.reject_unknown(("name", "description", "kind", "scope", "prices", "time_step_s",
                         "neuron_updates", "graded_inputs", "includes", "mapper", "energy",
                         "limits", "quantization"))
    name = data.string("name")
    description = data.string("description")
    kind = data.choice("kind", KINDS)
    scope = data.choice("scope", SCOPES)
    prices = data.choice("prices", PRICES)
    nu = data.choice("neuron_updates", NU_BASES, required=False, default="dense")
    mapper = data.choice("mapper", MAPPERS, required=False)
    graded = data.choice("graded_inputs", GRADED_INPUTS, required=False, default="values")
    includes = data.string("includes", required=False) or ""
    step = _time_step(data)
    energy_t = data.table("energy", known=(*ENERGY_KEYS, *OPTIONAL_ENERGY_KEYS),
                          what="a table [energy]")
    energy = {k: _constant(energy_t, k) for k in ENERGY_KEYS}
    for k in OPTIONAL_ENERGY_KEYS:
        if k in energy_t:
            energy[k] = _constant(energy_t, k)
    limits: dict[str, Limit] = {}
    if "limits" in data or kind == "neuromorphic":
        limits_t = data.table("limits", known=LIMIT_KEYS, what="a table [limits]")
        required = REQUIRED_LIMITS if kind == "neuromorphic" else ()
        for k in LIMIT_KEYS:
            if k in limits_t or k in required:
                limits[k] = _limit(limits_t, k)
    quant = None
    if "quantization" in data:
        quant = quantization_from_table(data.table("quantization"))
    return Profile(name=name, description=description, kind=kind, scope=scope,
                   prices=prices, time_step_s=None if step is None else step.value,
                   energy=energy, limits=limits, neuron_updates=nu, mapper=mapper,
                   quantization=quant, path=path, graded_inputs=graded, time_step=step,
                   includes=includes)


__all__ = [
    "ENERGY_KEYS", "EVIDENCE", "GRADED_INPUTS", "KINDS", "LIMIT_KEYS", "MAPPERS", "NU_BASES",
    "OPTIONAL_ENERGY_KEYS", "PRICES", "PROFILES_DIR", "QUANT_FLOAT_KEYS", "QUANT_INT_KEYS",
    "REQUIRED_LIMITS", "SCOPES", "Constant", "Limit", "Profile", "Quantization",
    "energy_label", "list_profiles", "load_profile", "quantization_from_table",
    "weakest_evidence",
]
