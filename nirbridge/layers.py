"""Torch layers that have an exact NIR node but no ``torch.nn`` counterpart."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nirbridge.errors import InvalidParameterError
from nirbridge.geometry import pool_geometry

IntPair = int | tuple[int, int]


class SumPool2d(torch.nn.Module):
    """2-d sum pooling: the sum of each window, zero padding included (``nir.SumPool2d``).

    Equal to ``AvgPool2d(count_include_pad=True) · kh·kw`` but computed as an exact sum
    (``avg_pool2d`` with ``divisor_override=1``), so float64 results have no division
    round-off. Unlike max pooling, it maps to spikes linearly and runs on neuromorphic
    hardware as a convolution with a ones kernel.

    Args:
        kernel_size: window ``(kh, kw)`` or one int for both.
        stride: step of the window; ``None`` (default) means ``kernel_size``.
        padding: zeros added on each side, at most half the kernel (as in torch).
    """

    #: A leaf of the traced graph (it maps to one NIR node).
    _is_leaf_module = True

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0) -> None:
        super().__init__()
        try:
            geometry = pool_geometry(kernel_size, stride, padding)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"SumPool2d: {exc}") from None
        self.kernel_size: tuple[int, int] = (geometry.kernel_size[0], geometry.kernel_size[1])
        self.stride: tuple[int, int] = (geometry.stride[0], geometry.stride[1])
        self.padding: tuple[int, int] = (geometry.padding[0], geometry.padding[1])
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise InvalidParameterError(
                f"SumPool2d: kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}; kernel and stride must be >= 1, padding >= 0"
            )
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise InvalidParameterError(
                f"SumPool2d: padding={self.padding} exceeds half of kernel_size="
                f"{self.kernel_size}; use padding <= kernel_size // 2"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Window sums of ``x`` ([B, C, H, W] or [C, H, W])."""
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=False,
                            count_include_pad=True, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


__all__ = ["SumPool2d"]
