"""The ClearML backend: one Tracelet run -> one ClearML task, with ClearML's own automation off.

clearml is imported in :meth:`ClearmlBackend.tracelet_backend_start`, on the
backend's worker thread, never when the plugin is discovered.

ClearML's habits and what the backend does about them:

- ``Task.init`` patches frameworks, argparse, stdout/stderr and starts a
  resource monitor: all off (``automation = false``), and the process-wide
  objects it still replaces (``sys.excepthook``, ``builtins.__import__``,
  the streams, ``torch.save``/``torch.load``) are put back after the task
  starts and after it closes.
- Its reporter runs in a subprocess on Linux (~5.8 ms per ``report_scalar``,
  ~5 s to close). When the user has no ClearML configuration file, the backend
  writes one in a private directory, named by ``CLEARML_CONFIG_FILE``, with
  ``sdk.development.report_use_subprocess: false``: the in-process reporter.
- One main task per process: when the script already has one
  (``Task.current_task()``), the backend logs into it and leaves closing it to
  the script.
- Its server's limits, where breaking one loses the event without an error
  reaching the script: a title or series longer than :data:`MAX_NAME_BYTES`,
  a finite scalar beyond :data:`FLOAT32_MAX`, a debug sample over the file
  server's upload limit (``max_image_bytes``). Each record is fitted, counted
  in :attr:`ClearmlBackend.adjustments` and warned about once per name.

Every hook runs on the worker thread, one at a time: no locks.
"""

from __future__ import annotations

import atexit
import builtins
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tracelet.plugin import (
    Artifact,
    BackendRunRef,
    Figure,
    Histogram,
    Image,
    Media,
    Metric,
    Param,
    PermanentError,
    RunInfo,
    RunStatus,
    Tag,
    Text,
    encode_png,
    get_logger,
    hookimpl,
    names,
    probe_directory,
    probe_url,
    stop_run_at_exit_first,
)
from tracelet_clearml.settings import PLUGIN_NAME, ClearmlSettings

__all__ = [
    "FLOAT32_MAX",
    "MAX_NAME_BYTES",
    "PARAM_SECTION",
    "STATUS_PROPERTY",
    "ClearmlBackend",
    "fit_name",
    "metric_name",
    "title_series",
]

_log = get_logger()

PARAM_SECTION = "General"
"""The hyperparameter section params go to: the one ``Task.connect(dict)`` uses."""
STATUS_PROPERTY = "tracelet.status"
"""User property holding the run's end status: ClearML's offline session keeps no task status."""
TRACELET_RUN_ID_TAG = "tracelet.run_id"

MAX_NAME_BYTES = 32_766
"""The longest title or series, in UTF-8 bytes, ClearML's server can index: it stores both as Elasticsearch
keywords, and a longer term makes the whole event fail to index (the server counts it; the script never hears)."""
FLOAT32_MAX = 3.4028234663852886e38
"""The largest scalar ClearML's server can store: it keeps values as Elasticsearch ``float`` (32 bits), which
refuses a finite value beyond this (it would become infinite), failing the event."""

# Adjustment counters, the keys of ClearmlBackend.adjustments.
NAME_SHORTENED = "name_shortened"
VALUE_CLAMPED = "value_clamped"
IMAGE_DOWNSCALED = "image_downscaled"

_CONFIG_VARIABLE = "CLEARML_CONFIG_FILE"
_IN_PROCESS_REPORTER = "sdk.development.report_use_subprocess: false\n"

_LIVE_TASKS: dict[str, Any] = {}
"""ClearML tasks this plugin started in this process and has not closed, by id: a run abandoned at
``stop()``'s deadline keeps its task open, and ``tracelet replay`` in the same process attaches to it."""
_OPEN_TRACELET_RUNS: set[str] = set()


class _Process:
    config_dir: str | None = None


_PROCESS = _Process()


def title_series(name: str) -> tuple[str, str]:
    """A Tracelet metric name as ClearML's ``(title, series)``: ``train/loss`` -> ``("train", "loss")``.

    Split at the first ``/``. A name without ``/`` is both title and series
    (what ClearML's own TensorBoard binding does); so is ``x/x``, which would
    otherwise read back as ``x``. :func:`metric_name` reverses it exactly.
    """
    title, slash, series = name.partition("/")
    if not slash or title == series:
        return name, name
    return title, series


def metric_name(title: str, series: str) -> str:
    """The Tracelet name :func:`title_series` mapped to ``(title, series)``."""
    return title if title == series else f"{title}/{series}"


def fit_name(part: str) -> str:
    """A title or series cut to :data:`MAX_NAME_BYTES`: its longest prefix that fits with ``~`` and 16 hex
    digits of the whole part's SHA-256 after it, so that two long names sharing a prefix stay apart."""
    data = part.encode()
    if len(data) <= MAX_NAME_BYTES:
        return part
    suffix = "~" + hashlib.sha256(data).hexdigest()[:16]
    return data[: MAX_NAME_BYTES - len(suffix)].decode(errors="ignore") + suffix


class ClearmlBackend:
    """Delivers one Tracelet run to one ClearML task.

    Read after (or during) a run with ``run.get_plugin("clearml")``:
    :attr:`task_id`, :attr:`offline_folder` (offline mode: ClearML's session directory).
    """

    def __init__(self, settings: ClearmlSettings | None = None) -> None:
        self.settings = settings or ClearmlSettings()
        self.task_id: str | None = None
        self.offline_folder: str | None = None
        self.attached = False
        """Whether the task is the script's own (``Task.current_task()``): the backend does not close it."""
        self._task: Any = None
        self._logger: Any = None
        self._report: Any = None
        self._scalar_event: Any = None
        self._offline = False
        self._saved: dict[str, Any] = {}
        self._media_dir: str | None = None
        self._tracelet_run_id = ""
        self.adjustments: Counter[str] = Counter()
        """Records changed to fit ClearML's limits, by rule: ``name_shortened``, ``value_clamped``,
        ``image_downscaled``."""
        self._names: dict[str, tuple[str, str]] = {}
        """Each name seen -> its ``(title, series)`` within ClearML's limits."""
        self._long_names: set[str] = set()
        self._warned: set[tuple[str, str]] = set()

    # --- lifecycle ------------------------------------------------------------------

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        """Create the ClearML task (or continue ``settings.task_id`` / ``run.resume.get(run.backend)``).

        A child run (``run.parent``) gets a task of its own whose parent is the parent run's task."""
        _in_process_reporter()
        from clearml import Task  # here, on the worker thread, never at discovery

        try:
            task = self._task_for(Task, run)
        except Exception as error:
            if type(error).__name__ == "MissingConfigError":
                raise ConnectionError(
                    "clearml: no ClearML server configured: run `clearml-init` (or set CLEARML_API_HOST and "
                    "credentials), or go offline with CLEARML_OFFLINE_MODE=1 / TRACELET_CLEARML_OFFLINE=true; "
                    "records wait in the spool for `tracelet replay`"
                ) from None
            raise
        self._task = task
        self._logger = task.get_logger()
        self._offline = bool(Task.is_offline())
        if self._offline:
            # ClearML detects the script's git repository on a thread of its own that reloads the offline
            # task.json and writes it back; its offline property and parameter edits skip the lock that
            # guards this, so an edit in between is lost (tests/all caught git.* tags missing). Wait for the
            # detection first, as ClearML's own set_packages and close do (with the same 300 s limit).
            wait = getattr(task, "_wait_for_repo_detection", None)
            if wait is not None:
                wait(timeout=300.0)
        self.task_id = task.id
        self.offline_folder = str(task.get_offline_mode_folder()) if self._offline else None
        self._report, self._scalar_event = _scalar_reporter(task)
        self._tracelet_run_id = run.id
        _OPEN_TRACELET_RUNS.add(run.id)
        # ClearML registered its atexit close of the task: the run must stop (and end the task) before it
        stop_run_at_exit_first(PLUGIN_NAME, _OPEN_TRACELET_RUNS.__contains__)
        self.tracelet_backend_set_tags(
            [
                Tag(names.TRACELET_VERSION, run.tracelet_version),
                Tag(names.TRACELET_PLUGINS, ",".join(run.plugins)),
                Tag(TRACELET_RUN_ID_TAG, run.id),
            ]
        )
        url = None if self._offline else task.get_output_log_web_page()
        return BackendRunRef(task.id, url)

    def _task_for(self, Task: Any, run: RunInfo) -> Any:  # Task: clearml's class, imported by the caller
        """The ClearML task of this run: a live one of this plugin's to resume, the script's own, or a new one."""
        settings = self.settings
        if settings.offline is not None:
            Task.set_offline(offline_mode=settings.offline)
        # A child run (run.parent) inherits its parent's settings: their task_id and task_name name the parent's task.
        resume_id = (None if run.parent else settings.task_id) or run.resume.get(run.backend)
        task = _LIVE_TASKS.get(resume_id) if resume_id else None
        if task is None and run.parent is not None and not resume_id:
            return self._child_task(Task, run)
        current = Task.current_task()
        if task is None and current is not None:
            # ClearML allows one main task per process: the script's own, or one left open by this plugin.
            task = current
            self.attached = current.id not in _LIVE_TASKS
        if task is None:
            self._saved = _process_objects()
            try:
                task = Task.init(
                    project_name=settings.project or run.project,
                    task_name=settings.task_name or run.name,
                    task_type=settings.task_type,
                    tags=[tag.strip() for tag in (settings.tags or "").split(",") if tag.strip()] or None,
                    output_uri=settings.output_uri,
                    reuse_last_task_id=False,
                    continue_last_task=resume_id or False,
                    auto_connect_frameworks=settings.automation,
                    auto_connect_arg_parser=settings.automation,
                    auto_connect_streams=settings.automation,
                    auto_resource_monitoring=settings.automation,
                )
            finally:
                if not settings.automation:
                    _restore(self._saved)
            if resume_id:
                task.set_initial_iteration(0)  # ClearML offsets a continued task's iterations: steps stay Tracelet's
            _LIVE_TASKS[task.id] = task
        return task

    def _child_task(self, Task: Any, run: RunInfo) -> Any:  # Task: clearml's class, imported by the caller
        """A new task, beside the process's main task, whose parent is the parent run's task (``run.parent``).

        ``Task.init`` makes the process's one main task (a second call returns
        it), and the public ``Task.create`` refuses offline mode and populates
        the task from the repository; ``Task._create`` makes a plain task, online
        and offline, which ClearML's own ``Task.create`` builds on.
        """
        assert run.parent is not None
        settings = self.settings
        create = getattr(Task, "_create", None) or Task.create
        task = create(project_name=settings.project or run.project, task_name=run.name, task_type=settings.task_type)
        if run.parent.run_id:
            task.set_parent(run.parent.run_id)
        labels = [tag.strip() for tag in (settings.tags or "").split(",") if tag.strip()]
        if labels:
            task.add_tags(labels)
        if settings.output_uri:
            task.output_uri = settings.output_uri
        task.mark_started(force=True)
        _LIVE_TASKS[task.id] = task
        return task

    @hookimpl
    def tracelet_backend_check(self, timeout: float) -> str:
        """``tracelet doctor``: offline, ClearML's offline directory takes a file; online, credentials are
        configured and the ``api_server`` (``CLEARML_API_HOST``, ``clearml.conf``) answers."""
        from clearml.backend_api.session.defs import ENV_ACCESS_KEY
        from clearml.backend_api.session.session import Session
        from clearml.config import config_obj, get_offline_dir

        offline = self.settings.offline
        if offline is None:
            offline = os.environ.get("CLEARML_OFFLINE_MODE", "").strip().lower() in ("1", "true", "yes", "on")
        if offline:
            return "offline: " + probe_directory(get_offline_dir())
        host = Session.get_api_server_host()
        if not (ENV_ACCESS_KEY.get() or config_obj.get("api.credentials.access_key", None) or Session.default_key):
            raise PermissionError(
                f"no ClearML credentials for {host}: run `clearml-init` (or set CLEARML_API_HOST and "
                "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY), or go offline with TRACELET_CLEARML_OFFLINE=true"
            )
        return "online: " + probe_url(host + "/debug.ping", timeout, any_status=True)

    @hookimpl
    def tracelet_backend_flush(self) -> None:
        """Wait until ClearML's reporter has written every event and every upload is done."""
        self._require_task().flush(wait_for_uploads=True)

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        """Record the status (user property ``tracelet.status``; online also the task's own status) and close
        the task, unless it is the script's own task."""
        task = self._require_task()
        status = RunStatus(status)
        task.set_user_properties(**{STATUS_PROPERTY: status.value})
        if not self._offline:  # offline, ClearML 2.1.12 keeps no task status: mark_* change nothing
            if status is RunStatus.FINISHED:
                task.mark_completed(force=True)
            elif status is RunStatus.FAILED:
                task.mark_failed(status_reason="tracelet: the run failed", force=True)
            else:
                task.mark_stopped(force=True, status_message="tracelet: the run was killed")
        task.flush(wait_for_uploads=True)
        _OPEN_TRACELET_RUNS.discard(self._tracelet_run_id)
        if not self.attached:
            saved = _process_objects()
            try:
                task.close()
            finally:
                if not self.settings.automation:
                    _restore(saved)
                _LIVE_TASKS.pop(task.id, None)
        if self._media_dir is not None:
            shutil.rmtree(self._media_dir, ignore_errors=True)
            self._media_dir = None

    # --- routing hooks ---------------------------------------------------------------

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        """``report_scalar(title, series, value, step)`` per point (see :func:`title_series`), each at its own
        timestamp; ClearML's reporter batches the events itself."""
        self._require_task()
        report, event = self._report, self._scalar_event
        names, long_names = self._names, self._long_names
        for name, value, step, timestamp in metrics:
            title_and_series = names.get(name)
            if title_and_series is None:
                title_and_series = self._title_series(name)
            title, series = title_and_series
            if name in long_names:
                self._adjust(NAME_SHORTENED, name, _SHORTENED_MESSAGE, limit=MAX_NAME_BYTES)
            if (value > FLOAT32_MAX or value < -FLOAT32_MAX) and value not in _INFINITIES:
                value = FLOAT32_MAX if value > 0 else -FLOAT32_MAX
                self._adjust(VALUE_CLAMPED, name, _CLAMPED_MESSAGE, limit=FLOAT32_MAX)
            if event is not None:
                report(event(metric=title, variant=series, value=value, iter=step, timestamp=round(timestamp * 1000)))
            else:
                self._logger.report_scalar(title, series, value, step)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        """Into the task's hyperparameters, section ``General``, under their full (dotted) names."""
        values = {f"{PARAM_SECTION}/{param.name}": _param_value(param.value) for param in params}
        self._require_task().update_parameters(values)

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        """Into the task's user properties (``name: value``); a tag with an empty value is also a task tag."""
        task = self._require_task()
        task.set_user_properties(*[{"name": tag.name, "value": tag.value} for tag in tags])
        labels = [tag.name for tag in tags if not tag.value]
        if labels:
            task.add_tags(labels)

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """``upload_artifact`` per file, byte for byte; a directory's files as ``<name>/<relative path>``."""
        task = self._require_task()
        missing = []
        for artifact in artifacts:
            if os.path.isdir(artifact.path):
                for directory, _, files in os.walk(artifact.path):
                    for file in sorted(files):
                        path = os.path.join(directory, file)
                        relative = os.path.relpath(path, artifact.path).replace(os.sep, "/")
                        task.upload_artifact(f"{artifact.name}/{relative}", artifact_object=path, wait_on_upload=True)
            elif os.path.isfile(artifact.path):
                task.upload_artifact(artifact.name, artifact_object=str(artifact.path), wait_on_upload=True)
            else:
                missing.append(str(artifact.path))
        if missing:  # retrying cannot make a file appear
            raise PermanentError(f"artifacts not found, not uploaded: {', '.join(missing)}")

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        """Images and figures as PNG debug samples, texts as ``.txt`` debug samples, histograms as
        ``report_histogram`` bar plots, each at its step (see docs/plugins/clearml.md)."""
        self._require_task()
        logger = self._logger
        for item in media:
            title, series = self._names.get(item.name) or self._title_series(item.name)
            if item.name in self._long_names:
                self._adjust(NAME_SHORTENED, item.name, _SHORTENED_MESSAGE, limit=MAX_NAME_BYTES)
            if isinstance(item, Image | Figure):
                png = encode_png(item) if isinstance(item, Image) else item.png
                limit = self.settings.max_image_bytes
                if limit and len(png) > limit:
                    png, width, height = downscale_png(png, limit)
                    self._adjust(IMAGE_DOWNSCALED, item.name, _DOWNSCALED_MESSAGE, limit=limit, size=f"{width}x{height}")
                logger.report_media(title, series, iteration=item.step, stream=io.BytesIO(png), file_extension=".png")
            elif isinstance(item, Text):
                data = io.BytesIO(item.text.encode())
                logger.report_media(title, series, iteration=item.step, stream=data, file_extension=".txt")
            elif isinstance(item, Histogram):
                logger.report_histogram(
                    title,
                    series,
                    values=list(item.counts),
                    iteration=item.step,
                    xlabels=[repr(edge) for edge in item.edges[:-1]],
                    extra_layout={"tracelet": {"edges": list(item.edges)}},
                )
            else:
                raise PermanentError(f"ClearML backend: no ClearML form for {type(item).__name__}")

    # --- ClearML's limits ------------------------------------------------------------

    def _title_series(self, name: str) -> tuple[str, str]:
        """``title_series(name)`` within :data:`MAX_NAME_BYTES`, remembered per name."""
        title, series = title_series(name)
        fitted = fit_name(title), fit_name(series)
        if fitted != (title, series):
            self._long_names.add(name)
        self._names[name] = fitted
        return fitted

    def _adjust(self, rule: str, name: str, message: str, **details: object) -> None:
        """Count one record changed by ``rule``; warn once per rule and name."""
        self.adjustments[rule] += 1
        if (rule, name) not in self._warned:
            self._warned.add((rule, name))
            shown = name if len(name) <= 80 else name[:77] + "..."
            _log.warning(f"clearml: {message} (warned once per name)", plugin="clearml", rule=rule, name=shown, **details)

    # --- helpers ---------------------------------------------------------------------

    def _require_task(self) -> Any:
        if self._task is None:
            raise RuntimeError("the ClearML backend has not started")
        return self._task


_INFINITIES = (float("inf"), float("-inf"))
_SHORTENED_MESSAGE = "a title or series longer than ClearML's server can index was shortened (prefix ~ hash)"
_CLAMPED_MESSAGE = "a value beyond ClearML's 32-bit float storage was clamped to its largest finite value"
_DOWNSCALED_MESSAGE = (
    "an image larger than max_image_bytes (the file server's upload limit) was halved until it fit; "
    "set TRACELET_CLEARML_MAX_IMAGE_BYTES=0 to keep every pixel"
)


def downscale_png(png: bytes, limit: int) -> tuple[bytes, int, int]:
    """``png`` halved in width and height (box filter) until its PNG encoding is at most ``limit`` bytes;
    returns the PNG and its size. A 1x1 image is the smallest it goes."""
    from PIL import Image as PilImage  # pillow: a dependency of this plugin, imported on the worker only

    picture: PilImage.Image = PilImage.open(io.BytesIO(png))
    picture.load()
    while True:
        if min(picture.size) > 1:
            picture = picture.reduce(2)
        out = io.BytesIO()
        picture.save(out, format="PNG")
        if out.tell() <= limit or min(picture.size) == 1:
            return out.getvalue(), picture.size[0], picture.size[1]


def _param_value(value: object) -> object:
    return "" if value is None else value


def _scalar_reporter(task: Any) -> tuple[Any, Any]:
    """ClearML's scalar event and its reporter's ``_report``, to keep each point's own timestamp
    (``Logger.report_scalar`` stamps the time it is called); ``(None, None)`` where they are missing."""
    try:
        from clearml.backend_interface.metrics.events import ScalarEvent

        report = task._reporter._report
    except (ImportError, AttributeError):
        return None, None
    return report, ScalarEvent


def _in_process_reporter() -> None:
    """Name a private ClearML configuration with the in-process reporter, if the user has none of their own."""
    if os.environ.get(_CONFIG_VARIABLE) or ("clearml.config" in sys.modules and _config_loaded()):
        return
    home = os.path.expanduser("~")
    if any(os.path.exists(os.path.join(home, name)) for name in ("clearml.conf", "trains.conf")):
        return
    if _PROCESS.config_dir is None:
        _PROCESS.config_dir = tempfile.mkdtemp(prefix="tracelet-clearml-")
        atexit.register(shutil.rmtree, _PROCESS.config_dir, True)
    path = os.path.join(_PROCESS.config_dir, "clearml.conf")
    with open(path, "w", encoding="utf-8") as file:
        file.write(_IN_PROCESS_REPORTER)
    os.environ[_CONFIG_VARIABLE] = path


def _config_loaded() -> bool:
    config = sys.modules["clearml.config"]
    return getattr(getattr(config, "ConfigWrapper", None), "_config", None) is not None


def _process_objects() -> dict[str, Any]:
    """The process-wide objects ClearML's ``Task.init`` and ``close`` replace, to put back."""
    saved: dict[str, Any] = {
        "excepthook": sys.excepthook,
        "stdout": sys.stdout,
        "stderr": sys.stderr,
        "import": builtins.__import__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        saved["torch.save"] = torch.save
        saved["torch.load"] = torch.load
    return saved


def _restore(saved: dict[str, Any]) -> None:
    if not saved:
        return
    sys.excepthook = saved["excepthook"]
    sys.stdout = saved["stdout"]
    sys.stderr = saved["stderr"]
    builtins.__import__ = saved["import"]
    torch: Any = sys.modules.get("torch")
    if torch is not None and "torch.save" in saved:
        torch.save = saved["torch.save"]
        torch.load = saved["torch.load"]
