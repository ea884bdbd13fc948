"""The one floating_pt neuron Process, for every registered neuron.

Why one generic Process rather than a class per neuron: the float model calls the neuron's
own torch step (its registry entry, the function the trainable module and the reference
call), so each equation is written once and Lava runs exactly the reference's arithmetic;
a class per neuron would only repeat the Var declarations Lava's model discovery needs.
The state is one stacked Var (``[n_fields, size]``, in the order of the step's state
NamedTuple) for the same reason: its shape is all that differs between neurons.

Ports: ``a_in`` (the summed synaptic input), ``s_out`` (spikes as 0.0/1.0, or the membrane
of a non-spiking neuron); ``bias`` is added to the input (``x = a_in + bias``: the bias of
the preceding Affine/Conv, as the reference adds it before the neuron). Parameters:
``neuron`` (the node type name in :data:`nirbridge.neurons.NEURONS`), ``node`` (the NIR
node, whose parameters the step reads), ``node_shape`` (its per-sample shape: the step sees
``[1, *node_shape]`` tensors, so per-channel parameters broadcast as in the reference),
``dt``, and the per-run ``period``/``offset``/``probe`` (see the package docstring).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from nirbridge.backends.lava.procs.probe import ProbedStateModel
from nirbridge.neurons import NEURONS

_QUIET = LogConfig(level_console=60)  # Lava adds a root-logger handler per Process


def _node_shape(shape: tuple[int, ...], node_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    out = tuple(int(d) for d in (node_shape or shape))
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"node_shape {out} does not match the flat shape {shape}")
    return out


class FloatNeuron(AbstractProcess):
    """Any registered neuron in floating point (see the module docstring)."""

    def __init__(self, *, shape: tuple[int, ...], neuron: str, node: Any, dt: float,
                 node_shape: tuple[int, ...] | None = None, bias: Any = 0.0,
                 period: int = 0, offset: int = 0, probe: dict[str, Any] | None = None,
                 name: str | None = None, **_: Any) -> None:
        spec = NEURONS[neuron]
        node_shape = _node_shape(shape, node_shape)
        x0 = torch.zeros((1, *node_shape), dtype=torch.float64)
        init = spec.initial_state(node, x0)
        stacked = np.stack([np.asarray(getattr(init, f), dtype=np.float64).reshape(-1)
                            for f in spec.state_fields])
        super().__init__(shape=shape, neuron=neuron, node=node, dt=float(dt),
                         node_shape=node_shape, period=int(period), offset=int(offset),
                         probe=probe, name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, float), shape).copy())
        self.state = Var(shape=stacked.shape, init=stacked)


@implements(proc=FloatNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFloatNeuronModel(ProbedStateModel, PyLoihiProcessModel):
    """floating_pt model: reset at sample boundaries, the neuron's torch step, send, probe."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    state: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        # This model runs in a forked Lava process: one intra-op thread keeps torch off
        # an OpenMP pool inherited from the parent (as PyTorch's DataLoader workers do).
        torch.set_num_threads(1)
        spec = NEURONS[proc_params["neuron"]]
        self._state_type = spec.state
        _, self._step = spec.runner(proc_params["node"], proc_params["dt"])
        self._batch_shape = (1, *proc_params["node_shape"])
        self._setup_probe(proc_params, tuple(spec.state_fields))

    def run_spk(self) -> None:
        x = self.a_in.recv() + self.bias
        k = self._begin_step(x.shape[0])
        state = self._state_type(*(torch.from_numpy(self.state[i].reshape(self._batch_shape))
                                   for i in range(len(self._fields))))
        with torch.no_grad():
            out, new = self._step(torch.from_numpy(x.reshape(self._batch_shape)), state)
        for i, value in enumerate(new):
            self.state[i] = value.reshape(-1).numpy()
        out = out.reshape(-1).numpy()
        self.s_out.send(out)
        self._observe(k, out, x)
