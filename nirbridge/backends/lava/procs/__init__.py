"""Lava Processes and their ProcessModels for nirbridge's Lava backend, and nothing else.

Lava's compiler finds the ProcessModels of a Process by executing every ``.py`` file in
the directory of the Process's module (and importing every module of its package), so
this subpackage holds only Lava Processes, their ProcessModels and the small pure-numpy
probe the models call, all with absolute imports, and none of them imports the rest of
:mod:`nirbridge.backends.lava`. Neither ``import nirbridge`` nor ``import
nirbridge.backends.lava`` imports it: the lowering names its processes by
``"module:Class"`` strings, and the run's process imports them after the Python 3.11
import fix for Lava (:mod:`nirbridge._lava_compat`) is installed.

Modules:

- :mod:`~nirbridge.backends.lava.procs.probe`: the in-model recorder/spike counter.
- :mod:`~nirbridge.backends.lava.procs.neurons`: the one ``floating_pt`` neuron Process,
  which runs any registered neuron with its own torch step.
- :mod:`~nirbridge.backends.lava.procs.plumbing`: delay lines, the pass-through
  (bias/scale/sum) process and the monitors (probe on any stream; probe on a stock Lava
  LIF), each with a ``floating_pt`` and an integer ``fixed_pt`` model.
- :mod:`~nirbridge.backends.lava.procs.fixed`: the one integer neuron Process of the
  ``fixed_pt`` lowering, which runs any registered integer model.

Conventions shared by every process here: one in-port ``a_in`` and one out-port
``s_out``, flat (1-D) shapes in C order of the NIR node's shape, float64 values
(floating_pt) or integers (fixed_pt). Stateful processes take ``period`` (samples'
length T) and ``offset`` (their latency L) and reset their state to its initial value
before the step ``k`` (0-based) where ``k >= offset and (k - offset) % period == 0``:
that is how one Lava run carries many samples back to back (see
:mod:`nirbridge.backends.lava.network`).
"""
