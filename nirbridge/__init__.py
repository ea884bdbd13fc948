"""nirbridge: trained PyTorch SNNs → NIR (with custom adaptive neurons) → Lava/Loihi 2 and
other backends, with SOP and energy profiling."""

from nirbridge import _lava_compat

_lava_compat.install()  # must precede any `import lava`

__version__ = "0.1.0"
