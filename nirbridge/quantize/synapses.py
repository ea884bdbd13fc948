"""Weighted layers, Outputs and Thresholds in integers (the layout rules are in the package
docstring, :mod:`nirbridge.quantize`); neurons are :mod:`nirbridge.quantize.quantizer`'s.

``fmt(source) -> (frac_bits, magnitude bound)`` gives the format of what a chain's source
emits (known before its sink is quantized, also for a recurrent source quantized later:
see :func:`nirbridge.quantize.quantizer.quantize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from nirbridge import fixed_point as fx
from nirbridge.errors import QuantizationError
from nirbridge.geometry import conv_geometry_of
from nirbridge.quantize.chains import (
    Chain,
    _tname,
    avg_factor,
    graph_pred,
    layer_bias,
    run_float,
)
from nirbridge.quantize.config import QuantConfig
from nirbridge.quantize.graph import (
    LayerReport,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)

#: ``fmt(source) -> (frac_bits, bound)`` of a chain's source.
Formats = Callable[[str], tuple[int, float]]

#: Damping of the input second moment before it is inverted (a fraction of its mean
#: diagonal): keeps the error-compensating rounding stable where inputs are collinear.
HESSIAN_DAMP = 0.01


@dataclass(frozen=True)
class WeightChoice:
    """How one weighted layer's mantissas are chosen (:mod:`nirbridge.quantize.calibrate`
    picks one per layer from calibration data; the default is the plain rule).

    ``extra_bits``: mantissa fractional bits above the largest precision that fits
    ``max|w|`` (the largest weights clip to the mantissa range, the rest get finer steps);
    ``hessian``: the second moment ``E[x xᵀ]`` of the layer's input over its fan-in
    (``[fan_in, fan_in]``, a Conv's fan-in is ``C_in/groups · kernel``): the mantissas are
    then rounded one fan-in column at a time, each column's rounding error pushed onto
    the columns not yet rounded so as to minimise the expected error of the layer's
    output on such inputs (the OBQ/GPTQ update); None rounds each weight to nearest.
    A layer whose weights are already exactly on the plain grid ignores its choice: it is
    quantized losslessly.
    """

    extra_bits: int = 0
    hessian: np.ndarray | None = None

    def label(self) -> str:
        """Short text for reports: ``nearest`` or ``compensated``, ``+n bits``."""
        how = "nearest" if self.hessian is None else "compensated"
        return how + (f", +{self.extra_bits} bit{'s' * (self.extra_bits != 1)}"
                      if self.extra_bits else "")


#: Choices by weighted layer name.
Choices = Mapping[str, WeightChoice]


def on_grid(w_eff: np.ndarray, P: int) -> bool:
    """Whether every weight is exactly an integer multiple of ``2^-P``."""
    m = np.asarray(w_eff, dtype=np.float64) * 2.0 ** P
    return bool(np.all(m == np.floor(m)))


def compensated_mantissas(w_eff: np.ndarray, P: int, hessian: np.ndarray, lo: int,
                          hi: int) -> np.ndarray:
    """Mantissas of ``w_eff`` at ``P`` fractional bits, in ``[lo, hi]``, rounded column by
    column with the error of each pushed onto the later columns through the inverse of
    ``hessian`` (see :class:`WeightChoice`); int64, the shape of ``w_eff``."""
    out_ch = w_eff.shape[0]
    w = np.asarray(w_eff, dtype=np.float64).reshape(out_ch, -1) * 2.0 ** P
    d = w.shape[1]
    h = np.array(hessian, dtype=np.float64)
    if h.shape != (d, d):
        raise QuantizationError(f"calibration: second moment of shape {h.shape} does not "
                                f"fit a fan-in of {d}")
    dead = np.diag(h) <= 0  # inputs never active: their weights never matter
    h[dead, dead] = 1.0
    h += np.eye(d) * HESSIAN_DAMP * float(np.mean(np.diag(h)))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: inv(h) = uᵀu
    q = np.zeros_like(w)
    for i in range(d):
        q[:, i] = np.clip(np.floor(w[:, i] + 0.5), lo, hi)
        err = (w[:, i] - q[:, i]) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return q.reshape(w_eff.shape).astype(np.int64)


def best_mant_frac(w_eff: np.ndarray, bits: int) -> int:
    """Largest P with ``round(max|w|·2^P) ≤ 2^(bits−1) − 1``."""
    wmax = float(np.max(np.abs(w_eff), initial=0.0))
    mmax = (1 << (bits - 1)) - 1
    if wmax == 0.0:
        return 0
    p = int(math.floor(math.log2(mmax / wmax)))
    while np.floor(wmax * 2.0 ** p + 0.5) > mmax:
        p -= 1
    return p


def effective_choice(w_eff: np.ndarray, cfg: QuantConfig,
                     choice: WeightChoice | None) -> WeightChoice | None:
    """``choice``, or None where the weights are already exactly on the plain grid (the
    largest precision that fits them): those are kept losslessly whatever was asked."""
    if choice is None or on_grid(w_eff, best_mant_frac(w_eff, cfg.weight_bits)):
        return None
    return choice


def exp_range(node: nir.NIRNode, cfg: QuantConfig) -> tuple[int, int]:
    """The weight exponents a layer may take (a Conv's is pinned to 0 unless the target
    allows more)."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)) and not cfg.conv_weight_exp:
        return 0, 0
    return cfg.weight_exp_min, cfg.weight_exp_max


def travelling_bias(graph: nir.NIRGraph, ch: Chain, fac: float, rows: np.ndarray | None,
                    shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    """The real bias a chain's weighted layer adds itself (its bias reaches the sink
    delayed: :attr:`Chain.travels`), scaled like its weights (average pooling after it,
    the folded gain rows), over the layer's output shape; None when it has none."""
    if not ch.travels:
        return None
    b = layer_bias(graph, ch, shapes)
    if not np.any(b):
        return None
    b = b * fac
    if rows is not None:
        b = b * rows.reshape(-1, *([1] * (b.ndim - 1)))
    return b


def make_synapse(graph: nir.NIRGraph, ch: Chain, sink: str, w_eff: np.ndarray,
                 gain_rows: np.ndarray | None, P: int, w_exp: int, in_frac: int,
                 out_frac: int, cfg: QuantConfig, report: dict[str, LayerReport],
                 bias: np.ndarray | None = None, node_type: str | None = None,
                 choice: WeightChoice | None = None) -> QuantizedSynapse:
    """The integer layer of the chain's weighted node; ``bias`` (real, the layer's output
    shape) is rounded to ``out_frac`` fractional bits and added by the layer itself.
    ``choice``: how its mantissas are rounded (None: to nearest)."""
    name = ch.weighted
    assert name is not None
    node = graph.nodes[name]
    tname = node_type or _tname(node)
    rep = LayerReport(name, tname, "synapse",
                      scale=dict(w_exp=w_exp, mantissa_frac_bits=P, in_frac_bits=in_frac,
                                 out_frac_bits=out_frac, feeds=sink))
    mmax = (1 << (cfg.weight_bits - 1)) - 1
    w = np.asarray(node.weight, dtype=np.float64)
    scale = w_eff / np.where(w != 0, w, 1.0)  # the folded gain, per element
    scale = np.where(w != 0, scale, 1.0)
    rounder = fx.Rounder(name, rep.fields, cfg.state_bits)
    mant = rounder.fixed("weight", w_eff, P, lo=-mmax - 1, hi=mmax, clip=True, scale=scale,
                         what=f"{cfg.weight_bits}-bit mantissa")
    if choice is not None and choice.hessian is not None:
        mant = compensated_mantissas(w_eff, P, choice.hessian, -mmax - 1, mmax)
        err = np.abs(mant * 2.0 ** -P - w_eff) / np.abs(scale)
        rounder.report("weight", w_eff, mant, P, rep.fields["weight"].clipped, err)
    if choice is not None:
        rep.scale["rounding"] = choice.label()
    rep.grid_usage = float(np.max(np.abs(mant), initial=0)) / mmax
    if not np.any(mant) and np.any(w):
        rep.notes.append("all weights round to zero")
    qbias = None
    if bias is not None:
        qbias = rounder.fixed("bias", bias, out_frac)
        rep.notes.append("adds its own bias (it reaches the sink delayed or over a feedback "
                         "edge)")
    if ch.feedback:
        rep.notes.append("recurrent: runs on the previous step's values")
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        geo = conv_geometry_of(node)
        padding = geo.explicit_padding()
        if padding is None:
            raise QuantizationError(f"node '{name}': asymmetric 'same' padding is not "
                                    "supported in fixed point")
        syn = QuantizedSynapse(name, tname, mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows, geo.stride, padding, geo.dilation, geo.groups,
                               bias=qbias)
    else:
        syn = QuantizedSynapse(name, tname, mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows, bias=qbias)
    report[name] = rep
    return syn


def quantize_threshold(graph: nir.NIRGraph, name: str, node: nir.Threshold,
                       chains: list[Chain], shapes: dict[str, tuple[int, ...]],
                       fmt: Formats, layers: dict[str, Any],
                       report: dict[str, LayerReport]) -> None:
    """An integer compare of the aligned sum of its inputs (see
    :class:`QuantizedThreshold`); it then emits spikes like a spiking neuron."""
    for ch in chains:
        if ch.weighted is not None:
            raise QuantizationError(
                f"threshold '{name}' is fed through weighted layer '{ch.weighted}'; in fixed "
                "point a Threshold compares the spikes or integers it receives without "
                "weights (as after a SumPool2d of spikes): put a neuron between them")
    facs = {avg_factor(graph, c.nodes) for c in chains}
    if len(facs) > 1:
        raise QuantizationError(f"threshold '{name}': inputs average-pooled differently "
                                "cannot share one integer threshold")
    frac = max(fmt(c.source)[0] for c in chains)
    shape = shapes[name]
    try:
        theta = np.broadcast_to(np.asarray(node.threshold, dtype=np.float64), shape)
    except ValueError:
        raise QuantizationError(f"threshold '{name}': threshold of shape "
                                f"{np.shape(node.threshold)} does not fit its input {shape}"
                                ) from None
    # the integer pools sum: compare the sum with θ times the window of an average pool
    scaled = np.floor(theta / facs.pop() * 2.0 ** frac)
    if not np.all(np.abs(scaled) < 2.0 ** 62):
        raise QuantizationError(f"threshold '{name}': threshold up to "
                                f"{float(np.max(np.abs(theta))):g} does not fit 63-bit "
                                f"integers at {frac} fractional bits")
    layers[name] = QuantizedThreshold(name, scaled.astype(np.int64), frac, shape)
    report[name] = LayerReport(name, _tname(node), "threshold",
                               scale=dict(in_frac_bits=frac, frac_bits=0))


def quantize_output(graph: nir.NIRGraph, name: str, chains: list[Chain], cfg: QuantConfig,
                    shapes: dict[str, tuple[int, ...]], fmt: Formats,
                    layers: dict[str, Any], report: dict[str, LayerReport],
                    types: dict[str, str] | None = None, choices: Choices | None = None
                    ) -> None:
    """The aligned sum of an Output's inputs, plus the constant its weighted layers add
    (a layer whose bias reaches the Output delayed adds it itself); ``choices``: the
    calibrated mantissa choices by layer."""
    rep = LayerReport(name, "Output", "output")
    const = np.zeros(shapes[name])
    plans: list[tuple[Chain, np.ndarray, int]] = []
    fracs: list[int] = []
    caps: list[int] = []
    for ch in chains:
        q_src = fmt(ch.source)[0]
        if ch.weighted is None:
            if avg_factor(graph, ch.nodes) != 1.0:
                raise QuantizationError(f"output '{name}': average pooling with no weights "
                                        "before it has no integer form here")
            fracs.append(q_src)
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        w_eff = w * avg_factor(graph, ch.nodes)
        choice = effective_choice(w_eff, cfg, (choices or {}).get(ch.weighted))
        P = best_mant_frac(w_eff, cfg.weight_bits) + (choice.extra_bits if choice else 0)
        plans.append((ch, w_eff, P))
        fracs.append(q_src + P)
        caps.append(q_src + P + exp_range(graph.nodes[ch.weighted], cfg)[1])
        if not ch.travels:
            const = const + run_float(graph, [ch.weighted, *ch.post],
                                      np.zeros(shapes[graph_pred(ch)]))
    frac = min([max(fracs)] + caps)
    for ch, w_eff, P0 in plans:
        lo, hi = exp_range(graph.nodes[ch.weighted], cfg)
        q_src = fmt(ch.source)[0]
        P = P0
        w_exp = frac - q_src - P
        if w_exp < lo:
            P, w_exp = frac - q_src - lo, lo
        bias = travelling_bias(graph, ch, avg_factor(graph, ch.nodes), None, shapes)
        layers[ch.weighted] = make_synapse(
            graph, ch, name, w_eff, None, P, w_exp, q_src, frac, cfg, report, bias,
            (types or {}).get(ch.weighted),
            effective_choice(w_eff, cfg, (choices or {}).get(ch.weighted)))
    bias = None
    if np.any(const != 0):
        bias = fx.Rounder(name, rep.fields, 62).fixed("bias", const, frac)
    rep.scale = dict(frac_bits=frac)
    layers[name] = QuantizedOutput(name, frac, bias)
    report[name] = rep


__all__ = ["Choices", "Formats", "HESSIAN_DAMP", "WeightChoice", "best_mant_frac",
           "compensated_mantissas", "effective_choice", "exp_range", "make_synapse",
           "on_grid", "quantize_output", "quantize_threshold", "travelling_bias"]
