"""Export a trained single-step PyTorch spiking network to a NIR graph.

:func:`to_nir` traces the model with torch.fx (through nirtorch's tracer, nirbridge neuron
modules being leaves), cleans the traced graph (drops eval no-ops, folds batch-norm into
the preceding synapse, rejects what NIR cannot express with a message naming the layer),
measures every layer's shapes on one sample step, and hands the graph to
``nirtorch.torch_to_nir`` with nirbridge's own module map.

Conventions of the graph it returns:

- Node names are the modules' qualified names with ``.`` replaced by ``_`` (``fc1``,
  ``features_3``, ``block1_conv1``); children of ``nn.Sequential`` (names that start with a
  digit) are prefixed with their class (``linear_0``, ``lif_1``); a module called twice
  gets ``_1``, ``_2`` suffixes; a ``torch.flatten`` call is named after its fx node
  (``flatten``). The graph's input and output nodes are ``input`` and ``output``.
- Shapes carry no batch dimension. ``nir.Flatten``'s ``start_dim``/``end_dim`` index the
  batch-free shape: torch ``Flatten(start_dim=1, end_dim=-1)`` becomes NIR
  ``start_dim=0, end_dim=-1``.
- Weights and every parameter are float64 arrays; batch-norm is folded in float64.
- Residual sums (``x + y``, ``torch.add``) become several edges into the same node
  (NIR sums the incoming edges).
- ``graph.metadata`` holds ``dt``, ``time_unit = "step"``, ``source`` and the
  ``nirbridge_version``.

Modules: :mod:`~nirbridge.export.tables` (what is mapped, removed, folded),
:mod:`~nirbridge.export.trace` (tracing, shared state, shapes),
:mod:`~nirbridge.export.clean` (clean-up and batch-norm folding),
:mod:`~nirbridge.export.diagnosis` (what cannot be exported, and what to do),
:mod:`~nirbridge.export.convert` (one converter per layer type, the NIR graph),
:mod:`~nirbridge.export.exporter` (:func:`to_nir`).
"""

from nirbridge.export.exporter import to_nir
from nirbridge.export.tables import BATCHNORMS, MAPPED_MODULES, NOOP_MODULES, SYNAPSES

__all__ = ["BATCHNORMS", "MAPPED_MODULES", "NOOP_MODULES", "SYNAPSES", "to_nir"]
