"""Quantization for a fixed-point target, and the integer executor of a quantized graph.

:func:`quantize` turns a float NIR graph into a :class:`QuantizedGraph`: integer weights
(``weight_bits`` mantissa + one exponent per layer), integer neuron parameters in each
neuron's fixed-point format (:mod:`nirbridge.fixed_point`), and a per-layer
:class:`LayerReport` (scale chosen, values clipped or rounded to zero, largest error).
:func:`run_fixed_point` runs that graph in pure numpy integer arithmetic and records every
integer state: it is the golden model the Lava ``fixed_pt`` lowering is checked against.

How a layer is laid out (the choices a lowering must reproduce)
---------------------------------------------------------------
*Units.* Every value on an edge is an integer with a known number of fractional bits:
spikes have 0, graded network inputs ``input_frac_bits``, a neuron's state ``S``.

*Neurons* are rewritten in "Lava form": ``state ← decay(state) + gain·x + bias``. The
input gain (``R·dt/τ`` of a NIR LIF, ``α`` of DA-LIF, ``k/τ`` of KLIF, ``1 − α`` of ALIF,
``1/k²`` of average pooling) is folded into the rows of the weights feeding the neuron
when it can be (through Flatten, and through pooling when it is constant per channel);
otherwise it stays as an integer ``in_gain`` in the neuron. Constant drive (the synapse
bias, seen through pooling exactly as the reference sees it, plus terms such as
``dt/τ·v_leak``) becomes the neuron's ``bias``. A hard reset to ``v_reset ≠ 0`` is
folded by shifting the voltage (``v' = v − v_reset``), as Lava resets to 0.

*State format.* ``S = frac_bits[type] + k``. Neurons whose equations are positively
homogeneous (LIF family, DA-LIF, KLIF, ALIF: scaling x, v and the thresholds together
leaves the spikes unchanged) get the largest layer scale ``k`` that keeps the estimated
range ``headroom·(max|θ| + max|x|)`` inside ``state_bits``; AR-LIF and CLIF (tanh, σ of
absolute values) keep ``k = 0``. For the stock Lava LIF (``frac_bits = 6``) ``k`` is
Lava's threshold scale: ``vth = round(θ·2^k)`` and ``a_in`` has ``k`` fractional bits.

*Synapses.* A weighted layer feeding a neuron delivers ``a_in`` with ``S − act_shift``
fractional bits: ``a_in = shift_floor(Σ mant·in, w_exp)`` (Lava Dense's exponent), with
``mant = round(w_eff·2^P)``, ``|mant| ≤ 2^(weight_bits−1) − 1`` and
``w_exp = S − act_shift − in_frac − P`` in ``[weight_exp_min, weight_exp_max]``. The
mantissa precision ``P`` is the largest that fits ``max|w_eff|``. ``act_shift`` is 6 for
the Lava LIF and 0 for custom neurons (more when ``w_exp`` would exceed its maximum).
To run it on Lava's Dense (8-bit mixed-sign weights lose their LSB): pass ``2·mant`` with
``weight_exp = w_exp − 1``, which gives exactly the same ``a_in``.

Integer semantics of the stateless nodes: Affine/Linear/Conv as above (bias moved to the
neuron or the Output); SumPool2d sums; AvgPool2d sums and its ``1/k²`` is folded; Flatten
reshapes. Several edges into a node sum, after aligning their fractional bits.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.backends.reference import apply_synapse
from nirbridge.errors import GraphError, InputError, ProfileError, QuantizationError
from nirbridge.nodes import (
    ALIF,
    ARLIF,
    CLIF,
    DALIF,
    KLIF,
    CustomNeuron,
    SubtractiveLIF,
    compare_of,
    is_neuron,
)
from nirbridge.passes import graph_dt, predecessors, successors, topological_order

#: Fractional bits of the state per neuron type (the ``[quantization.frac_bits]`` table).
DEFAULT_FRAC_BITS: dict[str, int] = {
    "lif": 6, "if": 6, "li": 6, "cubalif": 6, "sublif": 12, "dalif": 12, "klif": 12,
    "arlif": 12, "clif": 12, "alif": 12,
}

#: The ``frac_bits`` key of each neuron node type.
FRAC_KEY: dict[str, str] = {
    "LIF": "lif", "IF": "if", "I": "if", "LI": "li", "CubaLIF": "cubalif", "CubaLI": "cubalif",
    "SubtractiveLIF": "sublif", "DALIF": "dalif", "KLIF": "klif", "ARLIF": "arlif",
    "CLIF": "clif", "ALIF": "alif",
}

#: Keys the ``[quantization]`` table of a profile must have.
REQUIRED_KEYS: tuple[str, ...] = (
    "weight_bits", "weight_exp_min", "weight_exp_max", "state_bits", "decay_bits",
    "frac_bits", "lut_step_log2", "lut_min", "lut_max",
)

WEIGHTED = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
PASSTHROUGH = (nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
_PROFILE_DIR = Path(__file__).parent / "profiles"


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class QuantConfig:
    """Fixed-point formats of a target (the ``[quantization]`` table of its profile).

    ``weight_bits``: signed weight mantissa width; ``weight_exp_min``/``max``: range of
    the per-layer exponent; ``state_bits``: width of every state (saturating);
    ``decay_bits``: fractional bits of decays and other constant multipliers;
    ``frac_bits``: minimum fractional bits of the state per neuron type;
    ``lut_step_log2``, ``lut_min``, ``lut_max``: grid of the tanh/σ tables.
    Not from the profile (options of this pass): ``input_frac_bits`` (fractional bits of
    graded network inputs; 0 for spikes/integers), ``input_bits`` (their saturation
    width), ``input_max`` (their expected magnitude, for range estimates), ``headroom``
    (range margin), ``conv_weight_exp`` (False pins the exponent of Conv layers to 0, as
    Lava's Conv ignores ``weight_exp``).
    """

    weight_bits: int = 8
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    state_bits: int = 24
    decay_bits: int = 12
    frac_bits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_FRAC_BITS))
    lut_step_log2: int = -8
    lut_min: float = -8.0
    lut_max: float = 8.0
    input_frac_bits: int = 0
    input_bits: int = 16
    input_max: float = 1.0
    headroom: float = 2.0
    conv_weight_exp: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ProfileError:
            return ProfileError(f"quantization.{name} = {getattr(self, name)!r}: {why}")

        if not 2 <= self.weight_bits <= 16:
            raise bad("weight_bits", "must be an integer in [2, 16]")
        if self.weight_exp_min > self.weight_exp_max:
            raise bad("weight_exp_min", f"exceeds weight_exp_max = {self.weight_exp_max}")
        if not 8 <= self.state_bits <= 32:
            raise bad("state_bits", "must be an integer in [8, 32] (int64 products)")
        if not 4 <= self.decay_bits <= 16:
            raise bad("decay_bits", "must be an integer in [4, 16]")
        if not self.lut_max > self.lut_min:
            raise bad("lut_max", f"must exceed lut_min = {self.lut_min}")
        if not -16 <= self.lut_step_log2 <= 0:
            raise bad("lut_step_log2", "must be an integer in [-16, 0]")
        for key, val in self.frac_bits.items():
            if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val < \
                    self.state_bits - 1:
                raise ProfileError(f"quantization.frac_bits.{key} = {val!r}: must be an "
                                   f"integer in [0, {self.state_bits - 2}]")
        if not self.headroom >= 1.0:
            raise bad("headroom", "must be ≥ 1")

    def frac_of(self, key: str, node_name: str) -> int:
        """Fractional bits for neuron type ``key`` (``ProfileError`` if the table lacks it)."""
        try:
            return int(self.frac_bits[key])
        except KeyError:
            raise ProfileError(f"quantization.frac_bits has no entry '{key}' (needed by node "
                               f"'{node_name}'); add it to the profile") from None

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | str | Path,
                     **options: Any) -> QuantConfig:
        """Read the ``[quantization]`` table of a target profile.

        ``profile`` is the parsed profile (a dict with a ``quantization`` table, or that
        table itself), a path to a ``.toml`` file, or the name of a shipped profile
        (``"loihi2"``). ``options`` set the fields that are not in the profile
        (``input_frac_bits`` …). A missing or mistyped key raises :class:`ProfileError`
        naming it.
        """
        if isinstance(profile, (str, Path)):
            profile = _load_profile(profile)
        table = profile.get("quantization", profile) if isinstance(profile, Mapping) else None
        if not isinstance(table, Mapping):
            raise ProfileError("profile has no [quantization] table")
        kw: dict[str, Any] = {}
        for key in REQUIRED_KEYS:
            if key not in table:
                raise ProfileError(f"profile field 'quantization.{key}' is missing; add it to "
                                   "the [quantization] table")
            val = table[key]
            if key == "frac_bits":
                if isinstance(val, Mapping):
                    missing = [k for k in DEFAULT_FRAC_BITS if k not in val]
                    if missing:
                        raise ProfileError(f"profile field 'quantization.frac_bits.{missing[0]}'"
                                           " is missing; add it to [quantization.frac_bits]")
                    val = {str(k): v for k, v in val.items()}
                elif isinstance(val, int) and not isinstance(val, bool):
                    val = dict.fromkeys(DEFAULT_FRAC_BITS, val)
                else:
                    raise ProfileError(f"profile field 'quantization.frac_bits' = {val!r}: "
                                       "expected a table of integers by neuron type")
            elif key in ("lut_min", "lut_max"):
                if isinstance(val, bool) or not isinstance(val, (int, float)):
                    raise ProfileError(f"profile field 'quantization.{key}' = {val!r}: "
                                       "expected a number")
                val = float(val)
            elif isinstance(val, bool) or not isinstance(val, int):
                raise ProfileError(f"profile field 'quantization.{key}' = {val!r}: expected "
                                   "an integer")
            kw[key] = val
        for key in ("input_frac_bits", "input_bits", "input_max", "headroom",
                    "conv_weight_exp"):
            if key in table and key not in options:
                options[key] = table[key]
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProfileError(f"unknown quantization option(s) {sorted(unknown)}")
        return cls(**kw, **options)


def _load_profile(where: str | Path) -> dict[str, Any]:
    path = Path(where)
    if not path.suffix and not path.exists():
        path = _PROFILE_DIR / f"{where}.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"profile '{where}' not found ({path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc


# ---------------------------------------------------------------------------- report
@dataclass
class FieldReport:
    """How one parameter field was quantized."""

    count: int
    frac_bits: int
    clipped: int = 0
    zeroed: int = 0
    max_abs_error: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dict(count=self.count, frac_bits=self.frac_bits, clipped=self.clipped,
                    zeroed=self.zeroed, max_abs_error=self.max_abs_error)


@dataclass
class LayerReport:
    """Quantization of one node: the scale chosen and each field's losses.

    ``scale`` holds the format (``frac_bits``, ``scale_exp``, ``act_shift`` of a neuron;
    ``w_exp``, ``mantissa_frac_bits`` of a synapse); errors are in the parameter's own
    real units (a weight's error is that of the original weight, gain unfolded).
    """

    name: str
    node_type: str
    kind: str
    scale: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, FieldReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def clipped(self) -> int:
        """Values clipped, all fields."""
        return sum(f.clipped for f in self.fields.values())

    @property
    def zeroed(self) -> int:
        """Non-zero values rounded to zero, all fields."""
        return sum(f.zeroed for f in self.fields.values())

    @property
    def max_abs_error(self) -> float:
        """Largest rounding error of any field (its own units)."""
        return max((f.max_abs_error for f in self.fields.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dict(name=self.name, node_type=self.node_type, kind=self.kind,
                    scale=dict(self.scale), clipped=self.clipped, zeroed=self.zeroed,
                    max_abs_error=self.max_abs_error,
                    fields={k: f.to_dict() for k, f in self.fields.items()},
                    notes=list(self.notes))


class _Fields:
    """Rounds a node's fields to fixed point, recording losses in its report."""

    def __init__(self, name: str, report: LayerReport, state_bits: int) -> None:
        self.name = name
        self.report = report
        self.state_bits = state_bits

    def fixed(self, fname: str, value: Any, frac: int, *, lo: int | None = None,
              hi: int | None = None, clip: bool = False, scale: Any = 1.0,
              what: str = "") -> np.ndarray:
        """``round_half_up(value·2^frac)`` as int64, within ``[lo, hi]`` (default: the
        state's symmetric range). Out of range: clipped (``clip``) or QuantizationError.
        ``scale`` divides the error before it is reported (to report in original units).
        """
        v = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise QuantizationError(f"node '{self.name}': {fname} holds NaN or inf; fix the "
                                    "parameter before quantizing")
        lim = fx.sat_limit(self.state_bits)
        lo = -lim if lo is None else lo
        hi = lim if hi is None else hi
        q = np.floor(v * 2.0 ** frac + 0.5)
        over = (q > hi) | (q < lo)
        n_over = int(np.count_nonzero(over))
        if n_over and not clip:
            bad = float(v[over].flat[0])
            raise QuantizationError(
                f"node '{self.name}': {fname} = {bad:g} does not fit the fixed-point format "
                f"({what or f'{self.state_bits}-bit'}, {frac} fractional bits: representable "
                f"[{lo * 2.0 ** -frac:g}, {hi * 2.0 ** -frac:g}]); rescale the layer or "
                "change the target's quantization settings")
        q = np.clip(q, lo, hi)
        err = np.abs(q * 2.0 ** -frac - v) / np.abs(np.asarray(scale, dtype=np.float64))
        err = np.where(np.isfinite(err), err, 0.0)
        self.report.fields[fname] = FieldReport(
            count=int(v.size), frac_bits=int(frac), clipped=n_over,
            zeroed=int(np.count_nonzero((v != 0) & (q == 0))),
            max_abs_error=float(err.max()) if err.size else 0.0)
        return q.astype(np.int64)


# --------------------------------------------------------------------- quantized graph
@dataclass
class QuantizedInput:
    """A graded (``frac_bits > 0``) or spike/integer network input."""

    name: str
    frac_bits: int
    bits: int


@dataclass
class QuantizedSynapse:
    """A weighted layer in integers: ``out = shift_floor(mant ⊛ in, w_exp)``.

    ``mant`` has the shape of the NIR weight; the real (gain-folded) weight it stands for
    is ``mant · 2^-mant_frac``; ``in_frac``/``out_frac`` are the fractional bits of what
    it reads and delivers; ``sink`` is the neuron or Output it feeds.
    """

    name: str
    node_type: str
    mant: np.ndarray
    w_exp: int
    mant_frac: int
    in_frac: int
    out_frac: int
    sink: str
    gain: np.ndarray | None = None
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1


@dataclass
class QuantizedNeuron:
    """A neuron in integers: its model ``kind`` (:data:`nirbridge.fixed_point.MODELS`),
    parameters, state format ``S = frac_bits`` (``= profile frac_bits + scale_exp``),
    and the fractional bits of the ``a_in`` it receives (``in_frac = S − act_shift``)."""

    name: str
    node_type: str
    kind: str
    params: Any
    frac_bits: int
    scale_exp: int
    in_frac: int
    out_frac: int
    spiking: bool
    shape: tuple[int, ...]

    @property
    def lava_issues(self) -> list[str]:
        """For ``kind == "lava_lif"``: why stock Lava LIF cannot run it exactly."""
        issues = getattr(self.params, "lava_issues", None)
        return list(issues) if issues is not None else [f"custom model '{self.kind}'"]


@dataclass
class QuantizedOutput:
    """An Output node: the sum of its inputs aligned to ``frac_bits``, plus ``bias``."""

    name: str
    frac_bits: int
    bias: np.ndarray | None = None


@dataclass
class QuantizedGraph:
    """A graph with every node's fixed-point form and the quantization report."""

    graph: nir.NIRGraph
    config: QuantConfig
    dt: float
    order: list[str]
    preds: dict[str, list[str]]
    layers: dict[str, Any]
    report: dict[str, LayerReport]
    shapes: dict[str, tuple[int, ...]]

    @property
    def inputs(self) -> list[str]:
        """Input node names, in order."""
        return [n for n in self.order if isinstance(self.layers.get(n), QuantizedInput)]

    @property
    def outputs(self) -> list[str]:
        """Output node names, in order."""
        return [n for n in self.order if isinstance(self.layers.get(n), QuantizedOutput)]

    def neurons(self) -> dict[str, QuantizedNeuron]:
        """The quantized neurons by name."""
        return {n: q for n, q in self.layers.items() if isinstance(q, QuantizedNeuron)}

    def synapses(self) -> dict[str, QuantizedSynapse]:
        """The quantized weighted layers by name."""
        return {n: q for n, q in self.layers.items() if isinstance(q, QuantizedSynapse)}

    def summary(self) -> list[dict[str, Any]]:
        """One dict per reported node (JSON-friendly)."""
        return [self.report[n].to_dict() for n in self.order if n in self.report]


# ------------------------------------------------------------------- graph helpers
def _tname(node: Any) -> str:
    return type(node).__name__


def _ints(v: Any, n: int | None = None) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    out = tuple(int(a) for a in arr)
    if n is not None and len(out) == 1:
        out = out * n
    return out


def _check_finite(name: str, node: nir.NIRNode) -> None:
    names = list(type(node).PARAMS) if isinstance(node, CustomNeuron) else [
        f for f in getattr(node, "__dataclass_fields__", {})
        if f not in ("input_type", "output_type", "metadata")]
    for f in names:
        val = getattr(node, f, None)
        if val is None or isinstance(val, (str, bytes, bool)):
            continue
        try:
            arr = np.asarray(val, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if not np.all(np.isfinite(arr)):
            raise QuantizationError(f"node '{name}': {f} holds NaN or inf; it cannot be "
                                    "represented in fixed point")


def _shapes(graph: nir.NIRGraph, order: list[str], preds: dict[str, list[str]]
            ) -> dict[str, tuple[int, ...]]:
    """Per-step output shape of every node, by running the float semantics on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shapes[name] = tuple(int(s) for s in np.asarray(node.output_type["output"]).ravel())
            continue
        if not preds[name]:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        inp = shapes[preds[name][0]]
        if isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            y = apply_synapse(node, torch.zeros((1, 1, *inp), dtype=torch.float64))
            shapes[name] = tuple(y.shape[2:])
        else:
            shapes[name] = inp
    return shapes


@dataclass
class _Chain:
    """A path from a source (Input or neuron) to a sink (neuron or Output): passthrough
    nodes, at most one weighted layer, passthrough nodes."""

    source: str
    pre: list[str]
    weighted: str | None
    post: list[str]

    @property
    def nodes(self) -> list[str]:
        """The chain's stateless nodes, source side first."""
        return self.pre + ([self.weighted] if self.weighted else []) + self.post


def _chain(g: nir.NIRGraph, sink: str, pred: str, preds: dict[str, list[str]],
           succs: dict[str, list[str]]) -> _Chain:
    def walk(cur: str, acc: list[str]) -> str:
        while isinstance(g.nodes[cur], PASSTHROUGH):
            if len(preds[cur]) != 1:
                raise QuantizationError(f"node '{cur}' ({_tname(g.nodes[cur])}) sums several "
                                        "inputs; fixed point supports sums only at neurons "
                                        "and outputs")
            acc.append(cur)
            cur = preds[cur][0]
        return cur

    post: list[str] = []
    cur = walk(pred, post)
    node = g.nodes[cur]
    weighted = None
    pre: list[str] = []
    if isinstance(node, WEIGHTED):
        weighted = cur
        if len(succs[cur]) != 1 or any(len(succs[p]) != 1 for p in post):
            raise QuantizationError(f"weighted layer '{cur}' feeds several nodes; its output "
                                    "format is set by the one neuron it feeds")
        if len(preds[cur]) != 1:
            raise QuantizationError(f"weighted layer '{cur}' has {len(preds[cur])} inputs; "
                                    "fixed point needs exactly one")
        cur = walk(preds[cur][0], pre)
        node = g.nodes[cur]
        if isinstance(node, WEIGHTED):
            raise QuantizationError(f"weighted layers '{cur}' and '{weighted}' follow each "
                                    "other without a neuron; merge them before quantizing")
    if not (isinstance(node, nir.Input) or is_neuron(node)):
        raise QuantizationError(f"node '{cur}' ({_tname(node)}) has no fixed-point "
                                "semantics here")
    return _Chain(cur, pre[::-1], weighted, post[::-1])


def _run_float(g: nir.NIRGraph, names: list[str], x: np.ndarray,
               override: dict[str, nir.NIRNode] | None = None) -> np.ndarray:
    """The float semantics of a chain of stateless nodes on one per-step input ``x``."""
    t = torch.as_tensor(x, dtype=torch.float64).reshape(1, 1, *x.shape)
    for n in names:
        t = apply_synapse((override or {}).get(n, g.nodes[n]), t)
    return t[0, 0].numpy()


def _without_bias(node: nir.NIRNode, weight: np.ndarray | None = None) -> nir.NIRNode:
    w = np.asarray(node.weight, dtype=np.float64) if weight is None else weight
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=w, bias=np.zeros(w.shape[0]))
    if isinstance(node, nir.Linear):
        return nir.Linear(weight=w)
    cls = type(node)
    return cls(input_shape=node.input_shape, weight=w, stride=node.stride,
               padding=node.padding, dilation=node.dilation, groups=node.groups,
               bias=np.zeros(w.shape[0]))


def _avg_factor(g: nir.NIRGraph, names: list[str]) -> float:
    f = 1.0
    for n in names:
        node = g.nodes[n]
        if isinstance(node, nir.AvgPool2d):
            k = _ints(node.kernel_size, 2)
            f /= k[0] * k[1]
    return f


def _push_gain(g: nir.NIRGraph, chain: _Chain, gain: np.ndarray,
               shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    """The neuron gain as a per-row (Affine) / per-output-channel (Conv) factor of the
    chain's weighted layer, or None if it does not commute with the nodes in between."""
    w = chain.weighted
    assert w is not None
    wnode = g.nodes[w]
    n_out = int(np.asarray(wnode.weight).shape[0])
    if np.all(gain == gain.flat[0]):
        return np.full(n_out, float(gain.flat[0]))
    cur = gain
    for name in reversed(chain.post):
        node = g.nodes[name]
        pred_shape = shapes[w] if name == chain.post[0] else shapes[
            chain.post[chain.post.index(name) - 1]]
        if isinstance(node, nir.Flatten):
            cur = cur.reshape(pred_shape)
        else:  # pooling: only a per-channel gain commutes
            flat = cur.reshape(cur.shape[0], -1)
            if not np.all(flat == flat[:, :1]):
                return None
            cur = np.broadcast_to(flat[:, :1].reshape(-1, *([1] * (len(pred_shape) - 1))),
                                  pred_shape)
    if isinstance(wnode, (nir.Affine, nir.Linear)):
        return cur.reshape(n_out).astype(np.float64) if cur.size == n_out else None
    flat = np.asarray(cur).reshape(n_out, -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].astype(np.float64)


# ----------------------------------------------------------------------- neuron plans
@dataclass
class _Plan:
    """A neuron in Lava form before its state format is chosen (float values)."""

    kind: str
    key: str
    homogeneous: bool
    spiking: bool
    gain: np.ndarray
    own_bias: np.ndarray
    theta_max: float
    leak: float  # 1 − decay, for the range of non-spiking integrators
    build: Callable[..., Any]


def _meta(node: nir.NIRNode, key: str) -> Any:
    meta = getattr(node, "metadata", None) or {}
    return meta.get(key)


def _plan(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
          cfg: QuantConfig) -> _Plan:
    def full(v: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), shape))

    def p(f: str) -> np.ndarray:
        return full(getattr(node, f))

    cmp = compare_of(node)
    tname = _tname(node)
    zeros = np.zeros(shape)
    q = cfg.decay_bits

    if isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI)):
        spiking = isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF))
        cuba = isinstance(node, (nir.CubaLIF, nir.CubaLI))
        if isinstance(node, (nir.IF, nir.I)):
            gm = zeros
            gain = p("r") * (dt if isinstance(node, nir.I) else 1.0)
        else:
            gm = dt / p("tau_mem" if cuba else "tau")
            gain = gm * p("r")
        gs = dt / p("tau_syn") if cuba else None
        if cuba:
            gain = gain * gs * p("w_in")
        v_r = p("v_reset") if spiking else zeros
        v_leak = p("v_leak") if hasattr(node, "v_leak") else zeros
        own = gm * (v_leak - v_r)
        theta = p("v_threshold") - v_r if spiking else None
        v0 = _meta(node, "v_init") if isinstance(node, (nir.LIF, nir.IF)) else None
        v_init = (full(v0) if v0 is not None else zeros) - v_r

        def build_lava(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                       const: np.ndarray) -> fx.LavaLIFParams:
            dv = fq.fixed("dv", gm, q, lo=0, hi=(1 << q) - 1, clip=True,
                          what="Lava dv, 12-bit unsigned")
            if cuba:
                du = fq.fixed("du", gs, q, lo=1, hi=1 << q, clip=True,
                              what="Lava du + 1, 12-bit") - 1
                v_bias, a_bias = own, const
            else:
                du, v_bias, a_bias = np.int64((1 << q) - 1), own + const, None
            mant, exp = _lava_bias(fq, v_bias, S)
            vth = None
            if theta is not None:
                lim = fx.sat_limit(cfg.state_bits) >> a
                vth = fq.fixed("v_threshold", theta, k, lo=-lim, hi=lim,
                               what=f"{cfg.state_bits}-bit state >> {a}")
            ab = None
            if a_bias is not None and np.any(a_bias != 0):
                ab = fq.fixed("a_bias", a_bias, S - a)
            return fx.LavaLIFParams(
                du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth, compare=cmp,
                frac_bits=S, vth_shift=a, act_shift=a, state_bits=cfg.state_bits,
                decay_bits=q, u_init=0, v_init=fq.fixed("v_init", v_init, S),
                in_gain=in_gain, gain_frac=gain_frac, a_bias=ab)

        tmax = float(np.max(np.abs(theta))) if theta is not None else 0.0
        tmax = max(tmax, float(np.max(np.abs(v_init), initial=0.0)))
        return _Plan("lava_lif", FRAC_KEY[tname], True, spiking, gain, own, tmax,
                     float(np.min(gm, initial=1.0)), build_lava)

    if isinstance(node, (SubtractiveLIF, DALIF)):
        if isinstance(node, SubtractiveLIF):
            g_dt = dt / p("tau")
            gain, own, decay, reset = p("r") * g_dt, g_dt * p("v_leak"), 1.0 - g_dt, "soft"
        else:
            gain, own, decay, reset = p("alpha"), zeros, p("beta"), node.reset
        theta = p("v_threshold")

        def build_lin(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                      const: np.ndarray) -> fx.LinearLIFParams:
            return fx.LinearLIFParams(
                frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                compare=cmp, bias=fq.fixed("bias", own + const, S), in_gain=in_gain,
                gain_frac=gain_frac, decay=fq.fixed("decay", decay, q),
                theta=fq.fixed("v_threshold", theta, S), reset=reset)

        return _Plan("linear_lif", FRAC_KEY[tname], True, True, gain, own,
                     float(np.max(np.abs(theta))), 0.0, build_lin)

    if isinstance(node, KLIF):
        tau, kk = p("tau"), p("k")
        soft = bool(node.soft_reset)
        v_r = zeros if soft else p("v_reset")
        gain = kk / tau if node.decay_input else kk
        own = kk * v_r / tau
        theta = p("v_threshold")

        def build_klif(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                       const: np.ndarray) -> fx.KLIFParams:
            inv_k = (fq.fixed("inv_k", 1.0 / kk, q) if node.scale_reset
                     else np.int64(1 << q))
            vr = fq.fixed("v_reset", v_r, S)
            return fx.KLIFParams(
                frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                compare=cmp, bias=fq.fixed("bias", own + const, S), in_gain=in_gain,
                gain_frac=gain_frac, kd=fq.fixed("kd", kk * (1.0 - 1.0 / tau), q),
                theta=fq.fixed("v_threshold", theta, S), v_reset=vr, soft_reset=soft,
                scale_reset=bool(node.scale_reset), inv_k=inv_k, v_init=vr)

        tmax = float(max(np.max(np.abs(theta)), np.max(np.abs(v_r))))
        return _Plan("klif", "klif", True, True, gain, own, tmax, 0.0, build_klif)

    if isinstance(node, ARLIF):
        theta, tanh_a = p("v_threshold"), p("tanh_a")

        def build_arlif(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                        const: np.ndarray) -> fx.ARLIFParams:
            luts = _luts(cfg, S)
            return fx.ARLIFParams(
                frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
                gain_frac=gain_frac, decay=fq.fixed("decay", p("decay"), q),
                theta=fq.fixed("v_threshold", theta, S),
                tanh_a=fq.fixed("tanh_a", tanh_a, q), c=fq.fixed("c", p("c"), q),
                memoryless_m=bool(node.memoryless_m), tanh=luts[0], sigmoid=luts[1])

        tmax = float(np.max(np.abs(theta)) + np.max(np.abs(tanh_a)) + 1.0)
        return _Plan("arlif", "arlif", False, True, np.ones(shape), zeros, tmax, 0.0,
                     build_arlif)

    if isinstance(node, CLIF):
        tau, theta = p("tau"), p("v_threshold")

        def build_clif(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                       const: np.ndarray) -> fx.CLIFParams:
            return fx.CLIFParams(
                frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
                gain_frac=gain_frac, decay=fq.fixed("decay", 1.0 - 1.0 / tau, q),
                inv_tau=fq.fixed("inv_tau", 1.0 / tau, q),
                theta=fq.fixed("v_threshold", theta, S), sigmoid=_luts(cfg, S)[1])

        return _Plan("clif", "clif", False, True, np.ones(shape), zeros,
                     float(np.max(np.abs(theta)) + 1.0), 0.0, build_clif)

    if isinstance(node, ALIF):
        alpha, rho, theta, beta = p("alpha"), p("rho"), p("v_threshold"), p("beta")
        b_frac = cfg.frac_of("alif", name)

        def build_alif(fq: _Fields, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                       const: np.ndarray) -> fx.ALIFParams:
            rho_q = fq.fixed("rho", rho, q, lo=0, hi=1 << q, what="decay in [0, 1]")
            omr = fx.shift_round((1 << q) - rho_q, q - b_frac)
            return fx.ALIFParams(
                frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
                gain_frac=gain_frac, alpha=fq.fixed("alpha", alpha, q), rho=rho_q, omr=omr,
                b_frac=b_frac, theta=fq.fixed("v_threshold", theta, S),
                beta=fq.fixed("beta", beta, S))

        tmax = float(np.max(np.abs(theta)) + np.max(np.abs(beta)))
        return _Plan("alif", "alif", True, True, 1.0 - alpha, zeros, tmax, 0.0, build_alif)

    raise QuantizationError(f"node '{name}' ({tname}) has no fixed-point model")


def _lava_bias(fq: _Fields, bias: np.ndarray, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Lava's bias ``mant << exp`` (13-bit signed mantissa, smallest exponent ≥ 0)."""
    b = np.asarray(bias, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        raise QuantizationError(f"node '{fq.name}': bias holds NaN or inf")
    lim = fx.sat_limit(fq.state_bits)
    exact = np.floor(b * 2.0 ** S + 0.5)
    if np.any(np.abs(exact) > lim):
        bad = float(b[np.abs(exact) > lim].flat[0])
        raise QuantizationError(f"node '{fq.name}': bias = {bad:g} does not fit the "
                                f"{fq.state_bits}-bit state with {S} fractional bits")
    exp = np.zeros(b.shape, dtype=np.int64)
    mant = exact.astype(np.int64)
    for e in range(1, fq.state_bits):
        big = (mant > 4095) | (mant < -4096)
        if not big.any():
            break
        exp = np.where(big, e, exp)
        mant = np.where(big, np.floor(b * 2.0 ** (S - e) + 0.5).astype(np.int64), mant)
    eff = mant.astype(np.float64) * 2.0 ** exp.astype(np.float64) * 2.0 ** -S
    err = np.abs(eff - b)
    fq.report.fields["bias"] = FieldReport(
        count=int(b.size), frac_bits=S, clipped=0,
        zeroed=int(np.count_nonzero((b != 0) & (mant == 0))),
        max_abs_error=float(err.max()) if err.size else 0.0)
    return mant, exp


_LUT_CACHE: dict[tuple[Any, ...], tuple[fx.Lut, fx.Lut]] = {}


def _luts(cfg: QuantConfig, out_frac: int) -> tuple[fx.Lut, fx.Lut]:
    key = (cfg.lut_min, cfg.lut_max, cfg.lut_step_log2, out_frac)
    if key not in _LUT_CACHE:
        kw = dict(x_min=cfg.lut_min, x_max=cfg.lut_max, step_log2=cfg.lut_step_log2)
        _LUT_CACHE[key] = (fx.tanh_lut(out_frac, **kw), fx.sigmoid_lut(out_frac, **kw))
    return _LUT_CACHE[key]


# --------------------------------------------------------------------------- quantize
def _best_mant_frac(w_eff: np.ndarray, bits: int) -> int:
    """Largest P with ``round(max|w|·2^P) ≤ 2^(bits−1) − 1``."""
    wmax = float(np.max(np.abs(w_eff), initial=0.0))
    mmax = (1 << (bits - 1)) - 1
    if wmax == 0.0:
        return 0
    p = int(math.floor(math.log2(mmax / wmax)))
    while np.floor(wmax * 2.0 ** p + 0.5) > mmax:
        p -= 1
    return p


def quantize(graph: nir.NIRGraph, config: QuantConfig | None = None, *,
             dt: float | None = None) -> QuantizedGraph:
    """Quantize ``graph`` for the fixed-point target described by ``config``.

    Returns a :class:`QuantizedGraph` (integer layers + per-layer report). Raises
    :class:`QuantizationError` naming the node and field for values that cannot be
    represented (NaN/inf, a threshold or bias overflowing the state, a node with no
    integer semantics) and :class:`GraphError` for structural problems.
    """
    cfg = config or QuantConfig()
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise QuantizationError(f"node '{name}' is a subgraph; flatten the graph before "
                                    "quantizing")
        _check_finite(name, node)
    dt_ = graph_dt(graph, dt)
    order = topological_order(graph)
    preds, succs = predecessors(graph), successors(graph)
    shapes = _shapes(graph, order, preds)

    layers: dict[str, Any] = {}
    report: dict[str, LayerReport] = {}
    out_frac: dict[str, int] = {}  # fractional bits of what a source emits
    in_max: dict[str, float] = {}  # its magnitude bound
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            layers[name] = QuantizedInput(name, cfg.input_frac_bits, cfg.input_bits)
            out_frac[name] = cfg.input_frac_bits
            in_max[name] = cfg.input_max
        elif isinstance(node, nir.Output) or is_neuron(node):
            chains = [_chain(graph, name, p, preds, succs) for p in preds[name]]
            if not chains:
                raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
            if isinstance(node, nir.Output):
                _quantize_output(graph, name, chains, cfg, shapes, out_frac, layers, report)
            else:
                _quantize_neuron(graph, name, node, chains, cfg, dt_, shapes, out_frac, in_max,
                                 layers, report)
        elif not isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            raise QuantizationError(f"node '{name}' ({_tname(node)}) has no fixed-point "
                                    "semantics; supported: Input, Output, Affine, Linear, "
                                    "Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten and the "
                                    "neurons")
    for name, node in graph.nodes.items():
        if isinstance(node, WEIGHTED) and name not in layers:
            raise QuantizationError(f"weighted layer '{name}' reaches no neuron or output")
    return QuantizedGraph(graph, cfg, dt_, order, preds, layers, report, shapes)


def _exp_range(node: nir.NIRNode, cfg: QuantConfig) -> tuple[int, int]:
    if isinstance(node, (nir.Conv1d, nir.Conv2d)) and not cfg.conv_weight_exp:
        return 0, 0
    return cfg.weight_exp_min, cfg.weight_exp_max


def _make_synapse(graph: nir.NIRGraph, ch: _Chain, sink: str, w_eff: np.ndarray,
                  gain_rows: np.ndarray | None, P: int, w_exp: int, in_frac: int,
                  out_frac: int, cfg: QuantConfig, report: dict[str, LayerReport]
                  ) -> QuantizedSynapse:
    name = ch.weighted
    assert name is not None
    node = graph.nodes[name]
    rep = LayerReport(name, _tname(node), "synapse",
                      scale=dict(w_exp=w_exp, mantissa_frac_bits=P, in_frac_bits=in_frac,
                                 out_frac_bits=out_frac, feeds=sink))
    mmax = (1 << (cfg.weight_bits - 1)) - 1
    w = np.asarray(node.weight, dtype=np.float64)
    scale = w_eff / np.where(w != 0, w, 1.0)  # the folded gain, per element
    scale = np.where(w != 0, scale, 1.0)
    mant = _Fields(name, rep, cfg.state_bits).fixed(
        "weight", w_eff, P, lo=-mmax - 1, hi=mmax, clip=True, scale=scale,
        what=f"{cfg.weight_bits}-bit mantissa")
    if not np.any(mant) and np.any(w):
        rep.notes.append("all weights round to zero")
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        nd = 1 if isinstance(node, nir.Conv1d) else 2
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            pad_s = pad.decode() if isinstance(pad, bytes) else pad
            ks = w.shape[2:]
            dil = _ints(node.dilation, nd)
            if pad_s == "same":
                padding = tuple(d * (k - 1) // 2 for d, k in zip(dil, ks, strict=True))
                if any(d * (k - 1) % 2 for d, k in zip(dil, ks, strict=True)):
                    raise QuantizationError(f"node '{name}': asymmetric 'same' padding is not "
                                            "supported in fixed point")
            else:
                padding = (0,) * nd
        else:
            padding = _ints(pad, nd)
        syn = QuantizedSynapse(name, _tname(node), mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows, _ints(node.stride, nd), padding,
                               _ints(node.dilation, nd), int(np.asarray(node.groups).item()))
    else:
        syn = QuantizedSynapse(name, _tname(node), mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows)
    report[name] = rep
    return syn


def _quantize_neuron(graph: nir.NIRGraph, name: str, node: nir.NIRNode, chains: list[_Chain],
                     cfg: QuantConfig, dt: float, shapes: dict[str, tuple[int, ...]],
                     out_frac: dict[str, int], in_max: dict[str, float],
                     layers: dict[str, Any], report: dict[str, LayerReport]) -> None:
    shape = shapes[name]
    plan = _plan(name, node, dt, shape, cfg)
    F = cfg.frac_of(plan.key, name)
    rep = LayerReport(name, _tname(node), plan.kind)
    fq = _Fields(name, rep, cfg.state_bits)
    gain = plan.gain
    if not np.all(np.isfinite(gain)):
        raise QuantizationError(f"node '{name}': its input gain is not finite (check tau, r)")

    # constant drive and magnitude bound of each chain, in the neuron's input units
    const = np.zeros(shape)
    bound = np.zeros(shape)
    for ch in chains:
        mag = in_max[ch.source]
        if ch.weighted:
            wnode = graph.nodes[ch.weighted]
            const = const + _run_float(graph, [ch.weighted, *ch.post],
                                       np.zeros(shapes[_graph_pred(ch)]))
            absw = _without_bias(wnode, np.abs(np.asarray(wnode.weight, dtype=np.float64)))
            bound = bound + _run_float(graph, ch.nodes, np.full(shapes[ch.source], mag),
                                       {ch.weighted: absw})
        else:
            bound = bound + _run_float(graph, ch.nodes, np.full(shapes[ch.source], mag))

    # fold the gain into the weights where it commutes, else keep it in the neuron
    folded: dict[int, np.ndarray] = {}
    unit_gain = bool(np.all(gain == 1.0))
    no_w = [c for c in chains if c.weighted is None]
    avg_common = 1.0
    if no_w:
        facs = {_avg_factor(graph, c.nodes) for c in no_w}
        if len(facs) > 1:
            raise QuantizationError(f"node '{name}': inputs average-pooled differently with no "
                                    "weights in between cannot share one input gain")
        avg_common = facs.pop()
    if not unit_gain and not no_w:
        for i, ch in enumerate(chains):
            rows = _push_gain(graph, ch, gain, shapes)
            if rows is None:
                folded.clear()
                break
            folded[i] = rows
    in_gain_f = None
    if (not unit_gain and not folded) or avg_common != 1.0:
        in_gain_f = gain * avg_common
        rep.notes.append("input gain could not be folded into the weights; applied in the "
                         "neuron")

    # mantissa precision per weighted chain
    w_effs: dict[int, np.ndarray] = {}
    Ps: dict[int, int] = {}
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        fac = _avg_factor(graph, ch.nodes) / avg_common
        rows = folded.get(i, np.ones(w.shape[0]))
        w_effs[i] = w * fac * rows.reshape(-1, *([1] * (w.ndim - 1)))
        Ps[i] = _best_mant_frac(w_effs[i], cfg.weight_bits)

    # state format
    x_bound = np.abs(gain) * bound + np.abs(plan.own_bias + gain * const)
    xmax = float(np.max(x_bound, initial=0.0))
    if plan.spiking:
        R = cfg.headroom * (plan.theta_max + xmax)
    else:
        R = cfg.headroom * (plan.theta_max + xmax / max(plan.leak, 1.0 / 16))
    S_range = cfg.state_bits - 1 - (math.ceil(math.log2(R)) if R > 0 else 0)
    S_range = min(S_range, 2 * cfg.state_bits)  # a degenerate (all-zero) layer
    if plan.homogeneous:
        S = S_range
        if plan.kind == "lava_lif":
            for i, ch in enumerate(chains):
                if ch.weighted is not None:
                    hi = _exp_range(graph.nodes[ch.weighted], cfg)[1]
                    S = min(S, F + out_frac[ch.source] + Ps[i] + hi)
    else:
        S = F
        if S > S_range:
            rep.notes.append(f"estimated range {R / cfg.headroom:g} may saturate the "
                             f"{cfg.state_bits}-bit state at {S} fractional bits")
    k = S - F
    if plan.kind == "lava_lif":
        a = F
    else:
        a = 0
        for i, ch in enumerate(chains):
            if ch.weighted is not None:
                hi = _exp_range(graph.nodes[ch.weighted], cfg)[1]
                a = max(a, S - out_frac[ch.source] - Ps[i] - hi)
    if k < 0:
        rep.notes.append(f"range forces {S} fractional bits, fewer than the {F} asked for")

    # synapses
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        lo, hi = _exp_range(graph.nodes[ch.weighted], cfg)
        q_src = out_frac[ch.source]
        P = Ps[i]
        w_exp = S - a - q_src - P
        if w_exp < lo:
            P, w_exp = S - a - q_src - lo, lo
        if w_exp > hi:  # only when the exponent range is pinned (Conv with Lava)
            raise QuantizationError(f"weighted layer '{ch.weighted}': needs exponent {w_exp} "
                                    f"outside [{lo}, {hi}] to feed '{name}'")
        layers[ch.weighted] = _make_synapse(graph, ch, name, w_effs[i], folded.get(i), P,
                                            w_exp, q_src, S - a, cfg, report)
        if P < Ps[i]:
            report[ch.weighted].notes.append(f"mantissa precision cut from {Ps[i]} to {P} "
                                             "fractional bits by the exponent range")

    in_gain = None
    gain_frac = cfg.decay_bits
    if in_gain_f is not None:
        gmax = float(np.max(np.abs(in_gain_f), initial=0.0))
        gain_frac = int(math.floor(math.log2(((1 << 15) - 1) / gmax))) if gmax > 0 else 0
        in_gain = fq.fixed("in_gain", in_gain_f, gain_frac)
    params = plan.build(fq, S, a, k, in_gain, gain_frac, gain * const)
    rep.scale = dict(frac_bits=S, scale_exp=k, act_shift=a, in_frac_bits=S - a,
                     range_estimate=R / cfg.headroom)
    qn = QuantizedNeuron(name, _tname(node), plan.kind, params, S, k, S - a,
                         0 if plan.spiking else S, plan.spiking, shape)
    if plan.kind == "lava_lif":
        rep.notes.extend(f"not stock Lava LIF: {i}" for i in params.lava_issues)
    layers[name] = qn
    report[name] = rep
    out_frac[name] = qn.out_frac
    in_max[name] = 1.0 if plan.spiking else R / cfg.headroom


def _graph_pred(ch: _Chain) -> str:
    """The node whose output feeds the chain's weighted layer (its source or last pre)."""
    return ch.pre[-1] if ch.pre else ch.source


def _quantize_output(graph: nir.NIRGraph, name: str, chains: list[_Chain], cfg: QuantConfig,
                     shapes: dict[str, tuple[int, ...]], out_frac: dict[str, int],
                     layers: dict[str, Any], report: dict[str, LayerReport]) -> None:
    rep = LayerReport(name, "Output", "output")
    const = np.zeros(shapes[name])
    plans: list[tuple[_Chain, np.ndarray, int]] = []
    fracs: list[int] = []
    caps: list[int] = []
    for ch in chains:
        q_src = out_frac[ch.source]
        if ch.weighted is None:
            if _avg_factor(graph, ch.nodes) != 1.0:
                raise QuantizationError(f"output '{name}': average pooling with no weights "
                                        "before it has no integer form here")
            fracs.append(q_src)
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        w_eff = w * _avg_factor(graph, ch.nodes)
        P = _best_mant_frac(w_eff, cfg.weight_bits)
        plans.append((ch, w_eff, P))
        fracs.append(q_src + P)
        caps.append(q_src + P + _exp_range(graph.nodes[ch.weighted], cfg)[1])
        const = const + _run_float(graph, [ch.weighted, *ch.post],
                                   np.zeros(shapes[_graph_pred(ch)]))
    frac = min([max(fracs)] + caps)
    for ch, w_eff, P0 in plans:
        lo, hi = _exp_range(graph.nodes[ch.weighted], cfg)
        q_src = out_frac[ch.source]
        P = P0
        w_exp = frac - q_src - P
        if w_exp < lo:
            P, w_exp = frac - q_src - lo, lo
        layers[ch.weighted] = _make_synapse(graph, ch, name, w_eff, None, P, w_exp, q_src,
                                            frac, cfg, report)
    bias = None
    if np.any(const != 0):
        bias = _Fields(name, rep, 62).fixed("bias", const, frac)
    rep.scale = dict(frac_bits=frac)
    layers[name] = QuantizedOutput(name, frac, bias)
    report[name] = rep


# --------------------------------------------------------------------------- executor
@dataclass
class FixedPointRecord:
    """What the integer run saw at one node: integer input (``a_in`` for a neuron),
    output and states (``[T, B, ...]`` int64), their fractional bits, and how many
    elements saturated (per field, over the whole run)."""

    input: np.ndarray | None = None
    output: np.ndarray | None = None
    states: dict[str, np.ndarray] = field(default_factory=dict)
    frac_bits: dict[str, int] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)

    @property
    def n_saturations(self) -> int:
        """All saturation events at this node."""
        return sum(self.saturations.values())

    def real(self, what: str = "output") -> np.ndarray | None:
        """A recorded integer array (``input``, ``output`` or a state) in real units."""
        arr = getattr(self, what) if what in ("input", "output") else self.states.get(what)
        if arr is None:
            return None
        return arr.astype(np.float64) * 2.0 ** -self.frac_bits.get(what, 0)


def _align(x: np.ndarray, frm: int, to: int) -> np.ndarray:
    return x << (to - frm) if to >= frm else fx.shift_round(x, frm - to)


def _matmul_exact(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for int64 operands, exactly (via float64 when the sums fit 2^53)."""
    k = w.shape[0]
    bound = float(np.max(np.abs(x), initial=0)) * float(np.max(np.abs(w), initial=0)) * k
    if bound < 2.0 ** 52:
        return np.rint(x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return np.matmul(x, w)


def _int_conv(x: np.ndarray, syn: QuantizedSynapse) -> np.ndarray:
    """Integer convolution (cross-correlation, like torch) of ``x`` [N, C, *spatial]."""
    w = syn.mant
    nd = w.ndim - 2
    pad = [(0, 0), (0, 0)] + [(p, p) for p in syn.padding]
    xp = np.pad(x, pad)
    ks = w.shape[2:]
    ext = tuple(d * (k - 1) + 1 for d, k in zip(syn.dilation, ks, strict=True))
    win = np.lib.stride_tricks.sliding_window_view(xp, ext, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in syn.stride) + \
        tuple(slice(None, None, d) for d in syn.dilation)
    win = win[sl]  # [N, C, *out, *k]
    n, c = win.shape[:2]
    out_sp = win.shape[2:2 + nd]
    g = syn.groups
    cg, og = c // g, w.shape[0] // g
    outs = []
    for gi in range(g):
        wg = win[:, gi * cg:(gi + 1) * cg]  # [N, cg, *out, *k]
        wg = np.moveaxis(wg, 1, 1 + nd)  # [N, *out, cg, *k]
        cols = wg.reshape(n, *out_sp, -1)
        kern = w[gi * og:(gi + 1) * og].reshape(og, -1).T  # [cg·k, og]
        y = _matmul_exact(cols.reshape(-1, cols.shape[-1]), kern)
        outs.append(np.moveaxis(y.reshape(n, *out_sp, og), -1, 1))
    return np.concatenate(outs, axis=1)


def _int_sumpool(x: np.ndarray, node: nir.NIRNode) -> np.ndarray:
    k = _ints(node.kernel_size, 2)
    s = _ints(node.stride, 2)
    p = _ints(node.padding, 2)
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))
    return win[:, :, ::s[0], ::s[1]].sum(axis=(-2, -1))


def _apply_int(node: nir.NIRNode, layer: Any, x: np.ndarray) -> np.ndarray:
    """A stateless node on integers ``[T, B, ...]``."""
    t, b = x.shape[:2]
    if isinstance(layer, QuantizedSynapse):
        if isinstance(node, (nir.Affine, nir.Linear)):
            y = _matmul_exact(x.reshape(t * b, -1), layer.mant.T).reshape(t, b, -1)
        else:
            y = _int_conv(x.reshape(t * b, *x.shape[2:]), layer)
            y = y.reshape(t, b, *y.shape[1:])
        return fx.shift_floor(y, layer.w_exp)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        y = _int_sumpool(x.reshape(t * b, *x.shape[2:]), node)
        return y.reshape(t, b, *y.shape[1:])
    if isinstance(node, nir.Flatten):
        ndim = x.ndim - 2
        start = int(node.start_dim) % ndim + 2
        end = int(node.end_dim) % ndim + 2
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])
    raise QuantizationError(f"node type {_tname(node)} has no integer semantics")


def quantize_input(x: Any, layer: QuantizedInput,
                   sat: fx.SaturationCounter | None = None) -> np.ndarray:
    """Real-valued input ``[T, B, ...]`` → integers with ``layer.frac_bits`` fractional bits
    (round half up), saturated to ``layer.bits``."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"input for node '{layer.name}' contains NaN or inf")
    q = np.floor(arr * 2.0 ** layer.frac_bits + 0.5).astype(np.int64)
    return fx.saturate(q, layer.bits, sat, "input")


def run_fixed_point(qgraph: QuantizedGraph, inputs: Any, *,
                    record: bool | Iterable[str] = True
                    ) -> tuple[Any, dict[str, FixedPointRecord]]:
    """Run a quantized graph in integer arithmetic on ``inputs`` ``[T, B, ...]``.

    ``inputs``: array/tensor (one Input node) or dict by Input name; real values are
    rounded to the input format (``input_frac_bits``). Returns ``(outputs, records)``:
    outputs as float64 numpy arrays in real units (spikes are 0/1; one Output node gives
    an array, several a dict), and a :class:`FixedPointRecord` per recorded node with
    every integer state per step and the saturation counts.
    """
    g = qgraph.graph
    if not isinstance(inputs, dict):
        if len(qgraph.inputs) != 1:
            raise InputError(f"graph has inputs {qgraph.inputs}; pass a dict by name")
        inputs = {qgraph.inputs[0]: inputs}
    want = set(g.nodes) if record is True else set(record or ())
    values: dict[str, tuple[np.ndarray, int]] = {}
    records: dict[str, FixedPointRecord] = {}
    for name in qgraph.order:
        node = g.nodes[name]
        layer = qgraph.layers.get(name)
        rec = FixedPointRecord() if name in want else None
        sat = fx.SaturationCounter()
        if isinstance(layer, QuantizedInput):
            if name not in inputs:
                raise InputError(f"no input given for Input node '{name}'")
            x = quantize_input(inputs[name], layer, sat)
            if x.ndim < 3:
                raise InputError(f"input for node '{name}' has shape {x.shape}; expected "
                                 "[T, B, ...] with time first, then batch")
            want_shape = qgraph.shapes[name]
            if tuple(x.shape[2:]) != want_shape:
                raise InputError(f"input for node '{name}' has per-step shape "
                                 f"{tuple(x.shape[2:])}; the graph expects {want_shape}")
            values[name] = (x, layer.frac_bits)
            if rec is not None:
                rec.output, rec.frac_bits = x, {"output": layer.frac_bits}
        elif isinstance(layer, QuantizedNeuron):
            a_in = _sum_inputs(name, qgraph, values, layer.in_frac)
            y, states = _run_neuron(layer, a_in, sat)
            values[name] = (y, layer.out_frac)
            if rec is not None:
                rec.input, rec.output, rec.states = a_in, y, states
                rec.frac_bits = {"input": layer.in_frac, "output": layer.out_frac,
                                 **{f: layer.frac_bits for f in states}}
                if "b" in states:
                    rec.frac_bits["b"] = layer.params.b_frac
                if "z" in states:
                    rec.frac_bits["z"] = 0
        elif isinstance(layer, QuantizedOutput):
            x = _sum_inputs(name, qgraph, values, layer.frac_bits)
            if layer.bias is not None:
                x = x + layer.bias
            values[name] = (x, layer.frac_bits)
            if rec is not None:
                rec.input = rec.output = x
                rec.frac_bits = {"input": layer.frac_bits, "output": layer.frac_bits}
        else:
            (x, frac), = [values[p] for p in qgraph.preds[name]]
            if isinstance(layer, QuantizedSynapse):
                y, frac_out = _apply_int(node, layer, x), layer.out_frac
            else:
                y, frac_out = _apply_int(node, None, x), frac
            values[name] = (y, frac_out)
            if rec is not None:
                rec.input, rec.output = x, y
                rec.frac_bits = {"input": frac, "output": frac_out}
        if rec is not None:
            rec.saturations = dict(sat.counts)
            records[name] = rec
    outs = {n: values[n][0].astype(np.float64) * 2.0 ** -values[n][1] for n in qgraph.outputs}
    out: Any = outs[qgraph.outputs[0]] if len(outs) == 1 else outs
    return out, records


def _sum_inputs(name: str, qgraph: QuantizedGraph, values: dict[str, tuple[np.ndarray, int]],
                frac: int) -> np.ndarray:
    total = None
    for p in qgraph.preds[name]:
        x, f = values[p]
        x = _align(x, f, frac)
        if total is not None and total.shape != x.shape:
            raise GraphError(f"node '{name}' sums inputs of shapes {tuple(total.shape)} and "
                             f"{tuple(x.shape)} ('{p}')")
        total = x if total is None else total + x
    assert total is not None
    return total


def _run_neuron(layer: QuantizedNeuron, a_in: np.ndarray, sat: fx.SaturationCounter
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    model = fx.MODELS[layer.kind]
    state = layer.params.initial_state(a_in.shape[1], tuple(a_in.shape[2:]))
    outs = []
    trace: dict[str, list[np.ndarray]] = {f: [] for f in type(state)._fields}
    for xt in a_in:
        y, state = model.step(xt, state, layer.params, sat)
        outs.append(y)
        for f in trace:
            trace[f].append(getattr(state, f))
    return np.stack(outs), {f: np.stack(v) for f, v in trace.items()}


def saturation_counts(records: Mapping[str, FixedPointRecord]) -> dict[str, int]:
    """Total saturations per node (nodes with none are left out)."""
    return {n: r.n_saturations for n, r in records.items() if r.n_saturations}


__all__ = [
    "DEFAULT_FRAC_BITS",
    "FRAC_KEY",
    "FieldReport",
    "FixedPointRecord",
    "LayerReport",
    "QuantConfig",
    "QuantizedGraph",
    "QuantizedInput",
    "QuantizedNeuron",
    "QuantizedOutput",
    "QuantizedSynapse",
    "quantize",
    "quantize_input",
    "run_fixed_point",
    "saturation_counts",
]
