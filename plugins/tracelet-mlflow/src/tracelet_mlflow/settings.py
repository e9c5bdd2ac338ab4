"""The MLflow backend's settings: ``[tool.tracelet.mlflow]``, ``TRACELET_MLFLOW_*`` or ``config={"mlflow": {...}}``."""

from __future__ import annotations

import os
import posixpath

import attrs

__all__ = ["DEFAULT_TRACKING_URI", "PLUGIN_NAME", "MlflowSettings", "resolve_tracking_uri"]

PLUGIN_NAME = "mlflow"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.mlflow]``, ``TRACELET_MLFLOW_*``."""

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""MLflow's own default (3.x): a sqlite store in the working directory."""


def _check_artifact_path(_instance: object, _attribute: object, value: str) -> None:
    normalised = posixpath.normpath(value) if value else ""
    if value.startswith("/") or normalised.startswith("..") or "\\" in value:
        raise ValueError(f"artifact_path {value!r} must be a relative POSIX path inside the run's artifacts")


@attrs.frozen
class MlflowSettings:
    """Where and how the MLflow backend logs a run."""

    tracking_uri: str | None = None
    """MLflow tracking URI; default: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
    A relative sqlite path is made absolute when the run starts."""
    experiment: str | None = None
    """Experiment name, created if missing; default: the run's project."""
    run_name: str | None = None
    """MLflow run name; default: the Tracelet run's name."""
    run_id: str | None = None
    """Resume this MLflow run instead of creating one (also: ``run.resume.get(run.backend)``, set by ``tracelet replay``)."""
    tags: dict[str, str] = attrs.field(factory=dict)
    """Extra tags set on the MLflow run when it starts."""
    artifact_path: str = attrs.field(default="", validator=_check_artifact_path)
    """Sub-path of the run's artifacts under which Tracelet stores files, texts and histograms."""


def resolve_tracking_uri(setting: str | None, environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The tracking URI to use: ``setting``, else ``MLFLOW_TRACKING_URI``, else MLflow's default.

    A relative sqlite database path is made absolute against the current
    directory, so that it means the same file whatever the script does with
    its working directory later, and so that the URI can be shown to users.
    """
    environ = os.environ if environ is None else environ
    uri = setting or environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path, separator, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:":
            uri = prefix + os.path.abspath(path) + separator + query
    return uri
