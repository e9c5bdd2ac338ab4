"""The plugin kit: everything a Tracelet plugin may import, and nothing else.

A backend, collector or framework plugin imports from this module (and from
:mod:`tracelet.testing` in its tests) only. Every other module of
tracelet-core is internal and may change without notice; ruff's banned-api
rule (TID251) enforces this for the plugins in this repository, and the
plugin template (``tracelet new-plugin``) sets the same rule up for yours.

What is here, by role:

- declaring a plugin: :data:`hookimpl`, :class:`PluginInfo`, :class:`PluginKind`, and
  :data:`MAPPING_KINDS`, the kinds a backend's ``PluginInfo.mapping`` describes;
- a run's identity: :class:`RunInfo` (``run.backend`` is the name your backend
  was started under; ``run.resume.get(run.backend)`` is the run to attach to;
  ``run.parent``, a :class:`ParentRef`, the run a child run is nested under),
  :class:`BackendRunRef`, :class:`RunStatus`; :class:`Run`, the live run a
  framework plugin's ``tracelet_patch`` hook logs to;
- the records backends receive and collectors emit: :class:`Metric`,
  :class:`Param`, :class:`Tag`, :class:`Artifact`, :class:`Image`,
  :class:`Text`, :class:`Histogram`, :class:`Figure` (and the aliases
  :data:`Record`, :data:`Media`, :data:`ParamValue`);
- errors: :class:`PermanentError` (a batch the backend can never take: not
  retried, kept in the spool's rejected part), :class:`TraceletError`;
- :mod:`names <tracelet.names>`: the well-known record names collectors and
  backends agree on;
- :func:`artifact_dir`: a directory for files a collector hands to backends,
  which lives as long as the run;
- :func:`encode_png`: an :class:`Image`'s pixels as PNG bytes;
- framework patching: :class:`PatchSet` (replace attributes, restore them
  identity-equal) and :func:`capture_errors`;
- :func:`get_logger`: a structlog logger on the stdlib logger ``tracelet``;
- :func:`stop_run_at_exit_first`: for a backend whose library registers its
  own atexit handler (a service to tear down), stop the run before it;
- :class:`Redactor`: core's secret masking, for text a plugin uploads as a
  file (records are masked by core already):
  ``Redactor(run.settings.redact_patterns).text(content)``.
- a backend's ``tracelet_backend_check`` hook (``tracelet doctor``):
  :func:`probe_url`, :func:`probe_tcp`, :func:`probe_directory`, each
  returning what answered and raising with the reason.
"""

from __future__ import annotations

from tracelet import names
from tracelet.errors import PermanentError, TraceletError
from tracelet.hookspecs import hookimpl
from tracelet.info import MAPPING_KINDS, BackendRunRef, ParentRef, PluginInfo, PluginKind, RunInfo
from tracelet.lifecycle import stop_run_at_exit_first
from tracelet.log import get_logger
from tracelet.media import encode_png
from tracelet.patching import PatchSet, capture_errors
from tracelet.reach import probe_directory, probe_tcp, probe_url
from tracelet.records import (
    Artifact,
    Figure,
    Histogram,
    Image,
    Media,
    Metric,
    Param,
    ParamValue,
    Record,
    RunStatus,
    Tag,
    Text,
)
from tracelet.redact import Redactor
from tracelet.run import Run
from tracelet.tempfiles import artifact_dir

__all__ = [
    "MAPPING_KINDS",
    "Artifact",
    "BackendRunRef",
    "Figure",
    "Histogram",
    "Image",
    "Media",
    "Metric",
    "Param",
    "ParamValue",
    "ParentRef",
    "PatchSet",
    "PermanentError",
    "PluginInfo",
    "PluginKind",
    "Record",
    "Redactor",
    "Run",
    "RunInfo",
    "RunStatus",
    "Tag",
    "Text",
    "TraceletError",
    "artifact_dir",
    "capture_errors",
    "encode_png",
    "get_logger",
    "hookimpl",
    "names",
    "probe_directory",
    "probe_tcp",
    "probe_url",
    "stop_run_at_exit_first",
]
