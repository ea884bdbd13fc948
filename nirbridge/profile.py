"""Counting events, pricing them with a target profile, and estimating a chip mapping.

Three steps, kept apart on purpose (specs/energy.md):

1. :func:`count_events` counts what a run did, *exactly and independently of any
   target*: synaptic operations (effective and dense, tagged AC or MAC from the graph),
   neuron updates (dense and driven), spikes, the parameter footprint. Counts are summed
   over time steps and averaged per sample, as NeuroBench does (Yik et al., Nat. Commun.
   16:1545, 2025), and :meth:`Counts.neurobench` gives NeuroBench's three numbers.
2. :func:`estimate_energy` prices the counts with a :class:`Profile` (one TOML file in
   ``nirbridge/profiles/``)::

       E = e_ac·SOP_ac + e_mac·SOP_mac + e_nu·NU + e_spike·spikes + P_static·t

   A constant that no source gives is ``None`` (never 0): the total is then ``None``
   and the report names the missing terms. Every figure is labelled
   ``"model estimate (profile X, evidence Y)"``.
3. :func:`map_to_chip` estimates the cores a graph needs on a chip (Loihi, Loihi 2,
   TrueNorth, Speck, Xylo Audio 2), which limit binds and whether it fits; limits that
   no source publishes are flagged as assumptions in the result.

Profile schema (checked by :func:`load_profile`; every error names the file and field)::

    name = "loihi"                    # str
    description = "..."               # str
    kind = "neuromorphic"             # neuromorphic | cmos | gpu
    scope = "per_op"                  # per_op | all_in (one figure on SOPs, nothing else)
    prices = "events"                 # events | dense_mac (GPU/CPU: every product)
    neuron_updates = "dense"          # optional: dense (clocked) | driven (event-driven)
    time_step_s = 1e-3                # optional float; absent = unknown
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

import math
import tomllib
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as tF

from nirbridge.errors import InputError, ProfileError
from nirbridge.nodes import CustomNeuron, is_neuron
from nirbridge.passes import predecessors, successors

#: Directory of the profiles shipped with nirbridge (inside the package, so the wheel
#: carries them; ``pyproject.toml`` lists ``profiles/*.toml`` as package data).
PROFILES_DIR = Path(__file__).parent / "profiles"

EVIDENCE = ("measured", "simulated", "derived", "proxy", "unknown")
KINDS = ("neuromorphic", "cmos", "gpu")
SCOPES = ("per_op", "all_in")
PRICES = ("events", "dense_mac")
NU_BASES = ("dense", "driven")
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
}
REQUIRED_LIMITS = tuple(list(LIMIT_KEYS)[:10])

QUANT_INT_KEYS = ("weight_bits", "weight_exp_min", "weight_exp_max", "state_bits",
                  "decay_bits", "lut_step_log2")
QUANT_FLOAT_KEYS = ("lut_min", "lut_max")

_TRUST = {e: i for i, e in enumerate(EVIDENCE)}  # lower index = more trustworthy
_PJ = 1e-12


# =============================================================================== profiles
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
        raise ProfileError(f"no profile named '{name_or_path}'; shipped profiles: "
                           f"{', '.join(list_profiles())} (or give a path to a .toml file)")
    return shipped


class _Checker:
    """Schema checks that name the file and the field in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, fld: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.path}: field '{fld}': {msg}")

    def get(self, table: MappingABC, key: str, fld: str, types: tuple[type, ...],
            required: bool = True, what: str = "") -> Any:
        if key not in table:
            if required:
                raise self.fail(fld, f"missing; give {what or _typename(types)}")
            return None
        v = table[key]
        # bool is an int in Python; never accept it for a number or vice versa
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if not ok:
            raise self.fail(fld, f"has type {type(v).__name__} ({v!r}); expected "
                                 f"{what or _typename(types)}")
        return v

    def choice(self, table: MappingABC, key: str, fld: str, choices: tuple[str, ...],
               required: bool = True, default: str | None = None) -> str | None:
        v = self.get(table, key, fld, (str,), required, "one of " + "|".join(choices))
        if v is None:
            return default
        if v not in choices:
            raise self.fail(fld, f"'{v}' is not one of {', '.join(choices)}")
        return v

    def unknown_keys(self, table: MappingABC, known: Iterable[str], where: str) -> None:
        extra = sorted(set(table) - set(known))
        if extra:
            raise self.fail(f"{where}{extra[0]}", f"unknown field; known fields here: "
                                                  f"{', '.join(sorted(known))}")


def _typename(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             dict: "a table", list: "an array"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _constant(ck: _Checker, energy: MappingABC, key: str) -> Constant:
    fld = f"energy.{key}"
    entry = ck.get(energy, key, fld, (dict,), what="a table {value, source, evidence}")
    ck.unknown_keys(entry, ("value", "source", "evidence", "charged"), fld + ".")
    value = ck.get(entry, "value", fld + ".value", (int, float), required=False)
    source = ck.get(entry, "source", fld + ".source", (str,))
    evidence = ck.choice(entry, "evidence", fld + ".evidence", EVIDENCE)
    charged = ck.get(entry, "charged", fld + ".charged", (bool,), required=False)
    if value is not None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ck.fail(fld + ".value", f"{value} must be a finite number ≥ 0")
        if evidence == "unknown":
            raise ck.fail(fld + ".evidence", "'unknown' evidence with a value; give the "
                                             "evidence of the value or omit the value")
    elif evidence != "unknown" and charged is not False:
        raise ck.fail(fld + ".value", f"missing while evidence is '{evidence}'; give "
                                      "the value or set evidence = \"unknown\"")
    return Constant(value, source, evidence, True if charged is None else charged)


def _limit(ck: _Checker, limits: MappingABC, key: str) -> Limit:
    fld = f"limits.{key}"
    entry = ck.get(limits, key, fld, (dict,), what="a table {value, source, assumption}")
    ck.unknown_keys(entry, ("value", "source", "assumption"), fld + ".")
    value = ck.get(entry, "value", fld + ".value", (int, float, list), required=False)
    if isinstance(value, list):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                for v in value):
            raise ck.fail(fld + ".value", "an array must hold integers only")
        value = tuple(value)
    elif value is not None and value < 0:
        raise ck.fail(fld + ".value", f"{value} must be ≥ 0")
    source = ck.get(entry, "source", fld + ".source", (str,))
    assumption = ck.get(entry, "assumption", fld + ".assumption", (bool,), required=False)
    return Limit(value, source, bool(assumption))


def _quantization(ck: _Checker, q: MappingABC) -> Quantization:
    ck.unknown_keys(q, (*QUANT_INT_KEYS, *QUANT_FLOAT_KEYS, "frac_bits"), "quantization.")
    ints = {k: ck.get(q, k, f"quantization.{k}", (int,)) for k in QUANT_INT_KEYS}
    floats = {k: float(ck.get(q, k, f"quantization.{k}", (int, float)))
              for k in QUANT_FLOAT_KEYS}
    fb = ck.get(q, "frac_bits", "quantization.frac_bits", (dict,),
                what="a table neuron type → integer")
    frac = {str(k): ck.get(fb, k, f"quantization.frac_bits.{k}", (int,)) for k in fb}
    if ints["weight_exp_min"] > ints["weight_exp_max"]:
        raise ck.fail("quantization.weight_exp_min", "is greater than weight_exp_max")
    if floats["lut_min"] >= floats["lut_max"]:
        raise ck.fail("quantization.lut_min", "must be below lut_max")
    return Quantization(frac_bits=frac, **ints, **floats)


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """Load a target profile by shipped name (``"loihi2"``) or path, schema-checked.

    Raises :class:`ProfileError` naming the file and the field for a missing field, a
    wrong type, an unknown evidence label or an unknown key.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from exc
    ck = _Checker(path)
    ck.unknown_keys(data, ("name", "description", "kind", "scope", "prices", "time_step_s",
                           "neuron_updates", "mapper", "energy", "limits", "quantization"),
                    "")
    name = ck.get(data, "name", "name", (str,))
    description = ck.get(data, "description", "description", (str,))
    kind = ck.choice(data, "kind", "kind", KINDS)
    scope = ck.choice(data, "scope", "scope", SCOPES)
    prices = ck.choice(data, "prices", "prices", PRICES)
    nu = ck.choice(data, "neuron_updates", "neuron_updates", NU_BASES, required=False,
                   default="dense")
    mapper = ck.choice(data, "mapper", "mapper", MAPPERS, required=False)
    ts = ck.get(data, "time_step_s", "time_step_s", (int, float), required=False)
    if ts is not None and not ts > 0:
        raise ck.fail("time_step_s", f"{ts} must be > 0 (omit it when unknown)")
    energy_t = ck.get(data, "energy", "energy", (dict,), what="a table [energy]")
    ck.unknown_keys(energy_t, (*ENERGY_KEYS, *OPTIONAL_ENERGY_KEYS), "energy.")
    energy = {k: _constant(ck, energy_t, k) for k in ENERGY_KEYS}
    for k in OPTIONAL_ENERGY_KEYS:
        if k in energy_t:
            energy[k] = _constant(ck, energy_t, k)
    limits: dict[str, Limit] = {}
    limits_t = ck.get(data, "limits", "limits", (dict,), required=kind == "neuromorphic",
                      what="a table [limits]")
    if limits_t is not None:
        ck.unknown_keys(limits_t, LIMIT_KEYS, "limits.")
        required = REQUIRED_LIMITS if kind == "neuromorphic" else ()
        for k in LIMIT_KEYS:
            if k in limits_t or k in required:
                limits[k] = _limit(ck, limits_t, k)
    q_t = ck.get(data, "quantization", "quantization", (dict,), required=False)
    quant = None if q_t is None else _quantization(ck, q_t)
    return Profile(name=name, description=description, kind=kind, scope=scope,
                   prices=prices, time_step_s=None if ts is None else float(ts),
                   energy=energy, limits=limits, neuron_updates=nu, mapper=mapper,
                   quantization=quant, path=path)


# =============================================================================== counting
#: Synapse node types (NIR stateless nodes that multiply inputs by weights).
SYNAPSE_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d,
                                   nir.SumPool2d, nir.AvgPool2d, nir.Scale)
#: The synapse types NeuroBench hooks (nn.Linear, nn.Conv1d/2d); pooling and Scale are
#: counted by nirbridge but not by NeuroBench.
NEUROBENCH_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
#: Standard nodes whose output is binary spikes.
SPIKING_STANDARD: tuple[type, ...] = (nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold)
#: Nodes that move their input unchanged (the payload passes through them).
PASS_THROUGH: tuple[type, ...] = (nir.Flatten, nir.Delay)


def is_spiking(node: nir.NIRNode) -> bool:
    """Whether a node's output is binary spikes (from its type, never from values).

    Spiking: NIR LIF, IF, CubaLIF, Threshold and every nirbridge custom neuron (unless
    its class sets ``graded_output = True``). Graded: LI, I, CubaLI, Input, synapses.
    """
    if isinstance(node, CustomNeuron):
        return not getattr(type(node), "graded_output", False)
    return isinstance(node, SPIKING_STANDARD)


def payload_tags(graph: nir.NIRGraph,
                 spike_inputs: bool | Iterable[str] = False) -> dict[str, str]:
    """``"spike"`` or ``"graded"`` for the output of every node, from the graph only.

    ``spike_inputs``: Input nodes declared to carry binary events (e.g. DVS data);
    ``True`` declares all. Pass-through nodes (Flatten, Delay) carry spikes only when
    every predecessor does.
    """
    preds = predecessors(graph)
    if spike_inputs is True:
        declared = {n for n, v in graph.nodes.items() if isinstance(v, nir.Input)}
    else:
        declared = set(spike_inputs or ())
    memo: dict[str, str] = {}

    def tag(name: str, seen: frozenset[str]) -> str:
        if name in memo:
            return memo[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            t = "spike" if name in declared else "graded"
        elif is_spiking(node):
            t = "spike"
        elif isinstance(node, PASS_THROUGH) and preds[name] and name not in seen:
            t = "spike" if all(tag(p, seen | {name}) == "spike" for p in preds[name]) \
                else "graded"
        else:
            t = "graded"
        memo[name] = t
        return t

    return {n: tag(n, frozenset()) for n in graph.nodes}


def synapse_kind(graph: nir.NIRGraph, name: str,
                 tags: MappingABC[str, str] | None = None) -> str:
    """``"AC"`` if every predecessor of synapse node ``name`` emits spikes, else ``"MAC"``."""
    tags = payload_tags(graph) if tags is None else tags
    preds = predecessors(graph)[name]
    return "AC" if preds and all(tags[p] == "spike" for p in preds) else "MAC"


def _ints(v: Any, n: int) -> tuple[int, ...] | str:
    if isinstance(v, (str, bytes)):
        return v.decode() if isinstance(v, bytes) else v
    arr = tuple(int(a) for a in np.atleast_1d(np.asarray(v)).astype(int).ravel())
    return arr * n if len(arr) == 1 else arr


def _connect(node: nir.NIRNode, x: torch.Tensor, ones: bool) -> torch.Tensor:
    """``node`` applied to ``x`` with its weights binarised (``w != 0`` → 1) or all set to
    1 (``ones``), no bias, same geometry: the connectivity whose sum counts SOPs."""

    def w(a: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a), dtype=x.dtype)
        return torch.ones_like(t) if ones else (t != 0).to(x.dtype)

    if isinstance(node, (nir.Affine, nir.Linear)):
        return tF.linear(x, w(node.weight))
    if isinstance(node, nir.Scale):
        return x * w(node.scale)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        nd = 1 if isinstance(node, nir.Conv1d) else 2
        conv = tF.conv1d if nd == 1 else tF.conv2d
        pad = _ints(node.padding, nd)
        return conv(x, w(node.weight), None, stride=_ints(node.stride, nd), padding=pad,
                    dilation=_ints(node.dilation, nd),
                    groups=int(np.asarray(node.groups).item()))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = _ints(node.kernel_size, 2)
        s = _ints(node.stride, 2)
        p = _ints(node.padding, 2)
        # every weight of a pooling window is non-zero (1 or 1/k²): a window sum of ones
        return tF.avg_pool2d(x, k, s, p, count_include_pad=True) * (k[0] * k[1])
    raise InputError(f"node type {type(node).__name__} is not a synapse node")


def fanout_map(node: nir.NIRNode, in_shape: tuple[int, ...], ones: bool = False
               ) -> torch.Tensor:
    """Per input element (shape ``in_shape``), the number of non-zero-weight connections
    it drives (``ones``: all connections), from the node's exact geometry.

    It is the gradient of the summed binarised layer with respect to its input, so
    ``Σ (x ≠ 0) · fanout`` equals the binarised-input / binarised-weight convolution
    summed (NeuroBench's effective count) exactly, padding and stride included.
    """
    if isinstance(node, (nir.Affine, nir.Linear)):  # the same, without a W-sized copy
        w = np.asarray(node.weight)
        col = np.full(w.shape[-1], w.shape[0]) if ones else np.count_nonzero(w, axis=0)
        cols = torch.as_tensor(col.astype(np.float64))
        return cols.expand(*in_shape[:-1], cols.shape[0]).clone() if in_shape \
            else cols
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros((1, *in_shape), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(_connect(node, x, ones).sum(), x)
    return grad[0].detach()


@dataclass
class SynapseCount:
    """Synaptic operations of one synapse node; per-sample values are summed over time."""

    node: str
    op: str                      #: node type name (Affine, Conv2d, ...)
    kind: str                    #: "AC" (all inputs spikes) or "MAC" (graded input)
    predecessors: list[str]
    neurobench: bool             #: whether NeuroBench counts this node type
    in_shape: tuple[int, ...]
    effective: float             #: per sample: pairs (non-zero input, non-zero weight)
    dense: float                 #: per sample: every input and weight taken as 1
    effective_per_step: np.ndarray  #: [T], per sample
    dense_per_step: float        #: per sample, the same every step
    synapses: int                #: non-zero-weight connections (stored synapses)
    connections: int             #: all connections (dense synapses)


@dataclass
class NeuronCount:
    """Updates and spikes of one neuron node; per-sample values are summed over time."""

    node: str
    op: str
    spiking: bool
    neurons: int                 #: neurons per sample
    updates_dense: float         #: per sample: neurons × T
    updates_driven: float        #: per sample: neuron-steps with non-zero input
    driven_per_step: np.ndarray  #: [T], per sample
    spikes: float | None         #: per sample (None for graded neurons)
    spikes_per_step: np.ndarray | None

    @property
    def rate(self) -> float | None:
        """Spikes per neuron per time step."""
        if self.spikes is None or self.updates_dense == 0:
            return None
        return self.spikes / self.updates_dense

    @property
    def sparsity(self) -> float | None:
        """Fraction of neuron-steps without a spike (NeuroBench activation sparsity)."""
        r = self.rate
        return None if r is None else 1.0 - r


@dataclass
class ParamCount:
    """Parameters of one node (weights, biases, neuron parameters), as element counts."""

    node: str
    weights: int
    nonzero_weights: int
    biases: int
    neuron_params: int

    @property
    def total(self) -> int:
        return self.weights + self.biases + self.neuron_params


@dataclass
class Counts:
    """Target-independent event counts of one run (per sample, summed over T)."""

    time_steps: int
    batch: int
    synapses: dict[str, SynapseCount]
    neurons: dict[str, NeuronCount]
    params: dict[str, ParamCount]
    input_events: dict[str, float]   #: per Input node, non-zero input elements per sample

    # --- totals (per sample)
    @property
    def sop_ac(self) -> float:
        return sum(s.effective for s in self.synapses.values() if s.kind == "AC")

    @property
    def sop_mac(self) -> float:
        return sum(s.effective for s in self.synapses.values() if s.kind == "MAC")

    @property
    def sop_effective(self) -> float:
        return self.sop_ac + self.sop_mac

    @property
    def sop_dense(self) -> float:
        return sum(s.dense for s in self.synapses.values())

    @property
    def nu_dense(self) -> float:
        return sum(n.updates_dense for n in self.neurons.values())

    @property
    def nu_driven(self) -> float:
        return sum(n.updates_driven for n in self.neurons.values())

    @property
    def spikes(self) -> float:
        return sum(n.spikes for n in self.neurons.values() if n.spikes is not None)

    def neurobench(self) -> dict[str, float]:
        """NeuroBench's ``SynapticOperations`` (Linear/Conv nodes only, per sample).

        Equal to NeuroBench's numbers on the same model and data (tested), with one
        difference of method: NeuroBench calls a layer AC when the values it sees all lie
        in {-1, 0, 1}; nirbridge tags from the graph. They agree except where an Input
        node carries binary data: declare it with ``count_events(spike_inputs=...)``.
        """
        nb = [s for s in self.synapses.values() if s.neurobench]
        return {"Effective_MACs": sum(s.effective for s in nb if s.kind == "MAC"),
                "Effective_ACs": sum(s.effective for s in nb if s.kind == "AC"),
                "Dense": sum(s.dense for s in nb)}

    def footprint_bytes(self, weight_bits: float = 32, other_bits: float = 32) -> float:
        """Parameter memory: weights at ``weight_bits``, biases and neuron parameters at
        ``other_bits`` (float32 everywhere by default, as NeuroBench's Footprint)."""
        w = sum(p.weights for p in self.params.values())
        o = sum(p.biases + p.neuron_params for p in self.params.values())
        return (w * weight_bits + o * other_bits) / 8

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (per-step arrays as lists)."""

        def arr(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "time_steps": self.time_steps,
            "batch": self.batch,
            "per": "sample, summed over time steps",
            "totals": {"sop_ac": self.sop_ac, "sop_mac": self.sop_mac,
                       "sop_effective": self.sop_effective, "sop_dense": self.sop_dense,
                       "nu_dense": self.nu_dense, "nu_driven": self.nu_driven,
                       "spikes": self.spikes,
                       "footprint_bytes_fp32": self.footprint_bytes()},
            "neurobench": self.neurobench(),
            "synapses": {
                k: {"op": s.op, "kind": s.kind, "predecessors": list(s.predecessors),
                    "neurobench": s.neurobench, "in_shape": list(s.in_shape),
                    "effective": s.effective, "dense": s.dense,
                    "effective_per_step": arr(s.effective_per_step),
                    "dense_per_step": s.dense_per_step, "synapses": s.synapses,
                    "connections": s.connections}
                for k, s in self.synapses.items()},
            "neurons": {
                k: {"op": n.op, "spiking": n.spiking, "neurons": n.neurons,
                    "updates_dense": n.updates_dense, "updates_driven": n.updates_driven,
                    "driven_per_step": arr(n.driven_per_step), "spikes": n.spikes,
                    "spikes_per_step": arr(n.spikes_per_step), "rate": n.rate,
                    "sparsity": n.sparsity}
                for k, n in self.neurons.items()},
            "params": {k: {"weights": p.weights, "nonzero_weights": p.nonzero_weights,
                           "biases": p.biases, "neuron_params": p.neuron_params}
                       for k, p in self.params.items()},
            "input_events": dict(self.input_events),
        }


_NON_PARAM_FIELDS = {"input_type", "output_type", "metadata", "input_shape", "stride",
                     "padding", "dilation", "groups", "kernel_size", "start_dim", "end_dim",
                     "compare", "delay"}


def _param_count(name: str, node: nir.NIRNode) -> ParamCount | None:
    weight_attr = {nir.Affine: "weight", nir.Linear: "weight", nir.Conv1d: "weight",
                   nir.Conv2d: "weight", nir.Scale: "scale"}
    wa = next((a for t, a in weight_attr.items() if isinstance(node, t)), None)
    if wa is not None:
        w = np.asarray(getattr(node, wa))
        bias = getattr(node, "bias", None)
        nb = 0 if bias is None else int(np.size(bias))
        if isinstance(node, (nir.Conv1d, nir.Conv2d)) and bias is not None \
                and not np.any(np.asarray(bias)):
            nb = 0  # NIR writes a zero bias for bias-free convolutions
        return ParamCount(name, int(w.size), int(np.count_nonzero(w)), nb, 0)
    if is_neuron(node):
        n = 0
        for fname, val in vars(node).items():
            if fname in _NON_PARAM_FIELDS:
                continue
            a = np.asarray(val) if isinstance(val, (np.ndarray, float, int)) and \
                not isinstance(val, bool) else None
            if a is not None and a.dtype.kind in "fiu":
                n += int(a.size)
        return ParamCount(name, 0, 0, 0, n)
    return None


def _record(records: MappingABC[str, Any], name: str, what: str) -> torch.Tensor:
    rec = records.get(name)
    t = None if rec is None else getattr(rec, what)
    if t is None:
        raise InputError(f"no recorded {what} for node '{name}'; run the reference with "
                         "record=True (or include this node in record=...)")
    return torch.as_tensor(t)


def _node_input(records: MappingABC[str, Any], name: str, preds: list[str]) -> torch.Tensor:
    """A node's summed input: recorded, or (for backends that record only outputs, such as
    Lava) the sum of its predecessors' recorded outputs, which is what NIR defines it as."""
    rec = records.get(name)
    if rec is not None and getattr(rec, "input", None) is not None:
        return torch.as_tensor(rec.input)
    if not preds:
        return _record(records, name, "input")
    total = _record(records, preds[0], "output")
    for p in preds[1:]:
        total = total + _record(records, p, "output")
    return total


def count_events(graph: nir.NIRGraph, records: MappingABC[str, Any], *,
                 spike_inputs: bool | Iterable[str] = False) -> Counts:
    """Exact event counts of one recorded run (``run_reference(..., record=True)``).

    Per node: synaptic operations of every synapse node (effective and dense, AC or MAC
    tagged from the graph), neuron updates (dense, driven), spikes, parameters. Values
    are summed over time steps and averaged per sample (NeuroBench's convention); bias
    is excluded from SOPs. ``spike_inputs`` declares Input nodes that carry binary
    events (their first layer is then AC, as NeuroBench would find on such data).
    """
    tags = payload_tags(graph, spike_inputs)
    preds = predecessors(graph)
    synapses: dict[str, SynapseCount] = {}
    neurons: dict[str, NeuronCount] = {}
    params: dict[str, ParamCount] = {}
    inputs: dict[str, float] = {}
    time_steps = batch = None

    def tb(x: torch.Tensor, name: str) -> tuple[int, int]:
        nonlocal time_steps, batch
        if x.dim() < 2:
            raise InputError(f"record of node '{name}' has shape {tuple(x.shape)}; "
                             "expected [T, B, ...]")
        t, b = int(x.shape[0]), int(x.shape[1])
        if time_steps is None:
            time_steps, batch = t, b
        elif (t, b) != (time_steps, batch):
            raise InputError(f"record of node '{name}' has T, B = {t}, {b}; other nodes "
                             f"have {time_steps}, {batch}")
        return t, b

    for name, node in graph.nodes.items():
        pc = _param_count(name, node)
        if pc is not None:
            params[name] = pc
        if isinstance(node, nir.Input):
            if name in records and getattr(records[name], "output", None) is not None:
                x = _record(records, name, "output")
                _, b = tb(x, name)
                inputs[name] = float((x != 0).sum().item()) / b
        elif isinstance(node, SYNAPSE_TYPES):
            x = _node_input(records, name, preds[name])
            t, b = tb(x, name)
            shape = tuple(int(s) for s in x.shape[2:])
            fmap = fanout_map(node, shape)
            fones = fanout_map(node, shape, ones=True)
            nz = (x != 0).to(torch.float64)
            step_sums = (nz * fmap).reshape(t, -1).sum(1)  # exact integers
            per_step = step_sums / b
            dense_step = float(fones.sum().item())
            synapses[name] = SynapseCount(
                node=name, op=type(node).__name__, kind=synapse_kind(graph, name, tags),
                predecessors=list(preds[name]), neurobench=isinstance(node, NEUROBENCH_TYPES),
                in_shape=shape, effective=float(step_sums.sum().item()) / b,
                dense=dense_step * t, effective_per_step=per_step.numpy(),
                dense_per_step=dense_step, synapses=int(round(float(fmap.sum().item()))),
                connections=int(round(dense_step)))
        elif is_neuron(node):
            x = _node_input(records, name, preds[name])
            y = _record(records, name, "output")
            t, b = tb(x, name)
            n = int(np.prod(x.shape[2:], dtype=np.int64))
            driven = (x != 0).reshape(t, -1).sum(1)  # exact integers per step
            spiking = is_spiking(node)
            spk = (y != 0).reshape(t, -1).sum(1) if spiking else None
            neurons[name] = NeuronCount(
                node=name, op=type(node).__name__, spiking=spiking, neurons=n,
                updates_dense=float(n * t), updates_driven=int(driven.sum().item()) / b,
                driven_per_step=driven.numpy() / b,
                spikes=None if spk is None else int(spk.sum().item()) / b,
                spikes_per_step=None if spk is None else spk.numpy() / b)
    return Counts(time_steps=int(time_steps or 0), batch=int(batch or 0), synapses=synapses,
                  neurons=neurons, params=params, input_events=inputs)


def count_run(graph: nir.NIRGraph, inputs: Any, *, dt: float | None = None,
              spike_inputs: bool | Iterable[str] = False) -> tuple[Any, Counts]:
    """Run the float64 reference on ``inputs`` ``[T, B, ...]`` and count its events.

    Returns ``(outputs, counts)``.
    """
    from nirbridge.backends.reference import run_reference

    out, records = run_reference(graph, inputs, dt=dt, record=True)
    return out, count_events(graph, records, spike_inputs=spike_inputs)


# ================================================================================ pricing
@dataclass
class EnergyTerm:
    """One term of the energy sum: ``count × unit`` (J), or ``None`` when unknown."""

    name: str            #: ac | mac | nu | spike | static
    constant: str        #: the profile entry that prices it
    count: float | None  #: events per sample (seconds for static; None if unknown)
    unit: float | None   #: pJ per event (W for static)
    energy_j: float | None
    charged: bool
    evidence: str
    source: str


@dataclass
class EnergyReport:
    """Energy per sample of one run on one target: per term, per layer and in total."""

    profile: str
    label: str
    evidence: str
    scope: str
    prices: str
    terms: dict[str, EnergyTerm]
    per_layer: dict[str, dict[str, float | None]]
    total_j: float | None
    known_j: float
    missing: list[str]
    not_charged: list[str]
    time_s: float | None
    ann_equivalent_j: float | None
    notes: list[str]
    counts: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per"] = "sample"
        return d


def _term_energy(count: float, unit: float | None, scale: float) -> float | None:
    if count == 0:
        return 0.0  # nothing happened: 0 events cost 0 whatever the constant
    return None if unit is None else count * unit * scale


def estimate_energy(counts: Counts, profile: Profile | str | Path, *,
                    time_step_s: float | None = None) -> EnergyReport:
    """Price ``counts`` with ``profile``: per term, per layer (node) and in total, per sample.

    ``prices = "events"``: ``e_ac·SOP_ac + e_mac·SOP_mac`` on effective SOPs;
    ``prices = "dense_mac"`` (GPU/CPU): every synapse op dense, as a MAC. Neuron updates
    are charged on the profile's basis (``dense``: every neuron every step, with
    ``e_nu_idle_pj`` for the steps without input if given; ``driven``: only steps with
    input); spikes at ``e_spike``; static power over ``T × time_step_s`` (the argument
    overrides the profile). ``scope = "all_in"`` charges the SOP term(s) only.

    A charged constant that is ``None`` makes its term and the total ``None`` (listed in
    ``missing``) unless the term counted nothing. ``known_j`` is the sum of the known
    terms. The ANN-equivalent prices the dense SOP count at this profile's MAC price.
    """
    prof = load_profile(profile)
    notes: list[str] = []
    e = prof.energy
    all_in = prof.scope == "all_in"
    dense = prof.prices == "dense_mac"

    def const(key: str) -> Constant:
        return e[key]

    def charged(key: str, is_sop: bool) -> bool:
        if all_in and not is_sop:
            return False
        return const(key).charged

    # --- synapse terms, per node
    per_layer: dict[str, dict[str, float | None]] = {}
    sop_count = {"ac": 0.0, "mac": 0.0}
    for name, s in counts.synapses.items():
        if dense:
            key, cnt = "mac", s.dense
        else:
            key, cnt = s.kind.lower(), s.effective
        sop_count[key] += cnt
        c = const(f"e_{key}_pj")
        val = _term_energy(cnt, c.value, _PJ) if charged(f"e_{key}_pj", True) else 0.0
        per_layer[name] = {key: val, "total": val}

    # --- neuron terms, per node
    nu_idle = e.get("e_nu_idle_pj")
    use_idle = (prof.neuron_updates == "dense" and nu_idle is not None
                and nu_idle.charged and not all_in)
    nu_count = 0.0
    spike_count = 0.0
    nu_energy_sum: float | None = 0.0
    c_nu, c_spk = const("e_nu_pj"), const("e_spike_pj")
    nu_on, spk_on = charged("e_nu_pj", False), charged("e_spike_pj", False)
    for name, n in counts.neurons.items():
        if prof.neuron_updates == "driven":
            nu_n = n.updates_driven
            e_nu = _term_energy(nu_n, c_nu.value, _PJ)
        elif use_idle:
            assert nu_idle is not None
            nu_n = n.updates_dense
            a = _term_energy(n.updates_driven, c_nu.value, _PJ)
            i = _term_energy(n.updates_dense - n.updates_driven, nu_idle.value, _PJ)
            e_nu = None if a is None or i is None else a + i
        else:
            nu_n = n.updates_dense
            e_nu = _term_energy(nu_n, c_nu.value, _PJ)
        nu_count += nu_n
        sp = n.spikes or 0.0
        spike_count += sp
        e_nu = e_nu if nu_on else 0.0
        e_sp = _term_energy(sp, c_spk.value, _PJ) if spk_on else 0.0
        tot = None if e_nu is None or e_sp is None else e_nu + e_sp
        per_layer[name] = {"nu": e_nu, "spike": e_sp, "total": tot}
        if nu_energy_sum is not None:
            nu_energy_sum = None if e_nu is None else nu_energy_sum + e_nu

    # --- time
    ts = time_step_s if time_step_s is not None else prof.time_step_s
    time_s = None if ts is None else counts.time_steps * ts

    terms: dict[str, EnergyTerm] = {}
    missing: list[str] = []

    def add(name: str, key: str, count: float | None, energy: float | None,
            is_sop: bool) -> None:
        c = const(key)
        on = charged(key, is_sop)
        terms[name] = EnergyTerm(name=name, constant=key, count=count, unit=c.value,
                                 energy_j=energy if on else None, charged=on,
                                 evidence=c.evidence, source=c.source)
        if on and energy is None:
            missing.append(key)

    add("ac", "e_ac_pj", sop_count["ac"], _term_energy(sop_count["ac"],
        const("e_ac_pj").value, _PJ), True)
    add("mac", "e_mac_pj", sop_count["mac"], _term_energy(sop_count["mac"],
        const("e_mac_pj").value, _PJ), True)
    add("nu", "e_nu_pj", nu_count, nu_energy_sum, False)
    if use_idle and nu_energy_sum is None:
        assert nu_idle is not None
        missing[:] = [m for m in missing if m != "e_nu_pj"]
        missing.extend(k for k, c in (("e_nu_pj", c_nu), ("e_nu_idle_pj", nu_idle))
                       if c.value is None)
    add("spike", "e_spike_pj", spike_count, _term_energy(spike_count, c_spk.value, _PJ),
        False)
    p = const("p_static_w")
    static = None if time_s is None else _term_energy(time_s, p.value, 1.0)
    add("static", "p_static_w", time_s, static, False)
    if charged("p_static_w", False) and time_s is None:
        if p.value is not None:
            missing[:] = [m for m in missing if m != "p_static_w"]
        missing.append("time_step_s")
        notes.append(f"profile {prof.name} gives no time_step_s: static energy needs the "
                     "run's duration (pass time_step_s=)")
    if use_idle:
        assert nu_idle is not None
        terms["nu"].source += f" | idle steps: {nu_idle.value} pJ ({nu_idle.source})"
        terms["nu"].evidence = weakest_evidence([c_nu.evidence, nu_idle.evidence])

    not_charged = [t.constant for t in terms.values() if not t.charged]
    known = sum(t.energy_j for t in terms.values() if t.charged and t.energy_j is not None)
    total = None if missing else known
    evidence = weakest_evidence(t.evidence for t in terms.values()
                                if t.charged and t.energy_j)
    if evidence == "unknown":
        evidence = prof.evidence

    if not dense and counts.sop_mac > 0 and prof.kind == "neuromorphic":
        notes.append(f"{counts.sop_mac:.6g} SOPs per sample have graded (MAC) input; "
                     f"{prof.name} prices them at e_mac_pj "
                     f"({'unknown' if const('e_mac_pj').value is None else 'given'})")
    if all_in:
        notes.append(f"scope all_in: {prof.name}'s figure per synaptic event includes "
                     "neuron updates, spikes and static power; nothing else is charged")
    mac = const("e_mac_pj").value
    ann = None if mac is None else counts.sop_dense * mac * _PJ
    return EnergyReport(
        profile=prof.name, label=energy_label(prof.name, evidence), evidence=evidence,
        scope=prof.scope,
        prices=prof.prices, terms=terms, per_layer=per_layer, total_j=total, known_j=known,
        missing=missing, not_charged=not_charged, time_s=time_s, ann_equivalent_j=ann,
        notes=notes,
        counts={"sop_ac": counts.sop_ac, "sop_mac": counts.sop_mac,
                "sop_dense": counts.sop_dense, "nu_dense": counts.nu_dense,
                "nu_driven": counts.nu_driven, "spikes": counts.spikes,
                "time_steps": counts.time_steps})


# ================================================================================ mapping
@dataclass
class LayerMapping:
    """Resources of one layer (a neuron node and the synapse nodes feeding it)."""

    name: str
    neuron_node: str | None
    synapse_nodes: list[str]
    neurons: int
    synapses: int | None             #: stored (non-zero-weight) synapses
    fan_in: int | None               #: presynaptic elements feeding the layer
    cores: int | None
    usage: dict[str, dict[str, Any]]  #: limit → {need, limit, ratio}
    binding: str | None
    fits: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Mapping:
    """A mapping estimate of a graph on one chip."""

    profile: str
    label: str
    layers: list[LayerMapping]
    cores_used: int | None
    cores_available: int | float | None
    chips_needed: int | None
    fits: bool
    binding: str | None
    assumptions: list[str]
    unchecked: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape_of(node: nir.NIRNode, port: str) -> tuple[int, ...] | None:
    types = node.input_type if port == "input" else node.output_type
    v = (types or {}).get(port)
    if v is None or np.size(v) == 0:
        return None
    return tuple(int(s) for s in np.asarray(v).ravel())


class _Layers:
    """Groups a graph into layers: each neuron node with the synapse nodes feeding it."""

    def __init__(self, graph: nir.NIRGraph, counts: Counts | None) -> None:
        self.graph = graph
        self.counts = counts
        self.preds = predecessors(graph)
        self.succ = successors(graph)

    def in_shape(self, name: str) -> tuple[int, ...] | None:
        if self.counts is not None and name in self.counts.synapses:
            return self.counts.synapses[name].in_shape
        node = self.graph.nodes[name]
        shp = _shape_of(node, "input")
        if shp is None:
            for p in self.preds[name]:
                shp = _shape_of(self.graph.nodes[p], "output")
                if shp is not None:
                    break
        return shp

    def neuron_count(self, name: str) -> int | None:
        if self.counts is not None and name in self.counts.neurons:
            return self.counts.neurons[name].neurons
        shp = _shape_of(self.graph.nodes[name], "output") or \
            _shape_of(self.graph.nodes[name], "input")
        return None if shp is None else int(np.prod(shp, dtype=np.int64))

    def feeding_synapses(self, name: str) -> list[str]:
        """Synapse nodes upstream of ``name`` up to the previous neuron/Input node."""
        out: list[str] = []
        stack = list(self.preds[name])
        seen: set[str] = set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            node = self.graph.nodes[p]
            if isinstance(node, SYNAPSE_TYPES):
                out.append(p)
                stack.extend(self.preds[p])
            elif isinstance(node, PASS_THROUGH):
                stack.extend(self.preds[p])
        return sorted(out, key=list(self.graph.nodes).index)

    def layers(self) -> list[tuple[str, str | None, list[str]]]:
        """``(layer name, neuron node or None, synapse nodes)`` in graph order."""
        result: list[tuple[str, str | None, list[str]]] = []
        used: set[str] = set()
        for name, node in self.graph.nodes.items():
            if is_neuron(node):
                syn = self.feeding_synapses(name)
                used.update(syn)
                result.append((name, name, syn))
        for name, node in self.graph.nodes.items():
            if isinstance(node, nir.Output):
                syn = [s for s in self.feeding_synapses(name) if s not in used]
                if syn:
                    used.update(syn)
                    result.append((f"{name} (readout)", None, syn))
        return result

    def synapse_stats(self, syn: list[str]) -> tuple[int | None, int | None, bool]:
        """(stored synapses, fan-in elements, has_conv) of a list of synapse nodes."""
        total = 0
        fan_in = 0
        conv = False
        for s in syn:
            node = self.graph.nodes[s]
            conv = conv or isinstance(node, (nir.Conv1d, nir.Conv2d))
            if self.counts is not None and s in self.counts.synapses:
                sc = self.counts.synapses[s]
                total += sc.synapses
                shp = sc.in_shape
            else:
                shp = self.in_shape(s)
                if shp is None:
                    return None, None, conv
                total += int(round(float(fanout_map(node, shp).sum().item())))
            # fan-in counts the presynaptic elements of the first synapse in a chain only
            if not any(p in syn for p in self.preds[s]):
                fan_in += int(np.prod(shp, dtype=np.int64))
        return total, fan_in, conv


def _ratio(need: float, lim: float) -> float:
    return math.inf if lim == 0 else need / lim


def _finish(prof: Profile, layers: list[LayerMapping], cores: int | None,
            chip_usage: dict[str, dict[str, Any]], notes: list[str]) -> Mapping:
    assumptions = [f"{k} = {v.value} ({v.source})" for k, v in prof.limits.items()
                   if v.assumption and v.value is not None]
    unchecked = [k for k, v in prof.limits.items() if v.value is None]
    cores_avail = prof.limit("cores_per_chip")
    chips = None
    if cores is not None and isinstance(cores_avail, (int, float)) and cores_avail > 0:
        chips = max(1, math.ceil(cores / cores_avail))
    fits = all(lm.fits for lm in layers) and all(u["ratio"] <= 1 for u in chip_usage.values())
    binding = None
    worst = -1.0
    for lm in layers:
        for k, u in lm.usage.items():
            if u["ratio"] > worst:
                worst, binding = u["ratio"], f"{lm.name}: {k}"
    for k, u in chip_usage.items():
        if u["ratio"] > worst:
            worst, binding = u["ratio"], f"chip: {k}"
    label = (f"mapping estimate (profile {prof.name}"
             + (f"; {len(assumptions)} assumed limit(s)" if assumptions else "") + ")")
    return Mapping(profile=prof.name, label=label, layers=layers, cores_used=cores,
                   cores_available=cores_avail if not isinstance(cores_avail, tuple)
                   else len(cores_avail), chips_needed=chips, fits=fits, binding=binding,
                   assumptions=assumptions, unchecked=unchecked, notes=notes)


def _use(need: float, lim: Any) -> dict[str, Any]:
    return {"need": need, "limit": lim, "ratio": _ratio(need, lim)}


def _map_cores(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """Loihi-style cores: neurons, synaptic memory and axons per core."""
    lay = _Layers(graph, counts)
    npc = prof.limit("neurons_per_core")
    smem = prof.limit("synapse_memory_bytes_per_core")
    wbits = prof.limit("weight_bits")
    in_ax = prof.limit("input_axons_per_core")
    out_ax = prof.limit("output_axons_per_core")
    notes: list[str] = []
    layers: list[LayerMapping] = []
    for lname, neuron, syn in lay.layers():
        n = lay.neuron_count(neuron) if neuron else None
        syn_total, fan_in, conv = lay.synapse_stats(syn)
        if n is None:
            # readout without neuron node: the synapse outputs need compartments
            shp = _shape_of(graph.nodes[syn[-1]], "output") if syn else None
            n = int(np.prod(shp, dtype=np.int64)) if shp is not None else 0
        lm_notes: list[str] = []
        if neuron is None:
            lm_notes.append("no neuron node: the synapse outputs are counted as "
                            "compartments (accumulators)")
        if len(syn) > 1 and any(p in syn for s in syn for p in lay.preds[s]):
            lm_notes.append(f"chain of synapse nodes {syn}: on chip these fold into one "
                            "connection; the estimate stores each")
        fits = True
        by_limit: dict[str, int] = {}
        if isinstance(npc, (int, float)) and n:
            by_limit["neurons_per_core"] = math.ceil(n / npc)
        nbytes = None
        if syn_total is not None and isinstance(wbits, (int, float)):
            nbytes = syn_total * wbits / 8
            if isinstance(smem, (int, float)) and smem > 0:
                by_limit["synapse_memory_bytes_per_core"] = math.ceil(nbytes / smem)
        if fan_in and isinstance(in_ax, (int, float)):
            if conv:
                by_limit["input_axons_per_core"] = math.ceil(fan_in / in_ax)
                lm_notes.append("convolution: inputs assumed tiled spatially across "
                                "cores (halo ignored)")
            elif fan_in > in_ax:
                fits = False
                lm_notes.append(f"dense fan-in {fan_in} exceeds {in_ax} input axons "
                                "per core")
        need_cores = max([1 if n else 0, *by_limit.values()])
        lm = LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn, neurons=n,
                          synapses=syn_total, fan_in=fan_in, cores=need_cores, usage={},
                          binding=None, fits=fits, notes=lm_notes)
        _core_usage(lm, npc, nbytes, smem, in_ax, conv, by_limit)
        layers.append(lm)
    # output axons: a core sends one axon per (neuron, destination core)
    if isinstance(out_ax, (int, float)):
        for lm in layers:
            if lm.neuron_node is None or not lm.cores:
                continue
            dest = _dest_cores(lay, lm.neuron_node, layers)
            if not dest:
                continue
            c = math.ceil(lm.neurons * dest / out_ax)
            if c > (lm.cores or 0):
                lm.notes.append(f"output axons: {lm.neurons} neurons × {dest} destination "
                                f"cores need {c} cores")
                lm.cores = c
            lm.usage["output_axons_per_core"] = _use(
                math.ceil(lm.neurons / lm.cores) * dest, out_ax) | {"cores": c}
            _core_usage(lm, npc, lm.usage.get("synapse_memory_bytes_per_core", {}).get(
                "total"), smem, in_ax, conv=False, by_limit=None)
    cores = sum(lm.cores or 0 for lm in layers)
    chip_usage: dict[str, dict[str, Any]] = {}
    cpc = prof.limit("cores_per_chip")
    if isinstance(cpc, (int, float)):
        chip_usage["cores_per_chip"] = _use(cores, cpc)
    npch = prof.limit("neurons_per_chip")
    if isinstance(npch, (int, float)):
        chip_usage["neurons_per_chip"] = _use(sum(lm.neurons for lm in layers), npch)
    spch = prof.limit("synapses_per_chip")
    if isinstance(spch, (int, float)):
        chip_usage["synapses_per_chip"] = _use(sum(lm.synapses or 0 for lm in layers), spch)
    if any(lm.synapses is None for lm in layers):
        notes.append("some layer shapes are unknown: pass counts= from a run to size them")
    notes.append(f"weights stored at {wbits} bits without format overhead (a lower bound "
                 "on synaptic memory); weights must be quantised to that width")
    return _finish(prof, layers, cores, chip_usage, notes)


def _core_usage(lm: LayerMapping, npc: Any, nbytes: float | None, smem: Any, in_ax: Any,
                conv: bool, by_limit: dict[str, int] | None) -> None:
    """Fill ``lm.usage`` (per-core need against each limit) and ``lm.binding``.

    With ``by_limit`` (cores each limit alone would need), the binding limit is the one
    that sets the core count; without it (a recount after more cores were added), the
    usages are refreshed and the binding limit is the most used one.
    """
    cores = max(lm.cores or 1, 1)
    prev = lm.usage
    if by_limit is None:
        by_limit = {k: u["cores"] for k, u in prev.items() if "cores" in u}
        conv = prev.get("input_axons_per_core", {}).get("tiled", False)
    usage = dict(prev)
    if isinstance(npc, (int, float)) and lm.neurons:
        usage["neurons_per_core"] = _use(math.ceil(lm.neurons / cores), npc)
    if nbytes is not None and isinstance(smem, (int, float)) and smem > 0:
        usage["synapse_memory_bytes_per_core"] = _use(nbytes / cores, smem) | {
            "total": nbytes}
    if lm.fan_in and isinstance(in_ax, (int, float)):
        need = lm.fan_in / cores if conv else lm.fan_in
        usage["input_axons_per_core"] = _use(need, in_ax) | {"tiled": conv}
    for k, c in by_limit.items():
        if k in usage:
            usage[k]["cores"] = c
    lm.usage = usage
    if not usage:
        lm.binding = None
        return
    setting = [k for k, c in by_limit.items() if c == cores and c > 1]
    lm.binding = setting[0] if setting else max(usage, key=lambda k: usage[k]["ratio"])


def _dest_cores(lay: _Layers, neuron: str, layers: list[LayerMapping]) -> int:
    """Destination cores one neuron of ``neuron``'s layer sends spikes to.

    A dense synapse reaches every core of its layer. A convolution or pooling layer is
    tiled spatially, so one input reaches only the cores holding its largest fan-out
    (plus one for a tile boundary), at most all the layer's cores.
    """
    total = 0
    for lm in layers:
        if lm.neuron_node == neuron or not lm.cores:
            continue
        for s in lm.synapse_nodes:
            stack, seen, hit = list(lay.preds[s]), set(), False
            while stack:
                p = stack.pop()
                if p in seen:
                    continue
                seen.add(p)
                if p == neuron:
                    hit = True
                    break
                if isinstance(lay.graph.nodes[p], PASS_THROUGH):
                    stack.extend(lay.preds[p])
            if not hit:
                continue
            node = lay.graph.nodes[s]
            shp = lay.in_shape(s)
            if isinstance(node, (nir.Affine, nir.Linear, nir.Scale)) or shp is None:
                total += lm.cores
            else:
                fan = float(fanout_map(node, shp, ones=True).max().item())
                per_core = max(1, math.ceil(lm.neurons / lm.cores))
                total += min(lm.cores, math.ceil(fan / per_core) + 1)
            break
    return total


def _speck_memory(node: nir.NIRNode, in_shape: tuple[int, ...], out_features: int,
                  out_hw: tuple[int, int]) -> tuple[int, int, int]:
    """(kernel memory, neuron memory, kernel side) as sinabs' ``memory_summary``."""
    if isinstance(node, nir.Conv2d):
        f, c, kh, kw = (int(s) for s in np.asarray(node.weight).shape)
    else:  # Affine/Linear: a convolution whose kernel covers the whole input
        f = out_features
        if len(in_shape) == 3:
            c, kh, kw = in_shape
        else:
            c, kh, kw = int(np.prod(in_shape)), 1, 1
    kmem = c * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(max(f, 1))))
    h, w = out_hw
    nmem = f * 2 ** (math.ceil(math.log2(max(h, 1))) + math.ceil(math.log2(max(w, 1))))
    return int(kmem), int(nmem), max(kh, kw)


def _match(needs: list[tuple[int, int]], caps: list[tuple[int, int]]) -> list[int] | None:
    """Assign each layer (kernel, neuron memory) to a distinct core that holds it."""
    owner: dict[int, int] = {}

    def try_assign(i: int, seen: set[int]) -> bool:
        for j, (km, nm) in enumerate(caps):
            if j in seen or needs[i][0] > km or needs[i][1] > nm:
                continue
            seen.add(j)
            if j not in owner or try_assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(needs)):
        if not try_assign(i, set()):
            return None
    assign = [0] * len(needs)
    for j, i in owner.items():
        assign[i] = j
    return assign


def _map_speck(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """DYNAP-CNN / Speck: one layer (conv or linear + IAF) per core (sinabs' rules)."""
    lay = _Layers(graph, counts)
    kcap = prof.limit("kernel_memory_per_core")
    ncap = prof.limit("neuron_memory_per_core")
    max_k = prof.limit("max_kernel")
    max_f = prof.limit("max_features")
    notes: list[str] = []
    layers: list[LayerMapping] = []
    needs: list[tuple[int, int]] = []
    for lname, neuron, syn in lay.layers():
        n = (lay.neuron_count(neuron) if neuron else None) or 0
        syn_total, fan_in, _ = lay.synapse_stats(syn)
        lm_notes: list[str] = []
        usage: dict[str, dict[str, Any]] = {}
        fits = True
        weighted = [s for s in syn if isinstance(graph.nodes[s], NEUROBENCH_TYPES)]
        if neuron is not None:
            ntype = type(graph.nodes[neuron]).__name__
            if ntype != "IF":
                lm_notes.append(f"{ntype} neurons: Speck runs integrate-and-fire neurons "
                                "(leak only through a bias); the deployed layer differs")
        if len(weighted) != 1:
            lm_notes.append(f"{len(weighted)} weighted synapse nodes; a Speck core holds "
                            "exactly one convolution")
            fits = fits and len(weighted) == 1
        kmem = nmem = 0
        if weighted:
            s = weighted[-1]
            node = graph.nodes[s]
            shp = lay.in_shape(s)
            out_shp = (_shape_of(graph.nodes[neuron], "output") if neuron else None) or \
                _shape_of(node, "output")
            if counts is not None and neuron in counts.neurons and out_shp is None:
                out_shp = (counts.neurons[neuron].neurons,)
            if shp is None or out_shp is None:
                lm_notes.append("shape unknown: memory not checked")
            else:
                f = out_shp[0]
                hw = (out_shp[1], out_shp[2]) if len(out_shp) == 3 else (1, 1)
                kmem, nmem, kside = _speck_memory(node, shp, f, hw)
                if isinstance(max_k, (int, float)):
                    usage["max_kernel"] = _use(kside, max_k)
                    fits = fits and kside <= max_k
                if isinstance(max_f, (int, float)):
                    usage["max_features"] = _use(f, max_f)
                    fits = fits and f <= max_f
                if isinstance(kcap, tuple):
                    usage["kernel_memory_per_core"] = _use(kmem, max(kcap))
                    fits = fits and kmem <= max(kcap)
                if isinstance(ncap, tuple):
                    usage["neuron_memory_per_core"] = _use(nmem, max(ncap))
                    fits = fits and nmem <= max(ncap)
        needs.append((kmem, nmem))
        binding = max(usage, key=lambda k: usage[k]["ratio"]) if usage else None
        layers.append(LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn,
                                   neurons=n, synapses=syn_total, fan_in=fan_in, cores=1,
                                   usage=usage, binding=binding, fits=fits, notes=lm_notes))
    chip_usage: dict[str, dict[str, Any]] = {}
    cpc = prof.limit("cores_per_chip")
    if isinstance(cpc, (int, float)):
        chip_usage["cores_per_chip"] = _use(len(layers), cpc)
    if isinstance(kcap, tuple) and isinstance(ncap, tuple) and len(layers) <= len(kcap):
        assign = _match(needs, list(zip(kcap, ncap, strict=False)))
        if assign is None:
            chip_usage["core_assignment"] = {"need": len(layers), "limit": 0,
                                             "ratio": math.inf}
            notes.append("no assignment of layers to cores satisfies every core's kernel "
                         "and neuron memory")
        else:
            for lm, core in zip(layers, assign, strict=True):
                lm.notes.append(f"core {core}")
    notes.append("memory as sinabs' DynapcnnLayer.memory_summary (kernel: c·2^(⌈log2 k²⌉+"
                 "⌈log2 f⌉), neuron: f·2^(⌈log2 h⌉+⌈log2 w⌉)); pooling after a layer is "
                 "free (done on the way out of the core)")
    return _finish(prof, layers, len(layers), chip_usage, notes)


def _map_xylo(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """Xylo: input channels → hidden neurons (recurrent weights) → ≤ 8 output neurons."""
    lay = _Layers(graph, counts)
    notes: list[str] = []
    layers: list[LayerMapping] = []
    out_nodes = {n for n, v in graph.nodes.items() if isinstance(v, nir.Output)}
    hidden = output = 0
    for lname, neuron, syn in lay.layers():
        n = (lay.neuron_count(neuron) if neuron else None) or 0
        syn_total, fan_in, conv = lay.synapse_stats(syn)
        is_out = neuron is not None and any(
            s in out_nodes or isinstance(graph.nodes[s], PASS_THROUGH)
            and any(t in out_nodes for t in lay.succ[s]) for s in lay.succ[neuron])
        lm_notes: list[str] = []
        fits = True
        if conv:
            fits = False
            lm_notes.append("convolution: Xylo has dense weights only (unroll it first)")
        if neuron is None:
            lm_notes.append("no neuron node: Xylo reads out through output neurons")
            is_out = True
        if is_out:
            output += n
            lm_notes.append("output neurons")
        else:
            hidden += n
        layers.append(LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn,
                                   neurons=n, synapses=syn_total, fan_in=fan_in, cores=1,
                                   usage={}, binding=None, fits=fits, notes=lm_notes))
    chip_usage: dict[str, dict[str, Any]] = {}
    for key, need in (("neurons_per_chip", hidden), ("output_neurons_per_chip", output)):
        lim = prof.limit(key)
        if isinstance(lim, (int, float)):
            chip_usage[key] = _use(need, lim)
    lim = prof.limit("input_channels_per_chip")
    if isinstance(lim, (int, float)):
        ins = 0
        for v in graph.nodes.values():
            if isinstance(v, nir.Input):
                shp = _shape_of(v, "output") or _shape_of(v, "input") or ()
                ins += int(np.prod(shp, dtype=np.int64)) if shp else 0
        chip_usage["input_channels_per_chip"] = _use(ins, lim)
    cores = 1
    notes.append("Xylo is one core: hidden layers share the recurrent weight matrix")
    return _finish(prof, layers, cores, chip_usage, notes)


def map_to_chip(graph: nir.NIRGraph, profile: Profile | str | Path,
                counts: Counts | None = None) -> Mapping:
    """Estimate the resources ``graph`` needs on the chip ``profile`` describes.

    Per layer (a neuron node and the synapse nodes feeding it): neurons, stored synapses,
    fan-in, cores, the usage of each limit and which binds; for the chip: cores used
    against those available, chips needed, whether it fits. Limits that no source
    publishes are listed in ``assumptions``; unknown ones in ``unchecked``. ``counts``
    (from a run) supplies shapes the graph does not record.
    """
    prof = load_profile(profile)
    if prof.mapper is None:
        mappable = [n for n in list_profiles() if load_profile(n).mapper]
        raise ProfileError(f"profile '{prof.name}' describes no chip to map onto; mapping "
                           f"is available for {', '.join(mappable)}")
    if prof.mapper == "speck":
        return _map_speck(graph, prof, counts)
    if prof.mapper == "xylo":
        return _map_xylo(graph, prof, counts)
    return _map_cores(graph, prof, counts)


__all__ = [
    "Constant",
    "Counts",
    "EnergyReport",
    "EnergyTerm",
    "LayerMapping",
    "Limit",
    "Mapping",
    "NeuronCount",
    "ParamCount",
    "Profile",
    "Quantization",
    "SynapseCount",
    "count_events",
    "count_run",
    "estimate_energy",
    "fanout_map",
    "is_spiking",
    "list_profiles",
    "load_profile",
    "map_to_chip",
    "payload_tags",
    "synapse_kind",
]
