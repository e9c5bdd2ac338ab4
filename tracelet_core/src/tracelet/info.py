"""What core and plugins tell each other: a plugin's declaration and a run's identity.

Plugins import these from :mod:`tracelet.plugin`, not from here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["MAPPING_KINDS", "BackendRunRef", "ParentRef", "PluginInfo", "PluginKind", "RunInfo"]


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


MAPPING_KINDS: Mapping[str, str] = {
    "metric": "Metric names",
    "x-axis": "Step and time (x-axis)",
    "media": "Images, figures, texts, histograms",
    "params": "Params",
    "tags": "Tags",
    "artifacts": "Artifacts",
    "status": "Run status",
}
"""The keys of ``PluginInfo.mapping`` -> the row title docs/backends.md gives them."""


def _check_mapping(_instance: object, _attribute: object, value: Mapping[str, str]) -> None:
    unknown = sorted(set(value) - set(MAPPING_KINDS))
    if unknown:
        raise ValueError(f"PluginInfo.mapping: unknown kinds {unknown}; the kinds are {list(MAPPING_KINDS)}")
    for kind, text in value.items():
        if not text.strip() or "\n" in text:
            raise ValueError(f"PluginInfo.mapping[{kind!r}] must be one non-empty line (a cell of docs/backends.md)")


@attrs.frozen
class PluginInfo:
    """A plugin's declaration, returned by its ``tracelet_plugin_info`` hook.

    ``factory`` is called with the plugin's validated settings (an instance
    of ``settings``, or ``None`` when the plugin has no settings) once per
    run, and returns the object whose ``@hookimpl`` methods core calls for
    that run. Import heavy libraries inside those methods, never at module
    level or in ``factory``.
    """

    name: str = attrs.field(validator=_check_name)
    """The plugin's name: equal to its entry point's name, the section of its settings
    (``[tool.tracelet.<name>]``, ``TRACELET_<NAME>_*``), and what ``backends=[...]`` and ``stats()`` use."""
    kind: PluginKind = attrs.field(converter=PluginKind)
    """Which hooks core calls on the objects ``factory`` makes."""
    factory: Callable[[Any], object]
    """Called once per run with the settings instance (or ``None``); returns the object implementing the hooks."""
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
    mapping: Mapping[str, str] = attrs.field(factory=dict, converter=_to_dict, validator=_check_mapping, hash=False)
    """For backends: where a user finds each kind of record in the tracker, ``{kind: one line of Markdown}``.

    The kinds are the keys of :data:`MAPPING_KINDS` (``"metric"``, ``"x-axis"``, ``"media"``,
    ``"params"``, ``"tags"``, ``"artifacts"``, ``"status"``); a kind left out shows as "not declared".
    ``python -m tracelet.testing.mapping_table`` renders every installed backend's mapping as the one
    table of docs/backends.md."""


@attrs.frozen
class RunInfo:
    """A run's identity, passed to backends and collectors when the run starts."""

    id: str
    """Tracelet's run id (32 hex digits), unique per ``start()``."""
    project: str
    """The run's project (the ``project`` key; default: the working directory's name)."""
    name: str
    """The run's name (the ``name`` key; default ``run-YYYYMMDD-HHMMSS``)."""
    start_time: float
    """Seconds since the epoch."""
    tracelet_version: str
    """The version of tracelet-core running the run."""
    backends: tuple[str, ...]
    """Names of the backends this run delivers to."""
    plugins: tuple[str, ...]
    """Names of every plugin active in this run."""
    resume: dict[str, str] = attrs.field(factory=dict)
    """Backend name -> that backend's run id to attach to instead of creating a run."""
    backend: str = ""
    """The name of the backend plugin this ``RunInfo`` was handed to (empty for collectors).

    A backend finds the run to attach to with ``run.resume.get(run.backend)``,
    without hard-coding its own name."""
    parent: ParentRef | None = None
    """Set for a child run (``run.child()``, ``tracelet.start(parent=run)``): which run it is nested under.

    A backend maps the relation natively when it can (MLflow's ``mlflow.parentRunId``
    tag, W&B's group, ClearML's parent task, AIM's experiment). Core also tags every
    child run ``tracelet.parent_run_id`` (the parent's Tracelet id), so a backend with
    no notion of nesting needs to do nothing."""


@attrs.frozen
class BackendRunRef:
    """What a backend returns from ``tracelet_backend_start``: its own run's identity."""

    id: str
    """The backend's own run id: what ``run.resume`` hands back to attach to this run later."""
    url: str | None = None
    """Where a person can see the run, if the backend has such a page; both show in ``run.stats()[name]``."""


@attrs.frozen
class ParentRef:
    """The run a child run is nested under, as handed to one backend (``RunInfo.parent``)."""

    id: str
    """The parent's Tracelet run id."""
    name: str
    """The parent's run name."""
    ref: BackendRunRef | None = None
    """The parent's run in the backend this ``RunInfo`` was handed to (``run.backend``).

    Core starts a child's backend only once the parent's run in that backend has
    started (waiting at most 30 seconds), so this is set whenever the parent
    delivers to the same backend and its start succeeded. ``None`` when the parent
    does not use this backend, its start failed or did not finish in that time."""

    @property
    def run_id(self) -> str | None:
        """The parent's run id in this backend (``ref.id``), or ``None``."""
        return None if self.ref is None else self.ref.id
