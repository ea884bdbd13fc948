"""Convolution and pooling geometry: the one place that reads ``kernel_size``, ``stride``,
``padding``, ``dilation`` and ``groups``.

NIR nodes, ``.nir`` files and torch modules spell these values in many ways: a Python or
numpy int, a 0-d or 1-element array (one value for every spatial axis), a tuple or array
with one value per axis, floats that hold whole numbers (some writers store everything as
float), and for ``padding`` the strings ``"same"``/``"valid"``, which come back from HDF5 as
``bytes`` or a 0-d string array. Every function here accepts all of them and returns plain
Python ints, so the rest of nirbridge compares, hashes and prints one form only.

API (``rank`` is the number of spatial axes: 1 for Conv1d, 2 for Conv2d and the pools):

- :func:`as_int` — one int (``groups``).
- :func:`as_ints` — ``rank`` ints; one value is repeated on every axis.
- :func:`padding_mode` — ``"same"``/``"valid"`` when the value is such a string, else None.
- :func:`as_padding` — what torch's ``conv1d``/``conv2d`` take: the mode string or ``rank``
  ints.
- :func:`symmetric_padding` — per-side zeros (``"same"``/``"valid"`` resolved), or None when
  ``"same"`` pads one side more than the other (even ``dilation·(kernel-1)``, as in torch).
- :func:`conv_output_shape` — spatial output size of a convolution or pooling window.
- :func:`conv_geometry` / :func:`conv_geometry_of` → :class:`ConvGeometry`;
  :func:`pool_geometry` / :func:`pool_geometry_of` → :class:`PoolGeometry`.

Malformed values (a string where ints are due, non-integral floats, the wrong number of
values, a padding string other than ``"same"``/``"valid"``) raise
:class:`~nirbridge.errors.InvalidParameterError` naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from nirbridge.errors import InvalidParameterError

Ints = tuple[int, ...]
PaddingMode = Literal["same", "valid"]
#: Padding as torch's convolutions take it: a mode string or one int per spatial axis.
Padding = Ints | PaddingMode

_MODES: tuple[PaddingMode, ...] = ("same", "valid")


def _text(value: Any) -> str | None:
    """``value`` as a str when it is text (str, bytes, or a 1-element string array)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "SU" and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bytes):  # np.bytes_ included: how HDF5 returns strings
        return value.decode()
    if isinstance(value, str):
        return str(value)
    return None


def _flat_ints(value: Any, name: str) -> Ints:
    """Every value of ``value`` (scalar, sequence or array) as a Python int."""
    if _text(value) is not None:
        raise InvalidParameterError(f"{name}={value!r}: give integers, not a string")
    try:
        arr = np.asarray(value).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{name}={value!r} is not a number or a sequence of "
                                    f"numbers ({exc})") from None
    if arr.dtype.kind in "iub":
        return tuple(int(a) for a in arr)
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{name}={value!r}: give integers") from None
    if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)):
        raise InvalidParameterError(f"{name}={value!r}: give integers")
    return tuple(int(a) for a in arr)


def as_int(value: Any, name: str = "value") -> int:
    """One int from an int, a numpy integer or a 1-element array (e.g. ``groups``)."""
    values = _flat_ints(value, name)
    if len(values) != 1:
        raise InvalidParameterError(f"{name}={value!r}: give one integer")
    return values[0]


def as_ints(value: Any, rank: int, name: str = "value") -> Ints:
    """``rank`` ints from ``value``: one value (int, 0-d or 1-element array) is used on every
    axis, ``rank`` values are kept in order; any other count raises."""
    values = _flat_ints(value, name)
    if len(values) == 1:
        return values * rank
    if len(values) != rank:
        raise InvalidParameterError(f"{name}={value!r}: give one integer or {rank} "
                                    f"(one per spatial axis)")
    return values


def padding_mode(value: Any) -> PaddingMode | None:
    """``"same"`` or ``"valid"`` when ``value`` is that string (str, bytes or string array),
    None when it is not text; any other string raises."""
    text = _text(value)
    if text is None:
        return None
    for mode in _MODES:
        if text == mode:
            return mode
    raise InvalidParameterError(f"padding={text!r}: give integers or 'same'/'valid'")


def as_padding(value: Any, rank: int) -> Padding:
    """Padding as torch's ``conv1d``/``conv2d`` take it: ``"same"``/``"valid"`` or ``rank``
    ints per side."""
    mode = padding_mode(value)
    return mode if mode is not None else as_ints(value, rank, "padding")


def symmetric_padding(padding: Any, kernel_size: Any, dilation: Any = 1) -> Ints | None:
    """Zeros added on each side of every spatial axis, with ``"valid"`` (none) and
    ``"same"`` (``dilation·(kernel-1) / 2``) resolved; None when ``"same"`` needs an odd total,
    which torch pads unevenly (one more zero at the end) and NIR's per-side integers cannot
    say. The rank is the number of ``kernel_size`` values."""
    kernel = _flat_ints(kernel_size, "kernel_size")
    rank = len(kernel)
    mode = padding_mode(padding)
    if mode is None:
        return as_ints(padding, rank, "padding")
    if mode == "valid":
        return (0,) * rank
    total = [d * (k - 1) for d, k in zip(as_ints(dilation, rank, "dilation"), kernel,
                                        strict=True)]
    if any(t % 2 for t in total):
        return None
    return tuple(t // 2 for t in total)


def conv_output_shape(input_shape: int | Sequence[int] | np.ndarray, kernel_size: Any,
                      stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Ints:
    """Spatial output size of a convolution (or pooling window) on ``input_shape`` (its
    spatial axes only; one int for 1-d): ``floor((n + 2p - d·(k-1) - 1) / s) + 1`` per axis,
    as torch and NIR compute it; ``"same"`` keeps ``n``, ``"valid"`` is ``p = 0``. A window
    larger than the padded input gives a size ``<= 0``: callers decide what that means."""
    sizes = _flat_ints(input_shape, "input_shape")
    rank = len(sizes)
    mode = padding_mode(padding)
    if mode == "same":
        return sizes
    pad = (0,) * rank if mode == "valid" else as_ints(padding, rank, "padding")
    kernel = as_ints(kernel_size, rank, "kernel_size")
    step = as_ints(stride, rank, "stride")
    dil = as_ints(dilation, rank, "dilation")
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, p, d, k, s in zip(sizes, pad, dil, kernel, step, strict=True))


class ConvGeometry(NamedTuple):
    """Normalised geometry of a Conv1d/Conv2d (``rank`` = ``len(kernel_size)``)."""

    kernel_size: Ints
    stride: Ints
    padding: Padding  # "same"/"valid" kept as given: torch resolves them itself
    dilation: Ints
    groups: int

    def explicit_padding(self) -> Ints | None:
        """Per-side zeros (see :func:`symmetric_padding`); None for uneven ``"same"``."""
        return symmetric_padding(self.padding, self.kernel_size, self.dilation)

    def output_shape(self, input_shape: int | Sequence[int] | np.ndarray) -> Ints:
        """Spatial output size on the spatial ``input_shape``."""
        return conv_output_shape(input_shape, self.kernel_size, self.stride, self.padding,
                                 self.dilation)


def conv_geometry(kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                  groups: Any = 1, rank: int | None = None) -> ConvGeometry:
    """Normalise a convolution's settings; ``rank`` defaults to the number of
    ``kernel_size`` values (give it when ``kernel_size`` is one int for a 2-d kernel)."""
    if rank is None:
        rank = len(_flat_ints(kernel_size, "kernel_size"))
    return ConvGeometry(as_ints(kernel_size, rank, "kernel_size"),
                        as_ints(stride, rank, "stride"), as_padding(padding, rank),
                        as_ints(dilation, rank, "dilation"), as_int(groups, "groups"))


def conv_geometry_of(layer: Any) -> ConvGeometry:
    """The geometry of a NIR ``Conv1d``/``Conv2d`` node (kernel from ``weight.shape[2:]``) or
    a torch ``nn.Conv1d``/``nn.Conv2d`` (its ``kernel_size``)."""
    kernel = getattr(layer, "kernel_size", None)
    if kernel is None:
        kernel = tuple(np.shape(layer.weight)[2:])
    return conv_geometry(kernel, layer.stride, layer.padding, layer.dilation, layer.groups)


class PoolGeometry(NamedTuple):
    """Normalised geometry of a 2-d pooling window (unpacks as ``k, s, p``)."""

    kernel_size: Ints
    stride: Ints
    padding: Ints

    @property
    def area(self) -> int:
        """Number of input elements in one window (``kh·kw``)."""
        return int(np.prod(self.kernel_size))

    def output_shape(self, input_shape: Sequence[int] | np.ndarray) -> Ints:
        """Spatial output size on the spatial ``input_shape`` ``(H, W)``."""
        return conv_output_shape(input_shape, self.kernel_size, self.stride, self.padding)


def pool_geometry(kernel_size: Any, stride: Any = None, padding: Any = 0,
                  rank: int = 2) -> PoolGeometry:
    """Normalise a pooling window; ``stride=None`` means the kernel size (as in torch)."""
    kernel = as_ints(kernel_size, rank, "kernel_size")
    step = kernel if stride is None else as_ints(stride, rank, "stride")
    return PoolGeometry(kernel, step, as_ints(padding, rank, "padding"))


def pool_geometry_of(layer: Any) -> PoolGeometry:
    """The geometry of a NIR ``SumPool2d``/``AvgPool2d`` node or a torch ``nn.AvgPool2d`` /
    :class:`nirbridge.layers.SumPool2d` (anything with ``kernel_size``, ``stride``,
    ``padding``)."""
    return pool_geometry(layer.kernel_size, layer.stride, layer.padding)


__all__ = [
    "ConvGeometry", "Ints", "Padding", "PaddingMode", "PoolGeometry", "as_int", "as_ints",
    "as_padding", "conv_geometry", "conv_geometry_of", "conv_output_shape", "padding_mode",
    "pool_geometry", "pool_geometry_of", "symmetric_padding",
]
