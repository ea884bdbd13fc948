"""The quantized graph: every node's fixed-point form, and the per-layer report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from nirbridge.fixed_point import FieldReport
from nirbridge.neurons import NEURONS, IntegerModel
from nirbridge.quantize.config import QuantConfig


@dataclass
class LayerReport:
    """Quantization of one node: the scale chosen and each field's losses.

    ``scale`` holds the format (``frac_bits``, ``scale_exp``, ``act_shift`` of a neuron;
    ``w_exp``, ``mantissa_frac_bits`` of a synapse); errors are in the parameter's own
    real units (a weight's error is that of the original weight, gain unfolded).
    ``grid_usage`` (a synapse): the largest mantissa magnitude over the largest the
    mantissa holds (1: the whole range used). ``calibration`` (set by
    :func:`nirbridge.quantize.calibrate.calibrate`, a layer fed by weighted layers): the
    choice kept and, on the calibration inputs, the spike agreement with the float64
    reference, the first divergent step and the saturated states, before (the plain
    rule) and after.
    """

    name: str
    node_type: str
    kind: str
    scale: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, FieldReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    grid_usage: float | None = None
    calibration: dict[str, Any] | None = None

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
                    notes=list(self.notes), grid_usage=self.grid_usage,
                    calibration=None if self.calibration is None else dict(self.calibration))


@dataclass
class QuantizedInput:
    """A graded (``frac_bits > 0``) or spike/integer network input."""

    name: str
    frac_bits: int
    bits: int


@dataclass
class QuantizedSynapse:
    """A weighted layer in integers: ``out = shift_floor(mant ⊛ in, w_exp)`` (``+ bias``).

    ``mant`` has the shape of the NIR weight; the real (gain-folded) weight it stands for
    is ``mant · 2^-mant_frac``; ``in_frac``/``out_frac`` are the fractional bits of what
    it reads and delivers; ``sink`` is the neuron or Output it feeds. ``bias`` (int64, the
    layer's output shape, ``out_frac`` fractional bits, scaled like the weights) is set
    only where the layer's bias reaches its sink delayed, over a feedback edge or through
    a ``nir.Delay`` (a recurrent Affine's bias first counts at t = 1): it is then added
    by the layer itself. Every other bias is folded into the sink's constant drive.
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
    bias: np.ndarray | None = None


@dataclass
class QuantizedNeuron:
    """A neuron in integers: its model ``kind`` (its neuron's
    :class:`~nirbridge.neurons.IntegerModel`), parameters, state format
    ``S = frac_bits`` (``= profile frac_bits + scale_exp``), and the fractional bits of
    the ``a_in`` it receives (``in_frac = S − act_shift``)."""

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
    def model(self) -> IntegerModel:
        """Its integer model (from the neuron registry)."""
        spec = NEURONS[self.node_type]
        assert spec.integer is not None, f"{self.node_type} has no integer model"
        return spec.integer

    @property
    def lava_issues(self) -> list[str]:
        """Why the Lava-shipped Process of its model cannot run it exactly."""
        issues = getattr(self.params, "lava_issues", None)
        return list(issues) if issues is not None else [f"custom model '{self.kind}'"]


@dataclass
class QuantizedThreshold:
    """A ``nir.Threshold`` in integers: ``out = (x > threshold)``, 0/1 spikes (0 fractional
    bits), where ``x`` is the sum of its inputs aligned to ``in_frac`` fractional bits.

    ``threshold`` (int64, the node's shape) is ``floor(θ·2^in_frac)``, with ``θ`` divided
    by the window of any average pooling on its inputs (the integer pools sum): for an
    integer ``x``, ``x > floor(θ·2^f)`` exactly when ``x·2^-f > θ``. After a SumPool2d of
    spikes (a max pooling of spikes, as nirbridge exports it) ``x`` is the spike count of
    the window and the threshold 0: the integer run is exact.
    """

    name: str
    threshold: np.ndarray
    in_frac: int
    shape: tuple[int, ...]
    out_frac: int = 0


@dataclass
class QuantizedOutput:
    """An Output node: the sum of its inputs aligned to ``frac_bits``, plus ``bias``."""

    name: str
    frac_bits: int
    bias: np.ndarray | None = None


@dataclass
class QuantizedGraph:
    """A graph with every node's fixed-point form and the quantization report.

    ``graph`` is the graph quantized: flat (nested subgraphs flattened, node ``sub.x``),
    with each ``nir.Scale`` as the ``nir.Linear`` of its diagonal; ``order`` is its
    :func:`~nirbridge.graph.execution_order`."""

    graph: nir.NIRGraph
    config: QuantConfig
    dt: float
    order: list[str]
    preds: dict[str, list[str]]
    layers: dict[str, Any]
    report: dict[str, LayerReport]
    shapes: dict[str, tuple[int, ...]]
    #: the edges that carry the previous step (:func:`nirbridge.graph.feedback_edges`)
    feedback: list[tuple[str, str]] = field(default_factory=list)
    #: the emulator's kernel-ready weights (by array, dtype and device), made at its first
    #: run: they depend on this graph's arrays only, which nothing changes after quantizing,
    #: so later runs of the same graph (streaming, one sample at a time) skip the conversion
    kernels: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

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
