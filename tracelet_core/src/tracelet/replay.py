"""``tracelet replay``: deliver what runs left in their spools, to the same backend runs.

For each ``<spool_dir>/<run>/<backend>/`` not locked by a live process, the
backend plugin is created with today's configuration and started with
``RunInfo.resume = {backend: its run id}`` (from ``meta.json``), so it attaches
to the run it was delivering to. The pending segments are sent in order, then
the rejected part (records the backend refused before); each batch is
acknowledged on disk once the hook returned, so an interrupted replay resumes
where it stopped and a second replay sends nothing twice. The backend's run
is then ended with the status the run had (``KILLED`` when the process died
before ``stop()``), and the spool directory is deleted.

What cannot go through is reported, tried once per replay, and never holds
up the rest:

- a directory that is not a spool this version reads (``meta.json``, a stray
  ``*.seg``, another format version) is skipped and left as it is;
- a batch that fails is retried (``retry_attempts``, ``retry_base``,
  ``retry_cap`` of today's configuration; ``PermanentError`` is not retried),
  then split in halves, recursively, each part sent once, until the records
  that fail alone are found. A record that fails alone is *refused* — kept in
  ``rejected/`` and named in the result — if it was refused for good
  (``PermanentError``) or the backend took other records meanwhile; the others
  are delivered, in order. With nothing taken, :data:`DOWN_AFTER` records in
  a row failing alone (or every record sent) mean the backend is down: replay
  stops there and leaves the spool as it is;
- a torn or corrupt region of a segment is skipped and reported.

``tracelet sync`` (:func:`sync`) is replay generalised to offline runs: it
first hands each offline run's spool to the backends it is synced to (see
:mod:`tracelet.offline`), then replays those backend spools like any other.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from tracelet.assembly import configure
from tracelet.console import Progress, ProgressTask
from tracelet.delivery import DeliveryPolicy
from tracelet.errors import ConfigError, PermanentError
from tracelet.info import BackendRunRef, PluginInfo, RunInfo
from tracelet.offline import OFFLINE_WORKER, SYNC_SUFFIX, backend_of, materialise, read_offline, record_synced
from tracelet.plugins import hooks_of
from tracelet.records import Artifact, Metric, Param, Record, RunStatus, Tag, route_of
from tracelet.runindex import record_ref
from tracelet.spool import (
    OFFLINE_DIR,
    BackendSpool,
    Damage,
    SpoolPosition,
    converter,
    find_offline_spools,
    find_spools,
    read_meta,
)

__all__ = ["DOWN_AFTER", "ReplayResult", "pending_spools", "replay", "sync"]

DOWN_AFTER = 8
"""Records in a row that fail alone, with nothing taken in between, that mean the backend is down, not the records."""

_NAMED = 10  # refused records named one by one in a report; more are counted


@attrs.define
class ReplayResult:
    """What replaying one backend's spool did."""

    directory: Path
    backend: str
    run_id: str
    sent: int = 0
    refused: int = 0
    """Records the backend refused (failing alone): kept in ``rejected/`` for a later replay."""
    refused_records: list[tuple[str, str]] = attrs.Factory(list)
    """``(record, reason)`` of each refused record, in order: ``("metric 'loss' step 3", "PermanentError: …")``."""
    damaged: list[Damage] = attrs.Factory(list)
    """Torn or corrupt regions skipped: their records are lost."""
    left: bool = False
    """Whether the directory remains: records undelivered (an error stopped the replay, another process holds
    the spool, the directory is unreadable) or refused."""
    error: str | None = None
    """Why replay stopped, or skipped the directory."""
    unreadable: bool = False
    """The directory is not a spool this version reads: skipped, untouched."""
    plugin: object = None
    """The backend object that received the records (tests read it back)."""
    ref: BackendRunRef | None = None
    """The backend's own run the records went to, once it started."""
    note: str | None = None
    """For a result with nothing to send: why (``already synced``)."""

    @property
    def ok(self) -> bool:
        """Everything was delivered: nothing left, refused or lost."""
        return not self.left and not self.damaged

    def report(self) -> list[str]:
        """The lines ``tracelet replay`` prints for this directory."""
        if self.unreadable:
            return [f"{self.directory}: skipped: {self.error}"]
        prefix = f"{self.backend} run {self.run_id}: "
        if self.note is not None:
            return [prefix + self.note]
        outcome = []
        if self.refused:
            names = ", ".join(f"{record} ({reason})" for record, reason in self.refused_records[:_NAMED])
            if self.refused > _NAMED:
                names += f", and {self.refused - _NAMED} more"
            outcome.append(f"{self.refused} refused, kept in {self.directory / 'rejected'}: {names}")
        if self.error is not None:
            outcome.append(f"left in the spool: {self.error}")
        lines = [prefix + f"{self.sent} records sent, " + ("; ".join(outcome) or "done")]
        lines += [prefix + damage.describe() for damage in self.damaged]
        return lines


def pending_spools(root: Path) -> list[Path]:
    """Spool directories under ``root`` that no live process holds: runs whose delivery did not complete."""
    found = []
    for directory in find_spools(root):
        probe = BackendSpool(directory, _placeholder_run(), directory.name, fsync_interval=0.0, create_lock=False)
        if probe.acquire():
            probe.release()
            found.append(directory)
    return found


def replay(root: Path, *, progress: TextIO | Progress | None = sys.stderr) -> list[ReplayResult]:
    """Replay every pending spool under ``root``; see the module docstring.

    ``progress`` shows each spool's delivery: a stream (a bar on a terminal,
    plain lines otherwise, see :class:`~tracelet.console.Progress`), a
    :class:`~tracelet.console.Progress` of the caller's, or ``None``.

    Raises :class:`~tracelet.errors.ConfigError` for a bad configuration; a
    spool that cannot be replayed is reported in its result, never raised.
    Offline runs' spools are left alone: :func:`sync` delivers them.
    """
    return _deliver(root, None, None, progress, offline=False)


def sync(
    path: Path, *, backends: Sequence[str] | None = None, progress: TextIO | Progress | None = sys.stderr
) -> list[ReplayResult]:
    """Deliver offline runs, and what online runs left, to their backends; each record once, however often it runs.

    ``path`` is the spool directory, or one run's directory in it
    (``<spool_dir>/<run id>``). ``backends`` are the backends to deliver
    to (default: for an offline run, those it was configured with; for a
    backend spool, its own). A backend an offline run was synced to before
    gets only what it has not had, in the same backend run. Raises
    :class:`~tracelet.errors.ConfigError` for a bad configuration; trouble
    with one run or backend is reported in its result, never raised.
    """
    if any(path.glob("*/meta.json")):  # a run's directory: its spools are right below
        root, runs = path.parent, frozenset({path.name})
    else:
        root, runs = path, None
    return _deliver(root, runs, None if backends is None else frozenset(backends), progress, offline=True)


def _deliver(
    root: Path,
    runs: frozenset[str] | None,
    backends: frozenset[str] | None,
    progress: TextIO | Progress | None,
    *,
    offline: bool,
) -> list[ReplayResult]:
    configured = configure({})
    loaded, resolved = configured.loaded, configured.resolved
    core = resolved.core
    policy = DeliveryPolicy(retry_attempts=core.retry_attempts, retry_base=core.retry_base, retry_cap=core.retry_cap)
    shown = progress if isinstance(progress, Progress) else Progress(progress)

    def replay_directory(directory: Path) -> ReplayResult:
        run_id = directory.parent.name
        result = ReplayResult(directory, backend_of(directory), run_id)
        try:
            _replay_one(result, loaded, resolved.plugin_settings, policy, shown)
            if result.ref is not None:
                offline_dir = directory.parent / OFFLINE_DIR
                if offline_dir.is_dir():
                    record_synced(offline_dir, result.backend, result.ref)
                with contextlib.suppress(ConfigError, OSError):  # the records went; the index is a convenience
                    record_ref(root, run_id, result.backend, result.ref)
        except Exception as error:  # noqa: BLE001 - one spool's trouble never stops the others
            result.left, result.error = True, f"{type(error).__name__}: {error}"
        return result

    try:
        return _deliver_spools(root, runs, backends, offline, replay_directory)
    finally:
        if shown is not progress:  # the caller's Progress is the caller's to close
            shown.close()


def _deliver_spools(
    root: Path,
    runs: frozenset[str] | None,
    backends: frozenset[str] | None,
    offline: bool,
    replay_directory: Callable[[Path], ReplayResult],
) -> list[ReplayResult]:
    results: list[ReplayResult] = []
    for directory in find_spools(root):
        if (runs is not None and directory.parent.name not in runs) or (
            backends is not None and backend_of(directory) not in backends
        ):
            continue
        if offline and directory.name.endswith(SYNC_SUFFIX):
            continue  # an interrupted sync's copy: delivered with its offline run, below
        results.append(replay_directory(directory))
    if offline:
        for directory in find_offline_spools(root):
            if runs is None or directory.parent.name in runs:
                results += _sync_offline(directory, backends, replay_directory)
    return results


def _sync_offline(
    directory: Path, backends: frozenset[str] | None, replay_directory: Callable[[Path], ReplayResult]
) -> list[ReplayResult]:
    """Deliver one offline run's spool to each backend it goes to: what each has not had, in its backend run."""
    run_id = directory.parent.name
    lock = BackendSpool(directory, _placeholder_run(), OFFLINE_WORKER, fsync_interval=0.0, create_lock=False)
    if not lock.acquire():
        return [ReplayResult(directory, OFFLINE_WORKER, run_id, left=True, error="in use by a running process")]
    results: list[ReplayResult] = []
    try:
        try:
            run, _ = read_offline(directory)
        except ValueError as error:
            return [ReplayResult(directory, OFFLINE_WORKER, run_id, left=True, unreadable=True, error=str(error))]
        targets = sorted(backends) if backends is not None else list(run.backends)
        if not targets:
            reason = "the offline run names no backend: pass --backend NAME"
            return [ReplayResult(directory, OFFLINE_WORKER, run_id, left=True, error=reason)]
        for backend in targets:
            delivered: list[ReplayResult] = []
            while True:  # an interrupted sync's copy first, then what it did not have yet
                try:
                    copy = materialise(directory, backend)
                except Exception as error:  # noqa: BLE001 - this backend's copy failed; the others go on
                    delivered.append(
                        ReplayResult(directory, backend, run_id, left=True, error=f"{type(error).__name__}: {error}")
                    )
                    break
                if copy is None:
                    break
                delivered.append(replay_directory(copy))
                if delivered[-1].left:
                    break
            results += delivered or [ReplayResult(directory, backend, run_id, note="already synced, nothing to send")]
    finally:
        lock.release()
    return results


def _open(directory: Path) -> tuple[dict[str, Any], RunInfo, BackendSpool, BackendSpool]:
    """Read a spool directory: meta, run, pending and rejected parts; ``ValueError`` when it is not one."""
    meta = read_meta(directory)
    try:
        run = converter.structure(meta["run"], RunInfo)
        backend = meta["backend"]
        if not isinstance(backend, str):
            raise TypeError(f"backend is {backend!r}")
    except Exception as error:  # whatever is wrong in it, it is unreadable
        raise ValueError(f"meta.json: {type(error).__name__}: {error}") from error
    spool = BackendSpool.open_existing(directory, run, backend)
    try:
        rejected = BackendSpool.open_existing(directory / "rejected", run, backend)
    except ValueError as error:
        raise ValueError(f"rejected/{error}") from error
    return meta, run, spool, rejected


def _replay_one(
    result: ReplayResult, loaded: dict[str, PluginInfo], settings: Any, policy: DeliveryPolicy, progress: Progress
) -> None:
    try:
        meta, run, spool, rejected = _open(result.directory)
    except ValueError as error:
        result.left, result.unreadable, result.error = True, True, str(error)
        return
    result.backend, result.run_id = str(meta["backend"]), run.id
    backend = result.backend
    if not spool.acquire():
        result.left, result.error = True, "in use by a running process"
        return
    spool.rejected = rejected  # close() keeps the directory while rejected/ holds records
    shown: ProgressTask | None = None
    try:
        info = loaded.get(backend)
        if info is None:
            raise LookupError(f"backend plugin {backend!r} is not installed")
        plugin = info.factory(settings[backend])
        result.plugin = plugin
        hooks = hooks_of(plugin, backend)
        previous = meta.get("backend_run")
        if previous:
            run = attrs.evolve(run, resume={backend: previous["id"]})
        run = attrs.evolve(run, backend=backend)
        ref = _retrying(policy, lambda: hooks.tracelet_backend_start(run=run))
        result.ref = ref if isinstance(ref, BackendRunRef) else None
        spool.set_ref(result.ref)
        sender = _Sender(hooks, policy)
        shown = progress.task(f"{backend} {run.name}", spool.undelivered_bytes() + rejected.undelivered_bytes())
        before_replay = rejected.position()  # what this replay refuses is not sent again in this replay
        result.error = _send_part(spool, None, spool, sender, info.max_batch_size, result, shown)
        if result.error is None:  # the pending records went: now what was refused before
            result.error = _send_part(rejected, before_replay, spool, sender, info.max_batch_size, result, shown)
        if result.error is None:
            _retrying(policy, lambda: hooks.tracelet_backend_flush())
            status = RunStatus(meta.get("status") or RunStatus.KILLED)
            _retrying(policy, lambda: hooks.tracelet_backend_end(status=status))
    except Exception as error:  # noqa: BLE001 - report the failure, leave the spool for a later replay
        result.error = f"{type(error).__name__}: {error}"
    finally:
        result.damaged = spool.damaged + rejected.damaged
        if shown is not None:
            shown.finish()
    if result.error is not None:
        rejected.close(None)
        spool.release()
        result.left = True
        return
    result.left = spool.close(None)


def _send_part(
    part: BackendSpool,
    end: SpoolPosition | None,
    spool: BackendSpool,
    sender: _Sender,
    batch_size: int,
    result: ReplayResult,
    shown: ProgressTask,
) -> str | None:
    """Send one part of the spool (up to ``end``); refused records go to ``rejected/``. Returns why it stopped."""
    while True:
        records, segment_id, ends = part.read(batch_size)
        if not records or (end is not None and segment_id > end[0]):
            return None
        batch = sender.send(records)
        resolved = batch.resolved
        refused = [(index, reason) for index, reason in batch.refused if index < resolved]  # the rest stays, in order
        if refused:
            spool.reject([records[index] for index, _ in refused])  # synced before the ack: never lost
            result.refused += len(refused)
            result.refused_records += [(_describe(records[index]), reason) for index, reason in refused]
        before = part.undelivered_bytes()
        if resolved:
            part.ack(segment_id, ends[resolved - 1], resolved)
        result.sent += resolved - len(refused)
        shown.advance(before - part.undelivered_bytes(), result.sent)
        if batch.down is not None:
            return batch.down


@attrs.define
class _Batch:
    """One batch read from the spool, as the sender handled it."""

    records: list[Record]
    route: tuple[str, str]
    handled: int = 0
    """Records from the start that were delivered, refused or are suspects."""
    refused: list[tuple[int, str]] = attrs.Factory(list)
    """``(index, reason)`` of the records refused."""
    suspects: list[tuple[int, str]] = attrs.Factory(list)
    """Records that failed alone with an error that may be the backend's (not ``PermanentError``), since the
    backend last took a record: refused once it takes one, the reason to stop if it never does."""
    down: str | None = None
    """Why the backend is taken as down: sending stops."""

    @property
    def resolved(self) -> int:
        """Records from the start that are delivered or refused: what may be acknowledged."""
        return self.suspects[0][0] if self.suspects else self.handled


class _BackendDown(Exception):
    pass


class _Sender:
    """Sends batches to one backend: retries, then isolates the records that fail alone (see the module docstring)."""

    def __init__(self, hooks: Any, policy: DeliveryPolicy) -> None:
        self._hooks = hooks
        self._policy = policy
        self._took_any = False
        self._failing = 0  # records in a row that failed alone (not PermanentError) since a record was taken

    def send(self, records: list[Record]) -> _Batch:
        batch = _Batch(records, route_of(records[0]))
        error = self._call(batch, 0, len(records), self._policy.retry_attempts)
        if error is None:
            return batch
        try:
            self._isolate(batch, 0, len(records), error)
        except _BackendDown as down:
            batch.down = str(down)
            return batch
        if batch.suspects:
            if self._took_any:  # the backend takes records: these fail on their own
                batch.refused += batch.suspects
                batch.suspects.clear()
            else:
                batch.down = _down(self._failing, batch.suspects[-1][1])
        return batch

    def _isolate(self, batch: _Batch, start: int, stop: int, error: Exception) -> None:
        """``records[start:stop]`` failed together: find the records that fail alone, delivering the others."""
        if stop - start == 1:
            self._alone(batch, start, error)
            return
        middle = (start + stop) // 2
        for low, high in ((start, middle), (middle, stop)):
            failure = self._call(batch, low, high, 1)
            if failure is not None:
                self._isolate(batch, low, high, failure)

    def _alone(self, batch: _Batch, index: int, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        batch.handled = index + 1
        if isinstance(error, PermanentError):
            batch.refused.append((index, reason))  # the backend answered: this record is the problem
            return
        batch.suspects.append((index, reason))
        self._failing += 1
        if self._failing >= DOWN_AFTER:
            raise _BackendDown(_down(self._failing, reason))

    def _call(self, batch: _Batch, start: int, stop: int, attempts: int) -> Exception | None:
        """Send ``records[start:stop]``, ``attempts`` times at most; the error of the last attempt, or ``None``."""
        hook_name, argument = batch.route
        for attempt in range(1, attempts + 1):
            try:
                getattr(self._hooks, hook_name)(**{argument: batch.records[start:stop]})
            except PermanentError as error:
                return error
            except Exception as error:  # noqa: BLE001 - retried, then isolated
                if attempt == attempts:
                    return error
                time.sleep(self._policy.backoff(attempt))
            else:
                self._took_any = True
                self._failing = 0
                batch.refused += batch.suspects  # taken after they failed: they fail on their own
                batch.suspects.clear()
                batch.handled = stop
                return None
        return None  # pragma: no cover - attempts >= 1


def _down(failing: int, reason: str) -> str:
    records = "1 record" if failing == 1 else f"{failing} records"
    return f"backend down: {records} in a row failed, each sent alone: {reason}"


def _retrying(policy: DeliveryPolicy, call: Callable[[], Any]) -> Any:
    """A control hook (start, flush, end), retried like a batch; ``PermanentError`` is not retried."""
    for attempt in range(1, policy.retry_attempts + 1):
        try:
            return call()
        except PermanentError:
            raise
        except Exception:
            if attempt == policy.retry_attempts:
                raise
            time.sleep(policy.backoff(attempt))
    return None  # pragma: no cover - retry_attempts >= 1


def _describe(record: Record) -> str:
    """A record as a report names it: ``metric 'loss' step 3``, ``param 'lr'``, ``artifact 'model.pt'``."""
    if isinstance(record, Metric):
        return f"metric {record.name!r} step {record.step}"
    if isinstance(record, (Param, Tag, Artifact)):
        return f"{type(record).__name__.lower()} {record.name!r}"
    return f"{type(record).__name__.lower()} {record.name!r} step {record.step}"


def _placeholder_run() -> RunInfo:
    return RunInfo("", "", "", 0.0, "", (), ())
