"""Files written by each framework's OWN NIR exporter, and that framework's own reading of
them, for the tests of the file route (``--from FRAMEWORK``, ``nirbridge import``).

The models and the exporters' workarounds are the front-end tests' own (``tests/
test_frontend_*.py``: snnTorch's unbatched sample and per-neuron parameters, Norse's
stable time constants, Sinabs' float32 model run once before export), imported from those
modules rather than copied, so that both tests read the same files. A framework that is
not installed skips the test that asks for its file.

Each reading runs in float64 with the parameters the framework's reader builds (float32
values where it builds float32 ones), as the front-end tests run it: the front-ends
reproduce exactly that, so the tests compare without tolerance.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

#: The frameworks whose own exporter and reader the file-route tests use.
FRAMEWORKS = ("snntorch", "norse", "spikingjelly", "sinabs")


@dataclass(frozen=True)
class FrameworkFile:
    """A file ``path`` that ``framework``'s own exporter wrote, inputs ``x`` [T, B, ...]
    (float64) that make every layer of it spike, and ``reading(x)``: the outputs
    [T, B, ...] of the framework's own reader of the file on ``x``."""

    framework: str
    path: Path
    x: np.ndarray
    reading: Callable[[np.ndarray], np.ndarray]


def _tests(module: str, framework: str):
    """A front-end test module (it skips when its framework is missing)."""
    pytest.importorskip(framework)
    return importlib.import_module(module)


def _snntorch(tmp: Path) -> FrameworkFile:
    t = _tests("test_frontend_snntorch", "snntorch")
    model = t._file_model("subtract")  # Leaky and Synaptic, snnTorch's default reset
    x = t._inputs(8)
    path = Path(t._snntorch_file(model, x[0, 0], tmp))

    def reading(xs: np.ndarray) -> np.ndarray:  # snntorch.import_from_nir
        out, _ = t._run_reading(t._reading(str(path)), torch.from_numpy(xs))
        return out.numpy()

    return FrameworkFile("snntorch", path, x.numpy(), reading)


def _norse(tmp: Path) -> FrameworkFile:
    t = _tests("test_frontend_norse", "norse")
    x = t._inputs()
    # LIFCell (read back as a leaky synapse and an LIFBoxCell), LIFBoxCell, IAFCell
    t._norse_file(t._file_model(0.1).double(), x, tmp)
    path = tmp / "norse.nir"

    def reading(xs: np.ndarray) -> np.ndarray:  # norse.torch.from_nir
        logging.disable(logging.WARNING)  # one warning per parameter Norse ignores
        try:
            out, _, _ = t._run_norse_reading(nir.read(str(path), type_check=False),
                                                torch.from_numpy(xs))
        finally:
            logging.disable(logging.NOTSET)
        return out.numpy()

    return FrameworkFile("norse", path, x.numpy(), reading)


def _spikingjelly(tmp: Path) -> FrameworkFile:
    t = _tests("test_frontend_spikingjelly", "spikingjelly.activation_based")
    from nirbridge.export.frontends import spikingjelly as fe

    _, path = t._sj_file(tmp)  # LIFNode, IFNode, LIFNode(decay_input=False), PLIF
    x = t._inputs(t.N_IN, seed=7)

    def reading(xs: np.ndarray) -> np.ndarray:  # SpikingJelly's import_from_nir
        out, _ = t._run_sj_import(path, torch.from_numpy(xs), fe.DT)
        return out.numpy()

    return FrameworkFile("spikingjelly", Path(path), x.numpy(), reading)


def _sinabs(tmp: Path) -> FrameworkFile:
    t = _tests("test_frontend_sinabs", "sinabs")
    import sinabs

    model = t._sinabs_file_model()  # IAF, LIF, ExpLeak
    sample = torch.zeros(t.B, t.T, t.N_IN)
    model(sample)  # Sinabs' exporter reads the shapes its layers last ran with
    path = tmp / "sinabs.nir"
    nir.write(str(path), sinabs.to_nir(model, sample))
    x = torch.randn(t.B, t.T, t.N_IN, generator=torch.Generator().manual_seed(9),
                    dtype=torch.float64) + 0.4

    def reading(xs: np.ndarray) -> np.ndarray:  # sinabs.from_nir, in its [B·T, ...] layout
        steps, batch = xs.shape[:2]
        theirs = t._float64(sinabs.from_nir(nir.read(str(path), type_check=False),
                                            batch_size=batch))
        flat = torch.from_numpy(xs).transpose(0, 1).flatten(0, 1)
        out = t._sinabs_run(theirs, flat)
        return out.reshape(batch, steps, *out.shape[1:]).transpose(0, 1).numpy()

    return FrameworkFile("sinabs", path, np.ascontiguousarray(x.transpose(0, 1).numpy()),
                         reading)


_BUILDERS: dict[str, Callable[[Path], FrameworkFile]] = {
    "snntorch": _snntorch, "norse": _norse, "spikingjelly": _spikingjelly, "sinabs": _sinabs}


def framework_file(framework: str, tmp: Path) -> FrameworkFile:
    """``framework``'s own file (written under ``tmp``), its inputs and its reading."""
    return _BUILDERS[framework](Path(tmp))


__all__ = ["FRAMEWORKS", "FrameworkFile", "framework_file"]
