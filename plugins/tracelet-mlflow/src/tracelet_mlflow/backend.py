"""The MLflow backend: one Tracelet run -> one MLflow run, through ``MlflowClient`` only.

Never the fluent API (``mlflow.start_run``, ``mlflow.log_metric``): its active
run is process-global, so a user's own ``mlflow.start_run()`` in the same
script is neither taken over nor disturbed, and neither is a global tracking
URI they set. mlflow is imported in :meth:`MlflowBackend.tracelet_backend_start`,
on the backend's worker thread, never when the plugin is discovered.

Every hook runs on the worker thread, one at a time (see
the hook reference), so the backend keeps its state without locks. Every
call to MLflow is synchronous: a hook returns once MLflow has stored what it
was given, so ``tracelet.flush()`` needs no extra work here.

MLflow's rules are applied before sending (``log_batch`` refuses a whole
request for one bad key); each adjustment is counted in
:attr:`MlflowBackend.adjustments` and warned about once per name.

A hook that raises is called again with the same records (core retries
transient errors), so a hook changes the backend's own state (which params
were logged, which media names were used, the adjustment counts) only after
every MLflow call in it succeeded, and every call it makes stores the same
thing again when repeated: params and tags are re-sent with the same values,
files go to the same artifact paths (images too: their file names are derived
from the record, not random), identical metric rows are kept once by MLflow.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

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
    get_logger,
    hookimpl,
    names,
    probe_url,
)
from tracelet_mlflow.mapping import SOURCE_TAGS, histogram_document, histogram_summaries, media_path, to_millis
from tracelet_mlflow.naming import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    KeyMapper,
    sanitise_artifact_path,
    sanitise_image_key,
    sanitise_key,
)
from tracelet_mlflow.settings import MlflowSettings, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run as MlflowRun

__all__ = ["TRACELET_RUN_ID_TAG", "MlflowBackend"]

_log = get_logger()

TRACELET_RUN_ID_TAG = "tracelet.run_id"
"""Tag holding Tracelet's own run id, the same on every backend of a run."""

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

# Adjustment counters, the keys of MlflowBackend.adjustments.
RENAMED = "renamed"
PARAM_CHANGED = "param_changed"
PARAM_TRUNCATED = "param_truncated"
TAG_TRUNCATED = "tag_truncated"
NOT_FINITE = "not_finite"


class MlflowBackend:
    """Delivers one Tracelet run to one MLflow run.

    Read after (or during) a run with ``run.get_plugin("mlflow")``:
    :attr:`run_id`, :attr:`experiment_id`, :attr:`tracking_uri`, and how
    MLflow's rules changed what was logged: :attr:`adjustments` (records
    per rule) and :attr:`renamed` (``"metric:name"`` -> the key used).
    """

    def __init__(self, settings: MlflowSettings | None = None) -> None:
        self.settings = settings or MlflowSettings()
        # Resolved on the thread calling start(), so a relative sqlite path means
        # the directory the script was in when it started the run.
        self.tracking_uri = resolve_tracking_uri(self.settings.tracking_uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.adjustments: Counter[str] = Counter()
        """Records changed to fit MLflow's rules, by rule: ``renamed``, ``param_changed``,
        ``param_truncated``, ``tag_truncated``, ``not_finite``."""
        self.renamed: dict[str, str] = {}
        """``"<metric|param|tag|image>:<name>"`` -> the MLflow key that name was given."""
        self._client: MlflowClient | None = None
        self._metric_entity: Callable[..., Any] | None = None
        self._warned: set[tuple[str, str]] = set()
        self._metric_key = KeyMapper(sanitise_key, self._on_rename("metric"))
        self._param_key = KeyMapper(sanitise_key, self._on_rename("param"))
        self._tag_key = KeyMapper(sanitise_key, self._on_rename("tag"))
        self._image_key = KeyMapper(sanitise_image_key, self._on_rename("image"))
        self._params: dict[str, str] = {}
        """MLflow param key -> its (full) value, for every param of the MLflow run."""
        self._param_latest: dict[str, str] = {}
        """A param's key -> the key holding its latest value (itself or ``<key>.vN``)."""
        self._media_seen: Counter[str] = Counter()
        self._artifact_root = self.settings.artifact_path.strip("/")
        self._tracelet_run_id = ""
        self._pending: list[Callable[[], None]] = []
        """State changes of the hook call in progress, applied once all its MLflow calls succeeded."""
        self._depth = 0

    # --- lifecycle ------------------------------------------------------------------

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        """Create the MLflow run (or resume ``settings.run_id`` / ``run.resume.get(run.backend)``).

        A child run (``run.parent``) gets MLflow's ``mlflow.parentRunId`` tag: the
        parent's MLflow run, under which MLflow's UI shows it (same experiment)."""
        from mlflow import MlflowClient  # ~1.6 s: here on the worker thread, never at discovery
        from mlflow.entities import Metric as MlflowMetric

        _register_fork_handler()
        with self._store_calls():
            self._metric_entity = MlflowMetric
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self._tracelet_run_id = run.id
            # A retried start (the first one failed after creating the run) resumes that run: never a second one.
            # A child run (run.parent) inherits its parent's settings: their run_id and run_name name the parent's run.
            own_id = None if run.parent else self.settings.run_id
            resume_id = self.run_id or own_id or run.resume.get(run.backend)
            mlflow_run = self._resume(resume_id) if resume_id else self._create(run)
            self.run_id = mlflow_run.info.run_id
            self.experiment_id = mlflow_run.info.experiment_id
            own_tags = {
                names.TRACELET_VERSION: run.tracelet_version,
                names.TRACELET_PLUGINS: ",".join(run.plugins),
                TRACELET_RUN_ID_TAG: run.id,
                **self.settings.tags,
            }
            self.tracelet_backend_set_tags([Tag(name, str(value)) for name, value in own_tags.items()])
            return BackendRunRef(self.run_id, self._url())

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        """Set the MLflow run's status (FINISHED, FAILED or KILLED) and end time."""
        with self._store_calls():
            self._require_client().set_terminated(
                self._require_run_id(), status=RunStatus(status).value, end_time=to_millis(time.time())
            )

    @hookimpl
    def tracelet_backend_check(self, timeout: float) -> str:
        """``tracelet doctor``: GET ``<tracking_uri>/health`` on a server; a query on a sqlite store; for
        another store (``file:``, a database URL, ``databricks``) a search for one experiment through MLflow."""
        uri = self.tracking_uri
        if uri.startswith(("http://", "https://")):
            return probe_url(uri.rstrip("/") + "/health", timeout)
        if uri.startswith("sqlite:///"):
            return _check_sqlite(uri, timeout)
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return f"{_without_credentials(uri)}: the store answers"

    def _create(self, run: RunInfo) -> MlflowRun:
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        client = self._require_client()
        experiment_id = self._experiment_id(self.settings.experiment or run.project)
        # MLflow's context providers give the tags its fluent API would set
        # (mlflow.user, mlflow.source.name/type, the git commit when found).
        tags = resolve_tags()
        parent_id = None if run.parent is None else run.parent.run_id
        if parent_id:  # a child run (run.child()): MLflow's UI shows it nested under its parent
            tags[MLFLOW_PARENT_RUN_ID] = parent_id
        return client.create_run(
            experiment_id,
            start_time=to_millis(run.start_time),
            tags=tags,
            run_name=run.name if run.parent else (self.settings.run_name or run.name),
        )

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self._require_client()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name)
            except MlflowException:
                experiment = client.get_experiment_by_name(name)  # another process created it meanwhile
                if experiment is None:
                    raise
        if experiment.lifecycle_stage != "active":
            raise RuntimeError(f"the MLflow experiment {name!r} is deleted: restore it or choose another experiment name")
        return str(experiment.experiment_id)

    def _resume(self, run_id: str) -> MlflowRun:
        from mlflow.exceptions import MlflowException

        client = self._require_client()
        try:
            mlflow_run = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":  # no retry: the run will not appear
                raise PermanentError(f"no MLflow run {run_id!r} to resume: {error.message}") from error
            raise
        if mlflow_run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        self._params.update(mlflow_run.data.params)
        for key in mlflow_run.data.params:
            latest, version = key, 2
            while f"{key}.v{version}" in self._params:
                latest, version = f"{key}.v{version}", version + 1
            self._param_latest[key] = latest
        return mlflow_run

    def _url(self) -> str | None:
        """The run's page in MLflow's UI, without the credentials the tracking URI may hold (it is written to disk)."""
        if self.tracking_uri.startswith(("http://", "https://")):
            base = _without_credentials(self.tracking_uri).rstrip("/")
            return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return None

    # --- routing hooks ---------------------------------------------------------------

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        """``log_batch`` of at most 1000 metrics; steps kept, timestamps rounded to milliseconds."""
        with self._transaction():
            self._log_metrics(metrics)

    def _log_metrics(self, metrics: Sequence[Metric]) -> None:
        entity = self._metric_entity
        assert entity is not None
        key_of = self._metric_key
        isfinite = math.isfinite
        batch = []
        for name, value, step, timestamp in metrics:
            key = key_of(name)
            if key != name:
                self._adjust(RENAMED, f"metric:{name}", "metric renamed to fit MLflow's key rules", key=key)
            if not isfinite(value):
                self._adjust(NOT_FINITE, f"metric:{name}", _NOT_FINITE_MESSAGE, value=value)
            batch.append(entity(key, value, int(timestamp * 1000.0 + 0.5), step))
        self._log_batch(metrics=batch)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        """``log_batch`` of params; a changed value goes to ``<key>.v2``, ``.v3``, ... (MLflow keeps the first)."""
        with self._transaction():
            self._log_params(params)

    def _log_params(self, params: Sequence[Param]) -> None:
        from mlflow.entities import Param as MlflowParam

        batch = []
        full_values: dict[str, str] = {}
        # What this call logs, on top of self._params / self._param_latest until MLflow stored it.
        staged: dict[str, str] = {}
        staged_latest: dict[str, str] = {}
        for param in params:
            key = self._param_key(param.name)
            if key != param.name:
                self._adjust(RENAMED, f"param:{param.name}", "param renamed to fit MLflow's key rules", key=key)
            value = str(param.value)
            target = self._param_target(param.name, key, value, staged, staged_latest)
            if target is None:
                continue
            if len(value) > MAX_PARAM_VALUE_LENGTH:
                path = f"params/{target}.txt"
                full_values[path] = value
                self._adjust(
                    PARAM_TRUNCATED, f"param:{param.name}", _TRUNCATED_MESSAGE, limit=MAX_PARAM_VALUE_LENGTH, artifact=path
                )
                value = value[:MAX_PARAM_VALUE_LENGTH]
            batch.append(MlflowParam(target, value))
        self._upload_texts(full_values)
        self._log_batch(params=batch)

        def stored() -> None:
            self._params.update(staged)
            self._param_latest.update(staged_latest)

        self._pending.append(stored)

    def _param_target(self, name: str, key: str, value: str, staged: dict[str, str], staged_latest: dict[str, str]) -> str | None:
        """The key that receives ``value``, or ``None`` when it is already the param's latest value.

        The choice is recorded in ``staged`` (key -> value) and ``staged_latest``,
        which the caller applies once MLflow has stored the params: a failed
        ``log_batch`` leaves the backend as it was, so the retry sends them again.
        """
        latest = staged_latest.get(key) or self._param_latest.get(key)
        if latest is None:
            target = key
        elif staged.get(latest, self._params.get(latest)) == value:
            return None
        else:
            version = 2
            while (target := sanitise_key(f"{key}.v{version}")) in self._params or target in staged:
                version += 1
            self._adjust(
                PARAM_CHANGED,
                f"param:{name}",
                "MLflow keeps a param's first value; the new value is logged under a new key",
                key=target,
            )
        staged_latest[key] = target
        staged[target] = value
        return target

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        """``log_batch`` of tags (the last value of a name wins); well-known tags also go to MLflow's system tags."""
        with self._transaction():
            self._set_tags(tags)

    def _set_tags(self, tags: Sequence[Tag]) -> None:
        from mlflow.entities import RunTag

        values: dict[str, str] = {}
        full_values: dict[str, str] = {}
        for tag in tags:
            key = self._tag_key(tag.name)
            if key != tag.name:
                self._adjust(RENAMED, f"tag:{tag.name}", "tag renamed to fit MLflow's key rules", key=key)
            value = tag.value
            if len(value) > MAX_TAG_VALUE_LENGTH:
                path = f"tags/{key}.txt"
                full_values[path] = value
                self._adjust(TAG_TRUNCATED, f"tag:{tag.name}", _TRUNCATED_MESSAGE, limit=MAX_TAG_VALUE_LENGTH, artifact=path)
                value = value[:MAX_TAG_VALUE_LENGTH]
            values.pop(key, None)  # one entry per key in a request, in the order of the last values
            values[key] = value
            native = SOURCE_TAGS.get(tag.name)
            if native is not None:
                values.pop(native, None)
                values[native] = value
        self._upload_texts(full_values)
        self._log_batch(tags=[RunTag(key, value) for key, value in values.items()])

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """Upload files and directories to ``<artifact_path>/<name>``; a missing path fails after the others are uploaded.

        Uploading to the same path again replaces the file, so a retried batch stores each artifact once.
        """
        with self._transaction():
            self._log_artifacts(artifacts)

    def _log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        client = self._require_client()
        run_id = self._require_run_id()
        missing = []
        for artifact in artifacts:
            destination = self._artifact_path(sanitise_artifact_path(artifact.name))
            if os.path.isdir(artifact.path):
                client.log_artifacts(run_id, artifact.path, artifact_path=destination)
            elif os.path.isfile(artifact.path):
                self._upload_file(Path(artifact.path), destination)
            else:
                missing.append(artifact.path)
        if missing:  # retrying cannot make a file appear: no retry, the batch goes to the spool's rejected part
            raise PermanentError(f"artifacts not found, not uploaded: {', '.join(missing)}")

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        """Images and figures in MLflow's image layout (its image view); texts and histograms as files."""
        with self._transaction():
            self._log_media(media)

    def _log_media(self, media: Sequence[Media]) -> None:
        texts: dict[str, str] = {}
        images: list[tuple[str, Image | Figure]] = []
        summaries: list[Metric] = []
        seen: Counter[str] = Counter()  # this call's media names, counted in self._media_seen once stored
        for item in media:
            if isinstance(item, Image | Figure):
                key = self._image_key(item.name)
                if key != item.name:
                    self._adjust(RENAMED, f"image:{item.name}", "image renamed to fit MLflow's image key rules", key=key)
                stamp = to_millis(item.timestamp)
                occurrence = self._occurrence(f"images/{key}/{item.step}/{stamp}", seen)
                images.append((_image_file_name(self._tracelet_run_id, key, item.step, stamp, occurrence), item))
            elif isinstance(item, Text):
                texts[self._media_path("text", item.name, item.step, seen)] = item.text
            elif isinstance(item, Histogram):
                document = histogram_document(item)
                texts[self._media_path("histograms", item.name, item.step, seen)] = json.dumps(document, allow_nan=True)
                summaries.extend(
                    Metric(f"{item.name}/{suffix}", value, item.step, item.timestamp)
                    for suffix, value in histogram_summaries(item)
                )
        self._upload_images(images)
        self._upload_texts(texts)
        if summaries:
            self._log_metrics(summaries)
        self._pending.append(lambda: self._media_seen.update(seen))

    # --- helpers ---------------------------------------------------------------------

    def _log_batch(self, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = ()) -> None:
        """``MlflowClient.log_batch`` in requests within MLflow's limits.

        1000 metrics or 100 params or 100 tags per request. Keys are at most
        250 characters and values at most 8000, so a request stays under
        MLflow's 1 MB limit: 1000 x (250 + 64) bytes, or 100 x (250 + 8000).
        """
        client = self._require_client()
        run_id = self._require_run_id()
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH], synchronous=True)
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)
        for start in range(0, len(tags), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, tags=tags[start : start + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)

    def _upload_images(self, images: Sequence[tuple[str, Image | Figure]]) -> None:
        """Store images as ``MlflowClient.log_image(key=, step=, timestamp=)`` does, under names of our own.

        MLflow's layout (``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``
        plus a ``+compressed.webp`` preview, and the ``mlflow.loggedImages``
        tag) is what its UI shows; ``log_image`` itself picks a random uuid, so
        a retried batch would store an image twice. Our uuid is derived from the
        record (see :func:`_image_file_name`): a retry replaces the same files.
        """
        if not images:
            return
        from mlflow.entities import RunTag
        from mlflow.tracking.multimedia import compress_image_size
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES
        from PIL import Image as PILImage  # a dependency of mlflow (through matplotlib)

        with self._staging() as directory:
            for file_name, item in images:
                if isinstance(item, Image):
                    picture = PILImage.frombytes(_PIL_MODES[item.channels], (item.width, item.height), item.pixels)
                else:
                    picture = PILImage.open(io.BytesIO(item.png))
                    picture.load()
                picture.save(directory / f"{file_name}.png")
                compress_image_size(picture).save(directory / f"{file_name}+compressed.webp")
            self._require_client().log_artifacts(self._require_run_id(), str(directory), artifact_path="images")
        self._log_batch(tags=[RunTag(MLFLOW_LOGGED_IMAGES, "True")])

    def _occurrence(self, path: str, seen: Counter[str]) -> int:
        """1 for the first media record at ``path`` (kind, name, step), 2 for the next, ...; counted in ``seen``."""
        seen[path] += 1
        return self._media_seen[path] + seen[path]

    def _media_path(self, kind: str, name: str, step: int, seen: Counter[str]) -> str:
        key = sanitise_artifact_path(sanitise_key(name))
        return media_path(kind, key, step, self._occurrence(f"{kind}/{key}/{step}", seen))

    def _artifact_path(self, relative: str) -> str | None:
        path = "/".join(part for part in (self._artifact_root, relative) if part)
        return path or None

    @contextmanager
    def _staging(self) -> Iterator[Path]:
        directory = Path(tempfile.mkdtemp(prefix="tracelet-mlflow-"))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _upload_texts(self, files: dict[str, str]) -> None:
        """Write ``{relative path: text}`` into a staging directory and upload it in one call."""
        if not files:
            return
        with self._staging() as directory:
            for relative, text in files.items():
                target = directory / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            self._require_client().log_artifacts(self._require_run_id(), str(directory), artifact_path=self._artifact_path(""))

    def _upload_file(self, source: Path, destination: str | None) -> None:
        """Upload ``source`` so that it is stored exactly at ``destination`` (its directory + file name)."""
        client = self._require_client()
        run_id = self._require_run_id()
        assert destination is not None
        directory, _, file_name = destination.rpartition("/")
        if file_name == source.name:
            client.log_artifact(run_id, str(source), artifact_path=directory or None)
            return
        with self._staging() as staging:  # MLflow keeps a file's own name: copy it under the wanted one
            renamed = staging / file_name
            shutil.copyfile(source, renamed)
            client.log_artifact(run_id, str(renamed), artifact_path=directory or None)

    def _on_rename(self, space: str) -> Callable[[str, str], None]:
        def remember(name: str, key: str) -> None:
            self.renamed[f"{space}:{name}"] = key

        return remember

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One hook call: the state changes it queues in ``self._pending`` apply only if it returns normally.

        Nested calls (the start hook setting tags) join the outer one.
        """
        if self._depth == 0:
            self._pending.clear()  # left by a call that raised: it is retried from the state before it
        self._depth += 1
        try:
            with self._store_calls():
                yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            pending, self._pending = self._pending, []
            for apply in pending:
                apply()

    def _adjust(self, rule: str, name: str, message: str, **details: object) -> None:
        """Count one record changed by ``rule`` and warn once per rule and name, when the call has stored it."""

        def apply() -> None:
            self.adjustments[rule] += 1
            if (rule, name) not in self._warned:
                self._warned.add((rule, name))
                _log.warning(f"mlflow: {message} (warned once per name)", plugin="mlflow", rule=rule, name=name, **details)

        self._pending.append(apply)

    def _store_calls(self) -> AbstractContextManager[object]:
        """Held around MLflow calls on a sqlite store, so that no ``fork()`` happens in the middle of one.

        See :func:`_register_fork_handler`. Other stores (HTTP) need no guard and get none:
        a hung server must never block a fork.
        """
        return _STORE_CALLS if self.tracking_uri.startswith("sqlite:") else nullcontext()

    def _require_client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("the MLflow backend has not started")
        return self._client

    def _require_run_id(self) -> str:
        if self.run_id is None:
            raise RuntimeError("the MLflow backend has no run")
        return self.run_id


_fork_handler_registered = False
_STORE_CALLS = threading.RLock()
"""Held by a backend hook calling MLflow on a sqlite store, and by ``fork()`` (see :func:`_register_fork_handler`)."""
_FORK_WAIT = 60.0
"""Longest a ``fork()`` waits for an MLflow call in flight: MLflow's sqlite busy timeout is 20 s."""
_fork_held: list[bool] = []


def _register_fork_handler() -> None:
    """Make a forked child start MLflow's library state fresh (once per process, when mlflow is first used).

    MLflow caches tracking stores per URI (``TrackingStoreRegistry._get_store_with_resolved_uri``,
    an ``lru_cache``) and SQLAlchemy engines per database URI (``SqlAlchemyStore._engine_map``),
    guarded by module-level locks. A child forked while the parent used them
    inherits the parent's pooled sqlite connections and possibly a lock held
    by a parent thread that does not exist in the child; the child's own run
    then hung or failed. Two handlers:

    - before ``fork()``, wait until no backend is inside an MLflow call on a
      sqlite store (:data:`_STORE_CALLS`). sqlite keeps its file locks'
      bookkeeping in process memory, per file: a child forked while the parent
      held a lock inherits "this process holds a lock" and even a brand-new
      connection to that file in the child then fails ("database is locked",
      even "database disk image is malformed"). Between calls sqlite holds no
      lock, so a child forked then starts clean;
    - in the child, right after ``fork()`` and before any of its threads run,
      forget MLflow's cached stores, engines and artifact repositories
      (:func:`_reset_mlflow_in_child`), so the child opens its own connections.
    """
    global _fork_handler_registered
    if _fork_handler_registered or not hasattr(os, "register_at_fork"):
        return
    _fork_handler_registered = True
    os.register_at_fork(before=_hold_store_calls, after_in_parent=_release_store_calls, after_in_child=_reset_mlflow_in_child)


def _hold_store_calls() -> None:
    # Bounded: a call stuck past MLflow's own timeouts must not hang the fork for good.
    _fork_held.append(_STORE_CALLS.acquire(timeout=_FORK_WAIT))


def _release_store_calls() -> None:
    if _fork_held.pop():
        _STORE_CALLS.release()


def _reset_mlflow_in_child() -> None:
    """Forget the parent's MLflow stores, engines and artifact repositories; new ones are made on first use."""
    import sys

    global _STORE_CALLS
    _STORE_CALLS = threading.RLock()  # the parent's, held by the forking thread, is not ours
    _fork_held.clear()
    try:
        registry = sys.modules.get("mlflow.tracking._tracking_service.registry")
        if registry is not None:
            registry.__dict__["_building_store_lock"] = threading.Lock()
            registry.TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
        utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
        if utils is not None:
            utils._artifact_repos_cache.clear()
        for module_name in (
            "mlflow.store.tracking.sqlalchemy_store",
            "mlflow.store.model_registry.sqlalchemy_store",
            "mlflow.store.jobs.sqlalchemy_store",
        ):
            store_class = getattr(sys.modules.get(module_name), "SqlAlchemyStore", None)
            engines = getattr(store_class, "_engine_map", None)
            if store_class is None or not isinstance(engines, dict):
                continue
            for engine in engines.values():
                # close=False: drop the pool without closing connections the parent still uses.
                engine.dispose(close=False)
            engines.clear()
            store_class._engine_map_lock = threading.Lock()
    except Exception:  # noqa: BLE001 - never fail a fork; an MLflow without these caches needs no reset
        pass


def _image_file_name(tracelet_run_id: str, key: str, step: int, millis: int, occurrence: int) -> str:
    """``<key>+step+<step>+timestamp+<ms>+<uuid>``, MLflow's image file name, with a uuid that the record determines.

    The uuid (version 5) hashes the Tracelet run id, key, step, timestamp and
    the record's occurrence among images with those four, so two images logged
    alike stay apart and a retry of the same record gives the same name.
    """
    identity = uuid.uuid5(uuid.NAMESPACE_URL, f"tracelet:{tracelet_run_id}/{key}/{step}/{millis}/{occurrence}")
    return f"{key.replace('/', '~')}+step+{step}+timestamp+{millis}+{identity}"


def _check_sqlite(uri: str, timeout: float) -> str:
    """Open MLflow's sqlite database read-only and count its experiments; a missing one must be creatable."""
    import sqlite3

    path = uri[len("sqlite:///") :].partition("?")[0]
    if not os.path.exists(path):
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise PermissionError(f"{uri}: the database does not exist and {directory} is not a writable directory")
        return f"{uri}: no database yet; MLflow creates it in {directory}"
    if os.path.getsize(path) == 0:
        return f"{uri}: an empty database; MLflow creates its tables"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            (count,) = connection.execute("SELECT COUNT(*) FROM experiments").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ConnectionError(f"{uri}: not a usable MLflow database: {error}") from None
    return f"{uri}: {count} experiment{'s' if count != 1 else ''}"


def _without_credentials(uri: str) -> str:
    """``uri`` without the ``user:password@`` part of its network location."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_NOT_FINITE_MESSAGE = "non-finite metric value: MLflow's SQL stores keep NaN but store +/-inf as +/-1.7976931348623157e308"
_TRUNCATED_MESSAGE = "value longer than MLflow allows: truncated, full value stored as an artifact"
