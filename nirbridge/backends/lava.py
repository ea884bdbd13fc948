"""Lava backend: lower a NIR graph to Lava Processes and run it safely (Loihi 2 simulation).

Two steps, usable separately::

    net = lower(graph, mode="floating_pt")          # a LavaNetwork: a plan, no Lava yet
    res = run_lava(net, inputs)                     # inputs [T, B, ...] → LavaResult
    out, records = run(graph, inputs, record=True)  # the backend entry (reference-shaped)

Lowering (:func:`lower`), node by node
--------------------------------------
All Lava ports are flat (1-D), in C order of the NIR node's per-sample shape, so a
``Flatten`` is a relabelling and costs nothing.

- ``Input`` → ``RingBuffer`` (Lava's source) holding the samples back to back.
- ``Affine``/``Linear`` → ``Dense`` with the weight matrix; ``Conv1d``/``Conv2d`` →
  ``Dense`` (or ``Sparse``) with the unrolled convolution matrix, built by applying the
  reference's own convolution to unit vectors: exact weights, PyTorch layout, no kernel
  flip or (W, H, C) transposition to get wrong. ``sparse="auto"`` picks ``Sparse`` for
  large maps. ``num_message_bits`` is 0 when the input carries spikes, 24 when graded.
- ``SumPool2d``/``AvgPool2d`` → ``Dense``/``Sparse`` with a 0/1 window matrix followed
  by a zero-delay ``PassThrough`` dividing by the window size (and, for SumPool,
  multiplying back), which is exactly what the reference computes (``avg_pool2d``, times
  the window for SumPool).
- The bias of an Affine/Conv is not a synapse: it stays *pending* on the stream and is
  added where the reference adds it, by the consumer: a neuron's ``bias``
  (``x = a_in + bias`` before the neuron's equations), a monitor's ``bias``, or a
  ``PassThrough`` when another synapse follows (``Affine → Affine``: the intermediate
  value is materialised, not composed into one matrix, so the arithmetic is the
  reference's).
- ``Scale`` → ``PassThrough`` (multiply). Several edges into one node sum (Lava in-ports
  add all their connections; an ``Output``/``Flatten`` with several inputs gets a summing
  ``PassThrough``).
- Neurons → one Process per node type (:mod:`nirbridge.lava_procs.neurons`), built by a
  per-type function registered with :func:`register_neuron_lowering` for a ``mode``; the
  floating_pt models compute in float64 the same operations, in the same order, as
  :mod:`nirbridge.neurons.functional`.

fixed_pt (``lower(graph, "fixed_pt", quant=...)``, :mod:`nirbridge.backends._lava_fixed`)
----------------------------------------------------------------------------------------
The graph is quantized once (:func:`nirbridge.quantize.quantize`, ``loihi2`` profile by
default) and lowered from its integer form: Dense/Sparse with the integer weight
mantissas, Lava's own LIF (``LIFReset``, bit-accurate) for stock-compatible LIF layers,
nirbridge's integer neuron Processes (:mod:`nirbridge.lava_procs.fixed`, running the step
functions of :mod:`nirbridge.fixed_point`) for every other neuron, integer pass-throughs
aligning fractional bits where inputs sum. A fixed_pt run (``Loihi2SimCfg(select_tag=
"fixed_pt")``) reproduces :func:`nirbridge.quantize.run_fixed_point` integer for integer;
:class:`LavaResult` then also carries the integer records and saturation counts. Neuron
lowerings for ``mode="fixed_pt"`` receive the node's
:class:`~nirbridge.quantize.QuantizedNeuron` as ``ctx.quant``.

Latency convention
------------------
Every ``Dense``/``Sparse`` delays its output by one step (Lava's synapses send at step
``k + 1`` what they received at step ``k``); neurons, pass-throughs and the source add
no delay. The lowering gives every node's output stream a latency ``L`` (the number of
synapses on its path from the input) and, where paths of different latency meet (a
residual add), inserts ``Delay`` lines on the shorter paths, so that every node sees all
its inputs aligned. The runner then places sample ``b`` at steps ``b·T .. b·T + T − 1``
of one long Lava run, runs ``B·T + max L`` steps, and reads **reference step ``t`` of
sample ``b`` of a node of latency ``L`` at Lava step ``k = b·T + t + L``** (0-based;
Lava's ``time_step`` is ``k + 1``). Outputs and records returned are aligned that way:
index ``t`` of a returned array is reference step ``t``. Stateful processes reset their
state to its initial value right before the step where their sample starts
(``(k − L) mod T = 0``), so samples do not leak into each other, and what crosses a
sample boundary through a synapse or a delay line arrives only at steps that the
alignment discards.

Runner
------
:func:`run_lava` runs each chunk of samples in a child process (``fork``) that becomes
the leader of its own process group, builds the Lava Processes, compiles once, runs all
samples of the chunk back to back and stops the runtime. Probes (inside the neuron
models, or small ``Monitor`` processes) record aligned outputs, states and spike counts
in numpy and write them once to a temporary ``.npz`` file (``Var.get()`` moves one
element per message). A watchdog thread in the child reports an exception of any Lava
process model with that model's own traceback (Lava only logs it and then hangs), and on
any failure or on the parent's time limit everything in the process group is killed,
the shared-memory segments it mapped are unlinked, and :class:`SimulationError` /
:class:`SimulationTimeout` is raised. No process and no ``/dev/shm`` segment is left.

Exactness (floating_pt): spikes equal the reference's. Synaptic sums are computed by
numpy/BLAS rather than torch, and numpy's ``tanh``/``exp`` may differ from torch's in the
last bit, so graded values and states agree to rounding (~1e-15 relative); a spike could
only differ if a membrane were within that rounding of its threshold.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends.reference import RunRecord, apply_synapse
from nirbridge.errors import (
    GraphError,
    InputError,
    InvalidParameterError,
    LoweringError,
    NirbridgeError,
    ShapeMismatchError,
    SimulationError,
    SimulationTimeout,
)
from nirbridge.neurons import NEURONS, CustomNeuron, is_neuron, spec_of
from nirbridge.neurons._base import compare_of
from nirbridge.passes import graph_dt, predecessors, topological_order

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("floating_pt", "fixed_pt")

_PROCS = "nirbridge.lava_procs"
SOURCE = "lava.proc.io.source:RingBuffer"
DENSE = "lava.proc.dense.process:Dense"
SPARSE = "lava.proc.sparse.process:Sparse"
DELAY = f"{_PROCS}.plumbing:Delay"
PASS = f"{_PROCS}.plumbing:PassThrough"
MONITOR = f"{_PROCS}.plumbing:Monitor"
LIF_MONITOR = f"{_PROCS}.plumbing:LIFMonitor"

#: Linear maps with more entries than this become ``Sparse`` when ``sparse="auto"``.
SPARSE_ABOVE = 1 << 20
_LAVA_RUNTIME_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


# ------------------------------------------------------------------------- the plan
@dataclass
class ProcSpec:
    """One Lava Process of a lowered network, as a recipe built in the run's process.

    ``process`` is ``"module:Class"``; ``kwargs`` its static keyword arguments. At run
    time the runner adds ``data`` (sources), ``period``/``offset`` (``stateful``
    processes: samples' length T and this process's ``latency``) and ``probe`` (where
    ``probe`` is true and the output is observed).
    """

    key: str
    process: str
    kwargs: dict[str, Any]
    size: int
    node: str | None = None
    role: str = "helper"  # source | synapse | neuron | helper
    in_port: str | None = "a_in"
    out_port: str | None = "s_out"
    latency: int = 0
    stateful: bool = False
    probe: bool = False
    state_vars: tuple[str, ...] = ()  # Vars a monitor reads by reference (Lava's own LIF)

    @property
    def class_name(self) -> str:
        return self.process.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Stream:
    """What flows out of a lowered NIR node: which process sends it, its latency, the
    node's per-sample shape, a bias still to be added (or None), whether it carries
    graded values (True) or spikes, and (fixed_pt) the fractional bits of its integers."""

    proc: str
    latency: int
    shape: tuple[int, ...]
    bias: np.ndarray | None
    graded: bool
    frac: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class LavaNetwork:
    """A NIR graph lowered to Lava: process recipes, connections and per-node streams.

    Holds no Lava object (it is built again for every run, in the run's process).
    ``quant``: for fixed_pt, the :class:`~nirbridge.quantize.QuantizedGraph` it was built
    from (the golden model's parameters and formats).
    """

    graph: nir.NIRGraph
    mode: str
    dt: float
    procs: dict[str, ProcSpec]
    connections: list[tuple[str, str]]
    streams: dict[str, Stream]
    inputs: list[str]
    outputs: list[str]
    neurons: list[str]
    quant: Any = None

    @property
    def max_latency(self) -> int:
        """The largest latency of any stream: the steps a run needs beyond ``B·T``."""
        return max((s.latency for s in self.streams.values()), default=0)

    def latency(self, node: str) -> int:
        """Steps by which the Lava output of ``node`` lags the reference."""
        return self.streams[node].latency

    def describe(self) -> str:
        """A table of the processes: key, Lava class, size, latency and NIR node."""
        rows = [f"{'process':<28} {'class':<16} {'size':>7} {'latency':>7}  node"]
        for spec in self.procs.values():
            rows.append(f"{spec.key:<28} {spec.class_name:<16} {spec.size:>7} "
                        f"{spec.latency:>7}  {spec.node or ''}")
        return "\n".join(rows)

    def replace_process(self, node: str, process: str, *, stateful: bool = False,
                        probe: bool = False, **kwargs: Any) -> None:
        """Swap the Process of ``node`` for ``process`` (``"module:Class"``), e.g. a model
        under development. It receives ``shape``, the node's pending ``bias`` and
        ``kwargs``; ``stateful``/``probe`` say whether it takes ``period``/``offset`` and
        ``probe`` (otherwise a Monitor observes it)."""
        if node not in self.procs:
            raise LoweringError(f"node '{node}' has no process of its own to replace "
                                f"(processes: {', '.join(self.procs)})")
        spec = self.procs[node]
        new = dict(shape=(spec.size,), **kwargs)
        if "bias" in spec.kwargs:
            new.setdefault("bias", spec.kwargs["bias"])
        self.procs[node] = dataclasses.replace(spec, process=process, kwargs=new,
                                               stateful=stateful, probe=probe)


# ----------------------------------------------------------------- neuron lowerings
#: The one floating_pt neuron Process (any registered neuron, with its own torch step).
FLOAT_NEURON = f"{_PROCS}.neurons:FloatNeuron"


@dataclass
class NeuronContext:
    """What a neuron lowering knows besides the node: its name, shape, dt and mode; for
    fixed_pt also its quantized form (``quant``, a
    :class:`~nirbridge.quantize.QuantizedNeuron`) and the lowering's ``options``."""

    name: str
    shape: tuple[int, ...]
    dt: float
    mode: str
    quant: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class NeuronLowering:
    """The Process that implements a neuron node: ``process`` (``"module:Class"``), its
    keyword arguments, and how it behaves in a network."""

    process: str
    params: dict[str, Any]
    graded: bool = False     # sends values (LI, I, CubaLI) instead of spikes
    probe: bool = True       # records and counts its own output (takes ``probe``)
    stateful: bool = True    # takes ``period``/``offset`` and resets between samples
    state_vars: tuple[str, ...] = ()  # with probe=False: Vars a monitor reads by reference


def check_neuron_params(name: str, node: nir.NIRNode, shape: tuple[int, ...]) -> None:
    """Every numeric parameter of a neuron node finite and of the neuron's shape, else an
    error naming the node and the parameter."""
    fields = node.PARAMS if isinstance(node, CustomNeuron) else [
        f for f in getattr(node, "__dataclass_fields__", {})
        if f not in ("input_type", "output_type", "metadata")]
    for f in fields:
        value = getattr(node, f, None)
        if value is None or isinstance(value, (str, bytes, bool)):
            continue
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"node '{name}': parameter '{f}' = {value!r} "
                                        "is not numeric") from exc
        if not np.all(np.isfinite(arr)):
            raise InvalidParameterError(f"node '{name}': parameter '{f}' contains NaN or "
                                        "inf")
        try:
            np.broadcast_to(arr, shape)
        except ValueError:
            raise ShapeMismatchError(f"node '{name}': parameter '{f}' of shape {arr.shape} "
                                     f"does not fit the neuron shape {shape}") from None
    check_compare_of(name, node)


def check_compare_of(name: str, node: nir.NIRNode) -> str:
    """The node's firing convention, or an error naming the node."""
    cmp = compare_of(node)
    if cmp not in (">", ">="):
        raise InvalidParameterError(f"node '{name}': compare={cmp!r}; use '>' or '>='")
    return cmp


def lower_float_neuron(node: nir.NIRNode, ctx: NeuronContext) -> NeuronLowering:
    """Any registered neuron in floating_pt: the generic Process running its torch step."""
    spec = spec_of(node)
    if spec is None:
        raise LoweringError(f"node '{ctx.name}': {type(node).__name__} is not a registered "
                            "neuron")
    check_neuron_params(ctx.name, node, ctx.shape)
    return NeuronLowering(FLOAT_NEURON, dict(neuron=spec.name, node=node, dt=ctx.dt,
                                             node_shape=tuple(ctx.shape)),
                          graded=not spec.spiking)


# -------------------------------------------------------------------- linear maps
@dataclass
class LinearMap:
    """A stateless linear node as ``y = post_ops(matrix @ x)`` (+ pending ``bias``)."""

    matrix: Any  # numpy (n_out, n_in) or scipy.sparse.csr_matrix
    out_shape: tuple[int, ...]
    bias: np.ndarray | None = None
    post_ops: tuple[tuple[str, np.ndarray], ...] = ()


LINEAR_NODES = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)


def _out_shape(node: nir.NIRNode, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    x = torch.zeros((1, 1, *in_shape), dtype=torch.float64)
    with torch.no_grad():
        return tuple(int(d) for d in apply_synapse(node, x).shape[2:])


def _basis_matrix(fn: Callable[[torch.Tensor], torch.Tensor], in_shape: tuple[int, ...],
                  n_out: int) -> Any:
    """The matrix of the linear map ``fn`` (``[T=1, m, *in_shape] → [1, m, ...]``),
    column by column from unit vectors, as a CSR matrix (exact: ``w·1 + 0``)."""
    from scipy.sparse import csr_matrix

    n_in = int(np.prod(in_shape, dtype=np.int64))
    chunk = max(1, min(n_in, (1 << 22) // max(n_out, 1)))
    rows, cols, vals = [], [], []
    with torch.no_grad():
        for start in range(0, n_in, chunk):
            idx = np.arange(start, min(n_in, start + chunk))
            eye = torch.zeros((len(idx), n_in), dtype=torch.float64)
            eye[torch.arange(len(idx)), torch.as_tensor(idx)] = 1.0
            y = fn(eye.reshape(1, len(idx), *in_shape)).reshape(len(idx), n_out).numpy()
            j, o = np.nonzero(y)
            rows.append(o)
            cols.append(idx[j])
            vals.append(y[j, o])
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_out, n_in))


def _pool_geometry(node: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    def pair(v: Any) -> tuple[int, int]:
        a = np.atleast_1d(np.asarray(v)).astype(int)
        return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))

    return pair(node.kernel_size), pair(node.stride), pair(node.padding)


def linear_map(node: nir.NIRNode, in_shape: tuple[int, ...]) -> LinearMap:
    """The matrix, output shape, bias and post-ops of a linear NIR node on ``in_shape``.

    Affine/Linear on a vector use the weight itself; every other case (convolutions,
    pooling windows, Linear on more than one dimension) is derived by applying the
    reference's own layer to unit vectors, so layouts and padding conventions are the
    reference's by construction.
    """
    out_shape = _out_shape(node, in_shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    bias = None
    post: tuple[tuple[str, np.ndarray], ...] = ()
    if isinstance(node, (nir.Affine, nir.Linear)) and len(in_shape) == 1:
        matrix = np.asarray(node.weight, dtype=np.float64).reshape(n_out, in_shape[0])
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k, s, p = _pool_geometry(node)

        def window(x: torch.Tensor) -> torch.Tensor:
            xf = x.reshape(-1, *in_shape)
            y = torch.nn.functional.avg_pool2d(xf, k, s, p, count_include_pad=True,
                                               divisor_override=1)
            return y.reshape(1, x.shape[1], *y.shape[1:])

        matrix = _basis_matrix(window, in_shape, n_out)
        area = np.full(n_out, float(k[0] * k[1]))
        # reference: avg_pool2d (sum / area), times the area for SumPool2d
        post = (("div", area),) + ((("mul", area),) if isinstance(node, nir.SumPool2d) else ())
    else:
        bare = node
        if getattr(node, "bias", None) is not None:
            bare = dataclasses.replace(node, bias=np.zeros_like(np.asarray(node.bias, float)))
        matrix = _basis_matrix(lambda x: apply_synapse(bare, x), in_shape, n_out)
    if isinstance(node, (nir.Affine, nir.Conv1d, nir.Conv2d)):
        b = np.asarray(node.bias, dtype=np.float64)
        if isinstance(node, nir.Affine):
            full = np.broadcast_to(b, out_shape)
        else:  # per output channel
            full = np.broadcast_to(b.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)
        if np.any(full != 0):
            bias = full.ravel().copy()
    bad = matrix.data if hasattr(matrix, "tocsr") else matrix
    if not np.all(np.isfinite(bad)) or (bias is not None and not np.all(np.isfinite(bias))):
        raise InvalidParameterError(f"{type(node).__name__}: weights or bias contain NaN or "
                                    "inf")
    return LinearMap(matrix, out_shape, bias, post)


# ----------------------------------------------------------------------- lowering
@dataclass
class _Merged:
    keys: list[str]
    latency: int
    shape: tuple[int, ...]
    bias: np.ndarray | None
    graded: bool


def check_same_shapes(name: str, preds: list[str], streams: list[Stream]) -> None:
    """The streams summed into node ``name`` must all have one shape."""
    if len({s.shape for s in streams}) > 1:
        got = ", ".join(f"'{p}' {s.shape}" for p, s in zip(preds, streams, strict=True))
        raise ShapeMismatchError(f"node '{name}' sums inputs of different shapes: {got}")


class _Lowerer:
    def __init__(self, graph: nir.NIRGraph, mode: str, dt: float, sparse: bool | str) -> None:
        self.graph, self.mode, self.dt, self.sparse = graph, mode, dt, sparse
        self.procs: dict[str, ProcSpec] = {}
        self.connections: list[tuple[str, str]] = []
        self.streams: dict[str, Stream] = {}
        self.preds = predecessors(graph)

    def add(self, spec: ProcSpec) -> str:
        if spec.key in self.procs:
            raise LoweringError(f"process key '{spec.key}' is used twice; rename the node")
        self.procs[spec.key] = spec
        return spec.key

    def connect(self, src: str, dst: str) -> None:
        self.connections.append((src, dst))

    def merge(self, name: str) -> _Merged:
        """The inputs of ``name``, aligned with delay lines to the latest one."""
        preds = self.preds[name]
        if not preds:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        streams = [self.streams[p] for p in preds]
        check_same_shapes(name, preds, streams)
        latency = max(s.latency for s in streams)
        keys = []
        for p, s in zip(preds, streams, strict=True):
            key = s.proc
            if s.latency < latency:
                key = self.add(ProcSpec(f"{name}/delay<{p}", DELAY,
                                        dict(shape=(s.size,), delay=latency - s.latency),
                                        s.size, latency=latency))
                self.connect(s.proc, key)
            keys.append(key)
        biases = [s.bias for s in streams if s.bias is not None]
        bias = None
        if biases:
            bias = biases[0].copy()
            for b in biases[1:]:
                bias = bias + b
        return _Merged(keys, latency, streams[0].shape, bias,
                       any(s.graded for s in streams) or len(keys) > 1)

    def materialize(self, name: str, m: _Merged, ops: Iterable[tuple[str, Any]] = (),
                    suffix: str = "sum") -> str:
        """A PassThrough summing ``m``'s inputs, adding its bias, then applying ``ops``."""
        size = int(np.prod(m.shape, dtype=np.int64))
        all_ops = ([("add", m.bias)] if m.bias is not None else []) + list(ops)
        key = self.add(ProcSpec(f"{name}/{suffix}", PASS,
                                dict(shape=(size,), ops=tuple(all_ops)), size,
                                latency=m.latency, probe=self.mode == "floating_pt"))
        for k in m.keys:
            self.connect(k, key)
        return key

    def lower(self) -> None:
        """Lower every node, in topological order."""
        for name in topological_order(self.graph):
            node = self.graph.nodes[name]
            try:
                self._lower_node(name, node)
            except NirbridgeError:
                raise
            except Exception as exc:  # a layer that fails on its input: name it
                raise LoweringError(f"node '{name}' ({type(node).__name__}) cannot be lowered: "
                                    f"{exc}") from exc

    def _lower_node(self, name: str, node: nir.NIRNode) -> None:
        if isinstance(node, nir.Input):
            types = node.output_type or node.input_type
            shape = tuple(int(d) for d in np.asarray(next(iter(types.values()))).ravel())
            size = int(np.prod(shape, dtype=np.int64))
            self.add(ProcSpec(name, SOURCE, {}, size, node=name, role="source", in_port=None))
            self.streams[name] = Stream(name, 0, shape, None, True)
            return
        if isinstance(node, (nir.Output, nir.Flatten)):
            m = self.merge(name)
            shape = m.shape if isinstance(node, nir.Output) else _out_shape(node, m.shape)
            if len(m.keys) == 1:
                self.streams[name] = Stream(m.keys[0], m.latency, shape, m.bias, m.graded)
            else:
                key = self.materialize(name, m)
                self.streams[name] = Stream(key, m.latency, shape, None, True)
            return
        if isinstance(node, LINEAR_NODES):
            self._lower_linear(name, node)
            return
        if isinstance(node, nir.Scale):
            m = self.merge(name)
            scale = np.broadcast_to(np.asarray(node.scale, float), m.shape).ravel().copy()
            key = self.materialize(name, m, ops=[("mul", scale)], suffix="scale")
            self.streams[name] = Stream(key, m.latency, m.shape, None, True)
            return
        if is_neuron(node):
            self._lower_neuron(name, node)
            return
        raise LoweringError(
            f"node '{name}' of type {type(node).__name__} cannot be lowered to Lava; "
            "supported: Input, Output, Affine, Linear, Conv1d, Conv2d, SumPool2d, "
            "AvgPool2d, Flatten, Scale and the registered neurons "
            f"{sorted(NEURONS)}")

    def _lower_linear(self, name: str, node: nir.NIRNode) -> None:
        m = self.merge(name)
        lin = linear_map(node, m.shape)
        keys, graded = m.keys, m.graded
        if m.bias is not None:
            keys, graded = [self.materialize(name, m, suffix="bias")], True
        n_out, n_in = lin.matrix.shape
        sparse = self.sparse is True or (self.sparse == "auto" and n_out * n_in > SPARSE_ABOVE)
        if hasattr(lin.matrix, "tocsr"):
            weights = lin.matrix.tocsr() if sparse else lin.matrix.toarray()
        else:
            weights = lin.matrix
            if sparse and not isinstance(node, (nir.Affine, nir.Linear)):
                from scipy.sparse import csr_matrix

                weights = csr_matrix(weights)
        is_sparse = hasattr(weights, "tocsr")
        key = self.add(ProcSpec(
            name, SPARSE if is_sparse else DENSE,
            dict(weights=weights, num_message_bits=24 if graded else 0), n_out, node=name,
            role="synapse", in_port="s_in", out_port="a_out", latency=m.latency + 1))
        for k in keys:
            self.connect(k, key)
        out = key
        if lin.post_ops:
            out = self.add(ProcSpec(f"{name}/post", PASS, dict(shape=(n_out,), ops=lin.post_ops),
                                    n_out, latency=m.latency + 1,
                                    probe=self.mode == "floating_pt"))
            self.connect(key, out)
        self.streams[name] = Stream(out, m.latency + 1, lin.out_shape, lin.bias, True)

    def _lower_neuron(self, name: str, node: nir.NIRNode) -> None:
        m = self.merge(name)
        ctx = NeuronContext(name, m.shape, self.dt, self.mode)
        low = lower_float_neuron(node, ctx)
        kwargs = dict(shape=(ctx.size,), **low.params)
        if m.bias is not None:
            kwargs["bias"] = m.bias
        self.add(ProcSpec(name, low.process, kwargs, ctx.size, node=name, role="neuron",
                          latency=m.latency, stateful=low.stateful, probe=low.probe))
        for k in m.keys:
            self.connect(k, name)
        self.streams[name] = Stream(name, m.latency, m.shape, None, low.graded)


def process_label(net: LavaNetwork, node: str) -> str:
    """The Lava Process a node runs on: its class, and for the generic integer neuron
    the integer model it runs (``"FixedNeuron(arlif)"``)."""
    spec = net.procs[node]
    layer = net.quant.layers.get(node) if net.quant is not None else None
    if "params" in spec.kwargs and getattr(layer, "kind", None):
        return f"{spec.class_name}({layer.kind})"
    return spec.class_name


def _check_connected(procs: Mapping[str, ProcSpec], connections: list[tuple[str, str]]) -> None:
    parent = {k: k for k in procs}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in connections:
        parent[find(a)] = find(b)
    roots = {find(k) for k in procs}
    if len(roots) > 1:
        raise LoweringError(f"the graph has {len(roots)} unconnected parts; Lava runs one "
                            "connected network: run the parts as separate graphs")


def lower(graph: nir.NIRGraph, mode: str = "floating_pt", *, dt: float | None = None,
          sparse: bool | str = "auto", quant: Any = None, stock_lif: bool = True
          ) -> LavaNetwork:
    """Lower ``graph`` to a :class:`LavaNetwork` for ``mode`` (``"floating_pt"`` or
    ``"fixed_pt"``).

    ``dt``: the time step (default: the graph's metadata). ``sparse``: ``True`` makes
    every convolution/pooling map a Lava ``Sparse``, ``False`` a ``Dense``, ``"auto"``
    uses ``Sparse`` above :data:`SPARSE_ABOVE` entries.

    fixed_pt only (:mod:`nirbridge.backends._lava_fixed`): the graph is quantized once with
    ``quant`` (``None``: the ``loihi2`` profile; a
    :class:`~nirbridge.quantize.QuantConfig`; a profile name, path or dict; or a
    :class:`~nirbridge.quantize.QuantizedGraph` of this graph), which raises
    :class:`~nirbridge.errors.QuantizationError` naming the node for graphs or values
    fixed point cannot represent. ``stock_lif=False`` puts stock-compatible LIF layers on
    nirbridge's integer Process instead of Lava's own LIF.
    """
    if mode not in MODES:
        raise LoweringError(f"mode={mode!r}; use one of {MODES}")
    if sparse not in (True, False, "auto"):
        raise LoweringError(f"sparse={sparse!r}; use True, False or 'auto'")
    qgraph = None
    if mode == "fixed_pt":
        from nirbridge.backends._lava_fixed import lower_fixed

        low, qgraph = lower_fixed(graph, dt=dt, sparse=sparse, quant=quant,
                                  stock_lif=stock_lif)
    else:
        if quant is not None:
            raise LoweringError("quant= applies to mode='fixed_pt' only")
        low = _Lowerer(graph, mode, graph_dt(graph, dt), sparse)
        low.lower()
    _check_connected(low.procs, low.connections)
    nodes = graph.nodes
    inputs = [n for n in low.streams if isinstance(nodes[n], nir.Input)]
    outputs = [n for n in low.streams if isinstance(nodes[n], nir.Output)]
    if not inputs or not outputs:
        raise GraphError(f"graph needs at least one Input and one Output node (has inputs "
                         f"{inputs}, outputs {outputs})")
    neurons = [n for n in low.streams if is_neuron(nodes[n])]
    return LavaNetwork(graph, mode, low.dt, low.procs, low.connections, low.streams, inputs,
                       outputs, neurons, qgraph)


# --------------------------------------------------------------------- run results
@dataclass
class LavaResult:
    """What a Lava run returns, aligned to the reference time axis.

    ``outputs``: ``[T, B, ...]`` (a dict by Output node when there are several);
    ``counts``: non-zero outputs (spikes) per node, sample and neuron, ``[B, *shape]``,
    for every neuron and Output node (every node when recorded) and the inputs;
    ``records``: per node :class:`~nirbridge.backends.reference.RunRecord` (torch
    float64, as the reference) when asked for; ``runs``: Lava runs made (chunks);
    ``steps``: Lava steps run in total; ``seconds``: compile/run/stop/wall times;
    ``child_pids``: the process (and process group) id of each run, for diagnostics.

    fixed_pt runs: ``outputs`` and ``records`` are in real units (``int · 2^-frac``, as
    :func:`~nirbridge.quantize.run_fixed_point` returns them); ``fixed_records`` holds the
    integers themselves per recorded node, as
    :class:`~nirbridge.quantize.FixedPointRecord` (int64 input/output/states ``[T, B,
    ...]``, their fractional bits, saturation events), directly comparable with the golden
    run's records; ``saturations``: saturation events per neuron node and state field
    (nirbridge's integer neurons report them; Lava's own LIF does not);
    ``quantization``: one dict per quantized node (its
    :class:`~nirbridge.quantize.LayerReport` as a dict, plus ``node``, ``saturated``:
    saturation events in this run or None where not reported, and ``lava_process``).
    """

    outputs: Any
    counts: dict[str, np.ndarray]
    records: dict[str, RunRecord] | None
    runs: int
    steps: int
    seconds: dict[str, float]
    child_pids: list[int] = field(default_factory=list)
    fixed_records: dict[str, Any] | None = None
    saturations: dict[str, dict[str, int]] = field(default_factory=dict)
    quantization: list[dict[str, Any]] | None = None


@dataclass
class _Observed:
    """One probe of a run: a process that probes itself, or a Monitor."""

    key: str
    offset: int
    record: bool
    states: bool
    nodes: list[str]
    path: str = ""


@dataclass
class _RunPlan:
    procs: list[tuple[str, str, dict[str, Any]]]
    connections: list[tuple[str, str, str, str]]
    observed: dict[str, _Observed]
    node_probe: dict[str, str]
    period: int
    samples: int
    total: int
    var_refs: list[tuple[str, str, str, str]] = field(default_factory=list)


def _check_inputs(net: LavaNetwork, inputs: Any) -> dict[str, np.ndarray]:
    if not isinstance(inputs, Mapping):
        if len(net.inputs) != 1:
            raise InputError(f"graph has inputs {net.inputs}; pass a dict by name")
        inputs = {net.inputs[0]: inputs}
    out: dict[str, np.ndarray] = {}
    tb = None
    for name in net.inputs:
        if name not in inputs:
            raise InputError(f"no input given for Input node '{name}'")
        x = inputs[name]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim < 3:
            raise InputError(f"input for node '{name}' has shape {x.shape}; expected "
                             "[T, B, ...] with time first, then batch")
        want = net.streams[name].shape
        if tuple(x.shape[2:]) != want:
            raise InputError(f"input for node '{name}' has per-step shape {x.shape[2:]}; "
                             f"the graph expects {want}")
        if x.dtype.kind not in "biuf" or not np.all(np.isfinite(x)):
            raise InputError(f"input for node '{name}' is not numeric or contains NaN/inf")
        if tb is not None and x.shape[:2] != tb:
            raise InputError(f"inputs disagree on [T, B]: {tb} and {x.shape[:2]} ('{name}')")
        tb = x.shape[:2]
        out[name] = x.astype(np.float64, copy=False)
    return out


def _plan_run(net: LavaNetwork, inputs: Mapping[str, np.ndarray], record_nodes: set[str],
              tmpdir: str) -> _RunPlan:
    t, b = next(iter(inputs.values())).shape[:2]
    total = b * t + net.max_latency
    nodes = net.graph.nodes
    fixed = net.mode == "fixed_pt"
    want = (set(net.outputs) | set(net.neurons) | record_nodes) - set(net.inputs)
    observed: dict[str, _Observed] = {}
    node_probe: dict[str, str] = {}
    monitors: list[tuple[str, str, int, np.ndarray | None]] = []
    for name in sorted(want, key=list(net.streams).index):
        stream = net.streams[name]
        spec = net.procs[stream.proc]
        if spec.probe and stream.bias is None:
            key = stream.proc
        else:  # a monitor, shared by the nodes that see this process with the same bias
            key = ""
            for mkey, src, _, bias in monitors:
                same = (bias is None and stream.bias is None) or (
                    bias is not None and stream.bias is not None
                    and np.array_equal(bias, stream.bias))
                if src == stream.proc and same:
                    key = mkey
                    break
            if not key:
                n = sum(src == stream.proc for _, src, _, _ in monitors)
                key = f"{stream.proc}/monitor" + (f"{n}" if n else "")
                monitors.append((key, stream.proc, stream.size, stream.bias))
        obs = observed.setdefault(key, _Observed(key, stream.latency, False, False, []))
        obs.nodes.append(name)
        obs.record |= name in net.outputs or name in record_nodes
        obs.states |= name in record_nodes and is_neuron(nodes[name])
        node_probe[name] = key
    for i, obs in enumerate(observed.values()):
        obs.path = os.path.join(tmpdir, f"probe{i}.npz")
    probe_cfg = {k: dict(path=o.path, offset=o.offset, period=t, samples=b, total=total,
                         record=o.record, states=o.states,
                         dtype="int64" if fixed else "float64") for k, o in observed.items()}
    procs: list[tuple[str, str, dict[str, Any]]] = []
    for spec in net.procs.values():
        kw = dict(spec.kwargs)
        if spec.role == "source":
            x = inputs[spec.key]
            data = np.zeros((spec.size, total), dtype=np.int32 if fixed else np.float64)
            data[:, : b * t] = x.reshape(t, b, spec.size).transpose(2, 1, 0).reshape(spec.size,
                                                                                   b * t)
            kw["data"] = data
        if spec.stateful:
            if spec.process.endswith(":LIFReset"):  # Lava's own: resets u, v to 0
                kw.update(reset_interval=t, reset_offset=(spec.latency + 1) % t)
            else:
                kw.update(period=t, offset=spec.latency)
        if spec.key in probe_cfg:
            kw["probe"] = probe_cfg[spec.key]
        procs.append((spec.key, spec.process, kw))
    ports = {s.key: (s.out_port, s.in_port) for s in net.procs.values()}
    connections = [(a, ports[a][0], z, ports[z][1]) for a, z in net.connections]
    var_refs: list[tuple[str, str, str, str]] = []
    for key, src, size, bias in monitors:
        kw = dict(shape=(size,), probe=probe_cfg[key])
        spec = net.procs[src]
        if spec.state_vars and probe_cfg[key]["states"]:
            # Lava's own LIF: spikes, input (its sources again) and u, v by reference
            if tuple(spec.state_vars) != ("u", "v") or bias is not None:
                raise LoweringError(f"process '{src}': cannot monitor states "
                                    f"{spec.state_vars}")
            procs.append((key, LIF_MONITOR, kw))
            connections.append((src, ports[src][0], key, "a_in"))
            for a, z in net.connections:
                if z == src:
                    connections.append((a, ports[a][0], key, "x_in"))
            var_refs += [(key, "ref_u", src, "u"), (key, "ref_v", src, "v")]
            continue
        if bias is not None:
            kw["bias"] = bias
        procs.append((key, MONITOR, kw))
        connections.append((src, ports[src][0], key, "a_in"))
    return _RunPlan(procs, connections, observed, node_probe, t, b, total, var_refs)


# ----------------------------------------------------- process groups and /dev/shm
def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (Linux ``/proc``)."""
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _shm_mapped_by(pids: Iterable[int]) -> set[str]:
    """Names of the ``/dev/shm`` files that ``pids`` map or hold open."""
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                        path = parts[5].strip()
                        if not path.endswith("(deleted)"):
                            names.add(os.path.basename(path))
        except OSError:
            pass
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("/dev/shm/") and not target.endswith("(deleted)"):
                    names.add(os.path.basename(target))
        except OSError:
            pass
    return {n for n in names if not n.startswith("sem.")}


def _unlink_shm(names: Iterable[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - permissions
            log.warning("could not remove /dev/shm/%s: %s", name, exc)


def _kill_pids(pids: list[int]) -> set[str]:
    """Freeze ``pids``, note the shared memory they use, kill them; returns the names."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    shm = _shm_mapped_by(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return shm


# ------------------------------------------------------------------ the run's process
class _Watchdog(threading.Thread):
    """In the run's process: reports a dead Lava process (with its model's traceback)
    and obeys the parent's ``terminate`` (time limit)."""

    def __init__(self, holder: dict[str, Any], cmd: Any, die: Callable[[str, str, int], None]
                 ) -> None:
        super().__init__(name="nirbridge-lava-watchdog", daemon=True)
        self.holder, self.cmd, self.die = holder, cmd, die
        self.lock = threading.Lock()
        self.stopping = False
        self.first = ""  # the first model exception's own line, once reported

    def actors(self) -> list[Any]:
        root = self.holder.get("root")
        runtime = getattr(root, "_runtime", None)
        infra = getattr(runtime, "_messaging_infrastructure", None)
        try:
            return list(getattr(infra, "actors", None) or [])
        except TypeError:
            return []

    @staticmethod
    def _exited(actor: Any) -> bool:
        try:
            return bool(multiprocessing.connection.wait([actor.sentinel], timeout=0))
        except (ValueError, OSError, AttributeError):
            return False

    def labels(self) -> list[str]:
        """Names of the actors, in Lava's order: one per process model, then services."""
        root = self.holder.get("root")
        executable = getattr(getattr(root, "_runtime", None), "_executable", None)
        builders = getattr(executable, "proc_builders", None) or {}
        out = []
        for proc, builder in builders.items():
            model = getattr(getattr(builder, "proc_model", None), "__name__", "?")
            out.append(f"{model} (process '{getattr(proc, 'name', '?')}')")
        return out

    def report(self, dead: Iterable[Any] = ()) -> str:
        """Tracebacks of every Lava process that raised, and notes on silent deaths."""
        texts = []
        dead = list(dead)
        labels = self.labels()
        for i, actor in enumerate(self.actors()):
            exc = getattr(actor, "_exception", None)
            if exc is None and not getattr(actor, "_is_done", True):
                try:
                    if actor._pconn.poll():
                        exc = actor._pconn.recv()
                        actor._exception = exc
                except (OSError, EOFError, ValueError):
                    exc = None
            who = labels[i] if i < len(labels) else "runtime service"
            if exc:
                self.first = self.first or _last_line(exc[1])
                texts.append(f"--- exception in Lava process {who} ---\n{exc[1].rstrip()}")
            elif actor in dead:
                texts.append(f"--- Lava process {who} ended without a Python exception ---")
        return "\n".join(texts)

    def run(self) -> None:
        while True:
            try:
                if self.cmd.poll(0.05):
                    if self.cmd.recv() == "terminate":
                        self.die("timeout", self.report(), 2)
            except (EOFError, OSError):
                self.die("orphaned", "the parent process went away", 3)
            with self.lock:
                if self.stopping:
                    return
                dead = [a for a in self.actors() if self._exited(a)]
            if dead:
                time.sleep(0.3)  # let Lava's own join read what it will
                self.die("model", self.report(dead), 1)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
        self.join(timeout=5)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _prepare_lava_import() -> None:
    """Lava sets the start method to 'fork' at import and fails if one is set: make its
    import possible here (the run's own process), whatever the parent had chosen."""
    if _LAVA_RUNTIME_MODULE not in sys.modules:
        multiprocessing.set_start_method(None, force=True)
    else:
        multiprocessing.set_start_method("fork", force=True)
    from nirbridge import _lava_compat

    _lava_compat.install()


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _make(path: str, key: str, kwargs: dict[str, Any]) -> Any:
    """Instantiate Process ``path`` with ``kwargs``, named ``key`` where it takes a name."""
    cls = _resolve(path)
    params = inspect.signature(cls.__init__).parameters
    if "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = dict(kwargs, name=key)
    return cls(**kwargs)


def _child_main(plan: _RunPlan, mode: str, result: Any, cmd: Any, steps_per_call: int) -> None:
    """Body of the run's process (forked); never returns (``os._exit``)."""
    os.setsid()  # own process group: everything Lava starts can be found and ended
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    send_lock, dying = threading.Lock(), threading.Lock()

    def send(msg: Any) -> None:
        with send_lock:
            result.send(msg)

    def die(kind: str, text: str, code: int, summary: str = "") -> None:
        if not dying.acquire(blocking=False):
            while True:  # the other thread is ending this process
                time.sleep(1)
        me = os.getpid()
        members = [p for p in process_group_members(os.getpgrp()) if p != me]
        shm = _kill_pids(members) | _shm_mapped_by([me])
        for pid in members:  # Lava's processes are this process's children: reap them
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        _unlink_shm(shm)
        try:
            send(("error", {"kind": kind, "text": text, "shm": sorted(shm),
                            "summary": summary or watchdog.first or _last_line(text)}))
        except Exception:  # noqa: BLE001 - the parent may be gone
            pass
        os._exit(code)

    holder: dict[str, Any] = {}
    watchdog = _Watchdog(holder, cmd, die)
    try:
        _prepare_lava_import()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        procs = {key: _make(cls, key, kw) for key, cls, kw in plan.procs}
        for a, pa, z, pz in plan.connections:
            getattr(procs[a], pa).connect(getattr(procs[z], pz))
        for a, ref, z, var in plan.var_refs:
            getattr(procs[a], ref).connect_var(getattr(procs[z], var))
        root = procs[plan.procs[0][0]]
        holder["root"] = root
        watchdog.start()
        t0 = time.perf_counter()
        root.create_runtime(run_cfg=Loihi2SimCfg(select_tag=mode))
        t1 = time.perf_counter()
        done = 0
        while done < plan.total:
            n = min(steps_per_call, plan.total - done)
            root.run(condition=RunSteps(num_steps=n))
            done += n
            send(("progress", done))
        t2 = time.perf_counter()
        watchdog.stop()
        root.stop()
        t3 = time.perf_counter()
        send(("ok", {"compile": t1 - t0, "run": t2 - t1, "stop": t3 - t2}))
        os._exit(0)
    except BaseException:  # noqa: BLE001 - everything goes to the parent
        text = traceback.format_exc()
        models = watchdog.report() if holder.get("root") is not None else ""
        die("runtime", f"{models}\n--- in the run's main thread ---\n{text}".strip(), 1,
            summary=watchdog.first or _last_line(text))


def _preload_lava() -> None:
    """Import Lava here once so forked runs need not, when that has no side effect
    beyond Lava's own (it sets the multiprocessing start method to 'fork')."""
    if _LAVA_RUNTIME_MODULE in sys.modules:
        return
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        return  # Lava's import would fail here; the run's process imports it instead
    try:
        for mod in ("lava.magma.core.run_configs", "lava.magma.core.run_conditions",
                    "lava.proc.io.source", "lava.proc.dense.process",
                    "lava.proc.sparse.process", "lava.proc.lif.process", f"{_PROCS}.neurons",
                    f"{_PROCS}.plumbing", f"{_PROCS}.fixed"):
            importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - the run will report it properly
        log.debug("could not preload Lava: %s", exc)


def _run_in_child(plan: _RunPlan, mode: str, timeout_s: float | None,
                  on_progress: Callable[[int], None]) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    res_recv, res_send = ctx.Pipe(duplex=False)
    cmd_recv, cmd_send = ctx.Pipe(duplex=False)
    steps_per_call = max(200, plan.total // 50)
    proc = ctx.Process(target=_child_main, name="nirbridge-lava-run",
                       args=(plan, mode, res_send, cmd_recv, steps_per_call))
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    outcome: tuple[str, Any] | None = None
    last = 0
    shm: set[str] = set()
    proc.start()
    res_send.close()
    cmd_recv.close()

    def take(msg: Any) -> tuple[str, Any] | None:
        nonlocal last
        kind, payload = msg
        if kind == "progress":
            on_progress(payload - last)
            last = payload
            return None
        if kind == "error":
            shm.update(payload.get("shm", ()))
        return kind, payload

    try:
        while outcome is None:
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            if res_recv.poll(wait):
                try:
                    outcome = take(res_recv.recv())
                except EOFError:
                    outcome = ("died", None)
            elif not proc.is_alive() and not res_recv.poll(0):
                outcome = ("died", None)
            elif deadline is not None and time.monotonic() >= deadline:
                outcome = ("timeout", None)
    except BaseException:
        outcome = ("interrupted", None)
        raise
    finally:
        if outcome is None or outcome[0] != "ok":
            try:
                cmd_send.send("terminate")
            except OSError:
                pass
            grace = time.monotonic() + 3.0
            while proc.is_alive() and time.monotonic() < grace:
                try:
                    if res_recv.poll(0.05):
                        msg = take(res_recv.recv())
                        if outcome and outcome[0] == "timeout" and msg and msg[0] == "error":
                            outcome = ("timeout", msg[1])
                except (EOFError, OSError):
                    time.sleep(0.05)
        proc.join(timeout=5.0 if outcome and outcome[0] == "ok" else 0.5)
        # the leader is gone or stuck: end every process still in the run's group
        if proc.is_alive():
            leftover = process_group_members(proc.pid) or [proc.pid]
        else:
            leftover = process_group_members(proc.pid)
        if leftover and os.getpgid(0) != proc.pid:
            shm |= _kill_pids(leftover)
        proc.join(timeout=5.0)
        _unlink_shm(shm)
        for conn in (res_recv, cmd_send):
            conn.close()
        pid, exitcode = proc.pid, proc.exitcode
        if exitcode is not None:
            proc.close()
    kind, payload = outcome
    if kind == "ok":
        return dict(payload, pid=pid)
    if kind == "timeout":
        err: SimulationError = SimulationTimeout(
            f"the Lava run exceeded its time limit of {timeout_s:g} s ({last} of "
            f"{plan.total} steps done); it was stopped and its processes ended"
            + (f"\n{payload['text']}" if payload and payload.get("text") else ""))
    elif kind == "died":
        err = SimulationError(f"the Lava run's process ended unexpectedly (exit code "
                              f"{exitcode}; {last} of {plan.total} steps done)")
    elif kind == "interrupted":  # pragma: no cover - re-raised above
        err = SimulationError("the Lava run was interrupted")
    else:
        text = payload.get("text", "")
        what = ("a Lava process model raised" if "--- exception in Lava process" in text
                else "the Lava run failed:")
        err = SimulationError(f"{what} {payload.get('summary', '')} ({mode}; {last} of "
                              f"{plan.total} steps done)\n{text}")
    err.child_pid = pid  # type: ignore[attr-defined]
    err.shm_segments = sorted(shm)  # type: ignore[attr-defined]
    raise err


# --------------------------------------------------------------------------- runner
def _default_chunk(net: LavaNetwork, t: int, b: int, record: bool) -> int:
    per_sample = sum(net.streams[n].size for n in net.inputs)
    if record:
        per_sample += 3 * sum(s.size for s in net.streams.values())
    else:
        per_sample += sum(net.streams[n].size for n in net.outputs)
    per_sample *= 8 * t
    return max(1, min(b, (256 << 20) // max(per_sample, 1)))


def _record_set(net: LavaNetwork, record: bool | Iterable[str]) -> set[str]:
    if record is True:
        return set(net.streams)
    if not record:
        return set()
    return set(record) & set(net.streams)


def run_lava(graph_or_lowered: nir.NIRGraph | LavaNetwork, inputs: Any,
             mode: str = "floating_pt", *, timeout_s: float | None = 600.0,
             record: bool | Iterable[str] = False, dt: float | None = None,
             samples_per_run: int | None = None, progress: bool | None = None,
             sparse: bool | str = "auto", quant: Any = None, target: Any = None,
             stock_lif: bool = True) -> LavaResult:
    """Run a graph (lowered here for ``mode``) or a :class:`LavaNetwork` on ``inputs``.

    ``inputs``: ``[T, B, ...]`` numpy/torch (a dict by Input node for several inputs).
    Samples are run back to back in one compiled network per run of ``samples_per_run``
    samples (default: as many as fit in ~256 MB of buffers), each run in its own child
    process limited to ``timeout_s`` seconds (None: no limit). ``record``: True or node
    names, for per-node outputs (and neuron states/inputs) in ``LavaResult.records``.
    ``progress``: a tqdm bar (None: only on a terminal). ``quant``/``stock_lif``: see
    :func:`lower` (fixed_pt; ignored when a :class:`LavaNetwork` is given); ``target``: a
    target profile name or TOML path, the same as ``quant=`` given a profile. In fixed_pt
    the inputs are quantized as the golden run quantizes them
    (:func:`~nirbridge.quantize.quantize_input`).

    Raises :class:`SimulationTimeout` past the limit, :class:`SimulationError` with the
    failing process model's own traceback, :class:`LoweringError`/:class:`InputError`
    (and :class:`~nirbridge.errors.QuantizationError` in fixed_pt) before starting
    anything.
    """
    if target is not None:
        if quant is not None:
            raise LoweringError("give quant= or target=, not both")
        if mode == "fixed_pt":
            quant = target
    if isinstance(graph_or_lowered, LavaNetwork):
        net = graph_or_lowered
    else:
        net = lower(graph_or_lowered, mode, dt=dt, sparse=sparse, quant=quant,
                    stock_lif=stock_lif)
    x = _check_inputs(net, inputs)
    input_sat: dict[str, int] = {}
    if net.mode == "fixed_pt":
        x, input_sat = _quantize_inputs(net, x)
    t, b = next(iter(x.values())).shape[:2]
    rec_nodes = _record_set(net, record)
    chunk = int(samples_per_run) if samples_per_run else _default_chunk(net, t, b,
                                                                        bool(rec_nodes))
    if chunk < 1:
        raise InputError(f"samples_per_run={samples_per_run}; give a positive number")
    starts = list(range(0, b, chunk))
    total_steps = sum(min(chunk, b - s) * t + net.max_latency for s in starts)
    _preload_lava()
    from tqdm import tqdm

    wall = time.perf_counter()
    seconds = {"compile": 0.0, "run": 0.0, "stop": 0.0}
    parts: list[dict[str, dict[str, np.ndarray]]] = []
    pids: list[int] = []
    with tqdm(total=total_steps, unit="step", desc=f"lava {net.mode}", leave=False,
              disable=None if progress is None else not progress) as bar:
        for s in starts:
            sub = {k: v[:, s: s + chunk] for k, v in x.items()}
            tmpdir = tempfile.mkdtemp(prefix="nirbridge-lava-")
            try:
                plan = _plan_run(net, sub, rec_nodes, tmpdir)
                times = _run_in_child(plan, net.mode, timeout_s, bar.update)
                pids.append(int(times["pid"]))
                for k in seconds:
                    seconds[k] += float(times.get(k, 0.0))
                parts.append(_read_probes(net, plan))
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
    seconds["wall"] = time.perf_counter() - wall
    if net.mode == "fixed_pt":
        result = _assemble_fixed(net, x, parts, rec_nodes, len(starts), total_steps, seconds,
                                 input_sat)
    else:
        result = _assemble(net, x, parts, rec_nodes, len(starts), total_steps, seconds)
    result.child_pids = pids
    return result


def _quantize_inputs(net: LavaNetwork, x: Mapping[str, np.ndarray]
                     ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """fixed_pt: the inputs as the golden run's integers, and their saturation events."""
    from nirbridge import fixed_point as fx
    from nirbridge.quantize import quantize_input

    out: dict[str, np.ndarray] = {}
    sat: dict[str, int] = {}
    for name, xi in x.items():
        counter = fx.SaturationCounter()
        q = quantize_input(xi, net.quant.layers[name], counter)
        if np.any(np.abs(q) > np.iinfo(np.int32).max):
            raise InputError(f"input for node '{name}' does not fit Lava's int32 source")
        out[name] = q
        sat[name] = counter.total
    return out, sat


def _read_probes(net: LavaNetwork, plan: _RunPlan) -> dict[str, dict[str, np.ndarray]]:
    files: dict[str, dict[str, np.ndarray]] = {}
    for key, obs in plan.observed.items():
        if not os.path.exists(obs.path):
            raise SimulationError(f"the Lava run finished but probe '{key}' wrote nothing "
                                  f"({obs.path})")
        with np.load(obs.path) as data:
            files[key] = {k: data[k] for k in data.files}
    per_node: dict[str, dict[str, np.ndarray]] = {}
    for node, key in plan.node_probe.items():
        per_node[node] = files[key]
    return per_node


def _assemble(net: LavaNetwork, x: Mapping[str, np.ndarray],
              parts: list[dict[str, dict[str, np.ndarray]]], rec_nodes: set[str], runs: int,
              steps: int, seconds: dict[str, float]) -> LavaResult:
    t, b = next(iter(x.values())).shape[:2]

    def shape_of(node: str) -> tuple[int, ...]:
        return net.streams[node].shape

    def cat(node: str, field_: str, axis: int) -> np.ndarray | None:
        arrays = [p[node][field_] for p in parts if field_ in p[node]]
        return np.concatenate(arrays, axis=axis) if arrays else None

    counts: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    extra: dict[str, dict[str, np.ndarray]] = {}
    for node in parts[0]:
        shp = shape_of(node)
        counts[node] = cat(node, "counts", 0).reshape(b, *shp)
        out = cat(node, "output", 1)
        if out is not None:
            values[node] = out.reshape(t, b, *shp)
        extra[node] = {}
        for k in parts[0][node]:
            if k.startswith("state_") or k == "input":
                extra[node][k] = cat(node, k, 1).reshape(t, b, *shp)
    for name, xi in x.items():
        counts[name] = np.count_nonzero(xi, axis=0).reshape(b, *shape_of(name))
        values[name] = xi
    outs = {n: values[n] for n in net.outputs}
    outputs: Any = outs[net.outputs[0]] if len(outs) == 1 else outs
    records = None
    if rec_nodes:
        records = {}
        for node in net.streams:
            if node not in rec_nodes or node not in values:
                continue
            ex = extra.get(node, {})
            inp = ex.get("input")
            records[node] = RunRecord(
                input=None if inp is None else torch.from_numpy(inp),
                output=torch.from_numpy(values[node]),
                states={k[len("state_"):]: torch.from_numpy(v) for k, v in ex.items()
                        if k.startswith("state_")})
    return LavaResult(outputs, counts, records, runs, steps, seconds)


def _assemble_fixed(net: LavaNetwork, x: Mapping[str, np.ndarray],
                    parts: list[dict[str, dict[str, np.ndarray]]], rec_nodes: set[str],
                    runs: int, steps: int, seconds: dict[str, float],
                    input_sat: Mapping[str, int]) -> LavaResult:
    """fixed_pt results: integers as the golden run records them, real-valued outputs."""
    from nirbridge.quantize import FixedPointRecord, QuantizedNeuron, QuantizedOutput

    t, b = next(iter(x.values())).shape[:2]
    layers = net.quant.layers

    def cat(node: str, field_: str, axis: int) -> np.ndarray | None:
        arrays = [p[node][field_] for p in parts if field_ in p[node]]
        return np.concatenate(arrays, axis=axis) if arrays else None

    counts: dict[str, np.ndarray] = {}
    ints: dict[str, np.ndarray] = {}
    extra: dict[str, dict[str, np.ndarray]] = {}
    saturations: dict[str, dict[str, int]] = {}
    for node in parts[0]:
        shp = net.streams[node].shape
        counts[node] = cat(node, "counts", 0).reshape(b, *shp)
        out = cat(node, "output", 1)
        if out is not None:
            ints[node] = out.astype(np.int64, copy=False).reshape(t, b, *shp)
        extra[node] = {k: cat(node, k, 1).astype(np.int64, copy=False).reshape(t, b, *shp)
                       for k in parts[0][node] if k.startswith("state_") or k == "input"}
        if node in net.neurons:
            sat: dict[str, int] = {}
            for part in parts:
                for k, v in part[node].items():
                    if k.startswith("sat_"):
                        sat[k[4:]] = sat.get(k[4:], 0) + int(v)
            if sat:
                saturations[node] = sat
    for name, xi in x.items():
        shp = net.streams[name].shape
        counts[name] = np.count_nonzero(xi, axis=0).reshape(b, *shp)
        ints[name] = xi.astype(np.int64, copy=False)

    def real(node: str) -> np.ndarray:
        return ints[node].astype(np.float64) * 2.0 ** -net.streams[node].frac

    outs = {n: real(n) for n in net.outputs}
    outputs: Any = outs[net.outputs[0]] if len(outs) == 1 else outs
    fixed_records: dict[str, FixedPointRecord] | None = None
    records: dict[str, RunRecord] | None = None
    if rec_nodes:
        fixed_records, records = {}, {}
        preds = predecessors(net.graph)
        for node in net.streams:
            if node not in rec_nodes or node not in ints:
                continue
            layer = layers.get(node)
            rec = FixedPointRecord(output=ints[node],
                                   frac_bits={"output": net.streams[node].frac})
            ex = extra.get(node, {})
            if isinstance(layer, QuantizedNeuron):
                rec.input = ex.get("input")
                rec.states = {k[len("state_"):]: v for k, v in ex.items()
                              if k.startswith("state_")}
                rec.frac_bits["input"] = layer.in_frac
                for f in rec.states:
                    rec.frac_bits[f] = {"b": getattr(layer.params, "b_frac", layer.frac_bits),
                                        "z": 0}.get(f, layer.frac_bits)
                rec.saturations = dict(saturations.get(node, {}))
            elif node in x:
                rec.saturations = {"input": int(input_sat.get(node, 0))}
            elif isinstance(layer, QuantizedOutput):
                rec.input = rec.output
                rec.frac_bits["input"] = rec.frac_bits["output"]
            elif len(preds[node]) == 1 and preds[node][0] in ints:
                rec.input = ints[preds[node][0]]
                rec.frac_bits["input"] = net.streams[preds[node][0]].frac
            fixed_records[node] = rec
            records[node] = RunRecord(
                input=None if rec.input is None else torch.from_numpy(rec.real("input")),
                output=torch.from_numpy(rec.real("output")),
                states={k: torch.from_numpy(rec.real(k)) for k in rec.states})
    quantization: list[dict[str, Any]] = []
    q = net.quant
    for node in q.order:
        if node in x:
            row: dict[str, Any] = dict(name=node, node_type="Input", kind="input",
                                       scale={"frac_bits": q.layers[node].frac_bits},
                                       clipped=0, zeroed=0, max_abs_error=0.0, fields={},
                                       notes=[])
            row["saturated"] = int(input_sat.get(node, 0))
        elif node in q.report:
            row = q.report[node].to_dict()
            row["saturated"] = (sum(saturations[node].values()) if node in saturations
                                else None)
        else:
            continue
        row["node"] = node
        row["lava_process"] = process_label(net, node) if node in net.procs else None
        quantization.append(row)
    result = LavaResult(outputs, counts, records, runs, steps, seconds)
    result.fixed_records = fixed_records
    result.saturations = saturations
    result.quantization = quantization
    return result


def run(graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] = False,
        mode: str = "floating_pt", **options: Any):
    """The reference-shaped entry :func:`nirbridge.run` has always called (``backend=
    "lava"``): the outputs as float64 torch tensors ``[T, B, ...]`` (a dict for several
    Output nodes), and ``(outputs, records)`` when ``record`` is set. ``options`` go to
    :func:`run_lava`. New code uses :data:`FLOAT_BACKEND`/:data:`FIXED_BACKEND`."""
    res = run_lava(graph, inputs, mode, record=record, **options)
    if isinstance(res.outputs, dict):
        out: Any = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.outputs.items()}
    else:
        out = torch.from_numpy(np.ascontiguousarray(res.outputs))
    return (out, res.records or {}) if record else out


#: Options of :func:`lower` and of :func:`run_lava` the Lava backends pass on.
_LOWER_OPTIONS = ("sparse",)
_FIXED_LOWER_OPTIONS = ("sparse", "stock_lif")
_RUN_OPTIONS = ("timeout_s", "samples_per_run", "progress")


def lava_available() -> bool:
    """Whether lava-nc is installed (found, not imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec("lava.magma") is not None
    except ImportError:
        return False


class LavaBackend:
    """A Lava backend (:class:`~nirbridge.backends.Backend`) for one ``mode``.

    Options: ``sparse`` (see :func:`lower`), ``timeout_s``, ``samples_per_run``,
    ``progress`` (see :func:`run_lava`); fixed_pt also ``stock_lif`` and the quantization
    options of :func:`nirbridge.backends.fixed.quantized_for` (by default the ``loihi2``
    profile with the input format fitted to the data, as the ``fixed`` backend picks it:
    the two then compute the same integers).
    """

    def __init__(self, name: str, mode: str, description: str) -> None:
        if mode not in MODES:
            raise LoweringError(f"mode={mode!r}; use one of {MODES}")
        self.name, self.mode, self.description = name, mode, description

    def _split(self, options: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        from nirbridge.backends._base import check_options
        from nirbridge.backends.fixed import QUANT_OPTIONS

        fixed = self.mode == "fixed_pt"
        lower_names = _FIXED_LOWER_OPTIONS if fixed else _LOWER_OPTIONS
        quant_names = QUANT_OPTIONS if fixed else ()
        check_options(self.name, options, (*lower_names, *_RUN_OPTIONS, *quant_names))
        return ({k: v for k, v in options.items() if k in lower_names},
                {k: v for k, v in options.items() if k in _RUN_OPTIONS},
                {k: v for k, v in options.items() if k in quant_names})

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why Lava cannot run ``graph`` in this mode: lava-nc missing, the graph's
        structure, nodes without a Lava lowering, or what lowering (and, in fixed_pt,
        quantizing) refuses. Lowers the graph; starts no Lava process."""
        from nirbridge.backends._base import error_reason, graph_issues

        lower_kw, _, quant_kw = self._split(options)
        reasons = [] if lava_available() else ["lava-nc is not installed (pip install lava-nc)"]
        structure = graph_issues(graph)
        if structure:
            return reasons + structure
        if self.mode == "floating_pt":  # every unmappable node, not just the first
            unmapped = []
            for name, node in graph.nodes.items():
                if isinstance(node, (nir.Input, nir.Output, nir.Flatten, nir.Scale,
                                     *LINEAR_NODES)):
                    continue
                if not is_neuron(node):  # every registered neuron lowers (FloatNeuron)
                    unmapped.append(f"node '{name}' ({type(node).__name__}) has no Lava "
                                    "lowering")
            if unmapped:
                return reasons + unmapped
        try:
            quant = None
            if self.mode == "fixed_pt":
                from nirbridge.backends.fixed import quantized_for

                quant = quantized_for(graph, None, **quant_kw)
            lower(graph, self.mode, quant=quant, **lower_kw)
        except NirbridgeError as exc:
            reasons.append(error_reason(exc))
        return reasons

    def run(self, graph: nir.NIRGraph, inputs: Any, *,
            record: bool | Iterable[str] | None = False, dt: float | None = None,
            **options: Any):
        """Lower ``graph`` (quantized first in fixed_pt) and run it with :func:`run_lava`;
        a :class:`~nirbridge.backends.RunResult`."""
        from nirbridge.backends._base import RunResult, to_numpy

        lower_kw, run_kw, quant_kw = self._split(options)
        quant = None
        if self.mode == "fixed_pt":
            from nirbridge.backends.fixed import quantized_for

            quant = quantized_for(graph, inputs, dt=dt, **quant_kw)
        net = lower(graph, self.mode, dt=dt, quant=quant, **lower_kw)
        res = run_lava(net, inputs, record=record or False, **run_kw)
        info: dict[str, Any] = {
            "backend": self.name, "mode": self.mode, "dt": net.dt, "seconds": dict(res.seconds),
            "runs": res.runs, "steps": res.steps, "child_pids": list(res.child_pids),
            "counts": res.counts,
        }
        if self.mode == "fixed_pt":
            info.update(quantized=net.quant, quantization=res.quantization,
                        saturations=res.saturations, fixed_records=res.fixed_records)
        return RunResult(to_numpy(res.outputs), dict(res.records or {}), info)


#: Lava floating_pt and bit-accurate fixed_pt, as listed in
#: :data:`nirbridge.backends.BACKENDS`.
FLOAT_BACKEND = LavaBackend("lava-float", "floating_pt",
                            "Lava floating_pt simulation (spike-exact against the reference)")
FIXED_BACKEND = LavaBackend("lava-fixed", "fixed_pt",
                            "Lava bit-accurate fixed_pt simulation of Loihi 2 (integer-exact "
                            "against fixed)")


__all__ = [
    "FIXED_BACKEND",
    "FLOAT_BACKEND",
    "MODES",
    "LavaBackend",
    "LavaNetwork",
    "LavaResult",
    "LinearMap",
    "NeuronContext",
    "NeuronLowering",
    "check_neuron_params",
    "lower_float_neuron",
    "ProcSpec",
    "Stream",
    "lava_available",
    "linear_map",
    "lower",
    "process_group_members",
    "process_label",
    "run",
    "run_lava",
]
