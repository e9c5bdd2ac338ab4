"""``tracelet replay``: deliver what runs left in their spools, to the same backend runs.

For each ``<spool_dir>/<run>/<backend>/`` not locked by a live process, the
backend plugin is created with today's configuration and started with
``RunInfo.resume = {backend: its run id}`` (from ``meta.json``), so it attaches
to the run it was delivering to. The rejected part is sent first, then the
pending segments, in order; each batch is acknowledged on disk once the hook
returned, so an interrupted replay resumes where it stopped and a second
replay sends nothing twice. The backend's run is then ended with the status
the run had (``KILLED`` when the process died before ``stop()``), and the
spool directory is deleted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from tracelet.config import resolve_config
from tracelet.delivery import DeliveryPolicy
from tracelet.info import BackendRunRef, PluginInfo, RunInfo
from tracelet.plugins import discover, hooks_of
from tracelet.records import RunStatus, route_of
from tracelet.spool import BackendSpool, converter, find_spools, read_meta

__all__ = ["ReplayResult", "pending_spools", "replay"]

_ATTEMPTS = 3


@attrs.define
class ReplayResult:
    """What replaying one backend's spool did."""

    directory: Path
    backend: str
    run_id: str
    sent: int = 0
    left: bool = False
    """Whether records remain (an error stopped the replay, or another process holds the spool)."""
    error: str | None = None
    plugin: object = None
    """The backend object that received the records (tests read it back)."""


def pending_spools(root: Path, exclude_run: str | None = None) -> list[Path]:
    """Spool directories under ``root`` that no live process holds: runs whose delivery did not complete."""
    found = []
    for directory in find_spools(root):
        if directory.parent.name == exclude_run:
            continue
        probe = BackendSpool(directory, _placeholder_run(), directory.name, fsync_interval=0.0, create_lock=False)
        if probe.acquire():
            probe.release()
            found.append(directory)
    return found


def replay(root: Path, *, progress: TextIO | None = sys.stderr) -> list[ReplayResult]:
    """Replay every pending spool under ``root``; see the module docstring."""
    entries = discover()
    loaded = {entry.name: entry.info for entry in entries if entry.info is not None}
    ignored = frozenset(entry.name for entry in entries if entry.info is None)
    settings = resolve_config(loaded, {}, ignored_plugins=ignored).plugin_settings
    return [_replay_one(directory, loaded, settings, progress) for directory in find_spools(root)]


def _replay_one(directory: Path, loaded: dict[str, PluginInfo], settings: Any, progress: TextIO | None) -> ReplayResult:
    meta = read_meta(directory)
    run = converter.structure(meta["run"], RunInfo)
    backend = str(meta["backend"])
    result = ReplayResult(directory, backend, run.id)
    spool = BackendSpool.open_existing(directory, run, backend)
    if not spool.acquire():
        result.left, result.error = True, "in use by a running process"
        return result
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
        ref = _retrying(lambda: hooks.tracelet_backend_start(run=run))
        spool.set_ref(ref if isinstance(ref, BackendRunRef) else None)
        parts = [BackendSpool.open_existing(directory / "rejected", run, backend)] if (directory / "rejected").is_dir() else []
        parts.append(spool)
        total = sum(part.undelivered_bytes() for part in parts)
        done = 0
        for part in parts:
            while True:
                records, segment_id, ends = part.read(info.max_batch_size)
                if not records:
                    break
                hook_name, argument = route_of(records[0])
                _retrying(lambda: getattr(hooks, hook_name)(**{argument: records}))  # noqa: B023 - called at once
                before = part.undelivered_bytes()
                part.ack(segment_id, ends[-1], len(records))
                done += before - part.undelivered_bytes()
                result.sent += len(records)
                _show(progress, backend, run.name, done, total, result.sent)
        _retrying(lambda: hooks.tracelet_backend_flush())
        status = RunStatus(meta.get("status") or RunStatus.KILLED)
        _retrying(lambda: hooks.tracelet_backend_end(status=status))
        for part in parts[:-1]:
            part.close(None)
    except Exception as error:  # noqa: BLE001 - report the failure, leave the spool for a later replay
        result.left, result.error = True, f"{type(error).__name__}: {error}"
        spool.release()
        if progress is not None:
            print(f"\n{backend} {run.name}: stopped: {result.error}", file=progress)
        return result
    result.left = spool.close(None)
    if progress is not None:
        print(file=progress)
    return result


def _retrying(call: Callable[[], Any]) -> Any:
    policy = DeliveryPolicy(retry_base=0.5, retry_cap=5.0)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return call()
        except Exception:
            if attempt == _ATTEMPTS:
                raise
            time.sleep(policy.backoff(attempt))
    return None


def _show(progress: TextIO | None, backend: str, run_name: str, done: int, total: int, sent: int) -> None:
    if progress is None:
        return
    width = 30
    filled = width if total <= 0 else min(width, width * done // total)
    percent = 100 if total <= 0 else min(100, 100 * done // total)
    progress.write(f"\r{backend} {run_name} [{'#' * filled}{'.' * (width - filled)}] {percent:3d}% {sent} records")
    progress.flush()


def _placeholder_run() -> RunInfo:
    return RunInfo("", "", "", 0.0, "", (), ())
