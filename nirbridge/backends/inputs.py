"""Checks of the inputs a backend is given: ``[T, B, ...]`` numbers, at least one step and
one sample, finite, and (fixed point) within the input format.

Every check raises :class:`~nirbridge.errors.InputError` with one line naming the input and
saying what to do. :func:`check_graph_input` is what the reference and the nirtorch-based
backends call on each Input node's tensor; :func:`as_number_array` refuses what cannot be
meant as numbers (strings, objects, complex values) before anything converts it.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InputError

#: dtype kinds an input may have: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"
_KIND_WORDS = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers",
               "V": "records", "M": "dates", "m": "time deltas"}


def check_dtype(dtype: Any, what: str) -> None:
    """Refuse a dtype that is not bool, integer or float (``what`` names the input)."""
    kind = np.dtype(dtype).kind
    if kind not in NUMERIC_KINDS:
        words = _KIND_WORDS.get(kind, f"dtype {np.dtype(dtype)}")
        raise InputError(f"{what} holds {words} (dtype {np.dtype(dtype)}); give real numbers "
                         "(float or integer; spikes as 0/1)")


def as_number_array(x: Any, what: str) -> np.ndarray | torch.Tensor:
    """``x`` as a numpy array (a tensor stays a tensor), refused unless it holds real
    numbers."""
    if torch.is_tensor(x):
        if x.is_complex():
            check_dtype(np.complex128, what)
        return x
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not an array of numbers ({exc})") from None
    check_dtype(arr.dtype, what)
    return arr


def check_series(shape: tuple[int, ...], what: str) -> None:
    """A ``[T, B, ...]`` shape with ``T ≥ 1`` and ``B ≥ 1``."""
    if len(shape) < 3:
        raise InputError(f"{what} has shape {tuple(shape)}; expected [T, B, ...] with time "
                         "first, then batch")
    if shape[0] == 0:
        raise InputError(f"{what} has shape {tuple(shape)}: T = 0 time steps; give at least "
                         "one step")
    if shape[1] == 0:
        raise InputError(f"{what} has shape {tuple(shape)}: B = 0 samples; give at least "
                         "one sample")


def check_input_array(x: Any, what: str) -> np.ndarray | torch.Tensor:
    """``x`` checked as a whole input series: numbers, ``[T, B, ...]`` with ``T, B ≥ 1``,
    finite. Returns it as an array (a tensor stays a tensor)."""
    arr = as_number_array(x, what)
    check_series(tuple(arr.shape), what)
    finite = torch.isfinite(arr).all() if torch.is_tensor(arr) else np.isfinite(arr).all()
    if not bool(finite):
        raise InputError(f"{what} contains NaN or inf; clean or clip the inputs")
    return arr


def check_graph_input(graph: nir.NIRGraph, name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged if it is a ``[T, B, ...]`` input for Input node ``name`` of ``graph``
    (``T, B ≥ 1``, per-step shape as the node declares, finite), else an ``InputError``
    saying why."""
    what = f"input for node '{name}'"
    if x.is_complex():
        check_dtype(np.complex128, what)
    check_series(tuple(x.shape), what)
    shape = graph.nodes[name].output_type.get("output")
    if shape is not None and np.size(shape) > 0:
        want = tuple(int(s) for s in np.asarray(shape).ravel())
        if tuple(x.shape[2:]) != want:
            raise InputError(f"{what} has per-step shape {tuple(x.shape[2:])}; the graph "
                             f"expects {want}")
    # the sum is finite when every value is (one pass, no mask); only a sum that is not
    # (a NaN or inf, or finite values overflowing it) needs the element-wise test
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise InputError(f"{what} contains NaN or inf")
    return x


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse an array of ``nbytes`` that would not fit in half of physical memory (past
    that, the run would thrash or be killed instead of saying why)."""
    total = memory_bytes()
    if total is not None and nbytes > total // 2:
        raise InputError(f"{what} would take {nbytes / 2**30:.1f} GiB, more than half of "
                         f"this machine's {total / 2**30:.0f} GiB; give fewer steps or "
                         "samples")


def check_fixed_range(peak: float, frac_bits: int, bits: int, what: str = "the inputs"
                      ) -> None:
    """Refuse inputs whose largest magnitude ``peak`` does not fit a signed ``bits``-bit
    input format with ``frac_bits`` fractional bits (it would saturate every such value)."""
    limit = (2 ** (bits - 1) - 1) / 2.0 ** frac_bits
    if peak > limit:
        raise InputError(
            f"{what} reach |x| = {peak:g}, beyond the fixed-point input format ({bits} bits, "
            f"{frac_bits} fractional: |x| ≤ {limit:g}); they would saturate and the run would "
            "not compute the network: scale the inputs down (e.g. normalise them to [0, 1]) "
            "or deploy in floating point")


__all__ = ["NUMERIC_KINDS", "as_number_array", "check_allocation", "check_dtype",
           "check_fixed_range", "check_graph_input", "check_input_array", "check_series",
           "memory_bytes"]
