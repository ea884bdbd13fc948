"""The one exception family of nirbridge.

Every error names what it is about (node, field, value, file) and says what to do. The
CLI turns any :class:`NirbridgeError` into a one-line message and a non-zero exit code.
"""

from __future__ import annotations


class NirbridgeError(Exception):
    """Base class of every error nirbridge raises on purpose."""

    exit_code: int = 2


class FileFormatError(NirbridgeError):
    """A file is missing, truncated, not HDF5, or not a NIR graph."""


class UnsafeFileError(FileFormatError):
    """A file reaches outside itself (external links or storage, virtual datasets), declares
    more data than the read limit, or could not be read within the time limit."""


class CorruptFileError(FileFormatError):
    """A file's content does not match the checksums it was written with."""


class UnknownNodeError(NirbridgeError):
    """A graph holds a node type that neither NIR nor nirbridge defines."""


class MissingParameterError(NirbridgeError):
    """A node lacks a parameter its type requires."""


class InvalidParameterError(NirbridgeError):
    """A parameter has a bad value (NaN/inf, wrong sign, wrong type)."""


class GraphError(NirbridgeError):
    """The graph's structure is wrong: an edge to a missing node, a cycle, no input."""


class ShapeMismatchError(NirbridgeError):
    """Connected nodes disagree on the shape of what flows between them."""


class UnsupportedLayerError(NirbridgeError):
    """A torch layer has no NIR equivalent (e.g. MaxPool)."""


class ExportError(NirbridgeError):
    """Tracing or converting a torch model failed for another reason."""


class InputError(NirbridgeError):
    """Input data has the wrong shape, dtype or content."""


class LoweringError(NirbridgeError):
    """A graph cannot be lowered to a backend (unmappable node, unrepresentable value)."""


class QuantizationError(LoweringError):
    """A value cannot be represented in the target's fixed-point format."""


class SimulationError(NirbridgeError):
    """A backend simulation failed; the message carries the backend's own traceback."""


class SimulationTimeout(SimulationError):
    """A simulation ran past its time limit and was stopped."""


class ProfileError(NirbridgeError):
    """A target profile file is missing, malformed, or lacks a field."""


class RecipeError(NirbridgeError):
    """A deployment recipe is missing a field, has a wrong type, or names a missing file."""


class CheckFailed(NirbridgeError):
    """A deployment check (accuracy drop, agreement) was not met."""

    exit_code = 3
