"""Write a quantized graph as a lava-dl ``netx`` HDF5 network (``*.net``).

:func:`write_netx` turns a NIR graph (or a :class:`~nirbridge.quantize.QuantizedGraph`)
into the file that ``lava.lib.dl.netx.hdf5.Network(net_config=path)`` loads, with the
integer values of :func:`nirbridge.quantize.quantize`. Run in Lava's ``fixed_pt``
simulation, the network reproduces :func:`nirbridge.quantize.run_fixed_point` of the same
quantized graph spike for spike, :func:`netx_latency` steps late (see *Data layout,
latency and reset* for how to load it).

What netx can express (lava-dl 0.6.0, ``lava/lib/dl/netx/hdf5.py``)
------------------------------------------------------------------
A netx network is a *chain* of layers ``layer/0``, ``layer/1``, …: an ``input`` layer,
then ``dense`` and ``conv`` layers (a synapse and its neurons), with ``flatten`` markers
between a conv and a dense layer. Its only spiking neuron with exact integer semantics is
``CUBA``, i.e. stock Lava ``LIF`` (``PyLifModelBitAcc``). So the graph must be::

    Input → [Flatten] → (Affine | Linear | Conv2d) → (LIF | IF | CubaLIF)
          → [Flatten] → (Affine | Linear | Conv2d) → (LIF | IF | CubaLIF) → … → Output

with one Input, one Output, no branches, and every neuron exactly a stock Lava LIF
(:attr:`~nirbridge.quantize.QuantizedNeuron.lava_issues` empty). Anything else is refused
with :class:`~nirbridge.errors.LoweringError` naming the first node (in topological order)
that netx cannot run exactly, and why:

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
  ``truncate_weights``) would change: this file transcribes that packing and checks it.

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
  ``weight`` ``[N, N_in]`` (int), optional ``bias`` ``[N]`` (int), ``neuron/``.
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
  were quantized for); each layer's ``nir_nodes``.

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

Graded inputs (``input_frac_bits > 0`` or integer inputs) need
``Network(..., input_message_bits=…)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from nirbridge._files import atomic_path
from nirbridge.errors import GraphError, InputError, LoweringError
from nirbridge.fixed_point import as_int
from nirbridge.graph import refuse_recurrent
from nirbridge.neurons import CustomNeuron, is_neuron
from nirbridge.neurons.lava_lif import LavaLIFParams
from nirbridge.passes import predecessors, resolve_dt, successors, topological_order
from nirbridge.quantize import (
    QuantConfig,
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedSynapse,
    quantize,
    quantize_input,
)

#: Neuron node types netx can run (as CUBA = stock Lava LIF).
NETX_NEURONS: tuple[type, ...] = (nir.LIF, nir.IF, nir.CubaLIF)
#: Weighted node types netx can run (``dense`` and ``conv`` layers).
NETX_WEIGHTED: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv2d)
#: Weight exponent range :func:`netx_config` pins (netx has no exponent field).
NETX_WEIGHT_EXP: tuple[int, int] = (0, 1)
#: netx's fixed ``bias_exp`` for CUBA neurons (``hdf5.Network.get_neuron_params``).
NETX_BIAS_EXP = 6
#: Lava LIF's signed 13-bit ``bias_mant``.
LAVA_BIAS_MANT = (-(1 << 12), (1 << 12) - 1)
#: Loihi's 8-bit mixed-sign synaptic weights (plus the sign), as Lava Dense clips them.
LAVA_WEIGHT_RANGE = (-256, 255)
#: ``reset_offset`` to load a netx file with when using ``reset_interval`` (module docstring).
NETX_RESET_OFFSET = 1


@dataclass
class NetxLayer:
    """One ``layer/i`` group: its netx ``type`` (``input``, ``dense``, ``conv``,
    ``flatten``), the NIR nodes it stands for and its datasets (name → value, the
    ``neuron/…`` ones included)."""

    kind: str
    nodes: list[str]
    data: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------- config
def netx_config(config: QuantConfig | str | Path | None = None) -> QuantConfig:
    """The quantization settings whose integer semantics a netx file can hold exactly.

    ``config`` is a :class:`QuantConfig`, a profile name or path (default ``"loihi2"``).
    Kept from it: input format, headroom, LUT settings. Pinned: 8-bit weight mantissas
    (at most), weight exponent in ``[0, 1]`` for dense and conv alike (netx has no
    exponent: the file holds ``mant·2^w_exp``), Lava's 24-bit states, 12-bit decays and 6
    fractional bits of the LIF family.
    """
    if config is None:
        config = "loihi2"
    cfg = config if isinstance(config, QuantConfig) else QuantConfig.from_profile(config)
    frac = dict(cfg.frac_bits)
    frac.update({"lif": 6, "if": 6, "cubalif": 6})
    return replace(cfg, weight_bits=min(cfg.weight_bits, 8), weight_exp_min=NETX_WEIGHT_EXP[0],
                   weight_exp_max=NETX_WEIGHT_EXP[1], conv_weight_exp=True, state_bits=24,
                   decay_bits=12, frac_bits=frac)


def quantize_for_netx(graph: nir.NIRGraph, config: QuantConfig | str | Path | None = None,
                      *, dt: float | None = None) -> QuantizedGraph:
    """Check that ``graph`` has netx's structure, then quantize it with
    :func:`netx_config` at time step ``dt`` (default the graph's ``metadata["dt"]``; a
    graph without one is refused: the decays written depend on it). Run
    :func:`~nirbridge.quantize.run_fixed_point` on the result for the golden model of
    the file :func:`write_netx` writes from it."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    step = resolve_dt(graph, dt, require=True)
    check_netx_structure(graph)
    return quantize(graph, netx_config(config), dt=step.dt)


# ---------------------------------------------------------------------- structure
def _tname(node: Any) -> str:
    return type(node).__name__


def _why_not_netx(node: nir.NIRNode) -> str | None:
    """Why a node type has no netx layer (None if it has one)."""
    if isinstance(node, (nir.Input, nir.Output, nir.Flatten, *NETX_WEIGHTED, *NETX_NEURONS)):
        return None
    if isinstance(node, CustomNeuron):
        return ("custom neuron: netx's only exact spiking neuron is CUBA (stock Lava LIF); "
                "run it with the lava backend's custom processes instead")
    if isinstance(node, (nir.LI, nir.CubaLI, nir.I)):
        return ("non-spiking neuron: netx's CUBA neuron always spikes, so a graded readout "
                "cannot be written; end the network with a spiking neuron")
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return ("pooling: lava-dl netx 0.6.0 raises NotImplementedError for 'pool' layers; "
                "use a strided Conv2d instead")
    if isinstance(node, nir.Conv1d):
        return "Conv1d: netx conv layers are 2-D"
    if isinstance(node, nir.NIRGraph):
        return "subgraph: flatten the graph first"
    return "no netx layer type (input, dense, conv, flatten with CUBA neurons)"


def check_netx_structure(graph: nir.NIRGraph) -> None:
    """Raise :class:`LoweringError` naming the first node (topological order) whose type
    or position netx cannot express: see the module docstring. A recurrent graph raises
    :class:`~nirbridge.errors.GraphError` naming a cycle."""
    refuse_recurrent(graph, "netx export")
    order = topological_order(graph)
    preds, succs = predecessors(graph), successors(graph)
    n_in = sum(isinstance(n, nir.Input) for n in graph.nodes.values())
    n_out = sum(isinstance(n, nir.Output) for n in graph.nodes.values())
    for name in order:
        node = graph.nodes[name]
        why = _why_not_netx(node)
        if why:
            raise LoweringError(f"netx: node '{name}' ({_tname(node)}) is not supported: {why}")

        def bad(msg: str, n: str = name, nd: Any = node) -> LoweringError:
            return LoweringError(f"netx: node '{n}' ({_tname(nd)}): {msg}")

        if isinstance(node, nir.Input):
            if n_in != 1:
                raise bad(f"the graph has {n_in} Input nodes; a netx network has exactly one")
        elif len(preds[name]) != 1:
            raise bad(f"has {len(preds[name])} inputs; a netx network is a chain (no sums "
                      "or branches)")
        if isinstance(node, nir.Output):
            if n_out != 1:
                raise bad(f"the graph has {n_out} Output nodes; a netx network has exactly one")
            if not is_neuron(graph.nodes[preds[name][0]]):
                raise bad("is not fed by a neuron: netx's output is the spikes of its last "
                          "layer's CUBA neurons")
            continue
        if len(succs[name]) != 1:
            raise bad(f"feeds {len(succs[name])} nodes; a netx network is a chain (no branches)"
                      if succs[name] else "feeds nothing; connect it to the Output")
        nxt_name = succs[name][0]
        nxt = graph.nodes[nxt_name]
        pred = graph.nodes[preds[name][0]] if preds[name] else None
        if isinstance(node, NETX_WEIGHTED):
            if not isinstance(nxt, NETX_NEURONS):
                why_next = _why_not_netx(nxt)
                if why_next:
                    raise LoweringError(f"netx: node '{nxt_name}' ({_tname(nxt)}) is not "
                                        f"supported: {why_next}")
                raise bad(f"is followed by '{nxt_name}' ({_tname(nxt)}); every netx dense/conv "
                          "layer must feed CUBA neurons (LIF, IF or CubaLIF) directly")
            if isinstance(node, nir.Conv2d) and isinstance(pred, nir.Flatten):
                raise bad(f"follows Flatten '{preds[name][0]}'; netx flattens only before a "
                          "dense layer")
        elif isinstance(node, NETX_NEURONS):
            if not isinstance(pred, NETX_WEIGHTED):
                raise bad(f"is fed by '{preds[name][0]}' ({_tname(pred)}); every netx neuron "
                          "layer sits right behind its own dense or conv synapse")
        elif isinstance(node, nir.Flatten):
            if not isinstance(nxt, (nir.Flatten, nir.Affine, nir.Linear)):
                raise bad(f"is followed by '{nxt_name}' ({_tname(nxt)}); netx flattens only "
                          "right before a dense layer")


# ------------------------------------------------------------------ weight packing
def netx_dense_packing(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and ``weight_exp`` Lava's Dense ends up using for a netx
    ``dense`` layer whose file holds ``weight``: transcribed from lava-dl 0.6.0
    ``netx/utils.py:optimize_weight_bits`` and lava-nc 0.10.0
    ``lava/utils/weightutils.py`` (``determine_sign_mode``, ``clip_weights(num_bits=8)``,
    ``truncate_weights``), as ``netx.blocks.process.Dense`` chains them. Lava then delivers
    ``(Σ w·s) << weight_exp`` (``>>`` for negative exponents). Raises
    :class:`LoweringError` where netx itself would crash (all-zero weights) or shift by a
    negative count (a layer it cannot pack)."""
    w = np.asarray(weight).astype(np.int64)
    if not np.any(w):
        raise LoweringError("all weights are zero; lava-dl netx's optimize_weight_bits "
                            "divides by the largest weight and crashes")
    wmax, wmin = int(w.max()), int(w.min())
    if wmax > 254 and wmin < 0:
        w = np.clip(w, -256, 254)
        wmax = int(w.max())
    if wmin < -256 and wmax > 0:
        w = np.clip(w, -256, 254)
        wmin = int(w.min())
    if wmax < 0:
        signed, scale = 0, -256.0 / wmin
    elif wmin >= 0:
        signed, scale = 0, 255.0 / wmax
    else:
        signed = 1
        scale = min(127.0 / wmax if wmax else np.inf, -128.0 / wmin)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2.0 ** n - np.round(w / 2.0 ** n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    if scale_bits < 0:
        raise LoweringError(f"weights up to {wmax} do not fit netx's 8-bit packing")
    w = w << scale_bits
    weight_exp = -scale_bits
    # Lava Dense (PyDenseModelBitAcc, first run_spk): sign mode of the packed weights
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inh":
        w = -w
    w = np.clip(w, -(1 << 8) * mixed, (1 << 8) - 1)
    n_trunc = 8 - num_weight_bits + mixed
    if n_trunc < 0:
        raise LoweringError(f"netx packs these weights with a negative truncation "
                            f"({n_trunc} bits); Lava's result is undefined")
    w = (w >> n_trunc) << n_trunc
    if mode == "inh":
        w = -w
    return w, weight_exp


def _dense_exact(weight: np.ndarray) -> bool:
    """True if netx + Lava Dense deliver exactly ``Σ weight·s``."""
    packed, exp = netx_dense_packing(weight)
    return exp <= 0 and np.array_equal(packed, np.asarray(weight, dtype=np.int64) << -exp)


# ------------------------------------------------------------------------- layers
def _scalar(name: str, field_name: str, value: Any) -> int:
    vals = np.unique(as_int(value))
    if vals.size != 1:  # lava_issues already refuses this; kept as a guard
        raise LoweringError(f"netx: node '{name}': {field_name} varies per neuron")
    return int(vals[0])


def _neuron_data(q: QuantizedNeuron, node: nir.NIRNode) -> dict[str, Any]:
    """The ``neuron/`` datasets and the ``bias`` of a CUBA layer, or LoweringError."""
    head = f"netx: node '{q.name}' ({_tname(node)})"
    if q.kind != "lava_lif" or not isinstance(q.params, LavaLIFParams) or not q.spiking:
        raise LoweringError(f"{head}: quantized as '{q.kind}', not as a spiking stock Lava LIF")
    issues = q.lava_issues
    if issues:
        raise LoweringError(f"{head}: netx's CUBA neuron is stock Lava LIF, which cannot run "
                            f"it exactly: {'; '.join(issues)}")
    p = q.params
    if np.any(as_int(p.v_init) != 0) or np.any(as_int(p.u_init) != 0):
        raise LoweringError(f"{head}: non-zero initial voltage (v_init, or v_reset ≠ 0 folded "
                            "into it); netx starts every neuron at v = u = 0")
    bias = np.broadcast_to(p.effective_bias, q.shape).astype(np.int64)
    out: dict[str, Any] = {
        "neuron/iDecay": _scalar(q.name, "du", p.du) + 1,
        "neuron/vDecay": _scalar(q.name, "dv", p.dv),
        "neuron/vThMant": _scalar(q.name, "vth", p.vth),
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }
    if np.any(bias):
        unit = 1 << NETX_BIAS_EXP
        if np.any(bias % unit):
            b = int(bias[bias % unit != 0].flat[0])
            raise LoweringError(
                f"{head}: bias {b} (integer, {q.frac_bits} fractional bits) is not a multiple "
                f"of {unit}: netx fixes Lava's bias_exp to {NETX_BIAS_EXP}, so a bias must be "
                f"a multiple of 2^-{q.frac_bits - NETX_BIAS_EXP} in real units; remove or "
                "round the bias")
        mant = bias // unit
        if mant.min() < LAVA_BIAS_MANT[0] or mant.max() > LAVA_BIAS_MANT[1]:
            raise LoweringError(f"{head}: bias/{unit} = {int(np.abs(mant).max())} exceeds "
                                "Lava's signed 13-bit bias_mant")
        out["bias"] = mant
    return out


def _synapse_weight(q: QuantizedSynapse, node: nir.NIRNode) -> np.ndarray:
    head = f"netx: weighted layer '{q.name}' ({_tname(node)})"
    if q.w_exp < 0:
        raise LoweringError(f"{head}: quantized with weight exponent {q.w_exp} < 0; netx has "
                            "no weight exponent: quantize with nirbridge.netx.netx_config()")
    if not np.any(q.mant):
        why = "all its weights round to zero" if np.any(np.asarray(node.weight)) else \
            "all its weights are zero"
        raise LoweringError(f"{head}: {why} after quantization; lava-dl netx crashes on an "
                            "all-zero layer (optimize_weight_bits divides by the largest "
                            "weight): remove the layer or rescale it")
    w = q.mant.astype(np.int64) << q.w_exp
    if w.min() < LAVA_WEIGHT_RANGE[0] or w.max() > LAVA_WEIGHT_RANGE[1]:
        raise LoweringError(f"{head}: integer weights span [{w.min()}, {w.max()}], outside "
                            f"Loihi's {list(LAVA_WEIGHT_RANGE)}; quantize with netx_config()")
    if isinstance(node, (nir.Affine, nir.Linear)):
        try:
            exact = _dense_exact(w)
        except LoweringError as exc:
            raise LoweringError(f"{head}: {exc}") from None
        if not exact:
            raise LoweringError(f"{head}: netx's weight packing (optimize_weight_bits, then "
                                "Lava Dense's clip/truncate) would change these integer "
                                f"weights (range [{w.min()}, {w.max()}]; e.g. a layer with no "
                                "positive weight whose smallest is a power of two)")
    return w


def netx_layers(qgraph: QuantizedGraph) -> list[NetxLayer]:
    """The netx layers of a quantized graph (the file's content), or LoweringError naming
    the first node netx cannot run exactly (module docstring)."""
    g = qgraph.graph
    check_netx_structure(g)
    if len(qgraph.inputs) != 1 or len(qgraph.outputs) != 1:
        raise LoweringError("netx: the graph needs exactly one Input and one Output")
    in_name = qgraph.inputs[0]
    if not isinstance(qgraph.layers.get(in_name), QuantizedInput):
        raise LoweringError(f"netx: input '{in_name}' has no quantized form")
    layers = [NetxLayer("input", [in_name],
                        {"shape": np.array(qgraph.shapes[in_name], dtype=np.int64)})]
    pending: NetxLayer | None = None  # a weighted layer waiting for its neurons
    for name in qgraph.order:
        node = g.nodes[name]
        layer = qgraph.layers.get(name)
        shape = qgraph.shapes[name]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        if isinstance(node, nir.Flatten):
            if len(qgraph.shapes[qgraph.preds[name][0]]) == 1:
                continue  # flattening a flat port is a no-op (and netx would transpose it)
            if len(shape) != 1:
                raise LoweringError(f"netx: node '{name}' (Flatten): output shape {shape} is "
                                    "not flat; netx flattens all of (C, H, W)")
            layers.append(NetxLayer("flatten", [name], {"shape": np.array(shape)}))
            continue
        if isinstance(node, NETX_WEIGHTED):
            if not isinstance(layer, QuantizedSynapse):
                raise LoweringError(f"netx: weighted layer '{name}' has no quantized form")
            w = _synapse_weight(layer, node)
            in_shape = qgraph.shapes[qgraph.preds[name][0]]
            if isinstance(node, nir.Conv2d):
                if len(in_shape) != 3:
                    raise LoweringError(f"netx: node '{name}' (Conv2d): input shape "
                                        f"{in_shape} is not (C, H, W)")
                data = {"shape": np.array(shape), "inChannels": int(in_shape[0]),
                        "outChannels": int(w.shape[0]),
                        "kernelSize": np.array(w.shape[2:]),
                        "stride": np.array(layer.stride), "padding": np.array(layer.padding),
                        "dilation": np.array(layer.dilation), "groups": int(layer.groups),
                        "weight": w}
                pending = NetxLayer("conv", [name], data)
            else:
                if len(in_shape) != 1:
                    raise LoweringError(f"netx: node '{name}' ({_tname(node)}): input shape "
                                        f"{in_shape} is not flat; put a Flatten before it")
                data = {"shape": np.array(shape), "inFeatures": int(w.shape[1]),
                        "outFeatures": int(w.shape[0]), "weight": w}
                pending = NetxLayer("dense", [name], data)
            continue
        # a neuron (the structure check guarantees one right behind `pending`)
        if not isinstance(layer, QuantizedNeuron) or pending is None:
            raise LoweringError(f"netx: node '{name}' has no quantized neuron form")
        ndata = _neuron_data(layer, node)
        bias = ndata.pop("bias", None)
        if bias is not None:
            if pending.kind == "conv":
                flat = bias.reshape(bias.shape[0], -1)
                bias = flat[:, 0] if np.all(flat == flat[:, :1]) else bias.transpose(2, 1, 0)
            pending.data["bias"] = bias
        pending.data.update(ndata)
        pending.nodes.append(name)
        layers.append(pending)
        pending = None
    if len(layers) < 2:
        raise LoweringError("netx: the graph has no dense or conv layer")
    return layers


def netx_depth(qgraph: QuantizedGraph, node: str | None = None) -> int:
    """Steps by which ``node``'s netx output (default: the network output) lags the golden
    model: the number of dense/conv layers up to it (each Lava synapse sends the previous
    step's accumulation)."""
    if node is None:
        node = qgraph.outputs[0]
    if node not in qgraph.graph.nodes:
        raise InputError(f"node '{node}' is not in the graph")
    depth = 0
    for name in qgraph.order:
        depth += isinstance(qgraph.graph.nodes[name], NETX_WEIGHTED)
        if name == node:
            return depth
    raise InputError(f"node '{node}' is not in the graph")  # pragma: no cover


def netx_latency(qgraph: QuantizedGraph) -> int:
    """Steps by which the netx network's output lags the golden model: one per dense/conv
    layer."""
    return netx_depth(qgraph)


def to_netx_layout(x: Any) -> np.ndarray:
    """NIR ``[T, *shape]`` → Lava ``(*reversed(shape), T)`` (e.g. ``[T, C, H, W]`` →
    ``(W, H, C, T)``): all axes reversed. Its own inverse."""
    return np.ascontiguousarray(np.transpose(np.asarray(x)))


def netx_input(qgraph: QuantizedGraph, x: Any) -> np.ndarray:
    """Inputs ``[T, *in_shape]`` or ``[T, B, *in_shape]`` in real units → the integers a
    ``RingBuffer`` feeds the netx network, shaped ``(*port_shape, B·T)``: the ``B``
    samples one after the other (load the network with ``reset_interval=T`` to run them
    independently, see the module docstring).

    Inputs are rounded and saturated exactly as :func:`run_fixed_point` does; the port is
    flat (C order) when the first layer is dense, ``(W, H, C)`` when it is a conv. Append
    :func:`netx_latency` silent steps to see the last sample's end at the output.
    """
    name = qgraph.inputs[0]
    shape = tuple(qgraph.shapes[name])
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if arr.ndim == len(shape) + 1:
        arr = arr[:, None]
    if arr.ndim != len(shape) + 2 or tuple(arr.shape[2:]) != shape:
        raise InputError(f"input has shape {arr.shape}; expected [T, *{shape}] or "
                         f"[T, B, *{shape}]")
    ints = quantize_input(arr, qgraph.layers[name])
    ints = np.swapaxes(ints, 0, 1).reshape(-1, *shape)  # samples back to back
    first = next(n for n in qgraph.order if isinstance(qgraph.graph.nodes[n], NETX_WEIGHTED))
    if isinstance(qgraph.graph.nodes[first], nir.Conv2d):
        return to_netx_layout(ints)
    return np.ascontiguousarray(ints.reshape(ints.shape[0], -1).T)


def netx_output(qgraph: QuantizedGraph, y: Any, node: str | None = None) -> np.ndarray:
    """A recorded Lava array ``(*port_shape, T')`` of ``node``'s neurons (default: the
    network output) → NIR layout ``[T', *shape]`` (latency not removed)."""
    if node is None:
        node = qgraph.preds[qgraph.outputs[0]][0]
    arr = to_netx_layout(y)
    return arr.reshape(arr.shape[0], *qgraph.shapes[node])


def align_netx_output(qgraph: QuantizedGraph, y: Any, steps: int, node: str | None = None
                      ) -> np.ndarray:
    """A recorded Lava array ``(*port_shape, B·steps + d)`` of ``node``'s neurons (default:
    the network output) → ``[steps, B, *shape]`` aligned with the golden model: sample
    ``b``'s step ``t`` is recorded at index ``b·steps + t + d``, ``d`` =
    :func:`netx_depth`."""
    if node is None:
        node = qgraph.preds[qgraph.outputs[0]][0]
    depth = netx_depth(qgraph, node)
    arr = netx_output(qgraph, y, node)
    n = (arr.shape[0] - depth) // steps
    if n < 1:
        raise InputError(f"{arr.shape[0]} recorded steps hold no whole sample of {steps} "
                         f"steps after the latency of {depth}")
    arr = arr[depth:depth + n * steps].reshape(n, steps, *arr.shape[1:])
    return np.swapaxes(arr, 0, 1)


# ------------------------------------------------------------------------- writing
def _write_layer(grp: h5py.Group, layer: NetxLayer) -> None:
    grp.create_dataset("type", (1,), "S10", [layer.kind.encode("ascii")])
    grp.attrs["nir_nodes"] = ",".join(layer.nodes)
    for key, val in layer.data.items():
        grp.create_dataset(key, data=val)
    if any(k.startswith("neuron/") for k in layer.data):
        grp.create_dataset("neuron/type", (1,), "S10", [b"CUBA"])


def write_netx(graph: nir.NIRGraph | QuantizedGraph, path: str | os.PathLike[str],
               config: QuantConfig | str | Path | None = None, *,
               dt: float | None = None) -> Path:
    """Write ``graph`` as a lava-dl netx HDF5 network at ``path`` (atomically: a temporary
    file beside it, then ``os.replace``; nothing is left behind on failure).

    ``graph``: a NIR graph, quantized here with :func:`quantize_for_netx` (``config``: a
    :class:`QuantConfig` or profile name, default ``"loihi2"``, adjusted by
    :func:`netx_config`), or a :class:`QuantizedGraph` already made that way (then
    ``config`` and ``dt`` must be None). ``dt``: as :func:`quantize_for_netx`; the file
    records it (attribute ``dt``). Raises :class:`LoweringError` naming the first node
    netx cannot run exactly (see the module docstring). Returns the path written.
    """
    if isinstance(graph, QuantizedGraph):
        if config is not None or dt is not None:
            raise InputError("write_netx: pass config and dt only with a NIR graph; a "
                             "QuantizedGraph is already quantized")
        qgraph = graph
    else:
        qgraph = quantize_for_netx(graph, config, dt=dt)
    layers = netx_layers(qgraph)
    target = Path(path)
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "nirbridge"
        f.attrs["latency"] = netx_latency(qgraph)
        f.attrs["input_frac_bits"] = qgraph.layers[qgraph.inputs[0]].frac_bits
        f.attrs["has_bias"] = any("bias" in layer.data for layer in layers)
        f.attrs["reset_offset"] = NETX_RESET_OFFSET
        f.attrs["dt"] = float(qgraph.dt)
        root = f.create_group("layer")
        for i, layer in enumerate(layers):
            _write_layer(root.create_group(str(i)), layer)
    return target


__all__ = [
    "NETX_NEURONS",
    "NETX_RESET_OFFSET",
    "NETX_WEIGHTED",
    "NetxLayer",
    "check_netx_structure",
    "netx_config",
    "align_netx_output",
    "netx_dense_packing",
    "netx_depth",
    "netx_input",
    "netx_latency",
    "netx_layers",
    "netx_output",
    "quantize_for_netx",
    "to_netx_layout",
    "write_netx",
]
