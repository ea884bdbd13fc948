"""The one fixed_pt neuron Process, for every registered integer model.

Its model runs the integer step of the neuron's registry entry (its
:class:`~nirbridge.neurons.IntegerModel`) on the integer ``a_in`` it receives, with the
parameter object the quantizer built for the node, so a Lava run computes the golden
model's integers by construction: same arithmetic, same rounding, same saturation, same
comparison. One generic Process (not a class per model) for the reason given in
:mod:`nirbridge.backends.lava.procs.neurons`: only the state's shape differs, and it is
one stacked Var.

- Ports: ``a_in`` (int64; the summed, aligned synaptic input, ``in_frac`` fractional
  bits), ``s_out`` (int32: spikes 0/1, or the membrane ``v`` of a non-spiking model).
- Vars: ``state``, int64 ``[n_fields, size]`` in the order of the model's
  ``state_fields``, starting at the parameters' initial state.
- ``neuron`` (the node type name in :data:`nirbridge.neurons.NEURONS`), ``params`` (the
  model's parameter object, e.g. ``ARLIFParams``), ``node_shape`` (the step functions see
  ``[1, *node_shape]`` arrays, so per-neuron parameters broadcast as in the golden run),
  ``period``/``offset``/``probe`` as the floating_pt neuron. The probe also receives the
  saturation events of every step, by state field.

Layers that Lava's own LIF runs exactly are not here: the lowering uses Lava's
``LIFReset`` for them (the integer model's ``stock_lava``).
"""

from __future__ import annotations

from typing import Any

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
from nirbridge.backends.lava.procs.neurons import _node_shape
from nirbridge.backends.lava.procs.probe import ProbedStateModel
from nirbridge.neurons import NEURONS

_QUIET = LogConfig(level_console=60)


class FixedNeuron(AbstractProcess):
    """Any registered integer neuron model in fixed point (see the module docstring)."""

    def __init__(self, *, shape: tuple[int, ...], neuron: str, params: Any,
                 node_shape: tuple[int, ...] | None = None, period: int = 0, offset: int = 0,
                 probe: dict[str, Any] | None = None, name: str | None = None,
                 **_: Any) -> None:
        model = NEURONS[neuron].integer
        if model is None or not isinstance(params, model.params):
            raise TypeError(f"FixedNeuron({neuron}): params must be the neuron's integer "
                            f"parameters, got {type(params).__name__}")
        node_shape = _node_shape(shape, node_shape)
        init = params.initial_state(1, node_shape)
        stacked = np.stack([np.asarray(getattr(init, f), dtype=np.int64).reshape(-1)
                            for f in model.state_fields])
        super().__init__(shape=shape, neuron=neuron, params=params, node_shape=node_shape,
                         period=int(period), offset=int(offset), probe=probe, name=name,
                         log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.state = Var(shape=stacked.shape, init=stacked)


@implements(proc=FixedNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFixedNeuronModel(ProbedStateModel, PyLoihiProcessModel):
    """fixed_pt model: reset at sample boundaries, the integer step, send, probe."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    state: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        model = NEURONS[proc_params["neuron"]].integer
        assert model is not None
        self._model = model
        self._params = proc_params["params"]
        self._batch_shape = (1, *proc_params["node_shape"])
        self._state_type = type(self._params.initial_state(1, tuple(proc_params["node_shape"])))
        self._setup_probe(proc_params, tuple(model.state_fields))

    def run_spk(self) -> None:
        a = np.asarray(self.a_in.recv(), dtype=np.int64)
        k = self._begin_step(a.shape[0])
        state = self._state_type(*(np.asarray(self.state[i], dtype=np.int64)
                                   .reshape(self._batch_shape) for i in range(len(self._fields))))
        sat = fx.SaturationCounter() if self._probe is not None else None
        out, new = self._model.step(a.reshape(self._batch_shape), state, self._params, sat)
        for i, f in enumerate(self._fields):
            self.state[i] = np.asarray(getattr(new, f)).reshape(-1)
        out = np.asarray(out, dtype=np.int64).reshape(-1)
        self.s_out.send(out)
        self._observe(k, out, a, sat.counts if sat is not None else None)
