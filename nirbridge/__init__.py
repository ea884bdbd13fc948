"""nirbridge: trained PyTorch SNNs → NIR (with custom adaptive neurons) → Lava/Loihi 2 and
other backends, with SOP and energy profiling.

Public API::

    graph = nirbridge.to_nir(model, sample_input, dt=1.0)
    nirbridge.write("model.nir", graph)            # compat="lossy" for stock NIR readers
    graph = nirbridge.read("model.nir")
    out = nirbridge.run(graph, inputs)             # inputs [T, B, ...], float64 reference
    out, records = nirbridge.run(graph, inputs, record=True)
"""

from nirbridge import _lava_compat

_lava_compat.install()  # must precede any `import lava`

from nirbridge._version import __version__ as __version__  # noqa: E402
from nirbridge.api import available_backends, read, run, to_nir, write  # noqa: E402
from nirbridge.errors import NirbridgeError  # noqa: E402

__all__ = ["NirbridgeError", "available_backends", "read", "run", "to_nir", "write"]
