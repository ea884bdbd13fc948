"""NIR's stateless nodes as ONNX operators, one time step on ``[B, ...]`` values.

Each computes what :func:`nirbridge.backends.reference.apply_synapse` computes, with the
same operations in the same order (``Affine``: ``x·Wᵀ + b``; ``SumPool2d``: the window
average times its area, as the reference does), in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import nir
import numpy as np
from onnx import TensorProto

from nirbridge.errors import LoweringError
from nirbridge.export_onnx._builder import Builder
from nirbridge.geometry import Ints, conv_geometry_of, padding_mode, pool_geometry_of

#: The stateless NIR node types :func:`emit_synapse` converts.
SYNAPSES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
            nir.AvgPool2d, nir.Flatten, nir.Threshold)


def _conv_pads(name: str, node: nir.NIRNode) -> Ints:
    """ONNX ``pads`` (all begins, then all ends) for a NIR convolution; ``"same"`` pads
    the extra zero at the end, as torch does."""
    g = conv_geometry_of(node)
    explicit = g.explicit_padding()
    if explicit is not None:
        return (*explicit, *explicit)
    if padding_mode(g.padding) != "same":  # pragma: no cover - explicit_padding covers it
        raise LoweringError(f"node '{name}' ({type(node).__name__}): padding={g.padding!r} "
                            "has no ONNX form")
    total = [d * (k - 1) for d, k in zip(g.dilation, g.kernel_size, strict=True)]
    return (*(t // 2 for t in total), *(t - t // 2 for t in total))


def emit_synapse(b: Builder, name: str, node: nir.NIRNode, x: str,
                 out_shape: Sequence[int]) -> str:
    """The ONNX value of ``node`` applied to ``x``; ``out_shape`` is its per-sample
    output shape (for ``Flatten``)."""
    f32 = np.float32
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = b.const(np.asarray(node.weight, dtype=np.float64).T, f32, f"{name}/weight_t")
        y = b.op("MatMul", [x, w], f"{name}/MatMul")
        if isinstance(node, nir.Affine):
            y = b.op("Add", [y, b.const(node.bias, f32, f"{name}/bias")], f"{name}/Add")
        return y
    if isinstance(node, nir.Scale):
        return b.op("Mul", [x, b.const(node.scale, f32, f"{name}/scale")], f"{name}/Mul")
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        g = conv_geometry_of(node)
        inputs = [x, b.const(node.weight, f32, f"{name}/weight")]
        if node.bias is not None:
            inputs.append(b.const(node.bias, f32, f"{name}/bias"))
        return b.op("Conv", inputs, f"{name}/Conv", kernel_shape=list(g.kernel_size),
                    strides=list(g.stride), dilations=list(g.dilation),
                    pads=list(_conv_pads(name, node)), group=g.groups)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        p = pool_geometry_of(node)
        y = b.op("AveragePool", [x], f"{name}/AveragePool", kernel_shape=list(p.kernel_size),
                 strides=list(p.stride), pads=list(p.padding) * 2, count_include_pad=1)
        if isinstance(node, nir.SumPool2d):
            y = b.op("Mul", [y, b.const(float(p.area), f32, f"{name}/area")], f"{name}/Mul")
        return y
    if isinstance(node, nir.Flatten):
        # 0 keeps the batch size as it comes; the rest is the reference's flattened shape
        shape = b.ints([0, *(int(s) for s in out_shape)], f"{name}/shape")
        return b.op("Reshape", [x, shape], f"{name}/Reshape")
    if isinstance(node, nir.Threshold):
        fired = b.op("Greater", [x, b.const(node.threshold, f32, f"{name}/threshold")],
                     f"{name}/Greater")
        return b.op("Cast", [fired], f"{name}/Cast", to=TensorProto.FLOAT)
    raise LoweringError(f"node '{name}' of type {type(node).__name__} has no ONNX "
                        "conversion; nirbridge converts "
                        f"{', '.join(t.__name__ for t in SYNAPSES)}, Delay and the "
                        "registered neurons")


__all__ = ["SYNAPSES", "emit_synapse"]
