"""ALIF (Bellec et al. 2018): LIF with a spike-driven adaptive threshold."""

from __future__ import annotations

import nir
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule, Param, check_positive, full, to_tensor


class ALIF(NeuronModule):
    """ALIF with state ``(v, b, z_prev)``, all starting at 0::

        b ← ρ·b + (1 − ρ)·z_prev ;  A = v_th + β·b
        v ← α·v + (1 − α)·x − z_prev·A ;  z = H(v − A)      # '>' by default

    with ``α = exp(−dt/τ_mem)`` and ``ρ = exp(−dt/τ_adapt)``, computed once at construction
    and stored as the buffers ``alpha`` and ``rho`` (the effective values exported).
    Ordering: adaptation and reset use the previous step's spike, this step's spike comes
    from the *updated* voltage (Bellec's code uses the voltage before the update, one step
    later); see :func:`functional.alif_step`. Exported as the custom ``ALIF`` node.
    """

    def __init__(
        self,
        tau_mem: Param = 20.0,
        tau_adapt: Param = 200.0,
        v_threshold: Param = 1.0,
        beta: Param = 1.8,
        *,
        dt: float = 1.0,
        compare: str = ">",
    ) -> None:
        super().__init__()
        self.compare = F.check_compare(compare)
        self.dt = float(dt)
        tau_mem_t = to_tensor(tau_mem, "tau_mem").double()
        tau_adapt_t = to_tensor(tau_adapt, "tau_adapt").double()
        check_positive(tau_mem_t.cpu().numpy(), "tau_mem", "ALIF")
        check_positive(tau_adapt_t.cpu().numpy(), "tau_adapt", "ALIF")
        dtype = torch.get_default_dtype()
        self.add_param("alpha", torch.exp(-self.dt / tau_mem_t).to(dtype))
        self.add_param("rho", torch.exp(-self.dt / tau_adapt_t).to(dtype))
        self.add_param("v_threshold", v_threshold)
        self.add_param("beta", beta)

    def initial_state(self, x: torch.Tensor) -> F.ALIFState:
        return F.ALIFState(torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.ALIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.alif_step(x, state, alpha=self.p("alpha", x), rho=self.p("rho", x),
                           v_threshold=self.p("v_threshold", x), beta=self.p("beta", x),
                           compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # alpha and rho are per-step factors: the graph's dt does not change them.
        return N.ALIF(alpha=full(self.alpha, shape, "alpha"), rho=full(self.rho, shape, "rho"),
                      v_threshold=full(self.v_threshold, shape, "v_threshold"),
                      beta=full(self.beta, shape, "beta"), compare=self.compare)

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, dt={self.dt}"


__all__ = ["ALIF"]
