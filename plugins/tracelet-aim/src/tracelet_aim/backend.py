"""The AIM backend: one Tracelet run -> one AIM run (``aim.Run``), local repository or AIM's tracking server.

aim is imported in :meth:`AimBackend.tracelet_backend_start`, on the
backend's worker thread, never when the plugin is discovered (its import alone
takes ~0.9 s). Every hook runs on that thread, one at a time, so the backend
keeps its state without locks. Every call into aim is synchronous: a hook
returns once aim has written what it was given.

The mapping of records onto AIM (series names and contexts, repeated steps,
nested params, histograms) is in :mod:`tracelet_aim.mapping` and
``docs/plugins/aim.md``. Points keep the record's timestamp: aim's public
``Run.track`` stamps the time of the call, so the backend calls the tracker
underneath it (``Run._tracker._track``, whose argument is that time) when this
aim version has it, and ``Run.track`` otherwise (:attr:`AimBackend.keeps_timestamps`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tracelet.plugin import (
    Artifact,
    BackendRunRef,
    Figure,
    Histogram,
    Image,
    Media,
    Metric,
    Param,
    ParamValue,
    PermanentError,
    RunInfo,
    RunStatus,
    Tag,
    Text,
    get_logger,
    hookimpl,
    probe_directory,
    probe_tcp,
)
from tracelet_aim.mapping import (
    HISTOGRAM_KIND,
    KIND_KEY,
    REPEAT_KEY,
    StepLedger,
    aim_series,
    flatten_params,
    histogram_document,
    histogram_edges,
    nest_params,
    tracelet_name,
)
from tracelet_aim.settings import AimSettings, is_remote, resolve_repo

if TYPE_CHECKING:
    from aim.sdk.run import Run as AimRun

__all__ = ["LABEL_EXCLUDED_PREFIXES", "PARAMS_KEY", "TAGS_KEY", "TRACELET_KEY", "AimBackend"]

_log = get_logger()

PARAMS_KEY = "hparams"
"""The run param under which Tracelet's params are nested (AIM's own convention: ``run["hparams"]``)."""
TAGS_KEY = "tags"
"""The run param holding Tracelet's tags, ``{name: value}`` (as ``aim convert mlflow`` stores MLflow's tags)."""
TRACELET_KEY = "tracelet"
"""The run param ``{"run_id", "version", "plugins", "status"}``: status is FINISHED, FAILED, KILLED or RUNNING.

A child run (``run.child()``) also has ``parent_run_id`` (the parent's Tracelet id) and ``parent_hash``
(the parent's AIM run hash, when the parent delivers to AIM)."""
LABEL_EXCLUDED_PREFIXES = ("tracelet.", "git.", "env.")
"""Tags under these prefixes (set by Tracelet and its collectors) are run params only, not AIM labels."""

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_INT64 = (-(2**63), 2**63 - 1)
_SEQUENCE_READERS = {
    ("float", "int"): "get_metric",
    ("aim.image",): "get_image_sequence",
    ("aim.text",): "get_text_sequence",
    ("aim.distribution",): "get_distribution_sequence",
}


def _point_key(value: float, timestamp: float) -> tuple[object, float]:
    """How a stored point is recognised: its value (NaN as one value) and its timestamp."""
    return ("nan" if math.isnan(value) else value, timestamp)


class AimBackend:
    """Delivers one Tracelet run to one AIM run.

    Read after (or during) a run with ``run.get_plugin("aim")``:
    :attr:`run_hash`, :attr:`repo`, :attr:`keeps_timestamps`, and
    :attr:`adjustments` (records changed to fit AIM, by rule).
    """

    def __init__(self, settings: AimSettings | None = None) -> None:
        self.settings = settings or AimSettings()
        # Resolved on the thread calling start(): a relative path means the directory the script started in.
        self.repo = resolve_repo(self.settings.repo)
        self.run_hash: str | None = None
        self.keeps_timestamps = False
        """Whether points keep the record's time (else: the time aim stored them)."""
        self.adjustments: Counter[str] = Counter()
        """``"int_param_as_text"``: int params beyond int64 (aim's limit) stored as their decimal text."""
        self._run: AimRun | None = None
        self._track: Callable[..., None] | None = None
        self._client: Any = None
        """aim's client of a tracking server (``aim.ext.transport.client.Client``), or ``None``."""
        self._server_queue: Any = None
        """aim's queue of writes to a tracking server (``queue.Queue``), or ``None`` for a local repository."""
        self._ledger = StepLedger()
        self._stored: dict[tuple[str, int], list[tuple[object, float]]] = {}
        self._series: dict[str, tuple[str, dict[str, Any]]] = {}
        self._params: dict[str, ParamValue] = {}
        self._tags: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._warned: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        """Create the AIM run (or resume ``settings.run_hash`` / ``run.resume.get(run.backend)``)."""
        from aim.sdk.errors import MissingRunError  # aim: ~0.9 s, here on the worker thread, never at discovery
        from aim.sdk.run import Run

        # A child run (run.parent) inherits its parent's settings: their run_hash and run_name name the parent's run.
        resume = (None if run.parent else self.settings.run_hash) or run.resume.get(run.backend)
        try:
            aim_run = Run(
                run_hash=resume,
                repo=self.repo,
                experiment=None if resume else (self.settings.experiment or run.project),
                system_tracking_interval=self.settings.system_tracking_interval,
                log_system_params=self.settings.log_system_params,
                capture_terminal_logs=self.settings.capture_terminal_logs,
            )
        except MissingRunError as error:  # no retry: the run will not appear
            raise PermanentError(f"no AIM run {resume!r} to resume in {self.repo}: {error}") from error
        try:
            self._set_up(run, aim_run, resume)
        except BaseException:
            # core retries start(): leave no open run (a resumed one would stay locked) and no half-made state
            self._run = None
            with contextlib.suppress(Exception):
                aim_run.close()
            raise
        return BackendRunRef(aim_run.hash, None)

    @hookimpl
    def tracelet_backend_check(self, timeout: float) -> str:
        """``tracelet doctor``: AIM's tracking server (``aim://host:port``) accepts a connection; a local
        repository opens and lists its runs, or, not created yet, its directory takes a file."""
        if is_remote(self.repo):
            host, _, port = self.repo.removeprefix("aim://").rstrip("/").rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{self.repo}: expected aim://host:port")
            return probe_tcp(host, int(port), timeout)
        from aim.sdk.repo import Repo

        if not Repo.exists(self.repo):
            return "no repository yet: " + probe_directory(self.repo) + " (AIM creates .aim there)"
        repo = Repo(self.repo)
        try:
            runs = len(repo.list_all_runs())
        finally:
            repo.close()
        return f"{self.repo}/.aim: opens, {runs} run{'s' if runs != 1 else ''}"

    def _set_up(self, run: RunInfo, aim_run: AimRun, resume: str | None) -> None:
        self._ledger = StepLedger()  # from scratch: a retried start() must not count a resumed run's steps twice
        self._stored.clear()
        self._params.clear()
        self._tags.clear()
        self._labels.clear()
        self._run = aim_run
        self.run_hash = aim_run.hash
        if resume:
            self._load(aim_run)
            aim_run.set((TRACELET_KEY, "status"), "RUNNING", strict=False)
        else:
            aim_run.name = run.name if run.parent else (self.settings.run_name or run.name)
            own: dict[str, str] = {
                "run_id": run.id,
                "version": run.tracelet_version,
                "plugins": ",".join(run.plugins),
                "status": "RUNNING",
            }
            if run.parent is not None:  # a child run: in its parent's experiment, with the parent named
                own["parent_run_id"] = run.parent.id
                if run.parent.run_id:
                    own["parent_hash"] = run.parent.run_id
            aim_run[TRACELET_KEY] = own
        if aim_run.artifacts_uri is None:
            uri = self.settings.artifacts_uri
            if uri is None and not is_remote(self.repo):
                uri = "file://" + os.path.join(aim_run.repo.path, "artifacts")
            if uri is not None:
                aim_run.set_artifacts_uri(uri)
        if is_remote(self.repo):
            self._client = getattr(aim_run.repo, "_client", None)
            self._server_queue = getattr(getattr(self._client, "_queue", None), "_queue", None)
            self._confirm()
        tracker = getattr(aim_run, "_tracker", None)
        self._track = getattr(tracker, "_track", None)
        self.keeps_timestamps = self._track is not None
        if not self.keeps_timestamps:
            _log.warning("aim: this aim version has no Run._tracker._track: points get the time aim stores them", plugin="aim")

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        """Record ``status`` in ``run["tracelet"]["status"]``, close the AIM run and index it (so ``aim.Repo`` sees it)."""
        aim_run = self._require_run()
        aim_run.set((TRACELET_KEY, "status"), RunStatus(status).value, strict=False)
        self._confirm()  # aim's close() would wait for a tracking server without end
        repo = aim_run.repo
        aim_run.close()
        self._run = None
        if is_remote(self.repo):
            # No reference left: the repository's client disconnects now, while the server answers,
            # rather than at interpreter exit.
            return
        # A closed run is invisible to aim.Repo (and to `aim up` until its indexer comes by) until indexed.
        from aim.sdk.index_manager import RepoIndexManager

        RepoIndexManager.get_index_manager(repo).index(aim_run.hash)

    def _load(self, aim_run: AimRun) -> None:
        """Take a resumed run's params, tags, labels and stored steps, so that nothing logged now overwrites them."""
        hparams = aim_run.get(PARAMS_KEY, None)
        if isinstance(hparams, dict):
            self._params.update(flatten_params(hparams))
        tags = aim_run.get(TAGS_KEY, None)
        if isinstance(tags, dict):
            self._tags.update({str(key): str(value) for key, value in tags.items()})
        for label in aim_run.props.tags:
            name, _, value = str(label).partition(":")
            if self._tags.get(name) == value:
                self._labels[name] = str(label)
        for dtypes, reader in _SEQUENCE_READERS.items():
            for name, context, _ in aim_run.iter_sequence_info_by_type(dtypes):
                values = dict(context.to_dict())  # a copy: aim shares the dict of its cached Context
                if KIND_KEY in values:
                    continue
                sequence = getattr(aim_run, reader)(name, context)
                if sequence is None:
                    continue
                occurrence = int(values.pop(REPEAT_KEY, 1))
                series = tracelet_name(name, values)
                self._ledger.seed(series, sequence.data.indices_list(), occurrence)
                if reader == "get_metric":
                    self._remember_points(series, sequence)

    def _remember_points(self, series: str, sequence: Any) -> None:
        """A resumed run's stored points: a batch resent after a crash (delivered, not yet acknowledged in the
        spool) is recognised by step, value and the record's own timestamp, and not stored a second time."""
        steps, (values, _epochs, times) = sequence.data.items_list()
        for step, value, timestamp in zip(steps, values, times, strict=False):
            self._stored.setdefault((series, int(step)), []).append(_point_key(float(value), float(timestamp)))

    # --- routing hooks ---------------------------------------------------------------

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        """Track each point at its step, with its timestamp; a repeated step goes to a ``repeat`` context."""
        with self._batch():
            occurrence = self._ledger.occurrence
            series_of = self._series_of
            put = self._put
            stored = self._stored
            for name, value, step, timestamp in metrics:
                if stored:
                    already = stored.get((name, step))
                    if already and (key := _point_key(value, timestamp)) in already:
                        already.remove(key)  # a resend of a point the resumed run holds: stored once only
                        continue
                aim_name, context = series_of(name)
                repeat = occurrence(name, step)
                put(float(value), aim_name, step, {**context, REPEAT_KEY: repeat} if repeat > 1 else context, timestamp)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        """Nest the run's params at their dots under ``run["hparams"]``; the last value of a name wins."""
        for param in params:
            value = param.value
            if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
                self._adjust("int_param_as_text", param.name, "an int param beyond int64 is stored as its decimal text")
                value = str(value)
            self._params[param.name] = value
        self._require_run()[PARAMS_KEY] = nest_params(self._params)
        self._confirm()

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        """Tags into ``run["tags"]`` (``{name: value}``); the user's own also as AIM labels ``name:value``."""
        aim_run = self._require_run()
        for tag in tags:
            self._tags[tag.name] = tag.value
        aim_run[TAGS_KEY] = dict(self._tags)
        for name, value in self._tags.items():
            if name.startswith(LABEL_EXCLUDED_PREFIXES):
                continue
            label = f"{name}:{value}"
            previous = self._labels.get(name)
            if previous == label:
                continue
            if previous is not None:
                aim_run.remove_tag(previous)
            aim_run.add_tag(label)
            self._labels[name] = label
        self._confirm()

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """Files and directories through AIM's artifact logging, stored at ``<artifacts_uri>/<run hash>/<name>``."""
        aim_run = self._require_run()
        if aim_run.artifacts_uri is None:
            raise PermanentError("AIM's tracking server stores no artifacts itself: set TRACELET_AIM_ARTIFACTS_URI")
        missing = []
        for artifact in artifacts:
            if os.path.isdir(artifact.path):
                aim_run.log_artifacts(artifact.path, name=artifact.name, block=True)
            elif os.path.isfile(artifact.path):
                aim_run.log_artifact(artifact.path, name=artifact.name, block=True)
            else:
                missing.append(artifact.path)
        self._confirm()
        if missing:  # retrying cannot make a file appear: no retry, the batch goes to the spool's rejected part
            raise PermanentError(f"artifacts not found, not logged: {', '.join(missing)}")

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        """Images and figures as ``aim.Image``, texts as ``aim.Text``, histograms as ``aim.Distribution``."""
        from aim.sdk.objects.image import Image as AimImage
        from aim.sdk.objects.text import Text as AimText

        with self._batch():
            for item in media:
                aim_name, context = self._series_of(item.name)
                repeat = self._ledger.occurrence(item.name, item.step)
                if repeat > 1:
                    context = {**context, REPEAT_KEY: repeat}
                if isinstance(item, Text):
                    self._put(AimText(item.text), aim_name, item.step, context, item.timestamp)
                elif isinstance(item, Histogram):
                    self._put_histogram(item, aim_name, context)
                else:
                    self._put(AimImage(_picture(item), format="png"), aim_name, item.step, context, item.timestamp)

    # --- helpers ---------------------------------------------------------------------

    def _put_histogram(self, item: Histogram, aim_name: str, context: dict[str, Any]) -> None:
        from aim.sdk.objects.distribution import Distribution
        from aim.sdk.objects.text import Text as AimText

        low, high = item.edges[0], item.edges[-1]
        distribution = Distribution(hist=list(item.counts), bin_range=(low, high))
        self._put(distribution, aim_name, item.step, context, item.timestamp)
        if histogram_edges(low, high, len(item.counts)) != tuple(item.edges):
            # AIM implies uniform bins: the exact ones are kept beside it.
            exact = AimText(histogram_document(item.edges, item.counts))
            self._put(exact, aim_name, item.step, {**context, KIND_KEY: HISTOGRAM_KIND}, item.timestamp)

    def _series_of(self, name: str) -> tuple[str, dict[str, Any]]:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = aim_series(name, self.settings.subsets)
        return series

    def _put(self, value: Any, name: str, step: int, context: dict[str, Any], timestamp: float) -> None:
        track = self._track
        if track is not None:
            track(value, timestamp, name, step, None, context=context)
        else:
            self._require_run().track(value, name=name, step=step, context=context)

    @contextmanager
    def _batch(self) -> Iterator[None]:
        """A batch's repeat counts stand only if it is stored: a batch retried after an error gets the same again."""
        try:
            yield
        except ValueError as error:
            self._ledger.rollback()
            if "Incompatible data types" in str(error):  # a name already holding another kind of record
                raise PermanentError(f"AIM refuses the batch: {error}") from error
            raise
        except BaseException:
            self._ledger.rollback()
            raise
        try:
            self._confirm()
        except BaseException:
            self._ledger.rollback()
            raise
        self._ledger.commit()

    def _confirm(self) -> None:
        """On a tracking server: return once the server has taken every write queued so far.

        aim's client sends writes from a queue on a thread of its own and
        ``Run.track`` returns at once; waiting here keeps the hook contract
        (return once stored). A server that does not answer within
        ``server_timeout`` fails the batch: core retries it, then spools it.
        """
        pending = self._server_queue
        if pending is None:
            return
        deadline = time.monotonic() + self.settings.server_timeout
        with pending.all_tasks_done:
            while pending.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    unconfirmed = pending.unfinished_tasks
                    break
                pending.all_tasks_done.wait(remaining)
            else:
                return
        self._abandon_queued_writes()
        raise ConnectionError(
            f"AIM's tracking server {self.repo} did not confirm {unconfirmed} queued writes "
            f"within {self.settings.server_timeout} s"
        )

    def _abandon_queued_writes(self) -> None:
        """Drop the writes aim's client still holds for a server that does not answer.

        Core retries or spools the batch (and ``tracelet replay`` delivers it),
        so aim's own copy must not land later as well: left alone, aim's client
        retries it for as long as the process lives, and blocks interpreter
        exit until the server answers. The client gets a new, empty queue of
        the same kind; the old one's thread stops after its current attempt.
        """
        client = self._client
        old = getattr(client, "_queue", None)
        if old is None or not hasattr(old, "_shutdown"):  # another aim version: leave aim's queue as it is
            return
        fresh = type(old)(
            f"{old._name}-after-timeout",
            max_queue_memory=old.max_memory_usage,
            retry_count=old.retry_count,
            retry_interval=old.retry_interval,
        )
        old._shutdown = True
        with old._queue.mutex:
            old._queue.queue.clear()
        client._queue = fresh
        self._server_queue = fresh._queue

    def _adjust(self, rule: str, name: str, message: str) -> None:
        self.adjustments[rule] += 1
        if name not in self._warned:
            self._warned.add(name)
            _log.warning(f"aim: {message} (warned once per name)", plugin="aim", rule=rule, name=name)

    def _require_run(self) -> AimRun:
        if self._run is None:
            raise RuntimeError("the AIM backend has not started")
        return self._run


def _picture(item: Image | Figure) -> Any:
    """A PIL image of an :class:`Image`'s pixels or a :class:`Figure`'s PNG (Pillow is a dependency of aim)."""
    from PIL import Image as PILImage

    if isinstance(item, Image):
        return PILImage.frombytes(_PIL_MODES[item.channels], (item.width, item.height), item.pixels)
    picture = PILImage.open(io.BytesIO(item.png))
    picture.load()
    return picture
