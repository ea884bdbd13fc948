"""The netx file itself: quantizing for netx (:func:`netx_config`,
:func:`quantize_for_netx`), its layers (:func:`netx_layers`) and writing them
(:func:`write_netx`); the rules are in :mod:`nirbridge.netx`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from nirbridge._files import atomic_hdf5
from nirbridge.errors import GraphError, InputError, LoweringError
from nirbridge.fixed_point import as_int
from nirbridge.graph import flatten_subgraphs, successors
from nirbridge.netx.layout import netx_latency
from nirbridge.netx.packing import LAVA_WEIGHT_RANGE, dense_exact
from nirbridge.netx.structure import (
    NETX_WEIGHTED,
    check_netx_structure,
    recurrent_layers,
    type_name,
)
from nirbridge.neurons.lava_lif import LavaLIFParams
from nirbridge.passes import resolve_dt
from nirbridge.quantize import (
    QuantConfig,
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedSynapse,
    quantize,
)

#: Weight exponent range :func:`netx_config` pins (netx has no exponent field).
NETX_WEIGHT_EXP: tuple[int, int] = (0, 1)
#: netx's fixed ``bias_exp`` for CUBA neurons (``hdf5.Network.get_neuron_params``).
NETX_BIAS_EXP = 6
#: Lava LIF's signed 13-bit ``bias_mant``.
LAVA_BIAS_MANT = (-(1 << 12), (1 << 12) - 1)
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
    graph without one is refused: the decays written depend on it). Nested subgraphs
    (snnTorch's recurrent export) are flattened first (node ``sub.x``). Run
    :func:`~nirbridge.quantize.run_fixed_point` on the result for the golden model of
    the file :func:`write_netx` writes from it."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    step = resolve_dt(graph, dt, require=True)
    graph = flatten_subgraphs(graph)
    check_netx_structure(graph)
    return quantize(graph, netx_config(config), dt=step.dt)


def _scalar(name: str, field_name: str, value: Any) -> int:
    vals = np.unique(as_int(value))
    if vals.size != 1:  # lava_issues already refuses this; kept as a guard
        raise LoweringError(f"netx: node '{name}': {field_name} varies per neuron")
    return int(vals[0])


def _neuron_data(q: QuantizedNeuron, node: nir.NIRNode) -> dict[str, Any]:
    """The ``neuron/`` datasets and the ``bias`` of a CUBA layer, or LoweringError."""
    head = f"netx: node '{q.name}' ({type_name(node)})"
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


def _synapse_weight(q: QuantizedSynapse, node: nir.NIRNode, packed_alone: bool = True
                    ) -> np.ndarray:
    """The file's integer weights of a weighted layer, or LoweringError. ``packed_alone``
    false: the weights of a ``dense_rec`` layer, whose packing (and all-zero check) is
    done on the input and recurrent weights together (:func:`_rec_weights`)."""
    head = f"netx: weighted layer '{q.name}' ({type_name(node)})"
    if q.w_exp < 0:
        raise LoweringError(f"{head}: quantized with weight exponent {q.w_exp} < 0; netx has "
                            "no weight exponent: quantize with nirbridge.netx.netx_config()")
    if packed_alone and not np.any(q.mant):
        why = "all its weights round to zero" if np.any(np.asarray(node.weight)) else \
            "all its weights are zero"
        raise LoweringError(f"{head}: {why} after quantization; lava-dl netx crashes on an "
                            "all-zero layer (optimize_weight_bits divides by the largest "
                            "weight): remove the layer or rescale it")
    w = q.mant.astype(np.int64) << q.w_exp
    if w.min() < LAVA_WEIGHT_RANGE[0] or w.max() > LAVA_WEIGHT_RANGE[1]:
        raise LoweringError(f"{head}: integer weights span [{w.min()}, {w.max()}], outside "
                            f"Loihi's {list(LAVA_WEIGHT_RANGE)}; quantize with netx_config()")
    if packed_alone and isinstance(node, (nir.Affine, nir.Linear)):
        try:
            exact = dense_exact(w)
        except LoweringError as exc:
            raise LoweringError(f"{head}: {exc}") from None
        if not exact:
            raise LoweringError(f"{head}: netx's weight packing (optimize_weight_bits, then "
                                "Lava Dense's clip/truncate) would change these integer "
                                f"weights (range [{w.min()}, {w.max()}]; e.g. a layer with no "
                                "positive weight whose smallest is a power of two)")
    return w


def _rec_weights(qgraph: QuantizedGraph, layer: NetxLayer) -> np.ndarray:
    """The recurrent weights of a ``dense_rec`` layer (nodes: input synapse, neuron,
    recurrent synapse), checked as netx packs them with the input weights, or
    LoweringError naming the layer's nodes."""
    ff, neuron, syn = layer.nodes
    w = layer.data["weight"]
    q = qgraph.layers.get(syn)
    if not isinstance(q, QuantizedSynapse):
        raise LoweringError(f"netx: recurrent synapse '{syn}' has no quantized form")
    w_rec = _synapse_weight(q, qgraph.graph.nodes[syn], packed_alone=False)
    head = f"netx: recurrent layer ('{ff}', '{neuron}', '{syn}')"
    if w_rec.shape != (w.shape[0], w.shape[0]):
        raise LoweringError(f"{head}: recurrent weights {w_rec.shape} are not "
                            f"{w.shape[0]} × {w.shape[0]}")
    try:
        exact = dense_exact(w, w_rec)
    except LoweringError as exc:
        raise LoweringError(f"{head}: {exc}") from None
    if not exact:
        raise LoweringError(f"{head}: netx's weight packing (optimize_weight_bits of the input "
                            "and recurrent weights side by side, then Lava Dense's clip/"
                            "truncate) would change these integer weights (input range "
                            f"[{w.min()}, {w.max()}], recurrent [{w_rec.min()}, {w_rec.max()}])")
    return w_rec


def netx_layers(qgraph: QuantizedGraph) -> list[NetxLayer]:
    """The netx layers of a quantized graph (the file's content), or LoweringError naming
    the first node netx cannot run exactly (module docstring)."""
    g = qgraph.graph
    check_netx_structure(g)
    recurrent = recurrent_layers(g)
    rec_syn = set(recurrent.values())
    succs = successors(g)
    biased = [n for n, q in qgraph.neurons().items()
              if isinstance(q.params, LavaLIFParams) and np.any(q.params.effective_bias)]
    if recurrent and biased:
        raise LoweringError(
            f"netx: recurrent layer{'s' if len(recurrent) > 1 else ''} ("
            + "; ".join(f"'{n}', '{s}'" for n, s in recurrent.items())
            + f") in a network with neuron biases (in '{biased[0]}'): a netx layer runs "
            "before its input arrives, so a bias can make it fire early, and netx's reset "
            "does not clear the recurrent synapse, which brings those spikes back; only "
            "bias-free networks with a recurrent layer run exactly (remove the biases)")
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
        if isinstance(node, (nir.Input, nir.Output)) or name in rec_syn:
            continue  # a recurrent synapse joins its neurons' layer below
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
            w = _synapse_weight(layer, node, packed_alone=succs[name][0] not in recurrent)
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
                    raise LoweringError(f"netx: node '{name}' ({type_name(node)}): input shape "
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
        if name in recurrent:
            pending.kind = "dense_rec"
            pending.nodes.append(recurrent[name])
            pending.data["weight_rec"] = _rec_weights(qgraph, pending)
        layers.append(pending)
        pending = None
    if len(layers) < 2:
        raise LoweringError("netx: the graph has no dense or conv layer")
    return layers


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
    with atomic_hdf5(target) as f:
        f.attrs["generator"] = "nirbridge"
        f.attrs["latency"] = netx_latency(qgraph)
        f.attrs["input_frac_bits"] = qgraph.layers[qgraph.inputs[0]].frac_bits
        f.attrs["has_bias"] = any("bias" in layer.data for layer in layers)
        f.attrs["reset_offset"] = NETX_RESET_OFFSET
        f.attrs["dt"] = float(qgraph.dt)
        f.attrs["recurrent"] = any(layer.kind == "dense_rec" for layer in layers)
        root = f.create_group("layer")
        for i, layer in enumerate(layers):
            _write_layer(root.create_group(str(i)), layer)
    return target


__all__ = ["LAVA_BIAS_MANT", "NETX_BIAS_EXP", "NETX_RESET_OFFSET", "NETX_WEIGHT_EXP",
           "NetxLayer", "netx_config", "netx_layers", "quantize_for_netx", "write_netx"]
