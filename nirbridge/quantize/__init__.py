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
reshapes; Threshold compares the integer sum of its inputs with ``floor(θ·2^frac)`` (θ
times the window of an average pool before it) and emits spikes, so it starts chains as a
spiking neuron does (a max pooling of spikes, SumPool2d then Threshold, runs exactly).
Several edges into a node sum, after aligning their fractional bits. ``nir.Scale`` on a
vector is the one-to-one weighted layer ``Linear(diag(scale))``; ``nir.Delay`` shifts the
integers in time and keeps their format.

*Recurrent graphs* (the semantics: ``docs/recurrence.md``). A feedback edge carries the
previous step's integers of its source, zero at t = 0; the integer executor runs each
cyclic component step by step, like the reference, and everything else over the whole
time axis. A weighted layer on a feedback edge (its source the neuron itself or a later
neuron) is laid out like any other: its format is that of the neuron it feeds. Its bias
cannot join the neuron's constant drive, since it arrives with the recurrent input, from
t = 1 on: the layer adds it itself (``QuantizedSynapse.bias``, scaled like its weights);
so does a layer whose bias reaches its sink through a ``nir.Delay``. A neuron fed back its
own graded output bounds its input by its own range, re-estimated until its format
settles; a graded recurrent source quantized after its sink is refused.
"""

from nirbridge.fixed_point import FieldReport
from nirbridge.quantize.chains import (
    DELAYS,
    PASSTHROUGH,
    SPIKE_STAGES,
    WEIGHTED,
    without_bias,
)
from nirbridge.quantize.config import DEFAULT_FRAC_BITS, REQUIRED_KEYS, QuantConfig
from nirbridge.quantize.executor import (
    FixedPointRecord,
    quantize_input,
    run_fixed_point,
    saturation_counts,
)
from nirbridge.quantize.graph import (
    LayerReport,
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)
from nirbridge.quantize.quantizer import quantize

__all__ = [
    "DEFAULT_FRAC_BITS",
    "DELAYS",
    "FieldReport",
    "FixedPointRecord",
    "LayerReport",
    "PASSTHROUGH",
    "QuantConfig",
    "QuantizedGraph",
    "QuantizedInput",
    "QuantizedNeuron",
    "QuantizedOutput",
    "QuantizedSynapse",
    "QuantizedThreshold",
    "REQUIRED_KEYS",
    "SPIKE_STAGES",
    "WEIGHTED",
    "quantize",
    "quantize_input",
    "run_fixed_point",
    "saturation_counts",
    "without_bias",
]
