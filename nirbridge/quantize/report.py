"""The quantization report and the file ``nirbridge quantize`` writes.

:func:`quantization_report` is the JSON-friendly report of a
:class:`~nirbridge.quantize.QuantizedGraph`: the target's formats and, per layer, the
format chosen, weight-grid usage, clipped and zeroed values, largest rounding error and,
after :func:`~nirbridge.quantize.calibrate.calibrate`, the spike agreement, first
divergent step and saturated states on the calibration inputs before and after.

:func:`save_quantized` writes the integers to one ``.npz`` (numpy's own format, no
pickles): ``<node>/<field>`` arrays (a synapse's ``mant``, ``w_exp``, ``mant_frac``,
``in_frac``, ``out_frac``, ``bias``; a neuron's ``frac_bits``, ``scale_exp``,
``in_frac`` and every integer field of its parameters, e.g. ``vth``, ``bias``; an
Output's ``frac_bits``, ``bias``; a Threshold's ``threshold``, ``in_frac``; an Input's
``frac_bits``), and ``report.json`` (the report, UTF-8 bytes as a uint8 array).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge._files import write_bytes
from nirbridge.quantize.graph import (
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)

#: Version of the report's layout.
REPORT_VERSION = 1


def quantization_report(qgraph: QuantizedGraph) -> dict[str, Any]:
    """The report of ``qgraph`` (JSON-friendly; see the module's text)."""
    cfg = dataclasses.asdict(qgraph.config)
    cfg["frac_bits"] = dict(qgraph.config.frac_bits)
    return {"version": REPORT_VERSION, "config": cfg, "dt": qgraph.dt,
            "layers": qgraph.summary()}


def calibration_text(cal: dict[str, Any]) -> str:
    """One layer's calibration (a report row's ``calibration``) in words: the spike
    agreement (or, for a layer without spikes, the error) on the calibration inputs
    before → after, and the choice kept."""
    b, a = cal["before"], cal["after"]
    if a.get("spike_agreement") is not None:
        return (f"spikes identical {100 * b['spike_agreement']:.3f}% → "
                f"{100 * a['spike_agreement']:.3f}% ({cal['choice']})")
    return f"mse {b['mse']:.3g} → {a['mse']:.3g} ({cal['choice']})"


def _ints(value: Any) -> np.ndarray | None:
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return None


def quantized_arrays(qgraph: QuantizedGraph) -> dict[str, np.ndarray]:
    """The integers of every node, by ``<node>/<field>`` (see the module's text)."""
    out: dict[str, np.ndarray] = {}

    def put(node: str, fld: str, value: Any) -> None:
        if value is None:
            return
        arr = _ints(value)
        if arr is not None:
            out[f"{node}/{fld}"] = arr

    for name, layer in qgraph.layers.items():
        if isinstance(layer, QuantizedSynapse):
            for f in ("mant", "w_exp", "mant_frac", "in_frac", "out_frac", "bias"):
                put(name, f, getattr(layer, f))
        elif isinstance(layer, QuantizedNeuron):
            for f in ("frac_bits", "scale_exp", "in_frac", "out_frac"):
                put(name, f, getattr(layer, f))
            params = layer.params
            if dataclasses.is_dataclass(params):
                for f in dataclasses.fields(params):
                    put(name, f"params.{f.name}", getattr(params, f.name))
        elif isinstance(layer, QuantizedOutput):
            put(name, "frac_bits", layer.frac_bits)
            put(name, "bias", layer.bias)
        elif isinstance(layer, QuantizedThreshold):
            put(name, "threshold", layer.threshold)
            put(name, "in_frac", layer.in_frac)
        elif isinstance(layer, QuantizedInput):
            put(name, "frac_bits", layer.frac_bits)
    return out


def save_quantized(qgraph: QuantizedGraph, path: str | Path) -> Path:
    """Write ``qgraph``'s integers and report to the ``.npz`` ``path``, atomically."""
    arrays = quantized_arrays(qgraph)
    text = json.dumps(quantization_report(qgraph), indent=1, default=_json_default)
    arrays["report.json"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def load_report(path: str | Path) -> dict[str, Any]:
    """The report stored in a file :func:`save_quantized` wrote."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(bytes(data["report.json"]).decode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


__all__ = ["REPORT_VERSION", "calibration_text", "load_report", "quantization_report",
           "quantized_arrays", "save_quantized"]
