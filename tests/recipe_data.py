"""Factories the data-set recipe tests name as ``MODULE:FACTORY``: a small MLP SNN for
event frames and a map-style torch ``Dataset`` of frames."""

from typing import Any

import numpy as np
import torch

from nirbridge.neurons import LIF


class TinyMLP(torch.nn.Module):
    """``Flatten → Linear(inputs → hidden) → LIF → Linear(hidden → classes)``, one step
    per call: ``forward(x, state) -> (logits_t, state)``."""

    def __init__(self, inputs: int, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.flat = torch.nn.Flatten()
        self.fc1 = torch.nn.Linear(inputs, hidden)
        self.sn = LIF(tau=2.0, v_threshold=0.5)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, state: Any = None):
        h, state = self.sn(self.fc1(self.flat(x)), state)
        return self.fc2(h), state


def tiny_mlp(inputs: int, hidden: int = 16, classes: int = 3) -> TinyMLP:
    return TinyMLP(inputs, hidden, classes)


class FramesDataset(torch.utils.data.Dataset):
    """Seven samples of 4 event frames ``[4, 2, 3, 3]`` (small counts), labels 0-2."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.x = torch.from_numpy(rng.poisson(0.8, (7, 4, 2, 3, 3)).astype(np.float32))
        self.y = [int(v) for v in rng.integers(0, 3, 7)]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def frames_dataset() -> FramesDataset:
    return FramesDataset()
