"""Trainable PyTorch neuron modules (single step, explicit state) and their equations.

Every module is a :class:`NeuronModule`: ``forward(x, state=None) -> (out, new_state)``,
``initial_state(x)`` and ``to_nir_node(shape, dt)``; the equations live in
:mod:`nirbridge.neurons.functional` (specs/neurons.md).
"""

from nirbridge.neurons import functional
from nirbridge.neurons.alif import ALIF
from nirbridge.neurons.arlif import ARLIF
from nirbridge.neurons.base import NeuronModule, StatefulSequential, run_steps
from nirbridge.neurons.clif import CLIF
from nirbridge.neurons.dalif import DALIF
from nirbridge.neurons.klif import KLIF
from nirbridge.neurons.lif import IF, LI, LIF, PLIF, CubaLIF

__all__ = [
    "ALIF",
    "ARLIF",
    "CLIF",
    "DALIF",
    "IF",
    "KLIF",
    "LI",
    "LIF",
    "PLIF",
    "CubaLIF",
    "NeuronModule",
    "StatefulSequential",
    "functional",
    "run_steps",
]
