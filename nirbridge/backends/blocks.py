"""Feed-forward regions of the reference executor run in blocks of time steps.

A **region** is a run of consecutive nodes in execution order on no cycle (no record, no
observer), made of synapses (Affine, Linear, Conv, pooling, Scale, Flatten, Threshold) and
neurons; values may fan out and sum inside it (a residual conv net is one region). Run node
by node, every member's ``[T, B, ...]`` output goes through memory; run a block of ``τ``
time steps at a time through the whole region (neuron states carried from block to block),
the intermediate values stay in cache. Only the values read after the region are written
in full.

The values are the same bits: a neuron steps exactly as before, one time step at a time;
a synapse computes each sample on its own, so a subset of rows gives the same bits as all
of them, **within the limits measured** (MKL/oneDNN on x86, 1 thread; see
``docs/reference_blocks.md``): a matrix product over fewer rows may take another kernel
(float64 700→256: every row count below 200 differed in the last bits from the same rows
within 4096; float32: below 16), and oneDNN's float32 convolution of one sample differs
from the same sample in a batch. So a block of a region with a matrix product has at least
:data:`MIN_LINEAR_ROWS` folded samples (and the whole run as many, else it is not
blocked), and a block of any region at least two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import torch

#: Bytes of the largest per-block tensor of a region aimed at (a block's intermediate
#: values then stay in the second-level / last-level cache).
BLOCK_BYTES = 2 << 20

#: Fewest folded samples (time steps × batch) a block of a region with an Affine or Linear
#: node may have: below it MKL may pick another matrix-product kernel (measured: float64
#: K = 700 differed up to 128 rows, float32 up to 15; 256 rows and more gave the bits of
#: 2560 and 25 600 rows on every shape tried).
MIN_LINEAR_ROWS = 256

#: ``apply(name, x)``: a synapse member over a block ``[τ, B, ...]``.
Apply = Callable[[str, torch.Tensor], torch.Tensor]

#: ``add(name, x, first, v, q)``: ``x`` (from ``first``) plus ``v`` (from ``q``), into ``name``.
Add = Callable[[str, torch.Tensor, str, torch.Tensor, str], torch.Tensor]


def tensors_of(state: Any):
    """Every tensor in ``state`` (a NamedTuple of tensors, or nested tuples, lists, dicts)."""
    if torch.is_tensor(state):
        yield state
    elif isinstance(state, (tuple, list)):
        for v in state:
            yield from tensors_of(v)
    elif isinstance(state, dict):
        for v in state.values():
            yield from tensors_of(v)


def _shares(state: Any, x: torch.Tensor) -> bool:
    ptr = x.untyped_storage().data_ptr()
    return any(v.untyped_storage().data_ptr() == ptr for v in tensors_of(state))


class _Neuron:
    """A neuron member: its state carried from block to block."""

    def __init__(self, runner: tuple[Any, Any]) -> None:
        self.init, self.step = runner
        self.state: Any = None
        self.buf: torch.Tensor | None = None

    def __call__(self, xb: torch.Tensor, own: bool,
                 dest: torch.Tensor | None = None) -> torch.Tensor:
        """Steps of block ``xb``: into ``dest`` when given (a full output), else over
        ``xb`` when ``own`` (the region made it and nothing else reads it) and no state
        holds it, else into a buffer of its own."""
        if self.state is None:
            self.state = self.init(xb[0])
        n = xb.shape[0]
        out: torch.Tensor | None = dest
        over = dest is None and own and xb.is_contiguous()
        for t in range(n):
            y, self.state = self.step(xb[t], self.state)
            if over and (y.shape != xb.shape[1:] or y.dtype != xb.dtype
                         or _shares(self.state, xb)):
                over = False
                if out is not None:  # the steps so far were written over xb[:t]
                    buf = self._buffer(n, y)
                    buf[:t] = out[:t]
                    out = buf
            if out is None:
                out = xb if over else self._buffer(n, y)
            out[t] = y
        assert out is not None
        return out

    def _buffer(self, n: int, y: torch.Tensor) -> torch.Tensor:
        shape = (n, *y.shape)
        if self.buf is None or self.buf.shape[1:] != shape[1:] or self.buf.shape[0] < n \
                or self.buf.dtype != y.dtype:
            self.buf = y.new_empty(shape)
        return self.buf[:n]


def find_regions(order: Sequence[str], preds: Mapping[str, Sequence[str]], eligible: Set[str],
                 neurons: Set[str]) -> dict[str, tuple[tuple[str, ...], frozenset[str]]]:
    """The regions by first member: maximal runs of consecutive nodes of execution
    ``order`` in ``eligible`` (synapses and neurons on no cycle), at least two members, one
    of them of ``neurons``; each with the members read after it (by a node outside it,
    ``preds`` giving each node's inputs). Consecutive in the order, every value a member
    reads from outside its region is known before the region starts; a Delay, a cycle or
    an Output node ends a run."""
    regions: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
    run: list[str] = []
    for n in [*order, None]:
        if n is not None and n in eligible:
            run.append(n)
            continue
        if len(run) > 1 and neurons.intersection(run):
            members = set(run)  # a list's `in` made this quadratic on a long chain
            keep = frozenset(p for m in order if m not in members for p in preds[m]
                             if p in members)
            regions[run[0]] = (tuple(run), keep)
        run = []
    return regions


def block_cuts(steps: int, batch: int, per_step_bytes: int, min_rows: int) -> list[int]:
    """Boundaries ``[0, …, steps]`` of the blocks: about :data:`BLOCK_BYTES` of the
    largest member a block, each block at least ``min_rows`` folded samples."""
    least = max(1, -(-min_rows // max(batch, 1)))
    tau = max(least, BLOCK_BYTES // max(per_step_bytes, 1))
    k = max(1, steps // tau)
    return [i * steps // k for i in range(k + 1)]


def run_region(members: Sequence[tuple[str, tuple[Any, Any] | None]],
               preds: Mapping[str, Sequence[str]], outside: Mapping[str, torch.Tensor],
               keep: Set[str], sole: Set[str], apply: Apply, add: Add,
               min_rows: int, observe: Any = None) -> dict[str, torch.Tensor]:
    """The full ``[T, B, ...]`` values of the members in ``keep`` (those read after the
    region) of the region ``members`` (name and neuron runner, None for a synapse, in
    execution order; ``preds`` their inputs, summed in that order by ``add``), run a block
    of time steps at a time on the values ``outside`` it reads. Per block only the block's
    values are held, each until its last reader in the region ran. ``sole``: values one
    node reads (that node may write over them). The first block is the smallest allowed;
    it measures the members' sizes, from which the rest are cut.

    ``observe``: an observer of the reference executor that takes blocks (``by_block``),
    called per member and block with ``start`` (and ``steps`` = T), a neuron's input given
    to its ``before`` first (the neuron may write over it)."""
    index = {name: i for i, (name, _) in enumerate(members)}
    last: dict[str, int] = {}
    for i, (name, _) in enumerate(members):
        for p in preds[name]:
            if p in index:
                last[p] = i
    ref = next(iter(outside.values()))
    steps, batch = ref.shape[0], ref.shape[1]
    neurons = {name: _Neuron(r) for name, r in members if r is not None}
    full: dict[str, torch.Tensor] = {}
    first = max(1, -(-min_rows // max(batch, 1)))
    if steps < 2 * first:
        first = steps
    a, cuts, biggest = 0, [first], max(v[0].numel() * v.element_size()
                                       for v in outside.values())
    while a < steps:
        b = cuts.pop(0)
        vals: dict[str, torch.Tensor] = {}
        # owned: the region made the block value and no other live value or full buffer
        # shares its memory; a neuron may write over an owned value only its node reads
        owned: dict[str, bool] = {}
        for i, (name, runner) in enumerate(members):
            ps = preds[name]
            x = vals[ps[0]] if ps[0] in index else outside[ps[0]][a:b]
            own = ps[0] in index and owned[ps[0]] and ps[0] in sole
            for q in ps[1:]:
                x = add(name, x, ps[0], vals[q] if q in index else outside[q][a:b], q)
                own = True  # a sum made here
            dest = full[name][a:b] if runner is not None and name in full else None
            if observe is not None and runner is not None:
                observe.before(name, x, start=a, steps=steps)
            y = apply(name, x) if runner is None else neurons[name](x, own, dest)
            if observe is not None:
                observe(name, x if runner is None else None, y, start=a, steps=steps)
            owned[name] = name not in keep and (own or not _shares(y, x))
            vals[name] = y
            if name in keep:
                if name not in full:
                    full[name] = y.new_empty((steps, *y.shape[1:]))
                if y.data_ptr() != full[name][a:b].data_ptr():
                    full[name][a:b] = y
            biggest = max(biggest, y[0].numel() * y.element_size())
            for p in ps:
                if last.get(p) == i:
                    vals.pop(p, None)
        if not cuts and b < steps:
            cuts = [b + c for c in block_cuts(steps - b, batch, biggest, min_rows)[1:]]
        a = b
    return full
