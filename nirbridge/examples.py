"""Built-in example networks: the demo's model and the models of the deployment recipes.

``DigitsConvSNN`` is a small residual convolutional SNN for 8×8 inputs (scikit-learn's
handwritten digits) with a choice of neuron: convolution + batch-norm → neuron, one
residual block, average pooling, a linear read-out whose outputs are summed over time.
"""

from __future__ import annotations

from typing import Any

import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import ARLIF, CLIF, DALIF, KLIF, LIF, PLIF, NeuronModule

NEURON_KINDS = ("lif", "arlif", "klif", "dalif", "plif", "clif")


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
