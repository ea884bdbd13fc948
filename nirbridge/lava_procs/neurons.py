"""Neuron Processes (one per NIR/nirbridge neuron node type) and their floating_pt models.

Each Process has an in-port ``a_in`` (the summed synaptic input), an out-port ``s_out``
(spikes as 0.0/1.0, or the membrane for LI/I/CubaLI), a ``bias`` Var added to the input
(``x = a_in + bias``: the bias of the preceding Affine/Conv, as the reference adds it
before the neuron), one Var per parameter and per state, all flat float64 arrays. Flags
(``compare``, reset kinds, ...) are Process parameters. The update itself is the
numpy twin of the reference's equation (:mod:`nirbridge.lava_procs.equations`).

Per-run parameters: ``period`` and ``offset`` (state reset at sample boundaries, see the
package docstring) and ``probe`` (a :class:`~nirbridge.lava_procs.probe.Probe`
configuration: the neuron records and counts its own output, so no monitor process is
needed for neuron nodes).

These Processes take float parameters and have floating_pt models only: the fixed_pt
lowering uses the integer Processes of :mod:`nirbridge.lava_procs.fixed` (and Lava's own
LIF) instead, built from the quantized graph.
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

from nirbridge.lava_procs.equations import EQUATIONS
from nirbridge.lava_procs.probe import Probe

_QUIET = LogConfig(level_console=60)  # Lava adds a root-logger handler per Process


class NeuronProcess(AbstractProcess):
    """Base of the neuron Processes: ports, bias, parameter and state Vars, flags.

    Parameters: ``shape`` (one-tuple, the flat size), ``bias``, every name of ``PARAMS``
    and ``FLAGS`` as keywords, ``init`` (initial state values by name; zero otherwise),
    ``period``/``offset`` (sample-boundary resets; 0 disables), ``probe`` (or None).
    """

    EQUATION: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[str, ...]] = ()
    STATES: ClassVar[tuple[str, ...]] = ("v",)
    FLAGS: ClassVar[dict[str, Any]] = {"compare": ">"}

    def __init__(self, *, shape: tuple[int, ...], bias: Any = 0.0,
                 init: dict[str, Any] | None = None, period: int = 0, offset: int = 0,
                 probe: dict[str, Any] | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        missing = [p for p in self.PARAMS if p not in kwargs]
        unknown = set(kwargs) - set(self.PARAMS) - set(self.FLAGS)
        if missing or unknown:
            raise TypeError(f"{type(self).__name__}: missing parameters {missing}, "
                            f"unknown {sorted(unknown)}")
        flags = {f: kwargs.get(f, default) for f, default in self.FLAGS.items()}
        super().__init__(shape=shape, period=int(period), offset=int(offset), probe=probe,
                         flags=flags, equation=self.EQUATION, states=self.STATES,
                         name=name, log_config=_QUIET)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, float), shape).copy())
        for p in self.PARAMS:
            value = np.broadcast_to(np.asarray(kwargs[p], dtype=float), shape).copy()
            setattr(self, p, Var(shape=shape, init=value))
        init = init or {}
        for s in self.STATES:
            value = np.broadcast_to(np.asarray(init.get(s, 0.0), dtype=float), shape).copy()
            setattr(self, s, Var(shape=shape, init=value))


class AbstractPyNeuronModelFloat(PyLoihiProcessModel):
    """floating_pt model shared by every neuron Process: reset, update, send, probe."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._equation = EQUATIONS[proc_params["equation"]]
        self._states: tuple[str, ...] = tuple(proc_params["states"])
        self._flags = dict(proc_params["flags"])
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None
        self._initial: dict[str, np.ndarray] | None = None
        self._param_names = tuple(type(self).PARAM_NAMES)

    PARAM_NAMES: ClassVar[tuple[str, ...]] = ()

    def run_spk(self) -> None:
        k = self.time_step - 1
        x = self.a_in.recv() + self.bias
        if self._initial is None:  # Vars are filled in after __init__
            self._initial = {s: np.array(getattr(self, s), copy=True) for s in self._states}
            if self._probe_cfg:
                self._probe = Probe(self._probe_cfg, x.shape[0], self._states)
        if self._period > 0 and k >= self._offset and (k - self._offset) % self._period == 0:
            for s, v0 in self._initial.items():
                getattr(self, s)[:] = v0
        st = {s: getattr(self, s) for s in self._states}
        pa = {p: getattr(self, p) for p in self._param_names}
        out = self._equation(x, st, pa, self._flags)
        self.s_out.send(out)
        if self._probe is not None:
            self._probe.observe(k, out, x, st)


# ------------------------------------------------------------------ standard NIR neurons
class LIF(NeuronProcess):
    """NIR LIF (forward Euler), hard reset to ``v_reset``; ``dt_tau = reciprocal(τ)·dt``."""

    EQUATION = "lif"
    PARAMS = ("dt_tau", "r", "v_leak", "v_threshold", "v_reset")
    FLAGS = {"compare": ">", "reset": "hard"}


@implements(proc=LIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = LIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_leak: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)


class SubtractiveLIF(NeuronProcess):
    """LIF with subtractive reset ``v ← v − s·v_th`` (nirbridge ``SubtractiveLIF``)."""

    EQUATION = "lif"
    PARAMS = ("dt_tau", "r", "v_leak", "v_threshold")
    FLAGS = {"compare": ">", "reset": "subtract"}


@implements(proc=SubtractiveLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySubtractiveLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = SubtractiveLIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_leak: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)


class IF(NeuronProcess):
    """NIR IF: ``v ← v + R·x``, hard reset to ``v_reset``."""

    EQUATION = "if"
    PARAMS = ("r", "v_threshold", "v_reset")
    FLAGS = {"compare": ">", "reset": "hard"}


@implements(proc=IF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = IF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)


class LI(NeuronProcess):
    """NIR LI (leaky integrator, read-out): sends its membrane ``v`` every step."""

    EQUATION = "li"
    PARAMS = ("dt_tau", "r", "v_leak")
    FLAGS: ClassVar[dict[str, Any]] = {}


@implements(proc=LI, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLIModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = LI.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_leak: np.ndarray = LavaPyType(np.ndarray, float)


class Integrator(NeuronProcess):
    """NIR I: ``v ← v + (dt·R)·x``; sends ``v``."""

    EQUATION = "i"
    PARAMS = ("dt_r",)
    FLAGS: ClassVar[dict[str, Any]] = {}


@implements(proc=Integrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyIntegratorModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = Integrator.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dt_r: np.ndarray = LavaPyType(np.ndarray, float)


class CubaLIF(NeuronProcess):
    """NIR CubaLIF (current then membrane, forward Euler), hard reset."""

    EQUATION = "cubalif"
    PARAMS = ("dt_tau_syn", "dt_tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    STATES = ("v", "i")
    FLAGS = {"compare": ">"}


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = CubaLIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    i: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau_syn: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau_mem: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_leak: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)
    w_in: np.ndarray = LavaPyType(np.ndarray, float)


class CubaLI(NeuronProcess):
    """NIR CubaLI: CubaLIF without fire; sends ``v``."""

    EQUATION = "cubali"
    PARAMS = ("dt_tau_syn", "dt_tau_mem", "r", "v_leak", "w_in")
    STATES = ("v", "i")
    FLAGS: ClassVar[dict[str, Any]] = {}


@implements(proc=CubaLI, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = CubaLI.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    i: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau_syn: np.ndarray = LavaPyType(np.ndarray, float)
    dt_tau_mem: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, float)
    v_leak: np.ndarray = LavaPyType(np.ndarray, float)
    w_in: np.ndarray = LavaPyType(np.ndarray, float)


# ------------------------------------------------------------------ nirbridge custom nodes
class ARLIF(NeuronProcess):
    """AR-LIF: input-driven threshold, adaptive soft reset through ``m``."""

    EQUATION = "arlif"
    PARAMS = ("decay", "v_threshold", "tanh_a", "c")
    STATES = ("v", "m")
    FLAGS = {"compare": ">=", "memoryless_m": False}


@implements(proc=ARLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyARLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = ARLIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    m: np.ndarray = LavaPyType(np.ndarray, float)
    decay: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    tanh_a: np.ndarray = LavaPyType(np.ndarray, float)
    c: np.ndarray = LavaPyType(np.ndarray, float)


class KLIF(NeuronProcess):
    """KLIF: ``relu(k·h)`` membrane, hard (to ``v_reset``) or soft reset."""

    EQUATION = "klif"
    PARAMS = ("tau", "k", "v_threshold", "v_reset")
    FLAGS = {"compare": ">=", "soft_reset": False, "decay_input": True,
             "scale_reset": False}


@implements(proc=KLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyKLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = KLIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    tau: np.ndarray = LavaPyType(np.ndarray, float)
    k: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)


class DALIF(NeuronProcess):
    """DA-LIF: ``v ← β·v + α·x``, soft (or hard) reset."""

    EQUATION = "dalif"
    PARAMS = ("alpha", "beta", "v_threshold")
    FLAGS = {"compare": ">=", "reset": "soft"}


@implements(proc=DALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDALIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = DALIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    alpha: np.ndarray = LavaPyType(np.ndarray, float)
    beta: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)


class CLIF(NeuronProcess):
    """CLIF: complementary state ``m``; ``leak = 1 − reciprocal(τ)``."""

    EQUATION = "clif"
    PARAMS = ("leak", "tau", "v_threshold")
    STATES = ("v", "m")
    FLAGS = {"compare": ">="}


@implements(proc=CLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCLIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = CLIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    m: np.ndarray = LavaPyType(np.ndarray, float)
    leak: np.ndarray = LavaPyType(np.ndarray, float)
    tau: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)


class ALIF(NeuronProcess):
    """ALIF (Bellec et al. 2018): adaptive threshold ``b``; ``z`` holds the last spikes."""

    EQUATION = "alif"
    PARAMS = ("alpha", "rho", "v_threshold", "beta")
    STATES = ("v", "b", "z")
    FLAGS = {"compare": ">"}


@implements(proc=ALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyALIFModelFloat(AbstractPyNeuronModelFloat):
    PARAM_NAMES = ALIF.PARAMS
    v: np.ndarray = LavaPyType(np.ndarray, float)
    b: np.ndarray = LavaPyType(np.ndarray, float)
    z: np.ndarray = LavaPyType(np.ndarray, float)
    alpha: np.ndarray = LavaPyType(np.ndarray, float)
    rho: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    beta: np.ndarray = LavaPyType(np.ndarray, float)
