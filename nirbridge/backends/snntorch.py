"""The ``snntorch`` backend: a graph run by snnTorch 1.0's own ``import_from_nir``.

What a collaborator who loads the file into snnTorch computes. ``run`` hands the graph
(subgraphs flattened) to ``snntorch.import_from_nir``, which builds a nirtorch
``nir_to_torch`` ``torch.fx.GraphModule`` of snnTorch modules (``nn.Linear``, ``Leaky``,
``Synaptic`` ... with ``init_hidden=True``: every neuron keeps its state inside), resets
every neuron, and steps it over ``[T, B, ...]`` one time step at a time, handing nirtorch's
state dictionary back at every step, as snnTorch's users do.

**What it reads and how** (:func:`nirbridge.export.frontends.snntorch.from_file`, which
:meth:`SnnTorchBackend.reading` returns as the graph computed, in nirbridge's exact nodes):
``LIF`` becomes a ``Leaky`` and ``CubaLIF`` a ``Synaptic`` with ``β = 1 − dt/τ``
(``α = 1 − dt/τ_syn``) at snnTorch's ``dt = 1e-4`` whatever the graph's dt, the input
scale ``r·dt/τ`` (``w_in·dt/τ_syn``) folded into the threshold, reset to zero at the
spike; ``IF`` a ``Leaky`` with ``β = 0.9`` and subtractive reset; every parameter and
weight in float32. Where that departs from NIR's definition, :meth:`~SnnTorchBackend.reading`
says so node by node.

A ``LIF`` is read exactly as NIR defines it (up to rounding) when ``v_leak = 0``,
``v_reset = 0``, ``r = τ/dt`` and the graph's ``dt = 1e-4``: NIR's forward-Euler step is
then ``v ← (1 − dt/τ)·v + x`` with a reset to 0 at once, which is snnTorch's ``Leaky``
with ``reset_mechanism="zero"``, ``reset_delay=False``. It is still not bit-exact: β is
held in float32, and the two compute the same sum in another order
(``v + (dt/τ)(−v + r·x)`` against ``β·v + x``: last-bit differences of the membrane).
:attr:`SnnTorchBackend.tolerance` gives the measured bound.

**Dtype.** ``dtype="float64"`` (default): the parameters snnTorch builds (float32 values)
run in float64 arithmetic, so that what differs from the reference is snnTorch's
*reading*, not float32 rounding of the arithmetic; snnTorch's spike function returns
float32 whatever its input, so a forward hook casts every neuron's output to float64
(exact: spikes are 0/1). ``dtype="float32"``: snnTorch's native float32.

**Batching.** snnTorch's reader makes NIR's ``Flatten`` an ``nn.Flatten(start_dim,
end_dim)`` with the file's dims, which NIR counts without the batch axis and torch with
it. A graph with a ``Flatten`` whose ``start_dim`` or ``end_dim`` is ≥ 0 is therefore run
one sample at a time, unbatched (where torch's dims are NIR's); every other graph runs
the whole batch per step (``info["batched"]`` says which).

**Refused** by :meth:`~SnnTorchBackend.check`: recurrent graphs (:data:`RECURRENT`:
snnTorch 1.0's ``import_from_nir`` crashes upstream on the recurrent files its own exporter
writes, ``AttributeError: 'GraphModule' object has no attribute 'items'``, and miswires
the others), nirbridge's custom nodes (snnTorch's reader knows only NIR's
node types), several Input or Output nodes (nirtorch's executor runs one of each), node
names that collide once nirtorch sanitizes them, and whatever ``from_file`` finds that
snnTorch's reader fails on or refuses (``v_leak ≠ 0``, a threshold that differs between
neurons, an ``IF`` that is not the last layer, a node type it has no module for ...).

snnTorch keeps every neuron it ever built in a class-level list
(``snntorch.SpikingNeuron.instances``); ``run`` removes the ones it built when it is done,
so that repeated runs do not keep their models alive. ``import_from_nir`` prints; that
output goes to this module's logger (DEBUG).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import keyword
import logging
import time
from collections.abc import Iterable
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends._base import (
    Reading,
    Record,
    RunResult,
    Tolerance,
    check_options,
    error_reason,
    graph_issues,
    to_numpy,
)
from nirbridge.backends.reference import RunRecord
from nirbridge.errors import InputError, NirbridgeError, SimulationError, UnsupportedLayerError
from nirbridge.export.frontends import snntorch as frontend
from nirbridge.graph import flatten_subgraphs, is_recurrent
from nirbridge.passes import metadata_dt

log = logging.getLogger(__name__)

#: The dt snnTorch's reader assumes for every τ (it reads none from the file).
DT = frontend.DT
#: What ``dtype=`` takes.
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
#: Why a recurrent graph cannot run: what snnTorch 1.0 does with one.
RECURRENT = ("the graph is recurrent, and snnTorch 1.0's import_from_nir cannot read recurrence: "
             "it regroups each neuron and its recurrent Affine/Linear into a subgraph, then "
             "either crashes upstream (AttributeError: 'GraphModule' object has no attribute "
             "'items': nirtorch builds the subgraph twice when its input comes later in the "
             "node order, as in the files snnTorch's own exporter writes) or, where it does "
             "not, feeds the subgraph's input into the recurrent weights instead of the "
             "neuron (it computes neuron(W_rec·(x + s[t−1]) + b_rec), not NIR's "
             "neuron(x + W_rec·s[t−1] + b_rec)); run it on the reference backend")

_RUN_OPTIONS = ("dtype",)
_READING_OPTIONS = ("dtype", "dt")


# ---------------------------------------------------------------------------- options
def _dtype(options: dict[str, Any]) -> torch.dtype:
    from nirbridge.backends._nirtorch import run_dtype  # the framework backends' one option

    return run_dtype(options)


def _sanitized(name: str) -> str:
    """The attribute name nirtorch's ``nir_to_torch`` gives node ``name`` in its
    GraphModule (dots become underscores, a Python keyword gets a prefix)."""
    name = name.replace(".", "_")
    return "nir_node_" + name if keyword.iskeyword(name) else name


def _is_custom(node: nir.NIRNode) -> bool:
    """A node type defined outside NIR (nirbridge's custom neurons and layers)."""
    return type(node).__module__.split(".")[0] != "nir"


def _own_reasons(flat: nir.NIRGraph) -> list[str]:
    """What snnTorch's reader and nirtorch's executor cannot run in a flattened graph whose
    structure is otherwise sound."""
    if is_recurrent(flat):
        return [RECURRENT]
    reasons = []
    custom = [f"'{n}' ({type(v).__name__})" for n, v in flat.nodes.items() if _is_custom(v)]
    if custom:
        reasons.append(f"node{'s' if len(custom) > 1 else ''} {', '.join(custom)}: nirbridge "
                       "custom node types, and snnTorch's reader knows only NIR's own; run "
                       "on the reference, or write the lossy standard-node fallback")
    for kind in (nir.Input, nir.Output):
        names = [n for n, v in flat.nodes.items() if isinstance(v, kind)]
        if len(names) > 1:
            reasons.append(f"the graph has {len(names)} {kind.__name__} nodes "
                           f"({', '.join(names)}); nirtorch's nir_to_torch, on which "
                           f"import_from_nir builds, runs one")
    seen: dict[str, str] = {}
    for name in flat.nodes:
        other = seen.setdefault(_sanitized(name), name)
        if other != name:
            reasons.append(f"nodes '{other}' and '{name}' both become '{_sanitized(name)}' "
                           "in nirtorch's GraphModule; rename one")
    return reasons


def _flat_copy(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with subgraphs flattened, in a new graph object: snnTorch's reader edits
    the graph it is given (edges, nodes)."""
    flat = flatten_subgraphs(graph)
    return nir.NIRGraph(nodes=dict(flat.nodes), edges=list(flat.edges),
                        metadata=dict(flat.metadata or {}), type_check=False)


def _batched(flat: nir.NIRGraph) -> bool:
    """Whether torch's dims of every Flatten equal NIR's on a batched tensor (only
    negative ones do)."""
    return not any(isinstance(v, nir.Flatten) and (int(v.start_dim) >= 0 or int(v.end_dim) >= 0)
                   for v in flat.nodes.values())


# ----------------------------------------------------------------------------- notes
def _values(a: Any) -> str:
    u = np.unique(np.asarray(a, dtype=np.float64))
    return f"{u[0]:.9g}" if u.size == 1 else f"{u.min():.9g}…{u.max():.9g} ({u.size} values)"


def _float32_note(name: str, node: nir.NIRNode, field: str, intended: Any, held: Any,
                  what: str) -> list[str]:
    diff = np.abs(np.asarray(held, dtype=np.float64) - np.asarray(intended, dtype=np.float64))
    if not diff.size or float(diff.max()) == 0.0:
        return []
    return [f"node '{name}' ({type(node).__name__}) {field}: {what} held in float32 "
            f"(max |Δ| = {float(diff.max()):.3g})"]


def _dt_note(name: str, node: nir.NIRNode, fields: Iterable[str], dt: float | None) -> list[str]:
    taus = ", ".join(f"{f} = {_values(getattr(node, f))}" for f in fields)
    if dt is None:
        return [f"node '{name}' ({type(node).__name__}): the graph has no dt; snnTorch reads "
                f"{taus} at its dt = {DT:g} (β = 1 − {DT:g}/τ)"]
    if np.isclose(dt, DT, rtol=1e-12, atol=0):
        return []
    return [f"node '{name}' ({type(node).__name__}) {'/'.join(fields)}: snnTorch reads {taus} "
            f"at its dt = {DT:g}, not the graph's dt = {dt:g}: β = 1 − {DT:g}/τ instead of "
            f"NIR's 1 − {dt:g}/τ, other dynamics"]


def _scale_note(name: str, node: nir.NIRNode, expr: str, scale: np.ndarray) -> list[str]:
    if np.allclose(scale, 1.0):
        return []
    u = np.unique(scale)
    kind = type(node).__name__
    if np.allclose(scale, u[0], rtol=1e-9, atol=0):  # one value, to the last bits
        return [f"node '{name}' ({kind}) {expr.split('·')[0]}: the input scale {expr} = "
                f"{u[0]:.9g} is folded into the threshold (v_threshold/{u[0]:.9g}): the same "
                f"spikes up to rounding, and the membrane held is NIR's v/{u[0]:.9g}"]
    return [f"node '{name}' ({kind}) {expr.split('·')[0]}: the input scale {expr} differs "
            f"between neurons ({_values(scale)}), and snnTorch divides the threshold by one "
            f"value for all of them: the others fire at another input level"]


def _neuron_notes(name: str, node: nir.NIRNode, read: nir.NIRNode, dt: float | None
                  ) -> list[str]:
    notes = []
    if isinstance(node, nir.LIF):
        notes += _dt_note(name, node, ["tau"], dt)
        scale = np.asarray(node.r * DT / node.tau, dtype=np.float64)
        notes += _scale_note(name, node, "r·dt/τ", scale)
        notes += _float32_note(name, node, "tau", np.clip(1 - DT / node.tau, 0, 1),
                               read.beta, "β = 1 − dt/τ")
        intended = np.asarray(node.v_threshold, dtype=np.float64) / np.unique(scale)[0]
    else:  # CubaLIF
        notes += _dt_note(name, node, ["tau_syn", "tau_mem"], dt)
        scale = np.asarray(node.w_in * (DT / node.tau_syn), dtype=np.float64)
        notes += _scale_note(name, node, "w_in·dt/τ_syn", scale)
        notes += _float32_note(name, node, "tau_syn", np.clip(1 - DT / node.tau_syn, 0, 1),
                               read.alpha, "α = 1 − dt/τ_syn")
        notes += _float32_note(name, node, "tau_mem", np.clip(1 - DT / node.tau_mem, 0, 1),
                               read.beta, "β = 1 − dt/τ_mem")
        intended = np.asarray(node.v_threshold, dtype=np.float64) / scale
    notes += _float32_note(name, node, "v_threshold", np.broadcast_to(intended, np.shape(
        read.v_threshold)), read.v_threshold, "the threshold")
    v_reset = np.asarray(getattr(node, "v_reset", 0.0), dtype=np.float64)
    if not np.allclose(v_reset, 0.0):
        notes.append(f"node '{name}' ({type(node).__name__}) v_reset = {_values(v_reset)}: "
                     "snnTorch resets to 0")
    return notes


def _notes(flat: nir.NIRGraph, read: nir.NIRGraph, dt: float | None) -> list[str]:
    """Where snnTorch's reading ``read`` (from ``from_file``) of ``flat`` departs from
    NIR's definition, node by node."""
    notes: list[str] = []
    for name, node in flat.nodes.items():
        new = read.nodes[name]
        if isinstance(node, (nir.LIF, nir.CubaLIF)):
            notes += _neuron_notes(name, node, new, dt)
        elif isinstance(node, nir.IF):
            notes.append(f"node '{name}' (IF): snnTorch reads IF as a Leaky with β = 0.9 (a "
                         "leak the graph does not have) and subtractive reset")
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)):
            for field in ("weight", "bias"):
                if getattr(node, field, None) is not None and getattr(new, field, None) \
                        is not None and np.shape(getattr(node, field)) == np.shape(
                            getattr(new, field)):
                    notes += _float32_note(name, node, field, getattr(node, field),
                                           getattr(new, field), "the " + field)
    return notes


# ------------------------------------------------------------------------ the backend
class SnnTorchBackend:
    """The ``snntorch`` backend (:class:`~nirbridge.backends.Backend`); see the module
    documentation. Option: ``dtype`` (``"float64"``, default, or ``"float32"``)."""

    name = "snntorch"
    description = ("snnTorch 1.0's own import_from_nir (its Leaky/Synaptic reading at dt = "
                   "1e-4), stepped in float64")
    tolerance = Tolerance(
        "rounding", 1e-6, 1.0,
        "float64 arithmetic on snnTorch's float32 parameters. On graphs it reads as NIR "
        "defines them (LIF/CubaLIF with v_leak = v_reset = 0, r = τ/dt (w_in = τ_syn/dt), "
        "dt = 1e-4) only float32 rounding differs: β, thresholds and weights held in float32, "
        "and NIR's Euler step summed as β·v + x. Measured (β ∈ [0.5, 0.95], T = 16, 80 graphs, "
        "81,920 spike entries): every spike identical; graded outputs within 5.3e-8 of the largest "
        "(0 with float32-valued weights); membranes within 2.7e-7 relative. A spike can "
        "still flip where a membrane lies within that rounding of the threshold")

    # ------------------------------------------------------------------ check, reading
    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why snnTorch cannot run ``graph`` (see the module documentation). Reads the
        graph as snnTorch would; builds no module, runs nothing."""
        check_options(self.name, options, _RUN_OPTIONS)
        _dtype(options)
        reasons = [] if importlib.util.find_spec("snntorch") is not None else [
            "snnTorch is not installed (pip install snntorch==1.0.0)"]
        structure = graph_issues(graph)
        if structure:
            return reasons + structure
        flat = _flat_copy(graph)
        own = _own_reasons(flat)
        if own:
            return reasons + own
        try:
            frontend.from_file(flat)
        except NirbridgeError as exc:
            reasons.append(error_reason(exc))
        return reasons

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """snnTorch's reading of ``graph``: one note per departure from NIR (node, field,
        values), and the graph it computes (``from_file``'s, at ``dt = 1e-4``). ``dt``:
        the dt the graph is meant to run at (default: its ``metadata["dt"]``). Raises
        :class:`~nirbridge.errors.UnsupportedLayerError` where :meth:`check` refuses."""
        check_options(self.name, options, _READING_OPTIONS)
        _dtype(options)
        reasons = [r for r in self.check(graph) if not r.startswith("snnTorch is not installed")]
        if reasons:
            raise UnsupportedLayerError("backend 'snntorch' cannot run this graph: "
                                        + "; ".join(reasons))
        flat = _flat_copy(graph)
        read, _ = frontend.from_file(flat)
        dt = options.get("dt")
        dt = float(dt) if dt is not None else metadata_dt(graph)
        return Reading(_notes(flat, read, dt), read)

    # ------------------------------------------------------------------------------ run
    def run(self, graph: nir.NIRGraph, inputs: Any, *, record: Record = False,
            dt: float | None = None, **options: Any) -> RunResult:
        """Run ``inputs`` ``[T, B, ...]`` through snnTorch's ``import_from_nir`` of
        ``graph``. ``dt`` is only compared with snnTorch's 1e-4 (it reads every τ at 1e-4;
        a warning is logged where they differ); ``info["dt"]`` is 1e-4."""
        check_options(self.name, options, _RUN_OPTIONS)
        dtype = _dtype(options)
        reasons = self.check(graph)
        if reasons:
            raise UnsupportedLayerError("backend 'snntorch' cannot run this graph: "
                                        + "; ".join(reasons))
        asked = float(dt) if dt is not None else metadata_dt(graph)
        if asked is not None and not np.isclose(asked, DT, rtol=1e-12, atol=0):
            log.warning("snnTorch reads every τ of this graph at its dt = %g, not dt = %g "
                        "(see SnnTorchBackend.reading)", DT, asked)
        t0 = time.perf_counter()
        flat = _flat_copy(graph)
        x = _input(flat, inputs)
        want = _wanted(flat, record)
        model, neurons = _build(flat, dtype)
        t1 = time.perf_counter()
        batched = _batched(flat)
        try:
            out, records = _simulate(flat, model, neurons, x.to(dtype), want, batched)
        finally:
            _forget(neurons)
        t2 = time.perf_counter()
        import snntorch

        return RunResult(to_numpy(out), records, {
            "backend": self.name, "dt": DT, "dt_asked": asked,
            "dtype": str(dtype).removeprefix("torch."), "batched": batched,
            "snntorch": snntorch.__version__,
            "seconds": {"build": t1 - t0, "run": t2 - t1, "wall": t2 - t0}})


# -------------------------------------------------------------------- the run's parts
def _input(flat: nir.NIRGraph, inputs: Any) -> torch.Tensor:
    """The one input ``[T, B, ...]`` as a float64 tensor, checked against the Input node."""
    from nirbridge.backends._nirtorch import one_input

    return one_input(flat, inputs, torch.float64)


def _wanted(flat: nir.NIRGraph, record: Record) -> set[str]:
    if record is True:
        return set(flat.nodes)
    want = set(record or ())
    unknown = sorted(want - set(flat.nodes))
    if unknown:
        raise InputError(f"record= names {', '.join(map(repr, unknown))}, not nodes of the "
                         f"graph (its nodes: {', '.join(flat.nodes)})")
    return want


def _to_float64(module: torch.nn.Module, args: Any, out: Any) -> Any:
    return tuple(o.double() for o in out) if isinstance(out, tuple) else out.double()


def _build(flat: nir.NIRGraph, dtype: torch.dtype) -> tuple[torch.nn.Module, list[Any]]:
    """snnTorch's ``import_from_nir`` of ``flat`` in ``dtype`` (its float32 parameters as
    they are in float64), and the snnTorch neurons it built."""
    import snntorch
    from snntorch.import_nir import import_from_nir

    printed = io.StringIO()
    before = {id(m) for m in snntorch.SpikingNeuron.instances}
    try:
        with contextlib.redirect_stdout(printed):
            model = import_from_nir(flat)
    except Exception as exc:  # snnTorch's own failure, which check() did not foresee
        _forget([m for m in snntorch.SpikingNeuron.instances if id(m) not in before])
        raise SimulationError(f"snnTorch's import_from_nir failed on this graph: "
                              f"{type(exc).__name__}: {exc}") from exc
    finally:
        if printed.getvalue().strip():
            log.debug("import_from_nir printed: %s", printed.getvalue().strip())
    model = model.float().to(dtype)  # nirtorch's default modules may hold float64 arrays
    neurons = [m for m in model.modules() if isinstance(m, snntorch.SpikingNeuron)]
    if dtype == torch.float64:
        for m in neurons:
            m.register_forward_hook(_to_float64)
    return model, neurons


def _forget(neurons: Iterable[Any]) -> None:
    """Take the neurons this run built out of snnTorch's class-level instance list."""
    import snntorch

    ids = {id(m) for m in neurons}
    snntorch.SpikingNeuron.instances[:] = [m for m in snntorch.SpikingNeuron.instances
                                           if id(m) not in ids]


class _Recorder:
    """Forward hooks on the GraphModule's modules: per recorded node, per step, its
    summed input, its output and (neurons) the states snnTorch holds after the step."""

    def __init__(self, model: torch.nn.Module, names: dict[str, str], want: set[str]) -> None:
        self.steps: dict[str, dict[str, list[torch.Tensor]]] = {}
        self.hooks = []
        for attr, module in model.named_children():
            node = names.get(attr)
            if node in want:
                self.steps[node] = {}
                self.hooks.append(module.register_forward_hook(self._hook(node)))

    def _hook(self, node: str):
        def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
            rec = self.steps[node]
            rec.setdefault("input", []).append(args[0].detach().double().clone())
            y = out[0] if isinstance(out, tuple) else out
            rec.setdefault("output", []).append(y.detach().double().clone())
            for field, attr in (("v", "mem"), ("syn", "syn")):
                value = getattr(module, attr, None)
                if torch.is_tensor(value) and hasattr(module, "reset_mem"):
                    rec.setdefault(field, []).append(value.detach().double().clone())
        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def _step_all(model: torch.nn.Module, neurons: list[Any], x: torch.Tensor) -> torch.Tensor:
    """snnTorch's model over ``x`` ``[T, ...]`` from its initial state, one step at a time."""
    for m in neurons:
        m.reset_mem()
    state = None
    outs = []
    for xt in x:
        y, state = model(xt, state)
        outs.append((y[0] if isinstance(y, tuple) else y).detach().double())
    return torch.stack(outs)


def _simulate(flat: nir.NIRGraph, model: torch.nn.Module, neurons: list[Any], x: torch.Tensor,
              want: set[str], batched: bool) -> tuple[torch.Tensor, dict[str, RunRecord]]:
    names = {_sanitized(n): n for n in flat.nodes}
    recorder = _Recorder(model, names, want)
    samples = [x] if batched else [x[:, b] for b in range(x.shape[1])]
    runs: list[tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]] = []
    try:
        with torch.no_grad():
            for xs in samples:
                for rec in recorder.steps.values():
                    rec.clear()
                try:
                    out = _step_all(model, neurons, xs)
                except RuntimeError as exc:
                    raise SimulationError(f"snnTorch's reading of the graph failed on input of "
                                          f"per-step shape {tuple(xs.shape[1:])}: {exc}") from exc
                runs.append((out, {n: {k: torch.stack(v) for k, v in rec.items()}
                                   for n, rec in recorder.steps.items()}))
    finally:
        recorder.remove()

    def join(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if batched else torch.stack(parts, dim=1)

    out = join([o for o, _ in runs])
    x64 = x.double()
    records: dict[str, RunRecord] = {}
    for name in want:
        node = flat.nodes[name]
        if isinstance(node, nir.Input):
            records[name] = RunRecord(output=x64)
        elif isinstance(node, nir.Output):
            records[name] = RunRecord(input=out, output=out)
        elif name in recorder.steps:
            fields = {k: join([r[name][k] for _, r in runs]) for k in runs[0][1][name]}
            records[name] = RunRecord(input=fields.pop("input"), output=fields.pop("output"),
                                      states=fields)
    return out, records


#: The snnTorch backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = SnnTorchBackend()

__all__ = ["BACKEND", "DT", "DTYPES", "RECURRENT", "SnnTorchBackend"]
