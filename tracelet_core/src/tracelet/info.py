"""What core and plugins tell each other: a plugin's declaration and a run's identity."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["BackendRunRef", "PluginInfo", "PluginKind", "RunInfo"]


class PluginKind(str, enum.Enum):
    """What a plugin does, which decides the hooks core calls on it."""

    BACKEND = "backend"
    """Receives records and stores them (MLflow, W&B, ...): the routing hooks."""
    COLLECTOR = "collector"
    """Produces records at start and/or periodically (system, git): the collection hooks."""
    FRAMEWORK = "framework"
    """Patches a library to capture what it logs (TensorBoard, Lightning): the patching hooks."""


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"plugin name {value!r} must be non-empty and use only letters, digits, '-' and '_'")


def _to_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class PluginInfo:
    """A plugin's declaration, returned by its ``tracelet_plugin_info`` hook.

    ``factory`` is called with the plugin's validated settings (an instance
    of ``settings``, or ``None`` when the plugin has no settings) once per
    run, and returns the object whose ``@tracelet.hookimpl`` methods core
    calls for that run. Import heavy libraries inside those methods, never
    at module level or in ``factory``.
    """

    name: str = attrs.field(validator=_check_name)
    kind: PluginKind = attrs.field(converter=PluginKind)
    factory: Callable[[Any], object]
    settings: type | None = None
    """An attrs class; its fields are the plugin's configuration keys."""
    description: str = ""
    enabled_by_default: bool = True
    """``False`` for opt-in plugins (the recording backend): used only when named."""
    max_batch_size: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    """For backends: the most records handed to one routing hook call."""
    unsupported: Mapping[str, str] = attrs.field(factory=dict, converter=_to_dict, hash=False)
    """For backends: conformance cases the backend cannot store, ``{case: reason}``.

    The names are those of :mod:`tracelet.testing.conformance` (``"histograms"``,
    ``"resume_setting"``, ...); the suite reports each as skipped with the reason."""


@attrs.frozen
class RunInfo:
    """A run's identity, passed to backends and collectors when the run starts."""

    id: str
    """Tracelet's run id (32 hex digits), unique per ``start()``."""
    project: str
    name: str
    start_time: float
    """Seconds since the epoch."""
    tracelet_version: str
    backends: tuple[str, ...]
    """Names of the backends this run delivers to."""
    plugins: tuple[str, ...]
    """Names of every plugin active in this run."""
    resume: dict[str, str] = attrs.field(factory=dict)
    """Backend name -> that backend's run id to attach to instead of creating a run."""
    backend: str = ""
    """The name of the backend plugin this ``RunInfo`` was handed to (empty for collectors).

    A backend attaches on replay with ``run.resume.get(run.backend)``, without hard-coding its own name."""


@attrs.frozen
class BackendRunRef:
    """What a backend returns from ``tracelet_backend_start``: its own run's identity."""

    id: str
    url: str | None = None
