"""Test helpers: an in-memory recording backend and pytest fixtures.

The recording backend is a real plugin (entry point ``recording``), opt-in:
it is used only when named, ``tracelet.start(backends=["recording"])``. Read
what it received with ``run.get_plugin("recording")``. For several recording
backends in one run, register more under other names with
``tracelet.register_plugin(recording_plugin("second"))``.

The pytest fixtures (``tracelet_run``, ``tracelet_recording``,
``tracelet_start``, ``tracelet_plugins``) come from
``tracelet.testing.pytest_plugin``, which pytest loads automatically when
tracelet-core is installed. The conformance suite every backend passes is
:class:`tracelet.testing.conformance.BackendConformance`; :func:`recorded`
reads the recording backend's runs back for it. See docs/testing.md.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence

import attrs

from tracelet.hookspecs import hookimpl
from tracelet.info import BackendRunRef, PluginInfo, PluginKind, RunInfo
from tracelet.records import Artifact, Media, Metric, Param, Record, RunStatus, Tag

__all__ = ["RecordingBackend", "RecordingSettings", "recorded", "recording_plugin", "tracelet_plugin_info"]

_RECORDED: dict[str, list[weakref.ref[RecordingBackend]]] = {}
"""The recording backends' "store": backend run id -> every backend object that started it, in order.

Weak references: a backend lives as long as its run (or replay result) is referenced, no longer."""
_RECORDED_LOCK = threading.Lock()


def recorded(run_id: str) -> list[RecordingBackend]:
    """Every recording backend that started (or, on replay, resumed) the backend run ``run_id``, in order.

    The recording backend keeps records in memory; this is how a test reads
    one backend run back across a resume (``tracelet replay``), the way a
    real backend's store would be read.
    """
    with _RECORDED_LOCK:
        alive = (reference() for reference in _RECORDED.get(run_id, ()))
        return [backend for backend in alive if backend is not None]


@attrs.frozen
class RecordingSettings:
    """Knobs that make the recording backend behave like a slow one."""

    start_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Seconds ``tracelet_backend_start`` sleeps (a backend whose ``init`` is slow)."""
    batch_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Seconds each routing hook call sleeps (a slow server)."""


class RecordingBackend:
    """Keeps every record and hook call in memory, in arrival order."""

    def __init__(self, settings: RecordingSettings | None = None) -> None:
        self.settings = settings or RecordingSettings()
        self.run: RunInfo | None = None
        self.records: list[Record] = []
        self.calls: list[tuple[str, int]] = []
        """``(hook name, batch size)`` per call, in order."""
        self.thread_names: set[str] = set()
        self.status: RunStatus | None = None
        self.flushes = 0
        self.ended = threading.Event()
        self.resumed = False
        """Whether start attached to an existing run (``RunInfo.resume``), as ``tracelet replay`` asks."""

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        time.sleep(self.settings.start_delay)
        self.run = run
        run_id = f"recording-{run.id}"
        # Its run ids derive from the Tracelet run id, so attaching is recognising our own id.
        self.resumed = run_id in run.resume.values()
        with _RECORDED_LOCK:
            _RECORDED.setdefault(run_id, []).append(weakref.ref(self))
        self._called("tracelet_backend_start", 0)
        return BackendRunRef(id=run_id, url=None)

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        self._receive("tracelet_backend_log_metrics", metrics)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        self._receive("tracelet_backend_log_params", params)

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        self._receive("tracelet_backend_set_tags", tags)

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        self._receive("tracelet_backend_log_artifacts", artifacts)

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        self._receive("tracelet_backend_log_media", media)

    @hookimpl
    def tracelet_backend_flush(self) -> None:
        self.flushes += 1
        self._called("tracelet_backend_flush", 0)

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        self.status = status
        self._called("tracelet_backend_end", 0)
        self.ended.set()

    # --- reading back ---------------------------------------------------------------

    @property
    def metrics(self) -> list[Metric]:
        return [record for record in self.records if isinstance(record, Metric)]

    def metric_values(self, name: str) -> list[tuple[int, float]]:
        """``(step, value)`` of every point of one series, in order."""
        return [(m.step, m.value) for m in self.metrics if m.name == name]

    @property
    def params(self) -> dict[str, object]:
        """Params by name; a re-logged name keeps its last value."""
        return {record.name: record.value for record in self.records if isinstance(record, Param)}

    @property
    def tags(self) -> dict[str, str]:
        return {record.name: record.value for record in self.records if isinstance(record, Tag)}

    def of_type(self, kind: type) -> list[Record]:
        return [record for record in self.records if isinstance(record, kind)]

    def _receive(self, hook: str, batch: Sequence[Record]) -> None:
        time.sleep(self.settings.batch_delay)
        self.records.extend(batch)
        self._called(hook, len(batch))

    def _called(self, hook: str, size: int) -> None:
        self.calls.append((hook, size))
        self.thread_names.add(threading.current_thread().name)


def _recording_info(name: str, enabled_by_default: bool) -> PluginInfo:
    return PluginInfo(
        name=name,
        kind=PluginKind.BACKEND,
        factory=RecordingBackend,
        settings=RecordingSettings,
        description="In-memory backend for tests (tracelet.testing)",
        enabled_by_default=enabled_by_default,
        unsupported={
            "permanent_error": "it keeps every record in memory, as given: there is no input it cannot take",
            "resume_setting": "it has no settings to name a run; it attaches only through RunInfo.resume (replay)",
        },
    )


def recording_plugin(name: str = "recording", *, enabled_by_default: bool = False) -> object:
    """A plugin object declaring a recording backend called ``name``, for ``tracelet.register_plugin``."""

    class RecordingPlugin:
        @hookimpl
        def tracelet_plugin_info(self) -> PluginInfo:
            return _recording_info(name, enabled_by_default)

    return RecordingPlugin()


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """The entry point ``recording``: opt-in, used only when named."""
    return _recording_info("recording", enabled_by_default=False)
