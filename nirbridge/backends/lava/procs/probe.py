"""The in-model probe: records a stream (and states) and counts events, per sample.

``Var.get()`` moves one element per message (~12 µs each), so a probe does not expose its
recordings as Vars: it accumulates them in numpy arrays inside the ProcessModel, already
aligned to the reference time axis, and writes them once, with ``numpy.savez``, at the
last step of the run to the file named in its configuration. The runner reads that file.

Configuration (a dict in the Process's ``proc_params["probe"]``):

- ``path``: file to write (``.npz``), ``offset``: the stream's latency L, ``period``: the
  samples' length T, ``samples``: the number of samples B in this run, ``total``: the
  number of steps of the run, ``record``: keep the whole stream (``[T, B, n]``),
  ``states``: also keep the named states (neurons only), ``dtype``: of the recordings
  (``"float64"`` by default; ``"int64"`` for fixed_pt runs, whose values are integers).

At 0-based step ``k``, the stream holds step ``t`` of sample ``b`` where
``k = b·T + t + L``. Event counts (non-zero outputs, i.e. spikes for spiking neurons) are
accumulated per sample and neuron (``[B, n]``) whether or not the stream is recorded, and
so are saturation events (fixed_pt neurons report them per state field each step), over
the steps that belong to a sample.

:class:`ProbedStateModel` is what the two neuron ProcessModels (floating_pt and fixed_pt)
share around their step: the reset of the stacked state at sample boundaries and this
probe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np


class Probe:
    """Aligned recorder and event counter for one flat stream of ``size`` values."""

    def __init__(self, cfg: Mapping[str, Any], size: int,
                 state_names: tuple[str, ...] = ()) -> None:
        self.path = str(cfg["path"])
        self.offset = int(cfg["offset"])
        self.period = int(cfg["period"])
        self.samples = int(cfg["samples"])
        self.total = int(cfg["total"])
        self.counts = np.zeros((self.samples, size), dtype=np.int64)
        shape = (self.period, self.samples, size)
        dtype = np.dtype(cfg.get("dtype", "float64"))
        self.output = np.zeros(shape, dtype) if cfg.get("record") else None
        self.input = np.zeros(shape, dtype) if cfg.get("record") and cfg.get("states") else None
        names = state_names if cfg.get("states") else ()
        self.states = {n: np.zeros(shape, dtype) for n in names}
        self.saturations: dict[str, int] = {}
        self.done = False

    def observe(self, k: int, out: np.ndarray, x: np.ndarray | None = None,
                states: Mapping[str, np.ndarray] | None = None,
                saturations: Mapping[str, int] | None = None) -> None:
        """Take the values of 0-based step ``k`` (and the saturation events of that step,
        by state field); write the file after the last step."""
        j = k - self.offset
        if 0 <= j < self.period * self.samples:
            b, t = divmod(j, self.period)
            self.counts[b] += out != 0
            for name, n in (saturations or {}).items():
                self.saturations[name] = self.saturations.get(name, 0) + int(n)
            if self.output is not None:
                self.output[t, b] = out
            if self.input is not None and x is not None:
                self.input[t, b] = x
            if states:
                for name, rec in self.states.items():
                    rec[t, b] = states[name]
        if k == self.total - 1:
            self.save()

    def save(self) -> None:
        """Write the recordings (atomically: a temporary name, then a rename)."""
        if self.done:
            return
        arrays: dict[str, np.ndarray] = {"counts": self.counts}
        if self.output is not None:
            arrays["output"] = self.output
        if self.input is not None:
            arrays["input"] = self.input
        for name, rec in self.states.items():
            arrays[f"state_{name}"] = rec
        for name, n in self.saturations.items():
            arrays[f"sat_{name}"] = np.array(n, dtype=np.int64)
        tmp = self.path + ".part.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path)
        self.done = True


class ProbedStateModel:
    """Mixin of a neuron ProcessModel with a stacked ``state`` Var (``[n_fields, size]``):
    the state goes back to its initial value at every sample boundary (every ``period``
    steps from ``offset``), and a :class:`Probe` records the stream and the states.

    Plain Python, no Lava: the concrete model subclasses this and ``PyLoihiProcessModel``
    and declares its own ports and Vars (Lava's model discovery reads their
    ``LavaPyType`` from the model class). The model calls :meth:`_setup_probe` in its
    ``__init__``, :meth:`_begin_step` in ``run_spk`` once it has the step's input, and
    :meth:`_observe` after it has sent the step's output.
    """

    state: np.ndarray  # the model's stacked state Var, set by Lava
    time_step: int  # Lava's 1-based step counter

    def _setup_probe(self, proc_params: Mapping[str, Any], fields: tuple[str, ...]) -> None:
        """Read ``period``/``offset``/``probe`` of the Process; ``fields`` names the
        state's rows."""
        self._fields = fields
        self._period = int(proc_params["period"])
        self._offset = int(proc_params["offset"])
        self._probe_cfg = proc_params.get("probe")
        self._probe: Probe | None = None
        self._initial: np.ndarray | None = None

    def _begin_step(self, size: int) -> int:
        """The 0-based step ``k``; on the first step, keep the initial state (Lava fills
        Vars in after ``__init__``) and start the probe for ``size`` values; at a sample
        boundary, reset the state."""
        k = self.time_step - 1
        if self._initial is None:
            self._initial = np.array(self.state, copy=True)
            if self._probe_cfg:
                self._probe = Probe(self._probe_cfg, size, self._fields)
        if self._period > 0 and k >= self._offset and (k - self._offset) % self._period == 0:
            self.state[:] = self._initial
        return k

    def _observe(self, k: int, out: np.ndarray, x: np.ndarray,
                 saturations: Mapping[str, int] | None = None) -> None:
        """Hand step ``k``'s output, input, states (and saturation events) to the probe."""
        if self._probe is not None:
            self._probe.observe(k, out, x,
                                {f: self.state[i] for i, f in enumerate(self._fields)},
                                saturations)
