"""Built-in example networks: the demo's model and the models of the deployment recipes.

``DigitsConvSNN`` is a small residual convolutional SNN for 8×8 inputs (scikit-learn's
handwritten digits) with a choice of neuron: convolution + batch-norm → neuron, one
residual block, average pooling, a linear read-out whose outputs are summed over time.

``DigitsRecurrentSNN`` is a recurrent SNN for sequential digits (the ``rows`` encoding:
one 8-pixel image row per step): a linear input layer, one all-to-all recurrent layer of
ALIF, AR-LIF or CubaLIF neurons (:class:`~nirbridge.layers.Recurrent`) and a linear
read-out, summed over time like the conv model's.
"""

from __future__ import annotations

from typing import Any

import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.layers import Recurrent
from nirbridge.neurons import ALIF, ARLIF, CLIF, DALIF, KLIF, LIF, PLIF, CubaLIF, NeuronModule

NEURON_KINDS = ("lif", "arlif", "klif", "dalif", "plif", "clif")
#: Neurons of :class:`DigitsRecurrentSNN`.
RECURRENT_NEURON_KINDS = ("alif", "arlif", "cubalif")


def make_neuron(kind: str, channels: int) -> NeuronModule:
    """A neuron layer of ``kind`` with per-channel parameters for ``channels`` feature maps."""
    per_channel = (channels, 1, 1)
    if kind == "lif":
        return LIF(tau=torch.full(per_channel, 2.0), v_threshold=0.5)
    if kind == "arlif":
        return ARLIF(decay=0.5, v_threshold=0.5, a=torch.full(per_channel, 0.2), c=0.5)
    if kind == "klif":
        return KLIF(tau=2.0, v_threshold=0.5, k=1.0)
    if kind == "dalif":
        return DALIF(alpha=torch.full(per_channel, 1.0), beta=torch.full(per_channel, 0.5),
                     v_threshold=0.5)
    if kind == "plif":
        return PLIF(init_tau=2.0, v_threshold=0.5)
    if kind == "clif":
        return CLIF(tau=2.0, v_threshold=0.5)
    raise InvalidParameterError(f"neuron kind {kind!r} is unknown; use one of {NEURON_KINDS}")


class DigitsConvSNN(torch.nn.Module):
    """Residual conv SNN for ``[B, 1, 8, 8]`` inputs, one step per call.

    ``forward(x, state=None) -> (logits_t, state)``: ``logits_t`` is this step's read-out
    (a graded value: classify by summing it over time).
    """

    def __init__(self, neuron: str = "lif", channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        c = channels
        self.conv1 = torch.nn.Conv2d(1, c, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.sn1 = make_neuron(neuron, c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(c)
        self.sn2 = make_neuron(neuron, c)
        self.conv3 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn3 = torch.nn.BatchNorm2d(c)
        self.sn3 = make_neuron(neuron, c)
        self.pool = torch.nn.AvgPool2d(2)
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(c * 16, classes)

    def forward(self, x: torch.Tensor, state: Any = None):
        s1, s2, s3 = (None, None, None) if state is None else state
        h1, s1 = self.sn1(self.bn1(self.conv1(x)), s1)
        h2, s2 = self.sn2(self.bn2(self.conv2(h1)), s2)
        h3, s3 = self.sn3(self.bn3(self.conv3(h2)) + h1, s3)  # residual add
        out = self.fc(self.flat(self.pool(h3)))
        return out, (s1, s2, s3)


def digits_conv_snn(neuron: str = "lif") -> DigitsConvSNN:
    """Factory for the CLI: ``nirbridge export nirbridge.examples:digits_conv_snn ...``."""
    return DigitsConvSNN(neuron)


def digits_arlif() -> DigitsConvSNN:
    return DigitsConvSNN("arlif")


def digits_klif() -> DigitsConvSNN:
    return DigitsConvSNN("klif")


def digits_dalif() -> DigitsConvSNN:
    return DigitsConvSNN("dalif")


def make_recurrent_neuron(kind: str, hidden: int) -> NeuronModule:
    """A 1-d layer of ``hidden`` neurons of ``kind`` (one of :data:`RECURRENT_NEURON_KINDS`)
    for :class:`DigitsRecurrentSNN`; time constants are in steps (dt = 1), short because
    a sequence has only 8 steps: the recurrence, not the leak, holds the earlier rows."""
    if kind == "alif":
        # an LSNN's adaptive threshold (Bellec et al. 2018), adapting over ~16 steps
        return ALIF(tau_mem=1.5, tau_adapt=16.0, v_threshold=0.5, beta=1.0)
    if kind == "arlif":
        return ARLIF(decay=0.5, v_threshold=0.5, a=torch.full((hidden,), 0.2), c=0.5)
    if kind == "cubalif":
        # the synaptic current carries the memory (τ_syn = 2 steps), the membrane follows
        # it within the step (τ_mem = dt: v ← R·i, hard reset)
        return CubaLIF(tau_syn=2.0, tau_mem=1.0, v_threshold=0.25)
    raise InvalidParameterError(f"neuron kind {kind!r} is unknown for the recurrent model; "
                                f"use one of {RECURRENT_NEURON_KINDS}")


class DigitsRecurrentSNN(torch.nn.Module):
    """Recurrent SNN for sequential digits, ``[B, inputs]`` per step (one image row).

    ``Linear(inputs → hidden) → Recurrent(neuron, Linear(hidden → hidden, no bias)) →
    Linear(hidden → classes)``; ``forward(x, state=None) -> (logits_t, state)`` with
    ``logits_t`` this step's read-out (classify by summing it over time). The recurrent
    synapse has no bias, so every bias is on the feed-forward path (a recurrent bias would
    first count at t = 1: docs/recurrence.md).
    """

    def __init__(self, neuron: str = "alif", hidden: int = 64, inputs: int = 8,
                 classes: int = 10) -> None:
        super().__init__()
        if hidden < 1 or inputs < 1 or classes < 1:
            raise InvalidParameterError(f"hidden={hidden}, inputs={inputs}, classes={classes}; "
                                        "give positive sizes")
        self.fc_in = torch.nn.Linear(inputs, hidden)
        self.rec = Recurrent(make_recurrent_neuron(neuron, hidden),
                             torch.nn.Linear(hidden, hidden, bias=False))
        self.fc_out = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, state: Any = None):
        h, state = self.rec(self.fc_in(x), state)
        return self.fc_out(h), state


def digits_recurrent_snn(neuron: str = "alif", hidden: int = 64) -> DigitsRecurrentSNN:
    """Factory for recipes and the CLI: the sequential-digits model (``rows`` encoding)."""
    return DigitsRecurrentSNN(neuron, hidden)
