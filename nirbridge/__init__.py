"""nirbridge: trained PyTorch SNNs → NIR (with custom adaptive neurons) → Lava/Loihi 2 and
other backends, with SOP and energy profiling.

Public API::

    graph = nirbridge.to_nir(model, sample_input, dt=1.0)
    nirbridge.write("model.nir", graph)            # compat="lossy" for stock NIR readers
    graph = nirbridge.read("model.nir")
    res = nirbridge.run_backend(graph, inputs, "lava-fixed", record=True)  # a RunResult:
    res.outputs, res.records, res.info             # float64 numpy outputs [T, B, ...]
    nirbridge.available_backends()                 # reference, lava-float, lava-fixed, fixed
    out = nirbridge.run(graph, inputs)             # compatibility form: torch tensors,
    out, records = nirbridge.run(graph, inputs, record=True)  # float64 reference by default
"""

from nirbridge import _lava_compat

_lava_compat.install()  # must precede any `import lava`

from typing import TYPE_CHECKING, Any  # noqa: E402

from nirbridge._version import __version__ as __version__  # noqa: E402
from nirbridge.errors import NirbridgeError  # noqa: E402

if TYPE_CHECKING:
    from nirbridge.api import available_backends, read, run, run_backend, to_nir, write

#: Imported from :mod:`nirbridge.api` on first use, not here: ``import nirbridge`` (which
#: every ``nirbridge.*`` import runs first) then costs milliseconds, not the ~0.1-1 s of
#: nir and numpy, so that the command installs its signal handlers at once
#: (docs/processes.md: a Ctrl-C during start-up).
_API = ("available_backends", "read", "run", "run_backend", "to_nir", "write")


def __getattr__(name: str) -> Any:
    if name in _API:
        from nirbridge import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nirbridge' has no attribute {name!r}")


__all__ = ["NirbridgeError", "available_backends", "read", "run", "run_backend", "to_nir",
           "write"]
