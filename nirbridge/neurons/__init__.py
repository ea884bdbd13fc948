"""Neurons: one file each, and the registry every stage reads.

``nirbridge/neurons/<name>.py`` holds everything specific to one neuron: its NIR node
(custom nodes only), torch step and trainable module, lossy standard-NIR approximation,
integer (fixed-point) model and quantizer plan, and its :class:`NeuronSpec`, registered in
:data:`NEURONS` (keyed by the node type name). NIR's own neurons (LIF, IF, LI, I, CubaLIF,
CubaLI) share :mod:`~nirbridge.neurons.standard`. Importing this package registers every
built-in neuron; see the README's "Adding a neuron".

Every module is a :class:`NeuronModule`: ``forward(x, state=None) -> (out, new_state)``,
``initial_state(x)`` and ``to_nir_node(shape, dt)``. The building blocks a neuron file uses
(``spike``, ``CustomNeuron``, ``node_kwargs``, ``leaky_standard_node``, ...) are exported
here too.
"""

# Registration order is the order of the [quantization.frac_bits] defaults: keep it.
from nirbridge.neurons import lava_lif, standard, sublif  # noqa: I001 - others build on these
from nirbridge.neurons import dalif, klif, arlif, clif, alif, plif  # noqa: I001
from nirbridge.neurons import snntorch_leaky  # noqa: F401, I001
from nirbridge.neurons import snntorch_synaptic  # noqa: F401, I001
from nirbridge.neurons import snntorch_alpha  # noqa: F401, I001
from nirbridge.neurons import sinabs_iaf, sinabs_lif  # noqa: F401, I001
from nirbridge.neurons import sinabs_expleak, sinabs_synlif  # noqa: F401, I001
from nirbridge.neurons import norse_lif, norse_li  # noqa: F401, I001
from nirbridge.neurons import sjlif, sjplif  # noqa: F401, I001
from nirbridge.neurons import functional  # noqa: I001 - after the neuron files it gathers
from nirbridge.neurons._base import (
    CustomNeuron,
    NeuronModule,
    StatefulSequential,
    as_bool,
    as_str,
    check_compare,
    example_value,
    full,
    leaky_standard_node,
    param_reader,
    run_steps,
    spike,
)
from nirbridge.neurons._registry import (
    NEURONS,
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    StockLava,
    custom_node_class,
    custom_nodes,
    default_frac_bits,
    is_neuron,
    node_kwargs,
    register,
    spec_of,
)
from nirbridge.neurons.alif import ALIF
from nirbridge.neurons.arlif import ARLIF
from nirbridge.neurons.clif import CLIF
from nirbridge.neurons.dalif import DALIF
from nirbridge.neurons.hidden import HiddenNeuron, reset_hidden, swap_activations
from nirbridge.neurons.klif import KLIF
from nirbridge.neurons.plif import PLIF
from nirbridge.neurons.standard import IF, LI, LIF, CubaLI, CubaLIF, I

__all__ = [
    "as_bool",
    "as_str",
    "check_compare",
    "example_value",
    "full",
    "leaky_standard_node",
    "node_kwargs",
    "param_reader",
    "spike",
    "ALIF",
    "ARLIF",
    "CLIF",
    "DALIF",
    "HiddenNeuron",
    "I",
    "IF",
    "KLIF",
    "LI",
    "LIF",
    "NEURONS",
    "PLIF",
    "CubaLI",
    "CubaLIF",
    "CustomNeuron",
    "IntegerModel",
    "NeuronModule",
    "NeuronSpec",
    "QuantPlan",
    "StatefulSequential",
    "StockLava",
    "alif",
    "arlif",
    "clif",
    "custom_node_class",
    "custom_nodes",
    "dalif",
    "functional",
    "default_frac_bits",
    "is_neuron",
    "klif",
    "lava_lif",
    "plif",
    "register",
    "reset_hidden",
    "run_steps",
    "spec_of",
    "standard",
    "sublif",
    "swap_activations",
]
