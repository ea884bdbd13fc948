"""CLIF (complementary LIF, ICML 2024)."""

from __future__ import annotations

import nir
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule, Param, full


class CLIF(NeuronModule):
    """CLIF with state ``(v, m)``, both starting at 0::

        v ← (1 − 1/τ)·v + x ;  m ← m·σ(v/τ) ;  s = H(v − v_th)
        m ← m + s ;  v ← v − s·v_th − s·σ(m)

    ``tau`` (2 in the paper) and ``v_threshold`` are fixed buffers; fires on ``'>='``
    (SpikingJelly-based code) by default. Exported as the custom ``CLIF`` node.
    """

    def __init__(self, tau: Param = 2.0, v_threshold: Param = 1.0, *,
                 compare: str = ">=") -> None:
        super().__init__()
        self.compare = F.check_compare(compare)
        self.add_param("tau", tau)
        self.add_param("v_threshold", v_threshold)

    def initial_state(self, x: torch.Tensor) -> F.CLIFState:
        return F.CLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.CLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.clif_step(x, state, tau=self.p("tau", x),
                           v_threshold=self.p("v_threshold", x), compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # CLIF is a per-step model: dt does not enter its parameters.
        return N.CLIF(tau=full(self.tau, shape, "tau"),
                      v_threshold=full(self.v_threshold, shape, "v_threshold"),
                      compare=self.compare)

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}"


__all__ = ["CLIF"]
