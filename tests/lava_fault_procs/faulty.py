"""Neuron-like Processes whose floating_pt models raise or hang at a chosen step."""

from __future__ import annotations

import time
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

FAULT_TEXT = "deliberate fault in FaultyNeuron model at step"


class FaultyNeuron(AbstractProcess):
    """Passes its input through; at step ``at`` it raises (``kind="raise"``) or sleeps
    forever (``kind="hang"``)."""

    def __init__(self, *, shape: tuple[int, ...], kind: str = "raise", at: int = 3,
                 bias: Any = 0.0, period: int = 0, offset: int = 0,
                 probe: dict[str, Any] | None = None, name: str | None = None) -> None:
        super().__init__(shape=shape, kind=kind, at=at, name=name,
                         log_config=LogConfig(level_console=60))
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, float), shape).copy())


@implements(proc=FaultyNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFaultyNeuronModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        x = self.a_in.recv() + self.bias
        if self.time_step == self.proc_params["at"]:
            if self.proc_params["kind"] == "raise":
                raise ValueError(f"{FAULT_TEXT} {self.time_step}")
            while True:
                time.sleep(0.05)
        self.s_out.send((x > 0).astype(float))
