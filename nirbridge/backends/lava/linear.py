"""Linear maps: a stateless linear NIR node as a matrix (plus a pending bias and post-ops).

Ports are flat (1-D, in C order of the node's per-sample shape), so every linear node is a
matrix. Affine/Linear on a vector use the weight itself; convolutions, pooling windows and
Linear on more than one dimension are derived by applying the reference's own layer
(:func:`nirbridge.backends.reference.apply_synapse`) to unit vectors: exact weights,
PyTorch layout, no kernel flip or (W, H, C) transposition to get wrong. Both lowerings use
them (fixed_pt with the integer mantissas as weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends.reference import apply_synapse
from nirbridge.errors import InvalidParameterError
from nirbridge.geometry import pool_geometry_of

#: Linear maps with more entries than this become ``Sparse`` when ``sparse="auto"``.
SPARSE_ABOVE = 1 << 20


def wants_sparse(sparse: bool | str, n_out: int, n_in: int) -> bool:
    """Whether a map of ``n_out × n_in`` entries is a ``Sparse`` under the lowering's
    ``sparse`` option (``True``, ``False`` or ``"auto"``: above :data:`SPARSE_ABOVE`)."""
    return sparse is True or (sparse == "auto" and n_out * n_in > SPARSE_ABOVE)


@dataclass
class LinearMap:
    """A stateless linear node as ``y = post_ops(matrix @ x)`` (+ pending ``bias``)."""

    matrix: Any  # numpy (n_out, n_in) or scipy.sparse.csr_matrix
    out_shape: tuple[int, ...]
    bias: np.ndarray | None = None
    post_ops: tuple[tuple[str, np.ndarray], ...] = ()


LINEAR_NODES = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)


def output_shape(node: nir.NIRNode, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape ``node`` produces from ``in_shape`` (as the reference runs it)."""
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


def linear_map(node: nir.NIRNode, in_shape: tuple[int, ...]) -> LinearMap:
    """The matrix, output shape, bias and post-ops of a linear NIR node on ``in_shape``.

    Affine/Linear on a vector use the weight itself; every other case (convolutions,
    pooling windows, Linear on more than one dimension) is derived by applying the
    reference's own layer to unit vectors, so layouts and padding conventions are the
    reference's by construction.
    """
    out_shape = output_shape(node, in_shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    bias = None
    post: tuple[tuple[str, np.ndarray], ...] = ()
    if isinstance(node, (nir.Affine, nir.Linear)) and len(in_shape) == 1:
        matrix = np.asarray(node.weight, dtype=np.float64).reshape(n_out, in_shape[0])
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        pool = pool_geometry_of(node)
        k, s, p = pool

        def window(x: torch.Tensor) -> torch.Tensor:
            xf = x.reshape(-1, *in_shape)
            y = torch.nn.functional.avg_pool2d(xf, k, s, p, count_include_pad=True,
                                               divisor_override=1)
            return y.reshape(1, x.shape[1], *y.shape[1:])

        matrix = _basis_matrix(window, in_shape, n_out)
        area = np.full(n_out, float(pool.area))
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


__all__ = ["LINEAR_NODES", "SPARSE_ABOVE", "LinearMap", "linear_map", "output_shape",
           "wants_sparse"]
