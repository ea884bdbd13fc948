"""Which torch modules and traced operations the exporter maps, removes or folds.

Every phase of the export reads these tables (the tracer keeps these modules as leaves,
the clean-up removes the no-ops, the diagnosis rejects everything else, the conversion has
one converter per mapped type), so they live apart from all of them.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from nirbridge.layers import SumPool2d

#: Layers removed from the graph: no-ops at inference (eval mode).
NOOP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
#: Synapses a batch-norm can be folded into.
SYNAPSES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Layers exported only when their input is binary spikes: the max of 0/1 values over a
#: window is 1 iff the window holds a spike, i.e. ``nir.SumPool2d`` then ``nir.Threshold``
#: (count > 0.5). NIR has no max of graded values.
SPIKE_POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d,)
#: Layers with a NIR node (besides :class:`~nirbridge.neurons.NeuronModule` subclasses);
#: :data:`nirbridge.export.convert.CONVERTERS` has one converter for each.
MAPPED_MODULES: tuple[type[nn.Module], ...] = (*SYNAPSES, nn.AvgPool2d, SumPool2d, nn.Flatten,
                                               *SPIKE_POOLS, nn.AdaptiveAvgPool2d)

#: Traced calls that are no-ops at inference (``training=False``) or in NIR.
DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                     F.feature_alpha_dropout)
NOOP_METHODS = ("contiguous",)
#: Spellings of ``x + y``: NIR sums the edges into a node.
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_)
ADD_METHODS = ("add", "add_", "__add__", "__iadd__", "__radd__")

__all__ = ["ADD_FUNCTIONS", "ADD_METHODS", "BATCHNORMS", "DROPOUT_FUNCTIONS", "MAPPED_MODULES",
           "NOOP_METHODS", "NOOP_MODULES", "SPIKE_POOLS", "SYNAPSES"]
