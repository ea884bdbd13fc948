"""The neuron equations as pure single-step functions (compatibility view).

Each equation is defined once, in its neuron's file (``nirbridge/neurons/<name>.py``);
this module gathers the built-in ones under their historical names for code written
against ``nirbridge.neurons.functional``. The trainable modules, the float64 reference and
Lava ``floating_pt`` all call these same functions (through the registry).

Conventions (Norse style): every step takes the input current ``x`` of this step and the
previous state (a NamedTuple of tensors), and returns ``(spikes, new_state)``. Parameters
are tensors (or floats) broadcastable to ``x``'s neuron shape, already in their
*effective* form (e.g. ``tanh_a = tanh(a)``). ``compare`` is ``">"`` or ``">="``.
"""

from nirbridge.neurons._base import COMPARES, SurrogateSpike, check_compare, spike
from nirbridge.neurons.alif import ALIFState, alif_step
from nirbridge.neurons.arlif import ARLIFState, arlif_step
from nirbridge.neurons.clif import CLIFState, clif_step
from nirbridge.neurons.dalif import dalif_step
from nirbridge.neurons.klif import klif_step
from nirbridge.neurons.standard import (
    CubaLIFState,
    LIFState,
    cubali_step,
    cubalif_step,
    i_step,
    if_step,
    li_step,
    lif_step,
)

__all__ = [
    "ALIFState",
    "ARLIFState",
    "CLIFState",
    "COMPARES",
    "CubaLIFState",
    "LIFState",
    "SurrogateSpike",
    "alif_step",
    "arlif_step",
    "check_compare",
    "clif_step",
    "cubali_step",
    "cubalif_step",
    "dalif_step",
    "i_step",
    "if_step",
    "klif_step",
    "li_step",
    "lif_step",
    "spike",
]
