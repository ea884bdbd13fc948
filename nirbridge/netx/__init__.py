"""Write a quantized graph as a lava-dl ``netx`` HDF5 network (``*.net``).

:func:`write_netx` turns a NIR graph (or a :class:`~nirbridge.quantize.QuantizedGraph`)
into the file that ``lava.lib.dl.netx.hdf5.Network(net_config=path)`` loads, with the
integer values of :func:`nirbridge.quantize.quantize`. Run in Lava's ``fixed_pt``
simulation, the network reproduces :func:`nirbridge.quantize.run_fixed_point` of the same
quantized graph spike for spike, :func:`netx_latency` steps late (see *Data layout,
latency and reset* for how to load it).

Modules: :mod:`~nirbridge.netx.structure` (which graphs netx can express, its recurrent
layers), :mod:`~nirbridge.netx.packing` (netx's and Lava's weight packing, transcribed),
:mod:`~nirbridge.netx.writer` (quantizing for netx, the layers, the file),
:mod:`~nirbridge.netx.layout` (Lava's array layout, latency, inputs and outputs); every
public name is importable from :mod:`nirbridge.netx`.

What netx can express (lava-dl 0.6.0, ``lava/lib/dl/netx/hdf5.py``)
------------------------------------------------------------------
A netx network is a *chain* of layers ``layer/0``, ``layer/1``, …: an ``input`` layer,
then ``dense`` and ``conv`` layers (a synapse and its neurons), with ``flatten`` markers
between a conv and a dense layer. Its only spiking neuron with exact integer semantics is
``CUBA``, i.e. stock Lava ``LIF`` (``PyLifModelBitAcc``). So the graph must be::

    Input → [Flatten] → (Affine | Linear | Conv2d) → (LIF | IF | CubaLIF)
          → [Flatten] → (Affine | Linear | Conv2d) → (LIF | IF | CubaLIF) → … → Output

with one Input, one Output, no branches, and every neuron exactly a stock Lava LIF
(:attr:`~nirbridge.quantize.QuantizedNeuron.lava_issues` empty). A dense layer may be
recurrent, ``neuron → (Linear | Affine without bias) → neuron`` beside its input
synapse: netx's ``dense_rec`` layer (``RecurrentDense``), whose spikes go back through a
second Lava Dense that delivers them the next step, ``W_rec·s[t−1]`` and nothing at
t = 0, which is nirbridge's reading of a feedback edge (``docs/recurrence.md``).
Anything else is refused with :class:`~nirbridge.errors.LoweringError` naming the first
node (in execution order) that netx cannot run exactly, and why:

- custom neurons (AR-LIF, KLIF, CLIF, ALIF, DA-LIF, SubtractiveLIF): netx has only CUBA;
- non-spiking neurons (LI, CubaLI, I): a CUBA neuron always spikes;
- pooling (SumPool2d, AvgPool2d): netx raises ``NotImplementedError`` for ``pool``;
- Conv1d; branches, sums, several inputs or outputs; a neuron without a weighted layer in
  front; a weighted layer without a neuron behind it (a graded readout);
- a neuron that fires on ``>=`` (Lava's LIF fires on ``v > vth·2^6``), has per-neuron
  decays or thresholds (scalars in Lava), a threshold outside 17 unsigned bits, an input
  gain not folded into the weights, a CubaLIF synaptic bias, or a non-zero initial
  voltage (netx starts every ``v`` at 0);
- a bias that netx cannot hold exactly: netx fixes Lava's ``bias_exp`` to 6, so the
  integer bias (``bias_mant·2^bias_exp`` of the golden model) must be a multiple of 64
  with ``bias/64`` in Lava's signed 13 bits;
- a weighted layer whose quantized weights are all zero (netx's ``optimize_weight_bits``
  divides by the largest weight and crashes), or whose integer weights netx's own weight
  packing (``optimize_weight_bits``, then Lava Dense's ``clip_weights`` and
  ``truncate_weights``) would change: :mod:`~nirbridge.netx.packing` transcribes that
  packing and the writer checks it
  (for ``dense_rec``, the input and recurrent weights packed side by side, as netx does:
  :func:`netx_dense_rec_packing`);
- a cycle other than a recurrent dense layer (:func:`recurrent_layers`; one line naming
  the cycle's nodes): through several layers or a Delay, a Scale (write a one-to-one
  recurrence as a Linear with diagonal weights), a recurrent conv, a recurrent Affine
  with a bias (it first counts at t = 1, netx has only the neuron's bias, which counts
  from t = 0); and any neuron bias in a network with a recurrent layer (see *Data
  layout, latency and reset*).

Integer semantics written
-------------------------
netx has no weight exponent: a ``dense``/``conv`` layer delivers ``a_in = Σ w·s`` with the
file's integer ``w``. The golden synapse computes ``shift_floor(Σ mant·s, w_exp)``, which
equals that with ``w = mant·2^w_exp`` whenever ``w_exp ≥ 0``. :func:`netx_config` therefore
quantizes with the exponent range pinned to ``[0, 1]`` (8-bit mantissas, so ``w`` stays in
``[−256, 254]``, the range netx packs exactly); the state scale adapts to it. Neurons:
``iDecay = du + 1`` (netx passes ``du = iDecay − 1`` to Lava), ``vDecay = dv``,
``vThMant = vth`` (Lava compares ``v > vth << 6``), ``bias = effective_bias / 64``.

HDF5 layout written (what ``netx.hdf5.Network`` reads)
-----------------------------------------------------
- ``layer/0``: ``type = "input"``, ``shape`` (the NIR input shape, e.g. ``[C, H, W]``); no
  ``neuron`` group, so the network's input port feeds the first synapse directly.
- ``layer/i`` dense: ``type = "dense"``, ``shape = [N]``, ``inFeatures``, ``outFeatures``,
  ``weight`` ``[N, N_in]`` (int), optional ``bias`` ``[N]`` (int), ``neuron/``. A
  recurrent one: ``type = "dense_rec"`` and ``weight_rec`` ``[N, N]`` (int) besides.
- ``layer/i`` conv: ``type = "conv"``, ``shape = [C, H, W]`` (output), ``inChannels``,
  ``outChannels``, ``kernelSize``, ``stride``, ``padding``, ``dilation`` (each ``[y, x]``),
  ``groups``, ``weight`` ``[C_out, C_in/groups, kH, kW]`` (PyTorch layout; netx flips and
  transposes it for Lava's true convolution), optional ``bias`` (``[C]`` when constant per
  channel, else ``[W, H, C]``), ``neuron/``.
- ``layer/i`` flatten: ``type = "flatten"``, ``shape = [N]`` (netx flattens the previous
  ``(W, H, C)`` port as ``C, H, W`` in C order, i.e. like NIR/PyTorch).
- ``neuron/``: ``type = "CUBA"``, ``iDecay``, ``vDecay``, ``vThMant``, ``refDelay = 1``,
  ``gradedSpike = False``.
- ``type`` strings are fixed-length ASCII arrays of one element (as lava-dl's own export
  writes them). Attributes (ignored by netx): the file's ``generator``, ``latency``,
  ``input_frac_bits``, ``has_bias``, ``reset_offset``, ``dt`` (the time step the decays
  were quantized for), ``recurrent``; each layer's ``nir_nodes``.

Data layout, latency and reset
------------------------------
Lava ports hold the NIR per-step shape with its axes reversed: ``(W, H, C)`` for
``(C, H, W)``, and time is the last axis of a ``RingBuffer``. So a NIR array
``[T, *shape]`` becomes ``x.T`` (:func:`to_netx_layout`), except that the network input is
flat (``N``, C order) when the first layer is dense (:func:`netx_input` handles both).

Each dense/conv layer adds one step (Lava's synapses send the previous step's
accumulation): the neurons behind the ``i``-th weighted layer (:func:`netx_depth`) emit at
``RingBuffer`` index ``t + i`` what the golden model emits at step ``t``, and the network
output is :func:`netx_latency` (the number of weighted layers) steps late
(:func:`align_netx_output` undoes it). During those first ``i`` steps the layer's neurons
already run with no input. That is harmless (they stay at 0) unless a neuron has a bias,
which they would integrate (and may fire on) before the sample arrives. Hence:

- ``Network(net_config=path)`` reproduces the golden model exactly for one sample when no
  neuron has a bias (the file's ``has_bias`` attribute is False);
- ``Network(net_config=path, reset_interval=T, reset_offset=NETX_RESET_OFFSET)`` reproduces
  it exactly with biases too, and for any number of samples of ``T`` steps fed back to
  back (:func:`netx_input` concatenates a batch that way): netx then zeroes the ``i``-th
  layer's ``u`` and ``v`` at ``RingBuffer`` index ``k·T + i``, just before sample ``k``
  reaches it (netx gives layer ``i`` the offset ``reset_offset + i``; Lava's ``LIFReset``
  resets where ``time_step % T`` equals it, and ``time_step`` starts at 1). What such a
  layer emits at indices below ``i`` is not part of any sample.

A recurrent synapse adds no layer and no latency (:func:`netx_depth` counts the
feed-forward dense/conv layers). A network with a recurrent layer is exact one sample
per ``Network`` run and only without neuron biases (the writer refuses them):
netx's reset zeroes ``u`` and ``v`` but not the recurrent Dense, which still holds
``W_rec·s`` of the step before, so one sample's last spikes would reach the next
sample's first step; and a biased layer can fire during the steps it runs before its
input arrives, which the recurrent synapse would bring back after the reset.
:func:`netx_input` refuses more than one sample for such a network.

Graded inputs (``input_frac_bits > 0`` or integer inputs) need
``Network(..., input_message_bits=…)``.
"""

from __future__ import annotations

from nirbridge.netx.layout import (
    align_netx_output,
    netx_depth,
    netx_input,
    netx_latency,
    netx_output,
    to_netx_layout,
)
from nirbridge.netx.packing import LAVA_WEIGHT_RANGE, netx_dense_packing, netx_dense_rec_packing
from nirbridge.netx.structure import (
    NETX_NEURONS,
    NETX_WEIGHTED,
    check_netx_structure,
    recurrent_layers,
)
from nirbridge.netx.writer import (
    LAVA_BIAS_MANT,
    NETX_BIAS_EXP,
    NETX_RESET_OFFSET,
    NETX_WEIGHT_EXP,
    NetxLayer,
    netx_config,
    netx_layers,
    quantize_for_netx,
    write_netx,
)

__all__ = [
    "LAVA_BIAS_MANT",
    "LAVA_WEIGHT_RANGE",
    "NETX_BIAS_EXP",
    "NETX_NEURONS",
    "NETX_RESET_OFFSET",
    "NETX_WEIGHTED",
    "NETX_WEIGHT_EXP",
    "NetxLayer",
    "align_netx_output",
    "check_netx_structure",
    "netx_config",
    "netx_dense_packing",
    "netx_dense_rec_packing",
    "netx_depth",
    "netx_input",
    "netx_latency",
    "netx_layers",
    "netx_output",
    "quantize_for_netx",
    "recurrent_layers",
    "to_netx_layout",
    "write_netx",
]
