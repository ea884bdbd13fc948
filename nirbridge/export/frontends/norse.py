"""The Norse front-end (Norse 1.1.0): Norse cells in :func:`nirbridge.to_nir`, and Norse's
own reading of the NIR files its exporter writes.

Direct route (:func:`adapt`): Norse's single-step cells, called ``z, s = cell(x, s)``
alone, in ``SequentialState`` or in the user's own forward, export exactly:

- ``LIFCell`` → the custom ``NorseLIF`` (:mod:`nirbridge.neurons.norse_lif`): Norse jumps
  the current by the input before the membrane update and decays it after, which NIR's
  CubaLIF does not;
- ``LICell`` → the custom ``NorseLI`` (the same without fire);
- ``LIFBoxCell`` → ``nir.LIF`` (``reset_value``; ``metadata["v_init"]`` is Norse's start
  ``v = v_leak``) or ``SubtractiveLIF`` (``reset_subtract``, ``v_leak = 0``);
- ``LIBoxCell`` → ``nir.LI`` (``v_leak = 0``), else ``NorseLI`` with a current that decays
  fully every step (NIR's LI starts at 0, Norse at ``v_leak``);
- ``IAFCell`` → ``nir.IF`` (starting at ``v_reset``, as Norse does);
- ``LIFRecurrentCell`` → its input weights (``nir.Linear``, node ``<cell>.w_in``) and a
  :class:`nirbridge.layers.Recurrent` ``NorseLIF`` (``<cell>.neuron``) with the recurrent
  weights (``nir.Linear``, ``<cell>.w_rec``, the feedback edge into the neuron). Norse adds
  ``z[t-1] @ W_recᵀ`` to the current jump, ``i + W_in·x + W_rec·z``, with ``z`` zero at the
  first step: the reading of a feedback edge (docs/recurrence.md), no bias. The sum is
  associated as ``i + (W_in·x + W_rec·z)`` (equal to rounding, ~1e-16). The weights are
  exported as they are (``autapses=False`` zeroed their diagonal when the cell was built).

Every cell keeps Norse's per-step factors ``dt·τ⁻¹``, computed as Norse computes them (in
the parameters' dtype), at the graph's dt. Norse fires on ``v − v_th > 0`` for every
surrogate ``method``; the surrogate shapes gradients only.

File route (:func:`from_file`): what ``norse.torch.from_nir(graph, dt=DT)`` builds from a
file, as a nirbridge graph: each ``tau`` read as ``1/τ⁻¹`` at dt 1e-3, every array rounded
to float32, ``r`` and ``v_reset`` of LIF/CubaLIF/IF ignored, states starting at
``v_leak``, and the CubaLIF Norse writes for a ``LIFCell`` read as Norse reads it (a
leaky synapse driving a LIFBoxCell), which is not the LIFCell it came from.

Norse is imported only inside :func:`adapt`; :func:`from_file` needs no Norse at all.
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from nirbridge.errors import InvalidParameterError, UnsupportedLayerError
from nirbridge.export.frontends import unsupported
from nirbridge.layers import Recurrent, RecurrentState
from nirbridge.neurons import NeuronModule, as_str, full, spike
from nirbridge.neurons.norse_li import NorseLI, NorseLINode
from nirbridge.neurons.norse_lif import NorseLIF, factor_inverse, factor_tau
from nirbridge.neurons.standard import LIFState
from nirbridge.neurons.sublif import SubtractiveLIFNode

FRAMEWORK = "Norse"
#: The dt Norse's ``to_nir`` writes with and ``from_nir`` reads with (its defaults).
DT = 1e-3
ROUTE = ("nirbridge.to_nir exports Norse's single-step cells LIFCell, LIFBoxCell, LICell, "
         "LIBoxCell, IAFCell and LIFRecurrentCell (z, s = cell(x, s), alone, in "
         "SequentialState or in your own forward) between torch layers; build the exported "
         "part from those")

#: Norse's surrogate methods (``norse.torch.functional.threshold``): all are the Heaviside
#: step ``x > 0`` in the forward pass.
THRESHOLD_METHODS = ("super", "heaviside", "triangle", "tanh", "circ", "heavi_erfc")


# ------------------------------------------------------------------------- stand-ins
class NorseBoxCell(NeuronModule):
    """Norse's ``LIFBoxCell`` (``kind="lif"``), ``LIBoxCell`` (``"li"``) or ``IAFCell``
    (``"if"``): one voltage, no current, in Norse's order of operations; ``v`` starts at
    ``v_leak`` (IAF: ``v_reset``). ``tau_mem_inv`` is in 1/(the unit of ``dt``)."""

    def __init__(self, kind: str, *, tau_mem_inv: Any = 1.0, v_leak: Any = 0.0,
                 v_threshold: Any = 1.0, v_reset: Any = 0.0, reset: str = "value",
                 dt: float = DT) -> None:
        super().__init__()
        if kind not in ("lif", "li", "if") or reset not in ("value", "subtract"):
            raise InvalidParameterError(f"NorseBoxCell kind={kind!r}, reset={reset!r}")
        self.kind, self.reset, self.dt = kind, reset, float(dt)
        for name, value in (("tau_mem_inv", tau_mem_inv), ("v_leak", v_leak),
                            ("v_threshold", v_threshold), ("v_reset", v_reset)):
            self.add_param(name, value)

    def _v0(self, x: torch.Tensor) -> torch.Tensor:
        return self.p("v_reset" if self.kind == "if" else "v_leak", x)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(self._v0(x).expand_as(x).clone())

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        v = (self.initial_state(x) if state is None else state).v
        vl = self.p("v_leak", x)
        if self.kind == "if":
            v = v + x
        elif self.kind == "lif":  # lif_box_feed_forward_step's order
            v = v + self.dt * self.p("tau_mem_inv", x) * (x + vl - v)
        else:  # li_box_feed_forward_step's order
            v = v + self.dt * self.p("tau_mem_inv", x) * ((vl - v) + x)
        if self.kind == "li":
            return v, LIFState(v)
        vth = self.p("v_threshold", x)
        z = spike(v - vth, ">")
        keep = self.p("v_reset", x) if self.reset == "value" else v - vth
        return z, LIFState((1 - z) * v + z * keep)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        def f(name: str) -> np.ndarray:
            return full(getattr(self, name), shape, name)

        vth, vl, vr = f("v_threshold"), f("v_leak"), f("v_reset")
        ones = np.ones(shape)
        if self.kind == "if":
            return nir.IF(r=ones, v_threshold=vth, v_reset=vr, metadata=_start_meta(vr))
        factor = self.dt * f("tau_mem_inv")
        if self.kind == "li":
            if np.any(vl != 0):  # NIR's LI starts at 0: a current that decays fully
                return NorseLINode(tau_syn_inv=factor_inverse(ones, dt),
                                   tau_mem_inv=factor_inverse(factor, dt), v_leak=vl)
            return nir.LI(tau=factor_tau(factor, dt), r=ones, v_leak=vl)
        tau = factor_tau(factor, dt)
        if self.reset == "subtract":
            return SubtractiveLIFNode(tau=tau, r=ones, v_leak=vl, v_threshold=vth)
        return nir.LIF(tau=tau, r=ones, v_leak=vl, v_threshold=vth, v_reset=vr,
                       metadata=_start_meta(vl))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reset={self.reset!r}, dt={self.dt}"


class NorseRecurrentLIF(NeuronModule):
    """Norse's ``LIFRecurrentCell``: its input weights, then a
    :class:`~nirbridge.layers.Recurrent` Norse LIF with its recurrent weights (no bias).

    ``forward(x, state)``: ``x`` is the cell's input ``[B, input_size]``; the state is the
    recurrent layer's (:class:`~nirbridge.layers.RecurrentState`: the neuron's ``(v, i)``
    and the previous spikes). Exported as nodes ``w_in``, ``neuron``, ``w_rec``."""

    #: The node name's stem in the exported graph (the Norse class).
    export_name = "LIFRecurrentCell"

    def __init__(self, input_weights: torch.Tensor, recurrent_weights: torch.Tensor,
                 neuron: NorseLIF) -> None:
        super().__init__()
        hidden = int(input_weights.shape[0])
        self.add_param("input_weights", input_weights)
        rec = nn.Linear(hidden, hidden, bias=False, dtype=torch.float64)
        with torch.no_grad():
            rec.weight.copy_(torch.as_tensor(recurrent_weights).detach().double())
        self.cell = Recurrent(neuron, rec)

    def _current(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.p("input_weights", x))

    def initial_state(self, x: torch.Tensor) -> RecurrentState:
        return self.cell.initial_state(self._current(x))

    def forward(self, x: torch.Tensor, state: RecurrentState | None = None):  # type: ignore[override]
        return self.cell(self._current(x), state)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRGraph:
        weight = self.input_weights.detach().cpu().double().numpy().copy()
        w_in = nir.Linear(weight=weight)
        w_in.input_type = {"input": np.array(shape, dtype=np.int64)}
        w_in.output_type = {"output": np.array(weight.shape[:1], dtype=np.int64)}
        return self.cell.subgraph(weight.shape[:1], dt, input_synapse=w_in)

    def extra_repr(self) -> str:
        hidden, n_in = self.input_weights.shape
        return f"input_size={n_in}, hidden_size={hidden}"


def _start_meta(v0: np.ndarray) -> dict[str, Any]:
    meta: dict[str, Any] = {"compare": ">"}
    if np.any(v0 != 0):
        meta["v_init"] = np.array(v0, dtype=np.float64)
    return meta


# ------------------------------------------------------------------------ the direct route
def _value(t: Any) -> torch.Tensor:
    return torch.as_tensor(t).detach().to(torch.float64)


def _inverse(dt: float, tau_inv: Any) -> torch.Tensor:
    """``τ⁻¹`` in float64 whose product with ``dt`` is Norse's ``dt * p.tau_*_inv``,
    which Norse computes in the parameter's own dtype (float32 by default)."""
    factor = (dt * torch.as_tensor(tau_inv).detach()).to(torch.float64).cpu().numpy()
    return torch.from_numpy(factor_inverse(factor, dt))


def _dt_of(cell: nn.Module, name: str) -> float:
    dt = float(cell.dt.item() if torch.is_tensor(cell.dt) else cell.dt)
    if not (math.isfinite(dt) and dt > 0):
        raise unsupported(cell, name, FRAMEWORK, ROUTE, f"its dt={dt!r} is not > 0")
    return dt


def _check_method(cell: nn.Module, name: str) -> None:
    method = getattr(cell.p, "method", "super")
    if method not in THRESHOLD_METHODS:
        raise unsupported(cell, name, FRAMEWORK, ROUTE,
                          f"its threshold method {method!r} is not one of Norse's Heaviside "
                          f"surrogates ({', '.join(THRESHOLD_METHODS)})")


def _positive(cell: nn.Module, name: str, field: str) -> None:
    if not bool((torch.as_tensor(getattr(cell.p, field)) > 0).all()):
        raise unsupported(cell, name, FRAMEWORK, ROUTE,
                          f"p.{field} must be > 0 for NIR's time constant tau")


def _lif_cell(cell: nn.Module, name: str) -> NeuronModule:
    _check_method(cell, name)
    p, dt = cell.p, _dt_of(cell, name)
    return NorseLIF(tau_syn_inv=_inverse(dt, p.tau_syn_inv),
                    tau_mem_inv=_inverse(dt, p.tau_mem_inv), v_threshold=_value(p.v_th),
                    v_leak=_value(p.v_leak), v_reset=_value(p.v_reset), dt=dt)


def _lif_recurrent_cell(cell: nn.Module, name: str) -> NeuronModule:
    v_leak = torch.as_tensor(cell.p.v_leak).detach()
    # Norse starts v at v_leak in float32 (LIFRecurrentCell.initial_state), the neuron
    # uses v_leak as given: the same value only if it is a float32 number
    if not torch.equal(v_leak.double(), v_leak.float().double()):
        raise unsupported(cell, name, FRAMEWORK, ROUTE,
                          "its v_leak is not a float32 value, and Norse starts the membrane "
                          "at v_leak rounded to float32 but leaks towards v_leak itself")
    for field in ("input_weights", "recurrent_weights"):
        w = getattr(cell, field)
        if not bool(torch.isfinite(w).all()):
            raise unsupported(cell, name, FRAMEWORK, ROUTE, f"its {field} hold NaN or inf")
    return NorseRecurrentLIF(cell.input_weights.detach(), cell.recurrent_weights.detach(),
                             _lif_cell(cell, name))


def _li_cell(cell: nn.Module, name: str) -> NeuronModule:
    p, dt = cell.p, _dt_of(cell, name)
    return NorseLI(tau_syn_inv=_inverse(dt, p.tau_syn_inv),
                   tau_mem_inv=_inverse(dt, p.tau_mem_inv), v_leak=_value(p.v_leak), dt=dt)


def _lif_box(cell: nn.Module, name: str) -> NeuronModule:
    from norse.torch.functional.reset import reset_subtract, reset_value

    _check_method(cell, name)
    _positive(cell, name, "tau_mem_inv")
    p, dt = cell.p, _dt_of(cell, name)
    if p.reset_method is reset_value:
        reset = "value"
    elif p.reset_method is reset_subtract:
        reset = "subtract"
        if bool((torch.as_tensor(p.v_leak) != 0).any()):
            raise unsupported(cell, name, FRAMEWORK, ROUTE,
                              "reset_subtract with v_leak ≠ 0: nirbridge's SubtractiveLIF "
                              "starts at v = 0 and Norse at v_leak; use v_leak = 0 or "
                              "reset_value")
    else:
        raise unsupported(cell, name, FRAMEWORK, ROUTE,
                          f"its reset_method {getattr(p.reset_method, '__name__', '?')} is "
                          "neither reset_value nor reset_subtract")
    return NorseBoxCell("lif", tau_mem_inv=_inverse(dt, p.tau_mem_inv),
                        v_leak=_value(p.v_leak), v_threshold=_value(p.v_th),
                        v_reset=_value(p.v_reset), reset=reset, dt=dt)


def _li_box(cell: nn.Module, name: str) -> NeuronModule:
    _positive(cell, name, "tau_mem_inv")
    p, dt = cell.p, _dt_of(cell, name)
    return NorseBoxCell("li", tau_mem_inv=_inverse(dt, p.tau_mem_inv),
                        v_leak=_value(p.v_leak), dt=dt)


def _iaf(cell: nn.Module, name: str) -> NeuronModule:
    _check_method(cell, name)
    p = cell.p
    return NorseBoxCell("if", v_threshold=_value(p.v_th), v_reset=_value(p.v_reset),
                        dt=_dt_of(cell, name))


def _refusal(module: nn.Module) -> str:
    """Why a Norse module has no exact export (for :func:`unsupported`)."""
    from norse.torch import LIFAdExCell, Lift
    from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell

    if isinstance(module, LIFAdExCell):
        return ("its exponential term Δ_T·exp((v − v_th)/Δ_T) and adaptation current have no "
                "NIR node, and no exact integer form for a nirbridge custom node; it is "
                "refused rather than approximated")
    if isinstance(module, SNNRecurrent):
        cell = f"norse.torch.{type(module).__name__}Cell"
        return ("it runs a whole sequence [T, B, ...] per call, and nirbridge.to_nir exports "
                f"a single-step network; step its cell ({cell} with the same weights, p "
                "and dt) once per time step instead")
    if isinstance(module, SNNRecurrentCell):
        return ("its recurrence would export, but its neuron model has no exact NIR node "
                "nor nirbridge custom node")
    if isinstance(module, (SNN, Lift)):
        cell = f"norse.torch.{type(module).__name__}Cell(p, dt=...)"
        return ("it runs a whole sequence [T, B, ...] per call, and nirbridge.to_nir exports "
                f"a single-step network; step its cell ({cell} with the same p and dt) "
                "once per time step instead")
    if isinstance(module, SNNCell):
        return "this neuron model has no exact NIR node nor nirbridge custom node"
    return "it is not a Norse neuron cell nirbridge knows"


def adapt(module: nn.Module, name: str) -> nn.Module | None:
    """The stand-in of a Norse module (see the module docstring); ``None`` for a
    ``SequentialState`` (its layers are adapted one by one, its forward traced)."""
    import norse.torch as norse

    if isinstance(module, norse.SequentialState):
        if module.return_hidden:
            raise unsupported(module, name, FRAMEWORK, ROUTE,
                              "return_hidden=True returns every layer's output; export "
                              "SequentialState with return_hidden=False")
        return None
    # exact types: a subclass may change the step
    makers = {norse.LIFCell: _lif_cell, norse.LICell: _li_cell,
              norse.LIFBoxCell: _lif_box, norse.LIBoxCell: _li_box, norse.IAFCell: _iaf,
              norse.LIFRecurrentCell: _lif_recurrent_cell}
    maker = makers.get(type(module))
    if maker is None:
        raise unsupported(module, name, FRAMEWORK, ROUTE, _refusal(module))
    return maker(module, name)


# -------------------------------------------------------------------------- the file route
def _norse_tensor(value: Any) -> torch.Tensor:
    """What Norse's ``from_nir`` makes of a node's array (``import_nir._to_tensor``):
    a torch tensor as it is, a number or numpy array as float32."""
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, Number):
        return torch.as_tensor(value, dtype=torch.float32)
    return torch.from_numpy(np.asarray(value)).float()


def _read(value: Any) -> np.ndarray:
    """A node's array as Norse holds it, in float64 (float32 values, exactly)."""
    return _norse_tensor(value).to(torch.float64).cpu().numpy()


def _factor(tau: Any, dt: float) -> np.ndarray:
    """Norse's per-step factor of a time constant it reads: ``dt * (1 / tau)``, in the
    tensor's dtype, as ``LIBoxCell``/``LIFBoxCell(tau_mem_inv=1 / tau)`` compute it."""
    return (dt * (1 / _norse_tensor(tau))).to(torch.float64).cpu().numpy()


class _Notes:
    """What the reading changed, once per message with the nodes it concerns."""

    def __init__(self) -> None:
        self.by_text: dict[str, list[str]] = {}

    def add(self, name: str, text: str) -> None:
        self.by_text.setdefault(text, []).append(name)

    def lines(self) -> list[str]:
        return [f"{', '.join(names)}: {text}" for text, names in self.by_text.items()]


def _broadcast(*arrays: np.ndarray) -> list[np.ndarray]:
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [np.array(np.broadcast_to(a, shape)) for a in arrays]


def _ignored(node: nir.NIRNode, name: str, notes: _Notes, fields: tuple[str, ...]) -> None:
    defaults = {"r": 1.0, "v_reset": 0.0, "w_in": 1.0}
    for f in fields:
        value = getattr(node, f, None)
        if value is not None and np.any(np.asarray(value) != defaults[f]):
            what = "resets to 0" if f == "v_reset" else "reads it as 1"
            notes.add(name, f"{f} ignored (Norse {what})")
    meta = getattr(node, "metadata", None) or {}
    if as_str(meta.get("compare", ">")) == ">=":
        notes.add(name, "compare '>=' ignored (Norse fires on v − v_th > 0)")


def _lif(name: str, node: nir.LIF, dt: float, notes: _Notes) -> nir.NIRNode:
    factor, vth, vl = _broadcast(_factor(node.tau, dt), _read(node.v_threshold),
                                 _read(node.v_leak))
    _ignored(node, name, notes, ("r", "v_reset"))
    return nir.LIF(tau=factor_tau(factor, dt), r=np.ones_like(vl), v_leak=vl,
                   v_threshold=vth, v_reset=np.zeros_like(vl), metadata=_start_meta(vl))


def _leaky(factor: np.ndarray, vl: np.ndarray, dt: float) -> nir.NIRNode:
    """Norse's ``LIBoxCell`` at ``dt``: NIR's LI where it starts at 0, else NorseLI."""
    ones = np.ones_like(vl)
    if np.any(vl != 0):
        return NorseLINode(tau_syn_inv=factor_inverse(ones, dt),
                           tau_mem_inv=factor_inverse(factor, dt), v_leak=vl)
    return nir.LI(tau=factor_tau(factor, dt), r=ones, v_leak=vl)


def _cubalif(name: str, node: nir.CubaLIF, dt: float,
             notes: _Notes) -> list[tuple[str, nir.NIRNode]]:
    """Norse's ``import_nir.CubaLIF``: ``w_in·x`` into a LIBoxCell synapse (τ_syn, leaking
    to v_leak), ``r·`` its output into a LIFBoxCell (τ_mem); both start at v_leak."""
    a_s, a_m, vth, vl, w_in, r = _broadcast(
        _factor(node.tau_syn, dt), _factor(node.tau_mem, dt), _read(node.v_threshold),
        _read(node.v_leak), _read(node.w_in), _read(node.r))
    _ignored(node, name, notes, ("v_reset",))
    zeros = np.zeros_like(vl)
    if not np.any(vl != 0):
        return [(name, nir.CubaLIF(tau_syn=factor_tau(a_s, dt), tau_mem=factor_tau(a_m, dt),
                                   r=r, w_in=w_in, v_leak=vl, v_threshold=vth,
                                   v_reset=zeros, metadata={"compare": ">"}))]
    notes.add(name, "v_leak ≠ 0: Norse's synapse leaks to v_leak too; read as its synapse "
                    "(NorseLI) and membrane (LIF) with Scale nodes for w_in and r")
    chain: list[tuple[str, nir.NIRNode]] = []
    if np.any(w_in != 1):
        chain.append((f"{name}_w_in", nir.Scale(scale=w_in)))
    chain.append((f"{name}_synapse", _leaky(a_s, vl, dt)))
    if np.any(r != 1):
        chain.append((f"{name}_r", nir.Scale(scale=r)))
    chain.append((name, nir.LIF(tau=factor_tau(a_m, dt), r=np.ones_like(vl), v_leak=vl,
                                v_threshold=vth, v_reset=zeros, metadata=_start_meta(vl))))
    return chain


def _flatten(name: str, node: nir.Flatten) -> nir.NIRNode:
    # Norse applies torch's Flatten(start_dim, end_dim) to the batched step [B, ...]:
    # its dimension d is NIR's d − 1, and dimension 0 is the batch.
    start, end = int(node.start_dim), int(node.end_dim)
    if start == 0 or end == 0:
        raise UnsupportedLayerError(
            f"node '{name}' (Flatten start_dim={start}, end_dim={end}): Norse's from_nir "
            "applies torch.nn.Flatten to the batched tensor, so this flattens the batch "
            "axis and Norse's reading of the file does not run; read the file as NIR "
            "(without --from norse) and give --dt")
    shift = (lambda d: d - 1 if d > 0 else d)  # noqa: E731 - negative dims count from the end
    return nir.Flatten(input_type=node.input_type, start_dim=shift(start),
                       end_dim=shift(end))


def _read_node(name: str, node: nir.NIRNode, dt: float,
               notes: _Notes) -> list[tuple[str, nir.NIRNode]]:
    """Norse 1.1.0's ``_import_norse_module`` as nirbridge nodes: ``[(name, node)]``, or
    a chain ending in ``name`` when one NIR node becomes several."""
    if isinstance(node, (nir.Input, nir.Output)):
        return [(name, node)]
    if isinstance(node, nir.Affine):
        if node.bias is None:
            return [(name, nir.Linear(weight=_read(node.weight)))]
        return [(name, nir.Affine(weight=_read(node.weight), bias=_read(node.bias)))]
    if isinstance(node, nir.Linear):
        return [(name, nir.Linear(weight=_read(node.weight)))]
    if isinstance(node, nir.Conv2d):
        return [(name, nir.Conv2d(input_shape=node.input_shape, weight=_read(node.weight),
                                  stride=node.stride, padding=node.padding,
                                  dilation=node.dilation, groups=node.groups,
                                  bias=_read(node.bias)))]
    if isinstance(node, nir.Flatten):
        return [(name, _flatten(name, node))]
    if isinstance(node, nir.SumPool2d):
        if np.any(np.asarray(node.padding) != 0):
            notes.add(name, "padding ignored (Norse reads SumPool2d as LPPool2d without "
                            "padding)")
        return [(name, nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride,
                                     padding=np.zeros_like(np.asarray(node.padding))))]
    if isinstance(node, nir.IF):
        _ignored(node, name, notes, ("r", "v_reset"))
        vth = _read(node.v_threshold)
        zeros = np.zeros_like(vth)
        return [(name, nir.IF(r=np.ones_like(vth), v_threshold=vth, v_reset=zeros,
                              metadata={"compare": ">"}))]
    if isinstance(node, nir.CubaLIF):
        return _cubalif(name, node, dt, notes)
    if isinstance(node, nir.LIF):
        return [(name, _lif(name, node, dt, notes))]
    if isinstance(node, nir.LI):
        notes.add(name, "Norse 1.1.0's from_nir does not read LI (its own export of "
                        "LIBoxCell): it maps it to nothing and the graph then fails or "
                        "skips the layer; read as Norse reads LIF: LIBoxCell(tau_mem_inv = "
                        "1/tau, v_leak), r ignored")
        factor, vl = _broadcast(_factor(node.tau, dt), _read(node.v_leak))
        return [(name, _leaky(factor, vl, dt))]
    raise UnsupportedLayerError(
        f"node '{name}' ({type(node).__name__}): Norse 1.1.0's from_nir does not read this "
        "node type, so there is no Norse reading of the file to reproduce; read the file "
        "as NIR (without --from norse) and give --dt")


def from_file(graph: nir.NIRGraph, *, dt: float | None = None
              ) -> tuple[nir.NIRGraph, list[str]]:
    """The nirbridge graph of what ``norse.torch.from_nir(graph, dt=dt)`` (Norse 1.1.0,
    ``reset_method=reset_value``) runs, and notes on what that reading changed.

    ``dt`` is the dt Norse reads with (default :data:`DT`, Norse's own), recorded in the
    returned graph's ``metadata["dt"]``: it runs exactly at that dt. A file carries no dt,
    so Norse's reading does not depend on the dt the file was exported with.

    Raises:
        UnsupportedLayerError: a node Norse's reader cannot read (or reads so that its
            model cannot run), e.g. a nested graph, Conv1d, AvgPool2d or a custom node.
    """
    step = DT if dt is None else float(dt)
    if not (math.isfinite(step) and step > 0):
        raise InvalidParameterError(f"dt={dt!r}; the time step must be finite and > 0")
    notes = _Notes()
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedLayerError(
                f"node '{name}' is a nested graph; the Norse reading is defined for flat "
                "graphs only (nirbridge does not read Norse's nested graphs)")
        chain = _read_node(name, node, step, notes)
        for (a, _), (b, _) in zip(chain, chain[1:], strict=False):
            edges.append((a, b))
        nodes.update(chain)
        first[name] = chain[0][0]
    edges = [(src, first[dst]) for src, dst in graph.edges] + edges
    meta = dict(graph.metadata or {})
    meta.update(dt=step, source="norse.torch.from_nir reading (nirbridge Norse front-end)")
    lines = [f"dt = {step:g}: the dt Norse's from_nir reads with; each tau is read as "
             f"tau_mem_inv = 1/tau, so a neuron decays by dt/tau per step",
             "every array rounded to float32, as Norse reads it"]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False), \
        lines + notes.lines()


__all__ = ["DT", "FRAMEWORK", "NorseBoxCell", "NorseRecurrentLIF", "ROUTE", "THRESHOLD_METHODS",
           "adapt", "from_file"]
