"""Tracing a neuron's own torch step into ONNX nodes: no per-neuron ONNX code.

:func:`trace_step` calls a registered neuron's step (``spec.step``) with :class:`Sym`
values standing in for the input and the state. ``Sym`` is not a tensor: it implements
torch's override protocol (``__torch_function__``), so every torch function the step calls
on it (``torch.where``, ``torch.exp``, ``clamp``, arithmetic, comparisons, ``.to(dtype)``,
and nirbridge's own ``spike``, which dispatches through the protocol) lands in
:meth:`Sym.__torch_function__`, which emits the ONNX node computing it. Operations between
plain tensors and numbers (a step's parameter expressions such as ``1 - alpha``) run in
torch, in float32, and their results become initializers. So the ONNX graph computes the
same operations in the same order as the reference does, in float32.

The functions the tracer knows are those of :data:`OPS` (by torch function name) plus
``spike``; any other raises :class:`~nirbridge.errors.LoweringError` naming the neuron
type and the function. Data-dependent Python control flow (``if x.any()``) cannot be
traced and is refused the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from onnx import TensorProto, numpy_helper

from nirbridge.errors import LoweringError
from nirbridge.export_onnx._builder import FLOAT, FLOAT_NP, Builder
from nirbridge.neurons._base import check_compare, spike

#: torch dtype → ONNX element type, for the dtypes a traced value may have.
_ELEM = {torch.float32: FLOAT, torch.bool: TensorProto.BOOL}


class Tracer:
    """The state of one trace: the builder, and who is traced (for error messages)."""

    def __init__(self, builder: Builder, what: str, hint: str) -> None:
        self.b = builder
        self.what = what  # e.g. "neuron 'lif' (LIF)"
        self.hint = hint

    def refuse(self, func: str, why: str = "") -> LoweringError:
        known = ", ".join(sorted(OPS))
        return LoweringError(
            f"{self.what}: its torch step calls {func}, which the ONNX tracer cannot "
            f"export{why}; write the step with the functions it knows ({known}, spike) or "
            "add a handler for it to nirbridge/export_onnx/_trace.py's OPS table")

    # --------------------------------------------------------------------- values
    def name(self, value: Any, like: torch.dtype = torch.float32) -> str:
        """The ONNX value of a Sym, a tensor or a Python number (a constant)."""
        if isinstance(value, Sym):
            return value.name
        if torch.is_tensor(value):
            arr = value.detach().cpu().numpy()
            if value.dtype == torch.bool:
                return self.b.const(arr, np.bool_, f"{self.hint}/mask")
            return self.b.const(arr, FLOAT_NP, f"{self.hint}/param")
        if isinstance(value, (bool, int, float, np.number)):
            if like == torch.bool:
                return self.b.const(bool(value), np.bool_, f"{self.hint}/flag")
            return self.b.const(float(value), FLOAT_NP, f"{self.hint}/scalar")
        raise self.refuse(f"a value of type {type(value).__name__}",
                          " (only tensors and numbers can be constants)")

    def dtype_of(self, value: Any) -> torch.dtype:
        if isinstance(value, Sym):
            return value.dtype
        if torch.is_tensor(value):
            return torch.bool if value.dtype == torch.bool else torch.float32
        return torch.bool if isinstance(value, bool) else torch.float32

    def floats(self, *values: Any) -> list[str]:
        """The values as float32 ONNX values (booleans cast, as torch promotes them)."""
        out = []
        for v in values:
            if self.dtype_of(v) == torch.bool:
                out.append(self.cast(self.name(v, torch.bool), torch.float32))
            else:
                out.append(self.name(v))
        return out

    def cast(self, name: str, dtype: torch.dtype) -> str:
        if dtype not in _ELEM:
            raise self.refuse(f".to({dtype})", " (only float32 and bool values are traced)")
        return self.b.op("Cast", [name], f"{self.hint}/Cast", to=_ELEM[dtype])

    def sym(self, name: str, dtype: torch.dtype = torch.float32) -> Sym:
        return Sym(name, dtype, self)

    def emit(self, op: str, inputs: list[str], dtype: torch.dtype = torch.float32,
             **attrs: Any) -> Sym:
        return self.sym(self.b.op(op, inputs, f"{self.hint}/{op}", **attrs), dtype)


class Sym:
    """A traced value: an ONNX value name, its dtype (float32 or bool) and its tracer."""

    def __init__(self, name: str, dtype: torch.dtype, tracer: Tracer) -> None:
        self.name = name
        self.dtype = dtype
        self.tracer = tracer

    device = torch.device("cpu")

    @classmethod
    def __torch_function__(cls, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        tracer = next(a.tracer for a in _flat(args, kwargs) if isinstance(a, Sym))
        if func is spike:
            return _spike(tracer, *args, **kwargs)
        fname = getattr(func, "__name__", repr(func))
        handler = OPS.get(fname)
        if handler is None:
            raise tracer.refuse(f"torch function '{fname}'")
        return handler(tracer, *args, **kwargs)

    def _call(self, fname: str, *args: Any, **kwargs: Any) -> Any:
        return OPS[fname](self.tracer, *args, **kwargs)

    # Python operators with a Sym on the left (or a number on the left: the r-forms)
    def __add__(self, o): return self._call("add", self, o)  # noqa: E704
    def __radd__(self, o): return self._call("add", o, self)  # noqa: E704
    def __sub__(self, o): return self._call("sub", self, o)  # noqa: E704
    def __rsub__(self, o): return self._call("sub", o, self)  # noqa: E704
    def __mul__(self, o): return self._call("mul", self, o)  # noqa: E704
    def __rmul__(self, o): return self._call("mul", o, self)  # noqa: E704
    def __truediv__(self, o): return self._call("div", self, o)  # noqa: E704
    def __rtruediv__(self, o): return self._call("div", o, self)  # noqa: E704
    def __pow__(self, o): return self._call("pow", self, o)  # noqa: E704
    def __rpow__(self, o): return self._call("pow", o, self)  # noqa: E704
    def __neg__(self): return self._call("neg", self)  # noqa: E704
    def __abs__(self): return self._call("abs", self)  # noqa: E704
    def __gt__(self, o): return self._call("gt", self, o)  # noqa: E704
    def __ge__(self, o): return self._call("ge", self, o)  # noqa: E704
    def __lt__(self, o): return self._call("lt", self, o)  # noqa: E704
    def __le__(self, o): return self._call("le", self, o)  # noqa: E704
    def __eq__(self, o): return self._call("eq", self, o)  # type: ignore[override]  # noqa: E704
    def __ne__(self, o): return self._call("ne", self, o)  # type: ignore[override]  # noqa: E704
    def __and__(self, o): return self._call("logical_and", self, o)  # noqa: E704
    def __or__(self, o): return self._call("logical_or", self, o)  # noqa: E704
    def __invert__(self): return self._call("logical_not", self)  # noqa: E704

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise self.tracer.refuse("bool() of a traced value",
                                 " (Python control flow on data cannot be traced)")

    def __float__(self) -> float:
        raise self.tracer.refuse("float() of a traced value",
                                 " (a traced value has no number until it runs)")

    def __getattr__(self, attr: str) -> Any:
        # tensor methods (x.clamp(...), x.to(...), x.detach() ...) through the same table
        if attr.startswith("__") or attr not in OPS:
            raise AttributeError(attr) if attr.startswith("__") else \
                self.tracer.refuse(f"the tensor method '{attr}'")
        return lambda *a, **k: OPS[attr](self.tracer, self, *a, **k)


def _flat(args: tuple, kwargs: dict) -> list[Any]:
    out: list[Any] = []
    for a in (*args, *kwargs.values()):
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


# ------------------------------------------------------------------------- handlers
def _spike(t: Tracer, z: Any, compare: str, alpha: float = 2.0) -> Sym:
    """nirbridge's ``spike``: ``(z >= 0)`` or ``(z > 0)`` as float, its forward value."""
    op = "GreaterOrEqual" if check_compare(compare) == ">=" else "Greater"
    fired = t.emit(op, [t.name(z), t.name(0.0)], torch.bool)
    return t.sym(t.cast(fired.name, torch.float32))


def _binary(op: str) -> Callable[..., Sym]:
    def handler(t: Tracer, a: Any, b: Any, *, alpha: Any = 1, out: Any = None) -> Sym:
        if alpha != 1 or out is not None:
            raise t.refuse(f"'{op}' with alpha={alpha!r} or out=")
        return t.emit(op, t.floats(a, b))

    return handler


def _reversed(op: str) -> Callable[..., Sym]:
    def handler(t: Tracer, a: Any, b: Any, *, alpha: Any = 1) -> Sym:
        return _binary(op)(t, b, a, alpha=alpha)

    return handler


def _compare(op: str, negate: bool = False) -> Callable[..., Sym]:
    def handler(t: Tracer, a: Any, b: Any) -> Sym:
        both_bool = t.dtype_of(a) == t.dtype_of(b) == torch.bool
        names = [t.name(a, torch.bool), t.name(b, torch.bool)] if both_bool else t.floats(a, b)
        out = t.emit(op, names, torch.bool)
        return t.emit("Not", [out.name], torch.bool) if negate else out

    return handler


def _unary(op: str) -> Callable[..., Sym]:
    def handler(t: Tracer, a: Any, **kwargs: Any) -> Sym:
        if kwargs.get("inplace") or kwargs.get("decimals"):
            raise t.refuse(f"'{op}' with {kwargs}")
        return t.emit(op, t.floats(a))

    return handler


def _logical(op: str) -> Callable[..., Sym]:
    def handler(t: Tracer, *args: Any) -> Sym:
        if any(t.dtype_of(a) != torch.bool for a in args):
            raise t.refuse(f"'{op}' on non-boolean values")
        return t.emit(op, [t.name(a, torch.bool) for a in args], torch.bool)

    return handler


def _trunc(t: Tracer, a: Any) -> Sym:
    """Rounding toward zero (ONNX has no Trunc): ``ceil`` below zero, ``floor`` above."""
    (x,) = t.floats(a)
    neg = t.b.op("Less", [x, t.name(0.0)], f"{t.hint}/Less")
    ceil = t.b.op("Ceil", [x], f"{t.hint}/Ceil")
    floor = t.b.op("Floor", [x], f"{t.hint}/Floor")
    return t.emit("Where", [neg, ceil, floor])


def _div(t: Tracer, a: Any, b: Any, *, rounding_mode: str | None = None) -> Sym:
    q = t.emit("Div", t.floats(a, b))
    if rounding_mode is None:
        return q
    if rounding_mode == "trunc":  # torch: trunc(a / b) for floating types
        return _trunc(t, q)
    # torch's floor division corrects a / b by fmod: not floor(a / b) in every case
    raise t.refuse(f"torch.div(rounding_mode={rounding_mode!r})")


def _where(t: Tracer, cond: Any, a: Any, b: Any) -> Sym:
    if t.dtype_of(cond) != torch.bool:
        raise t.refuse("torch.where with a non-boolean condition")
    return t.emit("Where", [t.name(cond, torch.bool), *t.floats(a, b)])


def _clamp(t: Tracer, a: Any, min: Any = None, max: Any = None) -> Sym:  # noqa: A002
    """``min(max(a, lo), hi)``: torch's order."""
    out: Any = a
    if min is not None:
        out = t.emit("Max", t.floats(out, min))
    if max is not None:
        out = t.emit("Min", t.floats(out, max))
    if out is a:
        raise t.refuse("clamp without min or max")
    return out


def _like(fill: float) -> Callable[..., Sym]:
    def handler(t: Tracer, a: Any, *, dtype: torch.dtype | None = None, **_: Any) -> Sym:
        dtype = dtype or t.dtype_of(a)
        dtype = torch.float32 if dtype.is_floating_point else dtype
        if dtype not in _ELEM:
            raise t.refuse(f"a *_like function with dtype={dtype}")
        shape = t.b.op("Shape", [t.name(a)], f"{t.hint}/Shape")
        value = np.array([fill], dtype=np.bool_ if dtype == torch.bool else FLOAT_NP)
        return t.emit("ConstantOfShape", [shape], dtype,
                      value=numpy_helper.from_array(value))

    return handler


def _to(t: Tracer, a: Any, *args: Any, **kwargs: Any) -> Any:
    """``x.to(dtype)``, ``x.to(other)``, ``x.to(device)``: a Cast where the dtype changes."""
    target: Any = kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, torch.dtype):
            target = arg
        elif isinstance(arg, Sym) or torch.is_tensor(arg):
            target = t.dtype_of(arg)
    target = t.dtype_of(a) if target is None else (
        torch.float32 if target.is_floating_point else target)
    if not isinstance(a, Sym):  # a parameter cast like a traced value: stays a constant
        return torch.as_tensor(a).to(target)
    return a if target == a.dtype else t.sym(t.cast(a.name, target), target)


def _identity(t: Tracer, a: Any, *_: Any, **__: Any) -> Any:
    return a


def _as_tensor(t: Tracer, a: Any, dtype: Any = None, device: Any = None) -> Any:
    return a if dtype is None else _to(t, a, dtype)


OPS: dict[str, Callable[..., Any]] = {
    "add": _binary("Add"), "__add__": _binary("Add"), "__radd__": _reversed("Add"),
    "sub": _binary("Sub"), "subtract": _binary("Sub"), "__sub__": _binary("Sub"),
    "__rsub__": _reversed("Sub"), "rsub": _reversed("Sub"),
    "mul": _binary("Mul"), "multiply": _binary("Mul"), "__mul__": _binary("Mul"),
    "__rmul__": _reversed("Mul"),
    "div": _div, "divide": _div, "true_divide": _div, "__truediv__": _div,
    "__rtruediv__": lambda t, a, b: _div(t, b, a), "__rdiv__": lambda t, a, b: _div(t, b, a),
    "pow": _binary("Pow"), "__pow__": _binary("Pow"), "__rpow__": _reversed("Pow"),
    "maximum": _binary("Max"), "minimum": _binary("Min"),
    "neg": _unary("Neg"), "negative": _unary("Neg"), "__neg__": _unary("Neg"),
    "abs": _unary("Abs"), "exp": _unary("Exp"), "log": _unary("Log"),
    "sqrt": _unary("Sqrt"), "reciprocal": _unary("Reciprocal"), "sign": _unary("Sign"),
    "tanh": _unary("Tanh"), "sigmoid": _unary("Sigmoid"), "relu": _unary("Relu"),
    "floor": _unary("Floor"), "ceil": _unary("Ceil"), "round": _unary("Round"),
    "trunc": _trunc,
    "gt": _compare("Greater"), "greater": _compare("Greater"), "__gt__": _compare("Greater"),
    "ge": _compare("GreaterOrEqual"), "greater_equal": _compare("GreaterOrEqual"),
    "__ge__": _compare("GreaterOrEqual"),
    "lt": _compare("Less"), "less": _compare("Less"), "__lt__": _compare("Less"),
    "le": _compare("LessOrEqual"), "less_equal": _compare("LessOrEqual"),
    "__le__": _compare("LessOrEqual"),
    "eq": _compare("Equal"), "__eq__": _compare("Equal"),
    "ne": _compare("Equal", negate=True), "__ne__": _compare("Equal", negate=True),
    "logical_and": _logical("And"), "logical_or": _logical("Or"),
    "logical_not": _logical("Not"),
    "where": _where, "clamp": _clamp, "clip": _clamp,
    "clamp_min": lambda t, a, m: _clamp(t, a, min=m),
    "clamp_max": lambda t, a, m: _clamp(t, a, max=m),
    "zeros_like": _like(0.0), "ones_like": _like(1.0),
    "to": _to, "type_as": lambda t, a, o: _to(t, a, o),
    "float": lambda t, a: _to(t, a, torch.float32),
    "detach": _identity, "clone": _identity, "contiguous": _identity,
    "as_tensor": _as_tensor,
}


def trace_step(builder: Builder, what: str, hint: str, step: Callable[..., Any],
               x: str, state: Any, fields: tuple[str, ...], state_type: type,
               kwargs: dict[str, Any]) -> tuple[Any, list[Any], Tracer]:
    """Run ``step(Sym(x), state_type(*Sym(state)), **kwargs)``; returns the output and the
    new state's fields (Syms, tensors or numbers) and the tracer (for :meth:`Tracer.name`).
    ``state`` holds the ONNX value names of the state fields, in ``fields`` order."""
    tracer = Tracer(builder, what, hint)
    sx = tracer.sym(x)
    ss = state_type(*(tracer.sym(n) for n in state))
    try:
        y, new = step(sx, ss, **kwargs)
    except LoweringError:
        raise
    except (TypeError, RuntimeError, AttributeError) as exc:
        raise LoweringError(f"{what}: tracing its torch step for ONNX failed: "
                            f"{type(exc).__name__}: {exc}") from exc
    return y, [getattr(new, f) for f in fields], tracer


__all__ = ["OPS", "Sym", "Tracer", "trace_step"]
