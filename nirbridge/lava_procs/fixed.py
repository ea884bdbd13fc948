"""Integer neuron Processes and their ``fixed_pt`` models (the custom fixed-point neurons).

One Process per integer model of :mod:`nirbridge.fixed_point` (``MODELS``): each runs that
module's own step function (``lava_lif_step``, ``linear_lif_step``, ``klif_step``,
``arlif_step``, ``clif_step``, ``alif_step``) on the integer ``a_in`` it receives, with the
parameter object that :func:`nirbridge.quantize.quantize` built for the node, so a Lava
run computes the golden model's integers by construction: same arithmetic, same rounding,
same saturation, same comparison.

- Ports: ``a_in`` (int64; the summed, aligned synaptic input, ``in_frac`` fractional
  bits), ``s_out`` (int32: spikes 0/1, or the membrane ``v`` of a non-spiking model).
- Vars: one int64 Var per state field (``u``, ``v``, ``m``, ``b``, ``z``), flat, starting
  at the model's initial state; the parameter object is a Process parameter (it holds
  per-neuron integer arrays and, for AR-LIF/CLIF, the tanh/σ look-up tables).
- ``node_shape``: the NIR node's per-sample shape; the step functions see
  ``[1, *node_shape]`` arrays, so per-neuron parameters broadcast as in the golden run.
- ``period``/``offset``/``probe``: as the floating_pt neuron Processes (sample-boundary
  reset of every state to its initial value, and the in-model probe). The probe also
  receives the saturation events of every step, by state field.

Stock Lava ``LIF`` layers are not here: the lowering uses Lava's own ``LIFReset`` process
for them (see :mod:`nirbridge.backends._lava_fixed`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from nirbridge import fixed_point as fx
from nirbridge.lava_procs.probe import Probe

_QUIET = LogConfig(level_console=60)


class FixedNeuron(AbstractProcess):
    """Base of the integer neuron Processes (``KIND`` names the model in
    :data:`nirbridge.fixed_point.MODELS`).

    Parameters: ``shape`` (one-tuple, the flat size), ``params`` (the model's parameter
    object, e.g. :class:`~nirbridge.fixed_point.ARLIFParams`), ``node_shape`` (default:
    ``shape``), ``period``/``offset`` (sample-boundary resets; 0 disables), ``probe``.
    """

    KIND: ClassVar[str] = ""

    def __init__(self, *, shape: tuple[int, ...], params: Any,
                 node_shape: tuple[int, ...] | None = None, period: int = 0, offset: int = 0,
                 probe: dict[str, Any] | None = None, name: str | None = None,
                 **_: Any) -> None:
        model = fx.MODELS[self.KIND]
        if not isinstance(params, model.params):
            raise TypeError(f"{type(self).__name__}: params must be {model.params.__name__}, "
                            f"got {type(params).__name__}")
        node_shape = tuple(int(d) for d in (node_shape or shape))
        if int(np.prod(node_shape, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{type(self).__name__}: node_shape {node_shape} does not match "
                             f"shape {shape}")
        init = params.initial_state(1, node_shape)
        super().__init__(shape=shape, kind=self.KIND, params=params, node_shape=node_shape,
                         period=int(period), offset=int(offset), probe=probe, name=name,
                         log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for f in model.state_fields:
            setattr(self, f, Var(shape=shape, init=np.asarray(getattr(init, f),
                                                              dtype=np.int64).reshape(shape)))


class AbstractPyFixedNeuronModel(PyLoihiProcessModel):
    """fixed_pt model shared by the integer neuron Processes: reset, step, send, probe."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._model = fx.MODELS[proc_params["kind"]]
        self._params = proc_params["params"]
        self._node_shape = (1, *proc_params["node_shape"])
        self._fields: tuple[str, ...] = tuple(self._model.state_fields)
        self._state_cls = type(self._params.initial_state(1, tuple(proc_params["node_shape"])))
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None
        self._initial: dict[str, np.ndarray] | None = None

    def run_spk(self) -> None:
        k = self.time_step - 1
        a = np.asarray(self.a_in.recv(), dtype=np.int64)
        if self._initial is None:  # Vars are filled in after __init__
            self._initial = {f: np.array(getattr(self, f), copy=True) for f in self._fields}
            if self._probe_cfg:
                self._probe = Probe(self._probe_cfg, a.shape[0], self._fields)
        if self._period > 0 and k >= self._offset and (k - self._offset) % self._period == 0:
            for f, v0 in self._initial.items():
                getattr(self, f)[:] = v0
        state = self._state_cls(*(np.asarray(getattr(self, f), dtype=np.int64)
                                  .reshape(self._node_shape) for f in self._fields))
        sat = fx.SaturationCounter() if self._probe is not None else None
        out, new = self._model.step(a.reshape(self._node_shape), state, self._params, sat)
        for f in self._fields:
            getattr(self, f)[:] = np.asarray(getattr(new, f)).reshape(-1)
        out = np.asarray(out, dtype=np.int64).reshape(-1)
        self.s_out.send(out)
        if self._probe is not None:
            self._probe.observe(k, out, a, {f: getattr(self, f) for f in self._fields},
                                sat.counts if sat is not None else None)


_INT = LavaPyType(np.ndarray, np.int64, precision=32)


class FixedLavaLIF(FixedNeuron):
    """Lava's LIF arithmetic (:func:`~nirbridge.fixed_point.lava_lif_step`) where stock
    Lava cannot run it: leaky integrators (LI, I, CubaLI: ``s_out`` sends ``v``), ``>=``,
    per-neuron decays or thresholds, an unfolded input gain, a synaptic bias (CubaLIF),
    a non-zero initial state."""

    KIND = "lava_lif"


@implements(proc=FixedLavaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedLavaLIFModel(AbstractPyFixedNeuronModel):
    u: np.ndarray = _INT
    v: np.ndarray = _INT


class FixedLinearLIF(FixedNeuron):
    """``v ← v·decay + x``, hard or subtractive reset (SubtractiveLIF, DA-LIF)."""

    KIND = "linear_lif"


@implements(proc=FixedLinearLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedLinearLIFModel(AbstractPyFixedNeuronModel):
    v: np.ndarray = _INT


class FixedKLIF(FixedNeuron):
    """KLIF (:func:`~nirbridge.fixed_point.klif_step`), hard or soft reset."""

    KIND = "klif"


@implements(proc=FixedKLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedKLIFModel(AbstractPyFixedNeuronModel):
    v: np.ndarray = _INT


class FixedARLIF(FixedNeuron):
    """AR-LIF (:func:`~nirbridge.fixed_point.arlif_step`), with or without memory in
    ``m``; tanh and σ by look-up table."""

    KIND = "arlif"


@implements(proc=FixedARLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedARLIFModel(AbstractPyFixedNeuronModel):
    v: np.ndarray = _INT
    m: np.ndarray = _INT


class FixedCLIF(FixedNeuron):
    """CLIF (:func:`~nirbridge.fixed_point.clif_step`); σ by look-up table."""

    KIND = "clif"


@implements(proc=FixedCLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedCLIFModel(AbstractPyFixedNeuronModel):
    v: np.ndarray = _INT
    m: np.ndarray = _INT


class FixedALIF(FixedNeuron):
    """ALIF (:func:`~nirbridge.fixed_point.alif_step`): adaptation ``b``, last spikes
    ``z``."""

    KIND = "alif"


@implements(proc=FixedALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedALIFModel(AbstractPyFixedNeuronModel):
    v: np.ndarray = _INT
    b: np.ndarray = _INT
    z: np.ndarray = _INT

