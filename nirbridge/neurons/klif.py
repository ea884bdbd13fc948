"""KLIF (arXiv 2302.09238; reference: SpikingJelly ``KLIFNode``): a learnable-slope LIF."""

from __future__ import annotations

import nir
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule, Param, check_positive, full


class KLIF(NeuronModule):
    """KLIF: ``h = v + (x − (v − v_r))/τ`` (``decay_input``) or ``h = v − (v − v_r)/τ + x``;
    ``f = relu(k·h)``; fire on ``f >= v_th``; hard reset ``v = f(1 − s) + v_r·s`` or, with
    ``v_reset=None``, soft reset ``v = f − s·v_th``; ``scale_reset`` divides the new ``v``
    by ``k`` (hard: only the ``f`` term).

    ``k`` is a learnable scalar (SpikingJelly initialises it to 1); export requires
    ``k > 0``. State starts at ``v = v_r`` (0 for soft reset), as in SpikingJelly.
    Exported as the custom ``KLIF`` node (the relu floor has no NIR equivalent); the node
    has ``soft_reset=True`` and ``v_reset = 0`` where this module has ``v_reset=None``.
    """

    def __init__(
        self,
        tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_reset: Param | None = 0.0,
        *,
        k: Param = 1.0,
        learn_k: bool = True,
        decay_input: bool = True,
        scale_reset: bool = False,
        compare: str = ">=",
    ) -> None:
        super().__init__()
        self.compare = F.check_compare(compare)
        self.soft_reset = v_reset is None
        self.decay_input = bool(decay_input)
        self.scale_reset = bool(scale_reset)
        self.add_param("tau", tau)
        self.add_param("k", k, learn_k)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.klif_step(
            x, state, tau=self.p("tau", x), k=self.p("k", x),
            v_threshold=self.p("v_threshold", x),
            v_reset=None if self.soft_reset else self.p("v_reset", x),
            decay_input=self.decay_input, scale_reset=self.scale_reset, compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # KLIF is a per-step model: dt does not enter its parameters.
        return N.KLIF(
            tau=full(self.tau, shape, "tau"),
            k=check_positive(full(self.k, shape, "k"), "k", "KLIF"),
            v_threshold=full(self.v_threshold, shape, "v_threshold"),
            v_reset=full(self.v_reset, shape, "v_reset"),
            soft_reset=self.soft_reset, decay_input=self.decay_input,
            scale_reset=self.scale_reset, compare=self.compare,
        )

    def extra_repr(self) -> str:
        return (f"soft_reset={self.soft_reset}, decay_input={self.decay_input}, "
                f"scale_reset={self.scale_reset}, compare={self.compare!r}")


__all__ = ["KLIF"]
