"""Turning what users pass into record values, on the caller's thread.

Nothing here imports numpy or torch: a value is recognised by its type's
module, so these libraries cost nothing unless the user already uses them.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

from tracelet.records import ParamValue

__all__ = ["flatten_params", "to_metric_value", "to_param_value"]


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
    if module == "torch" or module.startswith("numpy"):
        return _array_scalar(value)
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except (OverflowError, ValueError):
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
    if (module == "torch" or module.startswith("numpy")) and (number := to_metric_value(value)) is not None:
        return number
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return json.dumps([to_param_value(item) for item in items], default=str)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(name, value)`` with nested mappings flattened as ``"a.b.c"``."""
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten_params(value, f"{name}.")
        else:
            yield name, value
