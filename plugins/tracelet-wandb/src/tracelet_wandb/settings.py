"""The W&B backend's settings: ``[tool.tracelet.wandb]``, ``TRACELET_WANDB_*`` or ``config={"wandb": {...}}``.

The API key is not a setting: W&B finds it itself (``WANDB_API_KEY``,
``wandb login``'s ``~/.netrc``), so it never appears in Tracelet's
configuration, records, logs or spool.
"""

from __future__ import annotations

import os
import posixpath

import attrs

__all__ = ["MODES", "PLUGIN_NAME", "WandbSettings"]

PLUGIN_NAME = "wandb"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.wandb]``, ``TRACELET_WANDB_*``."""

MODES = ("online", "offline", "disabled")
"""The values of :attr:`WandbSettings.mode`."""


def _check_mode(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None and value not in MODES:
        raise ValueError(f"mode {value!r} must be one of {', '.join(MODES)} (or unset: W&B's own WANDB_MODE / login)")


def _check_artifact_path(_instance: object, _attribute: object, value: str) -> None:
    normalised = posixpath.normpath(value) if value else ""
    if not value or value.startswith("/") or normalised.startswith("..") or "\\" in value:
        raise ValueError(f"artifact_path {value!r} must be a non-empty relative POSIX path inside the run's files")


def _absolute(value: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(value)) if value else None


@attrs.frozen
class WandbSettings:
    """Where and how the W&B backend logs a run. Unset keys keep W&B's own resolution (``WANDB_*`` variables)."""

    project: str | None = None
    """W&B project; default: the Tracelet run's project."""
    entity: str | None = None
    """W&B entity (user or team); default: W&B's (``WANDB_ENTITY``, the login's default entity)."""
    mode: str | None = attrs.field(default=None, validator=_check_mode)
    """``online``, ``offline`` or ``disabled``; default: W&B's own (``WANDB_MODE``, else online)."""
    dir: str | None = attrs.field(default=None, converter=_absolute)
    """Directory under which W&B writes ``wandb/``; default: W&B's (``WANDB_DIR``, else the working directory).
    Made absolute when the run is configured."""
    group: str | None = None
    """W&B run group."""
    job_type: str | None = None
    """W&B job type."""
    run_name: str | None = None
    """W&B run display name; default: the Tracelet run's name."""
    run_id: str | None = None
    """Resume this W&B run id (``resume="allow"``) instead of creating a run (also: ``tracelet replay``)."""
    notes: str | None = None
    """W&B run notes."""
    system_metrics: bool = False
    """W&B's own system-metrics sampling (``wandb-symon``); off by default: tracelet-system samples the machine
    and its points reach every backend."""
    console: bool = False
    """W&B's console capture (stdout/stderr into the run's ``output.log``); off by default: it redirects
    the whole process's output, which belongs to the script."""
    init_timeout: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    """Seconds ``wandb.init`` may wait for the W&B server; default: W&B's (90). Past it the start fails and
    Tracelet retries it while records wait in the spool. While an init waits, the script's exit waits too
    (W&B's atexit teardown), at most this long."""
    finish_timeout: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    """Seconds ``run.finish`` may wait for uploads; default: W&B's (no limit). Past it W&B gives up; what it
    did not upload stays in the run's ``.wandb`` file for ``wandb sync``. ``stop()``'s own deadline holds either way."""
    artifact_path: str = attrs.field(default="artifacts", validator=_check_artifact_path)
    """Directory of the run's files (``files/`` in W&B) under which logged artifacts are stored,
    apart from W&B's own files (``config.yaml``, ``media/``, ...)."""
