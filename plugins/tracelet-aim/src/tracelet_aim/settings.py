"""The AIM backend's settings: ``[tool.tracelet.aim]``, ``TRACELET_AIM_*`` or ``config={"aim": {...}}``."""

from __future__ import annotations

import os

import attrs

from tracelet_aim.mapping import DEFAULT_SUBSETS

__all__ = ["PLUGIN_NAME", "AimSettings", "is_remote", "resolve_repo"]

PLUGIN_NAME = "aim"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.aim]``, ``TRACELET_AIM_*``."""


@attrs.frozen
class AimSettings:
    """Where and how the AIM backend logs a run."""

    repo: str | None = None
    """The AIM repository, as ``aim.Run(repo=...)`` and ``aim up --repo`` take it: a directory (its ``.aim``
    is created if missing) or ``aim://host:port`` (AIM's tracking server). Default: the working directory."""
    experiment: str | None = None
    """AIM experiment; default: the run's project."""
    run_name: str | None = None
    """AIM run name; default: the Tracelet run's name."""
    run_hash: str | None = None
    """Resume this AIM run instead of creating one (also: ``run.resume.get(run.backend)``, set by ``tracelet replay``)."""
    artifacts_uri: str | None = None
    """Where AIM stores artifacts (``run.set_artifacts_uri``: ``file://``, ``s3://``); default for a local
    repository: ``file://<repo>/.aim/artifacts``. A run on a tracking server needs it to log artifacts."""
    server_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """Seconds a batch waits for AIM's tracking server to confirm its writes; then the batch fails (retried, spooled)."""
    subsets: tuple[str, ...] = DEFAULT_SUBSETS
    """Name prefixes (``train/loss``) that become AIM's ``{"subset": ...}`` context."""
    system_tracking_interval: float | None = None
    """AIM's own system metrics every N seconds; default off (tracelet-system collects them)."""
    log_system_params: bool = False
    """AIM's own record of packages, environment variables and git state; default off (tracelet-git, -system)."""
    capture_terminal_logs: bool = False
    """AIM's own capture of the terminal output; default off."""


def is_remote(repo: str) -> bool:
    """Whether ``repo`` names AIM's tracking server (``aim://host:port``)."""
    return repo.startswith("aim://")


def resolve_repo(setting: str | None) -> str:
    """The repository to open: ``setting`` (a local path made absolute), else the working directory."""
    if setting and is_remote(setting):
        return setting
    return os.path.abspath(os.path.expanduser(setting or "."))
