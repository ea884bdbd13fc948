"""The Sinabs front-end: ``sinabs.layers`` models through :func:`nirbridge.to_nir`, and
files written by Sinabs' own exporter read the way Sinabs reads them.

Direct route (:func:`adapt`). Sinabs layers run ``[B, T, ...]`` (the ``*Squeeze`` layers
``[B·T, ...]``); the exported graph is their single-step form, so every layout exports
alike. Each layer keeps its state inside, so its stand-in is wrapped in
:class:`~nirbridge.export.frontends.HiddenState`; the graph starts from Sinabs'
``reset_states()`` (zeros).

- ``IAF``/``IAFSqueeze`` → the custom ``SinabsIAF`` (spike counts, Sinabs' reset and floor);
  with ``SingleSpike``, ``MembraneReset(0)`` and no ``min_v_mem`` it is exactly
  ``nir.IF(r = 1)`` firing on ``>=``, and exports as that.
- ``LIF``/``LIFSqueeze`` → ``SinabsLIF`` (``α = exp(−1/τ_mem)`` per step, ``norm_input``);
  a ``LIF`` without ``spike_fn`` and ``ExpLeak``/``ExpLeakSqueeze`` → ``SinabsExpLeak``;
  an ``IAF`` or ``LIF`` with ``tau_syn`` → ``SinabsSynLIF`` (state ``v`` and ``i_syn``).
- ``SumPool2d`` → :class:`nirbridge.layers.SumPool2d` where Sinabs' ``avg_pool·k²`` is the
  exact window sum (a power-of-two window, no ``ceil_mode``); ``FlattenTime``,
  ``UnflattenTime`` → identity and ``Repeat(m)`` → ``m`` (one step has no time axis to
  fold); ``sinabs.network.Network`` → its ``spiking_model``.
- Refused, naming the reason: custom ``spike_fn`` or
  ``reset_fn``, the recurrent and adaptive layers, Sinabs' spiking max pooling (it pools
  cumulative counts over time), and the ANN-side and input-encoding layers.

File route (:func:`from_file`): Sinabs' exporter (``sinabs.to_nir``) writes an ``IAF`` as
NIR's ``IF``, a ``LIF`` as ``LIF`` and an ``ExpLeak`` as ``LI``, without dt; its reader
(``sinabs.from_nir``) reads ``IF`` as a multi-spike, subtractive IAF floored at
``−v_threshold``, ``LIF`` as a multi-spike subtractive LIF with ``α = exp(−1/τ)`` and no
input normalisation, ``LI`` as an ``ExpLeak``, all with τ in time steps. :func:`from_file`
writes that reading in nirbridge's exact nodes.
"""

from __future__ import annotations

import copy
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from nirbridge.errors import UnsupportedLayerError
from nirbridge.export.frontends import HiddenState, adapt_model, unsupported
from nirbridge.neurons import NEURONS, NeuronModule
from nirbridge.neurons.sinabs_expleak import SinabsExpLeak, SinabsExpLeakNode
from nirbridge.neurons.sinabs_iaf import SinabsIAF, SinabsIAFNode
from nirbridge.neurons.sinabs_lif import SinabsLIF, SinabsLIFNode
from nirbridge.neurons.sinabs_synlif import SinabsSynLIF
from nirbridge.neurons.standard import IF

FRAMEWORK = "Sinabs"
#: What works for a module this front-end refuses.
ROUTE = ("what exports: sinabs.layers IAF, IAFSqueeze, LIF, LIFSqueeze (with or without "
         "tau_syn), ExpLeak, ExpLeakSqueeze (spike_fn MultiSpike, MaxSpike or SingleSpike; "
         "reset_fn MembraneSubtract or MembraneReset) and SumPool2d, between torch "
         "Linear/Conv layers; write another neuron as a nirbridge neuron (README: "
         "'Adding a neuron')")
#: Sinabs writes no dt and reads every τ in time steps: its files mean dt = 1 step.
DT = 1.0

#: Sinabs modules refused, with the reason.
_REFUSED: dict[str, str] = {
    "IAFRecurrent": "its recurrent connection is applied inside the layer",
    "LIFRecurrent": "its recurrent connection is applied inside the layer",
    "ALIF": "the adaptive threshold has no exact nirbridge neuron",
    "ALIFRecurrent": "the adaptive threshold has no exact nirbridge neuron",
    "SpikingMaxPooling2dLayer": ("it pools cumulative spike counts over time, not one step; "
                                 "torch nn.MaxPool2d on spikes exports"),
    "Merge": "it pads inputs of different shapes; write `a + b` where the shapes are equal",
    "ChannelShift": "NIR has no channel shift",
    "Cropping2dLayer": "NIR has no crop",
    "NeuromorphicReLU": "an ANN layer (its forward is not a spiking step)",
    "QuantizeLayer": "an ANN layer (its forward is not a spiking step)",
    "Img2SpikeLayer": "it draws random spikes from its input",
    "Sig2SpikeLayer": "it draws random spikes from its input",
}


# -------------------------------------------------------------------- direct route
def adapt(module: nn.Module, name: str) -> nn.Module | None:
    """The stand-in of a Sinabs module (see the module docstring), or an error."""
    import sinabs.layers as sl

    kind = type(module).__name__
    if type(module).__module__.startswith("sinabs.network") and kind == "Network":
        return adapt_model(module.spiking_model)
    if kind in _REFUSED:
        raise unsupported(module, name, FRAMEWORK, ROUTE, _REFUSED[kind])
    if isinstance(module, (sl.FlattenTime, sl.UnflattenTime)):
        return nn.Identity()
    if isinstance(module, sl.Repeat):
        return adapt_model(module.module)
    if isinstance(module, sl.SumPool2d):
        return _sum_pool(module, name)
    if isinstance(module, sl.LIF) and not isinstance(module, sl.LIFRecurrent):
        return HiddenState(_neuron(module, name), type(module).__name__)
    raise unsupported(module, name, FRAMEWORK, ROUTE, "no front-end mapping for it")


def _sum_pool(module: nn.Module, name: str) -> nn.Module:
    from nirbridge.layers import SumPool2d

    kh, kw = _pair(module.kernel_size)
    stride = _pair(module.kernel_size if module.stride is None else module.stride)
    area = kh * kw
    if module.ceil_mode:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "with ceil_mode=True Sinabs scales partial windows by k²/size")
    if area & (area - 1):
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"Sinabs computes avg_pool·{area}, which rounds differently from "
                          f"the window sum for a {kh}x{kw} window (exact only for power-of-"
                          "two windows); use nirbridge.layers.SumPool2d in the model")
    return SumPool2d((kh, kw), stride)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(value).detach().clone()


def _neuron(module: nn.Module, name: str) -> NeuronModule:
    """The single-step neuron computing exactly what a Sinabs LIF-family layer does."""
    import sinabs.layers as sl

    v_min = None if module.min_v_mem is None else _tensor(module.min_v_mem)
    alpha = _tensor(module.alpha_mem_calculated)
    alpha_syn = module.alpha_syn_calculated
    if module.spike_fn is None:  # ExpLeak, or a LIF without spikes: the output is v
        if alpha_syn is not None:
            raise unsupported(module, name, FRAMEWORK, ROUTE,
                              "a LIF with tau_syn and no spike_fn has no exact nirbridge "
                              "neuron")
        return SinabsExpLeak(alpha=alpha, norm_input=bool(module.norm_input), min_v_mem=v_min)
    fire = _fire_settings(module, name)
    if alpha_syn is not None:  # IAF: alpha 1, no norm_input
        return SinabsSynLIF(alpha=alpha, alpha_syn=_tensor(alpha_syn),
                            norm_input=bool(module.norm_input), **fire, min_v_mem=v_min)
    if isinstance(module, sl.IAF):
        if _is_nir_if(fire, v_min):
            return IF(v_threshold=fire["v_threshold"], v_reset=0.0, r=1.0, compare=">=")
        return SinabsIAF(**fire, min_v_mem=v_min)
    return SinabsLIF(alpha=alpha, norm_input=bool(module.norm_input), **fire,
                     min_v_mem=v_min)


def _fire_settings(module: nn.Module, name: str) -> dict[str, Any]:
    """The spike and reset arguments of the stand-in, from Sinabs' spike_fn/reset_fn."""
    from sinabs.activation import (
        MaxSpike,
        MembraneReset,
        MembraneSubtract,
        MultiSpike,
        SingleSpike,
    )

    fn, reset_fn = module.spike_fn, module.reset_fn
    if fn is MultiSpike:
        spike, max_spikes = "multi", 0
    elif fn is SingleSpike:
        spike, max_spikes = "single", 0
    elif isinstance(fn, MaxSpike):
        n = fn.max_num_spikes_per_bin
        if n is not None and int(n) < 1:
            raise unsupported(module, name, FRAMEWORK, ROUTE,
                              f"MaxSpike(max_num_spikes_per_bin={n}) never fires")
        spike, max_spikes = "multi", 0 if n is None else int(n)
    else:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"spike_fn {getattr(fn, '__name__', type(fn).__name__)} is not "
                          "one of Sinabs' MultiSpike, MaxSpike, SingleSpike")
    if isinstance(reset_fn, MembraneSubtract):
        reset, value = "subtract", reset_fn.subtract_value
    elif isinstance(reset_fn, MembraneReset):
        reset, value = "reset", reset_fn.reset_value
    else:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"reset_fn {type(reset_fn).__name__} is not one of Sinabs' "
                          "MembraneSubtract, MembraneReset")
    return dict(v_threshold=_tensor(module.spike_threshold), spike=spike,
                max_spikes=max_spikes, reset=reset,
                # Sinabs adds a Python float: keep its float64 value
                reset_value=None if value is None else torch.tensor(float(value),
                                                                    dtype=torch.float64))


def _is_nir_if(fire: dict[str, Any], v_min: Any) -> bool:
    """SingleSpike, a reset to 0 and no floor: ``v ← v + x``, fire on ``v ≥ θ``, ``v ← 0``
    is NIR's IF (R = 1) operation for operation."""
    return (fire["spike"] == "single" and fire["reset"] == "reset"
            and not fire["reset_value"] and v_min is None)


# ---------------------------------------------------------------------- file route
def from_file(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """The graph a Sinabs file means to Sinabs (``sinabs.from_nir``), in nirbridge's exact
    nodes, with dt = :data:`DT`; and notes saying what was read differently from NIR's
    specification. ``graph`` is the file as :func:`nirbridge.read` reads it.

    Raises :class:`~nirbridge.errors.UnsupportedLayerError` for a node Sinabs' reader has no
    mapping for (it would drop it silently) and for a ``LIF``/``LI`` Sinabs refuses.
    """
    notes: list[str] = []
    seen: set[str] = set()
    new = _read_graph(graph, "", notes, seen)
    old_dt = (graph.metadata or {}).get("dt")
    if old_dt is not None and float(np.asarray(old_dt)) != DT:
        notes.append(f"the file's dt = {float(np.asarray(old_dt)):g} is ignored: Sinabs reads "
                     "every τ in time steps (dt = 1)")
    new.metadata = {**dict(graph.metadata or {}), "dt": DT}
    return new, notes


def _read_graph(graph: nir.NIRGraph, prefix: str, notes: list[str],
                seen: set[str]) -> nir.NIRGraph:
    nodes = {name: _read_node(f"{prefix}{name}", node, notes, seen)
             for name, node in graph.nodes.items()}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges),
                        metadata=dict(graph.metadata or {}), type_check=False)


def _note_once(notes: list[str], seen: set[str], key: str, text: str) -> None:
    if key not in seen:
        seen.add(key)
        notes.append(text)


def _read_node(name: str, node: nir.NIRNode, notes: list[str], seen: set[str]) -> nir.NIRNode:
    if isinstance(node, nir.NIRGraph):
        return _read_graph(node, f"{name}.", notes, seen)
    if isinstance(node, nir.IF):
        return _read_if(name, node, notes, seen)
    if isinstance(node, nir.LIF):
        return _read_lif(name, node, notes, seen)
    if isinstance(node, nir.LI):
        return _read_li(name, node, notes, seen)
    if isinstance(node, (nir.Affine, nir.Conv2d)):
        return _float32_weights(name, node, notes)
    if isinstance(node, nir.SumPool2d):
        return _read_sum_pool(name, node, notes)
    if isinstance(node, nir.Conv1d):
        _note_once(notes, seen, "conv1d",
                   f"{name}: Conv1d kept as NIR reads it (Sinabs' reader fails on a Conv1d "
                   "read from a file: it calls .detach() on its arrays)")
        return node
    if isinstance(node, (nir.Input, nir.Output, nir.Flatten)) or type(node).__name__ in NEURONS:
        return node
    raise UnsupportedLayerError(
        f"node '{name}' ({type(node).__name__}): Sinabs' reader (sinabs.from_nir) has no "
        "mapping for it and would drop it silently; read the file without --from sinabs "
        "(NIR's own reading)")


def _float32(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).astype(np.float64)


def _shape(node: nir.NIRNode) -> tuple[int, ...]:
    shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
    return shape or np.shape(node.v_threshold if hasattr(node, "v_threshold") else node.tau)


def _full(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape))


def _read_if(name: str, node: nir.IF, notes: list[str], seen: set[str]) -> SinabsIAFNode:
    # sinabs.nir: IAFSqueeze(spike_threshold=v_threshold, min_v_mem=-v_threshold); its
    # defaults MultiSpike and MembraneSubtract(); r and v_reset are not read
    shape = _shape(node)
    theta = _full(node.v_threshold, shape)
    _note_once(notes, seen, "if",
               "IF read as Sinabs IAF: multi-spike (floor(v/θ) per step), subtractive reset, "
               "floor min_v_mem = −v_threshold, firing on v >= v_threshold (NIR: one spike, "
               "hard reset to v_reset, no floor, v > v_threshold)")
    _ignored(name, node, "r", 1.0, notes, "Sinabs' IAF has no input gain")
    _ignored(name, node, "v_reset", 0.0, notes, "Sinabs subtracts v_threshold instead")
    return SinabsIAFNode(v_threshold=theta, reset_value=theta, v_min=-theta, spike="multi",
                         reset="subtract", floor=True)


def _alpha(node: nir.NIRNode) -> np.ndarray:
    """Sinabs' ``exp(−1/τ)`` of a file's τ: τ stored as float32 (Sinabs' Parameter), the
    exponential taken in float64 by torch, as a float64 Sinabs model computes it."""
    tau = torch.as_tensor(_float32(node.tau))
    return torch.exp(-1.0 / tau).numpy()


def _check_v_leak(name: str, node: nir.NIRNode) -> None:
    if np.any(np.asarray(node.v_leak) != 0):
        raise UnsupportedLayerError(f"node '{name}' ({type(node).__name__}): v_leak ≠ 0; "
                                    "Sinabs' reader refuses it ('`v_leak` must be 0')")


def _read_lif(name: str, node: nir.LIF, notes: list[str], seen: set[str]) -> SinabsLIFNode:
    # sinabs.nir: LIFSqueeze(tau_mem=tau, spike_threshold=v_threshold, norm_input=False)
    _check_v_leak(name, node)
    shape = _shape(node)
    theta = _full(node.v_threshold, shape)
    _note_once(notes, seen, "lif",
               "LIF read as Sinabs LIF: v ← exp(−1/τ)·v + x (τ in steps, no 1/τ input "
               "scaling, r not read), multi-spike, subtractive reset (NIR: forward Euler "
               "v ← v + (dt/τ)(v_leak − v + r·x), one spike, hard reset)")
    _ignored(name, node, "r", 1.0, notes, "Sinabs' LIF has no input gain")
    _ignored(name, node, "v_reset", 0.0, notes, "Sinabs subtracts v_threshold instead")
    return SinabsLIFNode(alpha=_full(_alpha(node), shape), v_threshold=theta,
                         reset_value=theta, v_min=np.zeros(shape), norm_input=False,
                         spike="multi", reset="subtract", floor=False)


def _read_li(name: str, node: nir.LI, notes: list[str], seen: set[str]) -> SinabsExpLeakNode:
    # sinabs.nir: ExpLeakSqueeze(tau_mem=tau, norm_input=False); refuses v_leak, r ≠ 0, 1
    _check_v_leak(name, node)
    if np.any(np.asarray(node.r) != 1):
        raise UnsupportedLayerError(f"node '{name}' (LI): r ≠ 1; Sinabs' reader refuses it "
                                    "('`r` must be 1')")
    shape = _shape(node)
    _note_once(notes, seen, "li",
               "LI read as Sinabs ExpLeak: v ← exp(−1/τ)·v + x, τ in steps (NIR: forward "
               "Euler v ← v + (dt/τ)(v_leak − v + r·x))")
    return SinabsExpLeakNode(alpha=_full(_alpha(node), shape), v_min=np.zeros(shape),
                             norm_input=False, floor=False)


def _ignored(name: str, node: nir.NIRNode, field: str, neutral: float, notes: list[str],
             why: str) -> None:
    value = getattr(node, field, None)
    if value is not None and np.any(np.asarray(value) != neutral):
        notes.append(f"{name}: {field} = {np.unique(np.asarray(value)).tolist()[:4]} is not "
                     f"read by Sinabs ({why})")


def _float32_weights(name: str, node: nir.NIRNode, notes: list[str]) -> nir.NIRNode:
    # sinabs.nir: Linear/Conv2d weights and biases as torch float32
    node = copy.copy(node)  # the caller's graph stays as it was read
    changed = []
    for field in ("weight", "bias"):
        value = np.asarray(getattr(node, field), dtype=np.float64)
        rounded = _float32(value)
        if not np.array_equal(value, rounded):
            changed.append(field)
        setattr(node, field, rounded)
    if changed:
        notes.append(f"{name}: {' and '.join(changed)} rounded to float32, as Sinabs loads them")
    return node


def _read_sum_pool(name: str, node: nir.SumPool2d, notes: list[str]) -> nir.SumPool2d:
    # sinabs.nir: SumPool2d(kernel_size, stride), i.e. LPPool2d(1): padding is not read
    kernel = tuple(int(k) for k in np.asarray(node.kernel_size).reshape(-1))
    area = int(np.prod(kernel))
    if np.any(np.asarray(node.padding) != 0):
        notes.append(f"{name}: padding {np.asarray(node.padding).tolist()} is not read by "
                     "Sinabs (its SumPool2d has none)")
        node = copy.copy(node)
        node.padding = np.zeros_like(np.asarray(node.padding))
    if area & (area - 1):
        notes.append(f"{name}: Sinabs computes this {kernel} sum pool as avg_pool·{area}, "
                     "equal to the window sum up to float rounding")
    return node


__all__ = ["DT", "FRAMEWORK", "ROUTE", "adapt", "from_file"]
