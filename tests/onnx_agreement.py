"""How the float32 ``onnx`` backend's run agrees with the float64 reference, per node.

Graded values: the largest ``|onnx − ref|`` over the node's tensor, divided by the
tensor's largest ``|ref|`` (a normwise relative difference: an elementwise one is
meaningless where a membrane crosses zero), must be ≤ 1e-5.

Spikes (every spiking neuron, every Threshold): identical, except that a spike may differ
where the reference's own decision was within :data:`MARGIN` of its boundary. To know
where that is, each neuron is stepped again on the reference's recorded input with a
``TorchFunctionMode`` that records, for every ``spike(z, ...)`` call of its torch step,
``|z|``, and for every rounding (``torch.div(rounding_mode="trunc")``: Sinabs' spike
count), the distance to the next integer boundary (times the divisor): generic, from the
neuron's own step. In a sample, the first step where a node's spikes differ must be one
where every differing element is near its boundary, unless an upstream spiking node
(an ancestor in the graph) diverged at that step or before; from a node's first
divergence on, that sample's later values of it and of everything downstream are not
compared (the trajectories have parted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from nirbridge.graph import flatten_subgraphs
from nirbridge.neurons import spec_of, spike

#: A decision closer than this to its boundary may go either way in float32 (the values
#: of these tests are O(1); float32 rounds them to ~6e-8 per operation).
MARGIN = 1e-5
GRADED_REL = 1e-5


class _Margins(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is spike:
            self.seen.append(args[0].abs())
        elif getattr(func, "__name__", "") == "div" and kwargs.get("rounding_mode"):
            q = args[0] / args[1]
            self.seen.append((q - q.round()).abs() * torch.as_tensor(args[1]).abs())
        return out


def neuron_margins(node: nir.NIRNode, dt: float, x: torch.Tensor) -> np.ndarray:
    """``[T, B, ...]``: per step and element the smallest distance of one of the neuron's
    decisions to its boundary, stepping it on the reference's input ``x``."""
    init, step = spec_of(node).runner(node, dt)
    state = init(x[0])
    out = []
    for xt in x:
        mode = _Margins()
        with torch.no_grad(), mode:
            y, state = step(xt, state)
        d = torch.full_like(y, float("inf"))
        for m in mode.seen:
            d = torch.minimum(d, torch.broadcast_to(m, d.shape))
        out.append(d)
    return torch.stack(out).numpy()


@dataclass
class Agreement:
    """Per node: ``max_rel`` (graded), ``near`` (decisions within MARGIN of their
    boundary over the run), ``diverged`` (samples whose spikes part at a near decision)."""

    max_rel: dict[str, float] = field(default_factory=dict)
    near: dict[str, int] = field(default_factory=dict)
    diverged: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        near = {n: c for n, c in self.near.items() if c}
        div = {n: c for n, c in self.diverged.items() if c}
        worst = max(self.max_rel.items(), key=lambda kv: kv[1], default=("-", 0.0))
        return (f"max normwise relative difference {worst[1]:.2e} ({worst[0]}); "
                f"decisions within {MARGIN:g} of the boundary: {near or 'none'}; "
                f"samples diverging there: {div or 'none'}")


def _ancestors(graph: nir.NIRGraph) -> dict[str, set[str]]:
    preds: dict[str, set[str]] = {n: set() for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].add(a)
    out = {}
    for n in graph.nodes:
        seen, todo = set(), list(preds[n])
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(preds[p])
        out[n] = seen
    return out


def agreement(graph: nir.NIRGraph, ref: Any, got: Any, dt: float) -> Agreement:
    """Compare two runs recorded on every node (``ref``: the reference's RunResult,
    ``got``: the onnx backend's) as the module docstring says."""
    flat = flatten_subgraphs(graph)
    anc = _ancestors(flat)
    rep = Agreement()
    t_steps, batch = next(iter(ref.records.values())).output.shape[:2]
    first: dict[str, np.ndarray] = {}  # node → per sample its first divergent step (T: none)
    deciders = [n for n, v in flat.nodes.items()
                if isinstance(v, nir.Threshold) or (spec_of(v) is not None
                                                    and spec_of(v).spiking)]
    order = [n for n in ref.records if n in flat.nodes]
    margins, diffs = {}, {}
    for name in (n for n in order if n in deciders):  # every decider's first divergence
        a = ref.records[name].output.numpy()
        b = got.records[name].output.numpy()
        node = flat.nodes[name]
        x = ref.records[name].input
        if isinstance(node, nir.Threshold):
            margin = np.abs(x.numpy() - np.asarray(node.threshold))
        else:
            margin = neuron_margins(node, dt, x)
        margins[name] = np.broadcast_to(margin, a.shape).reshape(t_steps, batch, -1)
        rep.near[name] = int((margins[name] <= MARGIN).sum())
        diffs[name] = (a != b).reshape(t_steps, batch, -1)
        steps = np.full(batch, t_steps)
        for s in range(batch):
            ts = np.flatnonzero(diffs[name][:, s].any(axis=1))
            if ts.size:
                steps[s] = ts[0]
        first[name] = steps
    for name, steps in first.items():  # each divergence starts near a boundary or upstream
        rep.diverged[name] = 0
        for s in range(batch):
            t = steps[s]
            if t == t_steps:
                continue
            upstream = min([first[u][s] for u in anc[name] if u in first and u != name],
                           default=t_steps)
            if upstream <= t:
                continue
            at = margins[name][t, s][diffs[name][t, s]]
            if (at <= MARGIN).all():
                rep.diverged[name] += 1
            else:
                rep.problems.append(
                    f"{name} ({type(flat.nodes[name]).__name__}): spikes differ at step {t}, "
                    f"sample {s}, where the reference's decision is {at.max():.3g} from its "
                    f"boundary (> {MARGIN:g})")
    for name in order:
        cut = np.full(batch, t_steps)
        for u in ({name} | anc[name]) & set(first):
            cut = np.minimum(cut, first[u])
        for what, ra, rb in [("output", ref.records[name].output, got.records[name].output),
                             *[(f"state {f}", ref.records[name].states[f],
                                got.records[name].states.get(f))
                               for f in ref.records[name].states]]:
            if rb is None:
                rep.problems.append(f"{name}: the onnx run has no {what}")
                continue
            ra, rb = ra.numpy(), rb.numpy()
            keep = np.arange(t_steps)[:, None] < cut[None, :]
            if ra.shape != rb.shape:
                rep.problems.append(f"{name}: {what} shape {rb.shape} != {ra.shape}")
                continue
            if not keep.any():
                continue
            da, db = ra[keep], rb[keep]
            scale = max(float(np.abs(da).max()), np.finfo(np.float32).tiny)
            rel = float(np.abs(da - db).max()) / scale
            key = name if what == "output" else f"{name}.{what.split()[1]}"
            rep.max_rel[key] = rel
            if rel > GRADED_REL:
                rep.problems.append(f"{name}: {what} differs by {rel:.2e} of its largest "
                                    f"magnitude (> {GRADED_REL:g})")
    return rep


def assert_agrees(graph: nir.NIRGraph, ref: Any, got: Any, dt: float) -> Agreement:
    rep = agreement(graph, ref, got, dt)
    assert not rep.problems, "\n".join(rep.problems) + "\n" + rep.summary()
    return rep
