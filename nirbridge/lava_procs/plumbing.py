"""Stateless helper Processes of the lowering: delay line, pass-through, monitor.

- :class:`Delay`: sends its input ``delay`` steps later (balances the latencies of paths
  that meet at a node: every Dense/Sparse adds one step).
- :class:`PassThrough`: elementwise ``add``/``mul``/``div`` ops in a given order, with no
  delay. It materialises the pending bias of an Affine/Conv feeding another synapse
  (Affine → Affine), implements ``nir.Scale``, the divisor of the pooling layers, and
  sums several aligned streams (its in-port adds all its connections).
- :class:`Monitor`: a probe on any stream (``a_in + bias``), for Output nodes fed by a
  synapse and for records of non-neuron nodes.

All use flat float64 ports ``a_in``/``s_out`` (the Monitor has no out-port).
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

from nirbridge.lava_procs.probe import Probe

_QUIET = LogConfig(level_console=60)


def _flat(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=float), shape).copy()


class Delay(AbstractProcess):
    """Delay line: ``s_out`` at step k is ``a_in`` of step ``k − delay`` (zeros before)."""

    def __init__(self, *, shape: tuple[int, ...], delay: int, name: str | None = None,
                 **_: Any) -> None:
        if int(delay) < 1:
            raise ValueError(f"Delay: delay={delay} must be >= 1")
        super().__init__(shape=shape, delay=int(delay), name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.buffer = Var(shape=(int(delay), *shape), init=np.zeros((int(delay), *shape)))


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        slot = (self.time_step - 1) % self.buffer.shape[0]
        self.s_out.send(self.buffer[slot].copy())
        self.buffer[slot] = self.a_in.recv()


class PassThrough(AbstractProcess):
    """Zero-delay elementwise ops on the (summed) input, in order: ``ops`` is a sequence
    of ``(op, values)`` with ``op`` in ``"add"``, ``"mul"``, ``"div"``; probe-able."""

    OPS = ("add", "mul", "div")

    def __init__(self, *, shape: tuple[int, ...], ops: Any = (),
                 probe: dict[str, Any] | None = None, name: str | None = None,
                 **_: Any) -> None:
        ops = tuple((str(op), _flat(val, shape)) for op, val in ops)
        bad = [op for op, _ in ops if op not in self.OPS]
        if bad:
            raise ValueError(f"PassThrough: unknown op(s) {bad}; use {self.OPS}")
        super().__init__(shape=shape, ops=ops, probe=probe, name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


@implements(proc=PassThrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPassThroughModelFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._ops = tuple(proc_params["ops"])
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None

    def run_spk(self) -> None:
        y = self.a_in.recv()
        for op, val in self._ops:
            if op == "add":
                y = y + val
            elif op == "mul":
                y = y * val
            else:
                y = y / val
        self.s_out.send(y)
        if self._probe_cfg:
            if self._probe is None:
                self._probe = Probe(self._probe_cfg, y.shape[0])
            self._probe.observe(self.time_step - 1, y)


class Monitor(AbstractProcess):
    """Probe on a stream: records ``a_in + bias`` and counts its non-zero values."""

    def __init__(self, *, shape: tuple[int, ...], probe: dict[str, Any], bias: Any = 0.0,
                 name: str | None = None, **_: Any) -> None:
        super().__init__(shape=shape, probe=probe, name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.bias = Var(shape=shape, init=_flat(bias, shape))


@implements(proc=Monitor, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyMonitorModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._probe_cfg = proc_params["probe"]
        self._probe: Probe | None = None

    def run_spk(self) -> None:
        x = self.a_in.recv() + self.bias
        if self._probe is None:
            self._probe = Probe(self._probe_cfg, x.shape[0])
        self._probe.observe(self.time_step - 1, x)
