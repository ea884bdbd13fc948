"""The ONNX graph under construction: nodes, initializers and unique value names.

Everything the converter and the tracer emit goes through one :class:`Builder` per ONNX
graph (the step graph, the Scan body, the outer sequence graph), so that names are unique
and equal constants are stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

#: The element type every float value of an exported model has.
FLOAT = TensorProto.FLOAT
FLOAT_NP = np.float32


class Builder:
    """Accumulates the nodes and initializers of one ONNX graph.

    ``prefix`` starts every generated value name, so that a subgraph's names never shadow
    those of the graph around it (ONNX forbids that).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._counts: dict[str, int] = {}
        self._consts: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self._taken: set[str] = set()

    def reserve(self, name: str) -> str:
        """Mark an interface name (graph input or output) as used; returns it."""
        self._taken.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A new value name built from ``hint``."""
        base = f"{self.prefix}{hint}"
        while True:
            n = self._counts.get(base, 0)
            self._counts[base] = n + 1
            name = f"{base}_{n}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, value: Any, dtype: Any = FLOAT_NP, hint: str = "const") -> str:
        """An initializer holding ``value`` as ``dtype`` (equal constants share one)."""
        arr = np.array(value, dtype=dtype, order="C")  # 0-d stays 0-d
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def initializer(self, name: str, value: np.ndarray) -> None:
        """An initializer with a given (interface) name: a graph input's default."""
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))

    def op(self, op_type: str, inputs: Sequence[str], hint: str = "", *,
           outputs: Sequence[str] | None = None, **attrs: Any) -> str:
        """Emit one node; returns its (first) output's name. ``outputs`` names them."""
        out = list(outputs) if outputs is not None else [self.fresh(hint or op_type)]
        self.nodes.append(helper.make_node(op_type, list(inputs), out,
                                           name=self.fresh(f"node/{hint or op_type}"),
                                           **attrs))
        return out[0]

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        """An int64 1-d constant (shapes, axes, indices)."""
        return self.const(np.asarray(values, dtype=np.int64), np.int64, hint)


def value_info(name: str, shape: Sequence[int | str], elem: int = FLOAT):
    """A tensor type for a graph input or output (``"batch"`` and ``"time"`` symbolic)."""
    return helper.make_tensor_value_info(name, elem, list(shape))


__all__ = ["FLOAT", "FLOAT_NP", "Builder", "value_info"]
