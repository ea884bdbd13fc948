"""AR-LIF (arXiv 2507.20746): input-adaptive threshold and adaptive soft reset."""

from __future__ import annotations

import nir
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule, Param, full


class ARLIF(NeuronModule):
    """AR-LIF with state ``(v, m)``, both starting at 0::

        v ← decay·v + x
        θ = v_th + tanh(a)·tanh(x)
        s = H(v − θ)                              # '>=' by default
        g = σ(c·x);  m ← relu(m)·g − relu(−m)·(1 − g)
        m ← m + (2s − 1)·σ(x)
        v ← v − s·(θ + σ(m))

    ``a`` (trained raw, effective ``tanh_a = tanh(a)``) and ``c`` are learnable by default,
    per layer or per channel; ``decay`` and ``v_threshold`` are fixed buffers.
    ``memoryless_m=True`` is the variant of the paper's CIFAR10-DVS checkpoint (``m`` is
    zero before every step, ``c`` is then unused); that run fired on strict ``'>'``: pass
    ``compare='>'`` to reproduce it (the default stays ``'>='``, the official code's).
    Exported as the custom ``ARLIF`` node with ``tanh_a`` stored.
    """

    def __init__(
        self,
        decay: Param = 0.5,
        v_threshold: Param = 1.0,
        a: Param = 0.0,
        c: Param = 1.0,
        *,
        memoryless_m: bool = False,
        compare: str = ">=",
        learn_a: bool = True,
        learn_c: bool = True,
    ) -> None:
        super().__init__()
        self.memoryless_m = bool(memoryless_m)
        self.compare = F.check_compare(compare)
        self.add_param("decay", decay)
        self.add_param("v_threshold", v_threshold)
        self.add_param("a", a, learn_a)
        self.add_param("c", c, learn_c)

    def initial_state(self, x: torch.Tensor) -> F.ARLIFState:
        return F.ARLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.ARLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.arlif_step(
            x, state, decay=self.p("decay", x), v_threshold=self.p("v_threshold", x),
            tanh_a=torch.tanh(self.p("a", x)), c=self.p("c", x),
            memoryless_m=self.memoryless_m, compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # AR-LIF is a per-step model: dt does not enter its parameters.
        return N.ARLIF(
            decay=full(self.decay, shape, "decay"),
            v_threshold=full(self.v_threshold, shape, "v_threshold"),
            tanh_a=full(torch.tanh(self.a.detach().double()), shape, "a"),
            c=full(self.c, shape, "c"),
            memoryless_m=self.memoryless_m, compare=self.compare,
        )

    def extra_repr(self) -> str:
        return f"memoryless_m={self.memoryless_m}, compare={self.compare!r}"


__all__ = ["ARLIF"]
