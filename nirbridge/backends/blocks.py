"""Feed-forward chains of the reference executor run in blocks of time steps.

A **chain** is a path of nodes on no cycle, each read by the next one only (no record, no
observer), made of synapses (Affine, Linear, Conv, pooling, Scale, Flatten, Threshold)
and neurons: ``Affine → LIF → Affine → LIF`` or ``Conv → LIF → SumPool → Conv → LIF``.
Run node by node, every member's ``[T, B, ...]`` output goes through memory; run a block
of ``τ`` time steps at a time through the whole chain (neuron states carried from block
to block), the intermediate values stay in cache. Only the last member's output is
written in full.

The values are the same bits: a neuron steps exactly as before, one time step at a time;
a synapse computes each sample on its own, so a subset of rows gives the same bits as all
of them, **within the limits measured** (MKL/oneDNN on x86, 1 thread; see
``docs/reference_blocks.md``): a matrix product over fewer rows may take another kernel
(float64 700→256: every row count below 200 differed in the last bits from the same rows
within 4096; float32: below 16), and oneDNN's float32 convolution of one sample differs
from the same sample in a batch. So a block of a chain with a matrix product has at least
:data:`MIN_LINEAR_ROWS` folded samples (and the whole run as many, else it is not
blocked), and a block of any chain at least two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import torch

#: Bytes of the largest per-block tensor of a chain aimed at (a block's intermediate
#: values then stay in the second-level / last-level cache).
BLOCK_BYTES = 2 << 20

#: Fewest folded samples (time steps × batch) a block of a chain with an Affine or Linear
#: node may have: below it MKL may pick another matrix-product kernel (measured: float64
#: K = 700 differed up to 128 rows, float32 up to 15; 256 rows and more gave the bits of
#: 2560 and 25 600 rows on every shape tried).
MIN_LINEAR_ROWS = 256

#: ``apply(name, x)``: a synapse member over a block ``[τ, B, ...]``.
Apply = Callable[[str, torch.Tensor], torch.Tensor]


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
        """Steps of block ``xb``: into ``dest`` when given (the chain's output), else over
        ``xb`` when ``own`` (the chain made it and nothing else reads it) and no state
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


def find_chains(order: Sequence[str], preds: Mapping[str, Sequence[str]], sole: Set[str],
                synapses: Set[str], neurons: Set[str]) -> dict[str, tuple[str, ...]]:
    """The chains by first member, nodes in execution ``order``: maximal paths of nodes of
    ``synapses`` and ``neurons`` (those on no cycle), each member's value read by the next
    member only (``sole``: values one node reads), at least two members, one a neuron."""
    ok = set(synapses) | set(neurons)
    reader = {p: n for n in order for p in preds[n] if p in sole}

    def linked(p: str, n: str) -> bool:
        return p in ok and n in ok and p in sole and list(preds[n]) == [p]

    chains: dict[str, tuple[str, ...]] = {}
    for n in order:
        if n not in ok or (len(preds[n]) == 1 and linked(preds[n][0], n)):
            continue
        chain = [n]
        while chain[-1] in reader and linked(chain[-1], reader[chain[-1]]):
            chain.append(reader[chain[-1]])
        if len(chain) > 1 and neurons.intersection(chain):
            chains[n] = tuple(chain)
    return chains


def block_cuts(steps: int, batch: int, per_step_bytes: int, min_rows: int) -> list[int]:
    """Boundaries ``[0, …, steps]`` of the blocks: about :data:`BLOCK_BYTES` of the
    largest member a block, each block at least ``min_rows`` folded samples."""
    least = max(1, -(-min_rows // max(batch, 1)))
    tau = max(least, BLOCK_BYTES // max(per_step_bytes, 1))
    k = max(1, steps // tau)
    return [i * steps // k for i in range(k + 1)]


def run_chain(members: Sequence[tuple[str, tuple[Any, Any] | None]], x: torch.Tensor,
              apply: Apply, min_rows: int) -> torch.Tensor:
    """The last member's output ``[T, B, ...]`` of the chain ``members`` (name and neuron
    runner, None for a synapse) on its first member's input ``x``, a block of time steps
    at a time. The first block is the smallest allowed; it measures the members' sizes,
    from which the rest are cut."""
    steps, batch = x.shape[0], x.shape[1]
    neurons = {name: _Neuron(r) for name, r in members if r is not None}
    out: torch.Tensor | None = None
    first = max(1, -(-min_rows // max(batch, 1)))
    if steps < 2 * first:
        first = steps
    a, cuts, biggest = 0, [first], 0
    while a < steps:
        b = cuts.pop(0)
        v, own = x[a:b], False
        for name, runner in members:
            # the last neuron writes into the chain's output (from the second block on)
            dest = out[a:b] if out is not None and name == members[-1][0] else None
            y = apply(name, v) if runner is None else neurons[name](v, own, dest)
            # a view of its input (Flatten) is the chain's own only if the input was
            own = own or not _shares(y, v)
            v = y
            biggest = max(biggest, v[0].numel() * v.element_size())
        if out is None:
            out = v.new_empty((steps, *v.shape[1:]))
        if v.data_ptr() != out[a:b].data_ptr():
            out[a:b] = v
        if not cuts and b < steps:
            per_step = max(biggest, x[0].numel() * x.element_size())
            cuts = [b + c for c in block_cuts(steps - b, batch, per_step, min_rows)[1:]]
        a = b
    assert out is not None
    return out
