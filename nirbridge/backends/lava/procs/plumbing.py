"""Stateless helper Processes of the lowering: delay line, pass-through, monitor.

- :class:`Delay`: sends its input ``delay`` steps later (balances the latencies of paths
  that meet at a node: every Dense/Sparse adds one step), or, one delay per element and
  zero at the start of every sample, runs a ``nir.Delay``.
- :class:`PassThrough`: elementwise ``add``/``mul``/``div``/``gt`` ops in a given order,
  with no delay. It materialises the pending bias of an Affine/Conv feeding another
  synapse (Affine → Affine), implements ``nir.Scale``, the divisor of the pooling layers
  and ``nir.Threshold`` (``gt``: 1 where the value exceeds the operand, else 0), and
  sums several aligned streams (its in-port adds all its connections). With
  ``zero_below`` it gates a feedback edge (zero at the first step of every sample).
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


def _phase_mask(k: int, period: int, offset: int, below: np.ndarray | None
                ) -> np.ndarray | None:
    """Where the values sent at 0-based step ``k`` must be zero: the elements whose
    reference step ``t = (k - offset) mod period`` of the sample is below ``below``
    (None: nothing to mask)."""
    if below is None or period <= 0:
        return None
    return ((k - offset) % period) < below


class Delay(AbstractProcess):
    """Delay line: ``s_out[i]`` at step k is ``a_in[i]`` of step ``k − delay[i]`` (zeros
    before). ``delay`` is one number or one per element (``nir.Delay``).

    Given ``period``/``offset`` (a ``nir.Delay``, which the runner passes the samples'
    length T and the stream's latency L), element ``i`` sends zero at the first
    ``delay[i]`` reference steps of every sample, as the reference does: what it would
    send there comes from the previous sample. Without them (``period = 0``, the lines
    that align latencies) it is a plain shift.
    """

    def __init__(self, *, shape: tuple[int, ...], delay: Any, period: int = 0,
                 offset: int = 0, name: str | None = None, **_: Any) -> None:
        steps = np.broadcast_to(np.asarray(delay, dtype=np.int64), shape).copy()
        if steps.size and int(steps.min()) < 1:
            raise ValueError(f"Delay: delay={delay} must be >= 1")
        depth = int(steps.max()) if steps.size else 1
        super().__init__(shape=shape, delay=steps, period=int(period), offset=int(offset),
                         name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.buffer = Var(shape=(depth, *shape), init=np.zeros((depth, *shape)))


class _DelayLine:
    """The step of both Delay models: read each element's tap, mask, store the input."""

    buffer: np.ndarray
    time_step: int

    def _setup(self, proc_params: Any) -> None:
        self._delay = np.asarray(proc_params["delay"], dtype=np.int64)
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._below = self._delay if self._period > 0 else None
        self._cols = np.arange(self._delay.size)

    def _tap(self) -> np.ndarray:
        """What step ``k`` sends: sent before the input is received, so that a delay
        line on a loop never waits for itself."""
        k = self.time_step - 1
        depth = self.buffer.shape[0]
        out = self.buffer[(k - self._delay.reshape(-1)) % depth,
                          self._cols].reshape(self._delay.shape).copy()
        mask = _phase_mask(k, self._period, self._offset, self._below)
        if mask is not None:
            out[mask] = 0
        return out

    def _store(self, x: np.ndarray) -> None:
        self.buffer[(self.time_step - 1) % self.buffer.shape[0]] = x


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayModel(_DelayLine, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def run_spk(self) -> None:
        self.s_out.send(self._tap())
        self._store(self.a_in.recv())


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayModelFixed(_DelayLine, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def run_spk(self) -> None:
        self.s_out.send(self._tap())
        self._store(self.a_in.recv())


class PassThrough(AbstractProcess):
    """Zero-delay elementwise ops on the (summed) input, in order: ``ops`` is a sequence
    of ``(op, values)`` with ``op`` in ``"add"``, ``"mul"``, ``"div"``, ``"gt"``
    (floating_pt) or ``"add"``, ``"mul"``, ``"shl"``, ``"shr_round"``, ``"gt"`` (fixed_pt,
    integer values); ``gt`` gives 1 where the value is greater than the operand, else 0;
    probe-able.

    ``zero_below`` (with the ``period``/``offset`` the runner passes a stateful process)
    makes it a gate: element ``i`` sends zero at the first ``zero_below[i]`` reference
    steps of every sample. The lowering puts one with ``zero_below = 1`` on every
    feedback edge: there the previous step's value arrives, which at t = 0 comes from the
    previous sample, and the reference has zero.
    """

    OPS = ("add", "mul", "div", "gt", "shl", "shr_round")

    def __init__(self, *, shape: tuple[int, ...], ops: Any = (), zero_below: Any = None,
                 period: int = 0, offset: int = 0, probe: dict[str, Any] | None = None,
                 name: str | None = None, **_: Any) -> None:
        ops = tuple((str(op), _flat(val, shape)) for op, val in ops)
        bad = [op for op, _ in ops if op not in self.OPS]
        if bad:
            raise ValueError(f"PassThrough: unknown op(s) {bad}; use {self.OPS}")
        below = None if zero_below is None else _flat(np.asarray(zero_below, np.int64), shape)
        super().__init__(shape=shape, ops=ops, zero_below=below, period=int(period),
                         offset=int(offset), probe=probe, name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class _Ops:
    """What both PassThrough models share: the gate and the probe around their ops."""

    time_step: int

    def _setup(self, proc_params: Any) -> None:
        self._ops = tuple(proc_params["ops"])
        self._below = proc_params.get("zero_below")
        self._period = int(proc_params.get("period", 0))
        self._offset = int(proc_params.get("offset", 0))
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None

    def _finish(self, y: np.ndarray) -> np.ndarray:
        """The gated output of this step; the probe sees it."""
        mask = _phase_mask(self.time_step - 1, self._period, self._offset, self._below)
        if mask is not None:
            y = np.where(mask, 0, y).astype(y.dtype, copy=False)
        if self._probe_cfg:
            if self._probe is None:
                self._probe = Probe(self._probe_cfg, y.shape[0])
            self._probe.observe(self.time_step - 1, y)
        return y


@implements(proc=PassThrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPassThroughModelFloat(_Ops, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

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
        self.s_out.send(self._finish(y))


@implements(proc=PassThrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPassThroughModelFixed(_Ops, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)
        for op, val in self._ops:
            if op not in ("add", "mul", "shl", "shr_round", "gt") \
                    or np.asarray(val).dtype.kind != "i":
                raise ValueError(f"PassThrough (fixed_pt): op {op!r} with {np.asarray(val).dtype}"
                                 " values has no integer form")

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
        self.s_out.send(self._finish(y))


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
