"""Turning what users pass into record values, on the caller's thread.

Nothing here imports numpy or torch: a value is recognised by its type's
module, so these libraries cost nothing unless the user already uses them.
"""

from __future__ import annotations

import json
import math
import numbers
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from tracelet.log import get_logger
from tracelet.records import ParamValue

__all__ = [
    "Tally",
    "flatten_params",
    "name_label",
    "short_repr",
    "to_metric_value",
    "to_name",
    "to_param_value",
    "to_timestamp",
]

_log = get_logger()

_LABEL_LIMIT = 80  # characters of a value shown in a warning or a stats() key

MILLISECONDS_FROM = 1e11
"""A timestamp above this (the year 5138 in seconds, 1973 in milliseconds) is taken as ms, µs or ns."""


def to_name(name: object) -> str | None:
    """Return ``name`` as a record name, or ``None`` when it cannot be one.

    A str is kept as it is, whatever its characters or length (spaces, ``/``,
    ``..``, unicode: each backend plugin applies its own rules). Anything
    else becomes ``str(name)``. ``None``, an empty name (after that
    conversion) and an object whose ``str()`` raises are refused.
    """
    if name is None:
        return None
    if type(name) is not str:
        try:
            name = str(name)
        except Exception:  # noqa: BLE001 - a hostile __str__ is a refused name, not a crash
            return None
    return name or None


def name_label(name: object) -> str:
    """How a refused name appears in ``stats().rejected`` keys and warnings: itself, or its (shortened) repr."""
    if type(name) is str:
        return name if len(name) <= _LABEL_LIMIT else name[: _LABEL_LIMIT - 1] + "…"
    return short_repr(name)


def short_repr(value: object, limit: int = _LABEL_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters (a ``10**400`` timestamp is not printed whole); never raises."""
    try:
        if type(value) is int and value.bit_length() > 3 * limit:
            return f"<int of {value.bit_length()} bits>"  # repr() of a huge int is slow, and may be refused
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_timestamp(value: object) -> float | None:
    """Return ``value`` as seconds since the epoch, or ``None`` when it is not a usable timestamp.

    Numbers above :data:`MILLISECONDS_FROM` are divided by 1000 until they are
    not (milliseconds, microseconds, nanoseconds since the epoch). NaN,
    infinities, negative numbers and non-numbers are refused.
    """
    if type(value) is not float:
        if type(value) is bool:
            return None
        value = to_metric_value(value)
        if value is None:
            return None
    if not math.isfinite(value) or value < 0:
        return None
    while value > MILLISECONDS_FROM:
        value /= 1000.0
    return value


def to_metric_value(value: Any) -> float | None:
    """Return ``value`` as a float, or ``None`` when it is not a single real number.

    Accepts int, float, bool, numpy scalars and single-element arrays, and
    single-element torch tensors (``.item()`` copies the value, so no
    reference to the tensor or its autograd graph is kept). NaN and
    infinities are kept.
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool:
        try:
            return float(value)
        except OverflowError:
            return None
    module = kind.__module__
    if module.startswith(("torch", "numpy")):  # torch.nn.parameter.Parameter too
        return _array_scalar(value)
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except Exception:  # noqa: BLE001 - overflow, or a hostile __float__: not a metric
            return None
    return None


def _array_scalar(value: Any) -> float | None:
    try:
        if getattr(value, "dtype", None) is not None and "complex" in str(value.dtype):
            return None
        size = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", 1)
        if size != 1:
            return None
        if callable(getattr(value, "detach", None)):
            value = value.detach()
        item = value.item()
    except Exception:  # noqa: BLE001 - an object that merely looks like an array is not a metric
        return None
    if isinstance(item, bool | int | float):
        return to_metric_value(item)
    if isinstance(item, numbers.Real):  # numpy.longdouble.item() is itself
        try:
            number = float(item)
        except (OverflowError, ValueError):
            return None
        beyond_float_range = math.isinf(number) and number != item
        return None if beyond_float_range else number
    return None


def to_param_value(value: Any) -> ParamValue:
    """Return a param value backends can store.

    str, int, float, bool and None are kept; numpy and torch scalars become
    their Python value; lists, tuples and sets become JSON text; anything
    else becomes ``str(value)``.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    module = type(value).__module__
    if module.startswith(("torch", "numpy")) and (number := to_metric_value(value)) is not None:
        return number
    if isinstance(value, list | tuple | set | frozenset | Mapping):
        return json.dumps(_jsonable(value), default=str, ensure_ascii=False)
    return str(value)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: containers kept as containers, other values as param values."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return [_jsonable(item) for item in sorted(value, key=repr)]
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return to_param_value(value)


class ParamProblem(str):
    """What :func:`flatten_params` yields as a value for an entry it cannot flatten (the reason)."""


def flatten_params(params: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[Any, Any]]:
    """Yield ``(name, value)`` with nested mappings flattened as ``"a.b.c"`` (an empty one as ``"{}"``).

    Never raises for what a mapping holds: a nested key whose ``str()``
    raises, a mapping that contains itself (directly or further down) and a
    mapping whose iteration raises are yielded as ``(name, ParamProblem(reason))``
    for the caller to refuse; a bad top-level key reaches the caller as it is.
    """
    yield from _flatten(params, prefix, ())


def _flatten(params: Mapping[Any, Any], prefix: str, path: tuple[int, ...]) -> Iterator[tuple[Any, Any]]:
    path = (*path, id(params))
    try:
        items = list(params.items())
    except Exception as error:  # noqa: BLE001 - a hostile mapping
        yield prefix.rstrip(".") or "<params>", ParamProblem(f"cannot read the mapping: {type(error).__name__}")
        return
    for key, value in items:
        if prefix:
            try:
                name: Any = f"{prefix}{key}"
            except Exception as error:  # noqa: BLE001 - a key whose str() raises
                yield f"{prefix}<{type(key).__name__}>", ParamProblem(f"a key whose str() raises {type(error).__name__}")
                continue
        else:
            name = key  # a bad top-level key reaches the name check as it is
        if isinstance(value, Mapping) and value:
            if id(value) in path:
                yield name, ParamProblem("a mapping that contains itself")
                continue
            try:
                nested = f"{name}."
            except Exception as error:  # noqa: BLE001 - a top-level key whose str() raises
                yield name, ParamProblem(f"a key whose str() raises {type(error).__name__}")
                continue
            yield from _flatten(value, nested, path)
        else:
            yield name, value


class Tally:
    """Values refused or changed, counted by ``"kind:name"`` and warned about once per key.

    Shared by the caller's threads and the router (one per run). Only the
    slow paths (a refused or changed value) touch it, so its lock never
    slows the hot path down.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {"rejected": {}, "normalised": {}}

    def reject(self, kind: str, name: str, reason: str) -> None:
        """Count a value that was dropped."""
        self._count("rejected", kind, name, reason, "value rejected and dropped (warned once per name)")

    def normalise(self, kind: str, name: str, reason: str) -> None:
        """Count a value that was kept in a changed form."""
        self._count("normalised", kind, name, reason, "value normalised (warned once per name)")

    def counts(self, what: str) -> dict[str, int]:
        """A copy of the ``"rejected"`` or ``"normalised"`` counts."""
        with self._lock:
            return dict(self._counts[what])

    def _count(self, what: str, kind: str, name: str, reason: str, message: str) -> None:
        if type(name) is not str:  # a hostile name (its str() may raise) is shown by name_label()
            name = name_label(name)
        key = f"{kind}:{name}"
        with self._lock:
            counts = self._counts[what]
            count = counts.get(key, 0)
            counts[key] = count + 1
        if count == 0:
            _log.warning(message, kind=kind, name=name, reason=reason)
