"""Lava backend: lower a NIR graph to Lava Processes and run it safely (Loihi 2 simulation).

Two steps, usable separately::

    net = lower(graph, mode="floating_pt")          # a LavaNetwork: a plan, no Lava yet
    res = run_lava(net, inputs)                     # inputs [T, B, ...] → LavaResult
    out, records = run(graph, inputs, record=True)  # the backend entry (reference-shaped)

or through the backend table: ``nirbridge.backends.get("lava-float")`` /
``get("lava-fixed")`` (:data:`FLOAT_BACKEND`, :data:`FIXED_BACKEND`).

Modules, along the data flow (each imports only those above it):

- :mod:`~nirbridge.backends.lava.network`: the plan (:class:`ProcSpec`, :class:`Stream`,
  :class:`LavaNetwork`), the neuron lowering types, the latency convention, and the base
  both lowerers share.
- :mod:`~nirbridge.backends.lava.linear`: linear nodes as matrices (:func:`linear_map`).
- :mod:`~nirbridge.backends.lava.lower_float`: the floating_pt lowering (spike-exact
  against the reference).
- :mod:`~nirbridge.backends.lava.lower_fixed`: the fixed_pt lowering from the quantized
  graph (integer-exact against the ``fixed`` backend, the golden model).
- :mod:`~nirbridge.backends.lava.lower`: :func:`lower`, which picks one of the two.
- :mod:`~nirbridge.backends.lava.child`: the run's own process (watchdog, time limit,
  process-group and ``/dev/shm`` cleanup).
- :mod:`~nirbridge.backends.lava.plan`: one run's plan, and reading its probes back.
- :mod:`~nirbridge.backends.lava.shards`: samples cut into shards, run side by side
  (``workers``), each in its own child.
- :mod:`~nirbridge.backends.lava.cluster`: the shards on a Dask distributed cluster
  (``cluster``).
- :mod:`~nirbridge.backends.lava.results`: :class:`LavaResult` and its assembly.
- :mod:`~nirbridge.backends.lava.runner`: :func:`run_lava`.
- :mod:`~nirbridge.backends.lava.backend`: :class:`LavaBackend` and :func:`run`.
- :mod:`~nirbridge.backends.lava.procs`: the Lava Processes and ProcessModels, and nothing
  else (Lava's compiler executes every file of that folder to find ProcessModels). Not
  imported here: Lava is imported only in the process that runs it, after
  :mod:`nirbridge._lava_compat` is installed; the plan names processes by
  ``"module:Class"`` strings.
"""

from __future__ import annotations

from nirbridge.backends.lava.backend import (
    FIXED_BACKEND,
    FLOAT_BACKEND,
    LavaBackend,
    lava_available,
    run,
)
from nirbridge.backends.lava.groups import process_group_members
from nirbridge.backends.lava.linear import (
    LINEAR_NODES,
    SPARSE_ABOVE,
    LinearMap,
    linear_map,
)
from nirbridge.backends.lava.lower import lower
from nirbridge.backends.lava.lower_fixed import (
    LAVA_WEIGHT_BITS,
    dense_weights,
    lower_fixed,
    neuron_mapping,
    stock_lava,
    stock_lif_issues,
)
from nirbridge.backends.lava.lower_float import (
    check_compare_of,
    check_neuron_params,
    lower_float_neuron,
)
from nirbridge.backends.lava.network import (
    DELAY,
    DENSE,
    FIXED_NEURON,
    FLOAT_NEURON,
    LIF_MONITOR,
    MAX_DELAY_STEPS,
    MODES,
    MONITOR,
    PASS,
    SOURCE,
    SPARSE,
    LavaNetwork,
    NeuronContext,
    NeuronLowering,
    ProcSpec,
    Stream,
    check_same_shapes,
    process_label,
)
from nirbridge.backends.lava.results import LavaResult
from nirbridge.backends.lava.runner import run_lava

__all__ = [
    "DELAY",
    "DENSE",
    "FIXED_BACKEND",
    "FIXED_NEURON",
    "FLOAT_BACKEND",
    "FLOAT_NEURON",
    "LAVA_WEIGHT_BITS",
    "LIF_MONITOR",
    "LINEAR_NODES",
    "MAX_DELAY_STEPS",
    "MODES",
    "MONITOR",
    "PASS",
    "SOURCE",
    "SPARSE",
    "SPARSE_ABOVE",
    "LavaBackend",
    "LavaNetwork",
    "LavaResult",
    "LinearMap",
    "NeuronContext",
    "NeuronLowering",
    "ProcSpec",
    "Stream",
    "check_compare_of",
    "check_neuron_params",
    "check_same_shapes",
    "dense_weights",
    "lava_available",
    "linear_map",
    "lower",
    "lower_fixed",
    "lower_float_neuron",
    "neuron_mapping",
    "process_group_members",
    "process_label",
    "run",
    "run_lava",
    "stock_lava",
    "stock_lif_issues",
]
