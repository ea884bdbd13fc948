"""Stateless helper Processes of the lowering: delay line, pass-through, monitor.

- :class:`Delay`: sends its input ``delay`` steps later (balances the latencies of paths
  that meet at a node: every Dense/Sparse adds one step).
- :class:`PassThrough`: elementwise ``add``/``mul``/``div``/``gt`` ops in a given order,
  with no delay. It materialises the pending bias of an Affine/Conv feeding another
  synapse (Affine → Affine), implements ``nir.Scale``, the divisor of the pooling layers
  and ``nir.Threshold`` (``gt``: 1 where the value exceeds the operand, else 0), and
  sums several aligned streams (its in-port adds all its connections).
- :class:`Monitor`: a probe on any stream (``a_in + bias``), for Output nodes fed by a
  synapse and for records of non-neuron nodes.
- :class:`LIFMonitor`: a probe on one of Lava's own ``LIF`` processes (fixed_pt): its
  spikes, its input and, read by reference after every step, its ``u`` and ``v``.

Every process has a ``floating_pt`` model on flat float64 ports ``a_in``/``s_out`` (the
monitors have no out-port) and a ``fixed_pt`` model on int64 ports, whose integer
PassThrough ops are ``add``, ``mul``, ``shl`` (exact left shift), ``shr_round``
(``(x + 2^(n−1)) >> n``: round half up, as :func:`nirbridge.fixed_point.shift_round`) and
``gt`` (the integer compare of a quantized ``nir.Threshold``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from nirbridge.backends.lava.procs.probe import Probe

_QUIET = LogConfig(level_console=60)


def _flat(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` broadcast to ``shape``: int64 when it holds integers, float64 otherwise."""
    arr = np.asarray(value)
    dtype = np.int64 if arr.dtype.kind in "biu" else np.float64
    return np.broadcast_to(arr.astype(dtype), shape).copy()


def _shift_round(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``x · 2^-n`` rounded half up, for shift counts ``n ≥ 1``."""
    return (x + (np.int64(1) << (n - 1))) >> n


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


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def run_spk(self) -> None:
        slot = (self.time_step - 1) % self.buffer.shape[0]
        self.s_out.send(self.buffer[slot].copy())
        self.buffer[slot] = self.a_in.recv()


class PassThrough(AbstractProcess):
    """Zero-delay elementwise ops on the (summed) input, in order: ``ops`` is a sequence
    of ``(op, values)`` with ``op`` in ``"add"``, ``"mul"``, ``"div"``, ``"gt"``
    (floating_pt) or ``"add"``, ``"mul"``, ``"shl"``, ``"shr_round"``, ``"gt"`` (fixed_pt,
    integer values); ``gt`` gives 1 where the value is greater than the operand, else 0;
    probe-able."""

    OPS = ("add", "mul", "div", "gt", "shl", "shr_round")

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
            elif op == "gt":
                y = (y > val).astype(np.float64)
            else:
                y = y / val
        self.s_out.send(y)
        if self._probe_cfg:
            if self._probe is None:
                self._probe = Probe(self._probe_cfg, y.shape[0])
            self._probe.observe(self.time_step - 1, y)


@implements(proc=PassThrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPassThroughModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._ops = tuple(proc_params["ops"])
        for op, val in self._ops:
            if op not in ("add", "mul", "shl", "shr_round", "gt") \
                    or np.asarray(val).dtype.kind != "i":
                raise ValueError(f"PassThrough (fixed_pt): op {op!r} with {np.asarray(val).dtype}"
                                 " values has no integer form")
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None

    def run_spk(self) -> None:
        y = np.asarray(self.a_in.recv(), dtype=np.int64)
        for op, val in self._ops:
            if op == "add":
                y = y + val
            elif op == "mul":
                y = y * val
            elif op == "shl":
                y = y << val
            elif op == "gt":
                y = (y > val).astype(np.int64)
            else:
                y = _shift_round(y, val)
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
@tag("floating_pt")
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


@implements(proc=Monitor, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMonitorModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._probe_cfg = proc_params["probe"]
        self._probe: Probe | None = None

    def run_spk(self) -> None:
        x = np.asarray(self.a_in.recv(), dtype=np.int64) + self.bias
        if self._probe is None:
            self._probe = Probe(self._probe_cfg, x.shape[0])
        self._probe.observe(self.time_step - 1, x)


class LIFMonitor(AbstractProcess):
    """Probe on one of Lava's own ``LIF`` processes (fixed_pt runs).

    ``a_in`` takes the LIF's ``s_out`` (its spikes), ``x_in`` the LIF's synaptic input
    (connect every source of the LIF to it as well), and the RefPorts ``ref_u``/``ref_v``
    are connected to the LIF's Vars ``u``/``v`` (``ref_u.connect_var(lif.u)``); they are
    read after every step (post-management phase), so the states recorded for step ``k``
    are those the LIF holds once step ``k`` is done, as the golden model records them.
    """

    def __init__(self, *, shape: tuple[int, ...], probe: dict[str, Any],
                 name: str | None = None, **_: Any) -> None:
        super().__init__(shape=shape, probe=probe, name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.x_in = InPort(shape=shape)
        self.ref_u = RefPort(shape=shape)
        self.ref_v = RefPort(shape=shape)


@implements(proc=LIFMonitor, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFMonitorModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    ref_u: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int64, precision=32)
    ref_v: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._probe_cfg = proc_params["probe"]
        self._probe: Probe | None = None
        self._seen: tuple[np.ndarray, np.ndarray] | None = None

    def run_spk(self) -> None:
        s = np.asarray(self.a_in.recv(), dtype=np.int64)
        x = np.asarray(self.x_in.recv(), dtype=np.int64)
        self._seen = (s, x)
        if self._probe is None:
            self._probe = Probe(self._probe_cfg, s.shape[0], ("u", "v"))

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        assert self._probe is not None and self._seen is not None
        s, x = self._seen
        states = {"u": np.asarray(self.ref_u.read(), dtype=np.int64),
                  "v": np.asarray(self.ref_v.read(), dtype=np.int64)}
        self._probe.observe(self.time_step - 1, s, x, states)
