"""Run assembly: from ``start()``'s arguments to a running :class:`~tracelet.run.Run`.

Discovers the plugins, resolves the configuration, picks the plugins the run
uses (backends, collectors on local rank 0, frameworks), creates their
per-run objects, and wires the dispatcher, the backend workers, the
collectors and the framework patcher together. A rank that does not log gets
an inert run: no plugin, no thread. :func:`configure` is the
discover-then-resolve sequence that ``start()``, ``tracelet replay`` and
``tracelet config`` share.

Two keys change what a run is: ``mode="offline"`` creates no backend and
writes every record to the run's offline spool (:mod:`tracelet.offline`);
``run_id`` claims a stable id in the run index (:mod:`tracelet.runindex`),
hands each backend the run it created before (``RunInfo.resume``) and takes
over what the previous process left in the run's spools, delivered first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tracelet import names
from tracelet._version import __version__
from tracelet.errors import ConfigError, PluginError
from tracelet.info import ParentRef, PluginInfo, PluginKind, RunInfo
from tracelet.log import get_logger
from tracelet.records import RunStatus, Tag

if TYPE_CHECKING:
    import pluggy

    from tracelet.config import CoreSettings, ResolvedConfig
    from tracelet.plugins import PluginEntry
    from tracelet.run import Run
    from tracelet.runindex import RunIndex
    from tracelet.spool import BackendSpool

__all__ = ["Configured", "build_child", "build_run", "configure"]

_log = get_logger()


@attrs.frozen
class Configured:
    """What discovery and configuration found: every plugin entry, the loaded ones, the resolved settings."""

    entries: tuple[PluginEntry, ...]
    loaded: dict[str, PluginInfo]
    resolved: ResolvedConfig


def configure(arguments: Mapping[str, Any]) -> Configured:
    """Discover the installed plugins and resolve the configuration for them (``start()``'s ``arguments`` last)."""
    from tracelet.config import resolve_config
    from tracelet.plugins import discover

    entries = discover()
    loaded = {entry.name: entry.info for entry in entries if entry.info is not None}
    ignored = frozenset(entry.name for entry in entries if entry.info is None)
    return Configured(entries, loaded, resolve_config(loaded, arguments, ignored_plugins=ignored))


def build_child(parent: Run, name: str | None, options: Mapping[str, Any], on_stop: Callable[[Run], None]) -> Run:
    """A child run of ``parent`` (``run.child()``): the parent's configuration, with ``options`` on top.

    The plugins the parent's ``start()`` discovered are reused (no discovery
    again); ``options`` are configuration keys as for ``start()``, a plugin's
    table merged into the parent's (``wandb={"job_type": "fold"}`` keeps the
    parent's other W&B keys). The child delivers to the parent's backends
    unless ``backends`` is given; collectors and framework patches stay the
    parent's. ``name`` defaults to ``<parent name>-<n>``, the n-th child.
    """
    if parent._inert:  # a rank that does not log, or a forked child: the child logs nothing either
        return _inert_child(parent, name, on_stop)
    arguments: dict[str, Any] = dict(parent._arguments)
    arguments["project"] = parent.project
    arguments["backends"] = parent.backends
    for key, value in options.items():
        previous = arguments.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            arguments[key] = {**previous, **value}
        elif value is not None:
            arguments[key] = tuple(value) if key == "backends" else value
    arguments["name"] = name or f"{parent.name}-{len(parent._child_names) + 1}"
    parent._child_names.append(arguments["name"])
    return build_run(arguments, on_stop, parent=parent)


def build_run(arguments: Mapping[str, Any], on_stop: Callable[[Run], None], *, parent: Run | None = None) -> Run:
    """Discover plugins, resolve the configuration, create the plugins and start a run's threads.

    ``arguments`` are ``start()``'s configuration keys; ``on_stop`` is called when the run stops (the
    API clears its active run). Raises what ``start()`` documents. A child run (``parent`` given)
    reuses the parent's plugins as discovered and gets its backends only (see :func:`build_child`).
    """
    # Imported here, not at module level: tests replace tracelet.plugins.hooks_of, and the machinery
    # stays out of `import tracelet`.
    import socket

    from tracelet.collectors import CollectorThread
    from tracelet.delivery import DeliveryPolicy
    from tracelet.dispatcher import Dispatcher
    from tracelet.offline import OfflineWorker
    from tracelet.patching import FrameworkPatcher
    from tracelet.plugins import hooks_of
    from tracelet.ranks import global_rank, local_rank
    from tracelet.redact import Redactor
    from tracelet.replay import pending_spools
    from tracelet.run import Run
    from tracelet.spool import OFFLINE_DIR
    from tracelet.worker import BackendWorker

    if parent is None or parent._configured is None:
        configured = configure(arguments)
    else:
        from tracelet.config import resolve_config

        found = parent._configured
        ignored = frozenset(entry.name for entry in found.entries if entry.info is None)
        configured = Configured(found.entries, found.loaded, resolve_config(found.loaded, arguments, ignored_plugins=ignored))
    entries, loaded, resolved = configured.entries, configured.loaded, configured.resolved
    core = resolved.core
    failed = [entry for entry in entries if entry.status == "failed"]
    if core.strict and failed:
        message = "plugins failed to load: " + "; ".join(_describe_failure(entry) for entry in failed)
        raise PluginError(message) from failed[0].exception

    rank = global_rank()
    if rank not in (None, 0) and not core.log_all_ranks:
        inert = _inert_run(core, rank, on_stop)
        inert._configured, inert._arguments, inert.parent = configured, dict(arguments), parent
        return inert
    selected = _select_plugins(loaded, resolved)
    offline = core.mode == "offline"
    targets = tuple(info.name for info in selected if info.kind is PluginKind.BACKEND)
    if offline:  # no backend is created: nothing of theirs is imported or contacted
        selected = [info for info in selected if info.kind is not PluginKind.BACKEND]
    if parent is not None:  # collectors sample, and frameworks are patched, once: for the parent
        selected = [info for info in selected if info.kind is PluginKind.BACKEND]
    instances: dict[str, tuple[PluginInfo, object, pluggy.HookRelay]] = {}
    for info in selected:
        try:
            instance = info.factory(resolved.plugin_settings[info.name])
            instances[info.name] = (info, instance, hooks_of(instance, info.name))
        except Exception as error:
            if core.strict:
                raise PluginError(f"plugin {info.name!r} could not be created: {type(error).__name__}: {error}") from error
            _log.warning(
                "plugin could not be created and was skipped", plugin=info.name, error=f"{type(error).__name__}: {error}"
            )

    by_kind = {kind: [name for name, (info, _, _) in instances.items() if info.kind is kind] for kind in PluginKind}
    if local_rank() not in (None, 0):  # collectors run once per node
        for name in by_kind[PluginKind.COLLECTOR]:
            instances.pop(name)
        by_kind[PluginKind.COLLECTOR] = []
    spool_root = Path(core.spool_dir).absolute()
    index = _claim_run_id(core, spool_root, rank) if parent is None else None  # a child never takes the id of its parent
    run_name = core.name or time.strftime("run-%Y%m%d-%H%M%S")
    if rank not in (None, 0):
        run_name = f"{run_name}-rank{rank}"
    if not core.name and index is not None and index.name:
        run_name = index.name  # a resumed run keeps its name
    run_info = RunInfo(
        # a random run id unless a stable one is given; the uuid module costs 20 ms to import
        id=os.urandom(16).hex() if index is None else index.run_id,
        project=core.project or Path.cwd().name or "default",
        name=run_name,
        start_time=time.time(),
        tracelet_version=__version__,
        backends=targets if offline else tuple(by_kind[PluginKind.BACKEND]),
        plugins=tuple(instances),
        resume={} if index is None else {name: ref.id for name, ref in index.refs().items()},
        parent=None if parent is None else ParentRef(parent.id, parent.name),
    )
    resumed = index is not None
    try:  # a resumed run takes over the spools its previous process left
        if index is not None:
            index.save(run_info)
        spooled = [OFFLINE_DIR] if offline else by_kind[PluginKind.BACKEND]
        spools = {name: _spool(core, spool_root / run_info.id / name, run_info, name, resumed=resumed) for name in spooled}
    except BaseException:
        if index is not None:
            index.release()
        raise
    policy = DeliveryPolicy(
        retry_attempts=core.retry_attempts,
        retry_base=core.retry_base,
        retry_cap=core.retry_cap,
        breaker_threshold=core.breaker_threshold,
        breaker_cooldown=core.breaker_cooldown,
        spool_after=core.spool_after,
    )
    left = [path for path in pending_spools(spool_root) if path.parent.name != run_info.id] if parent is None else []
    # ours is delivered first; a child's parent said it once
    if left:
        _log.warning(
            "undelivered records from earlier runs are waiting in the spool; run `tracelet replay` to deliver them",
            spools=len(left),
            runs=len({path.parent.name for path in left}),
            spool_dir=str(spool_root),
        )
    parent_workers = {} if parent is None else {worker.name: worker for worker in parent._dispatcher.workers}
    workers = [
        BackendWorker(
            name,
            instances[name][2],
            run_info,
            max_batch_size=instances[name][0].max_batch_size,
            queue_size=core.queue_size,
            linger=core.batch_linger,
            spool=spools[name],
            policy=policy,
            on_started=None if index is None else index.record,
            parent=None if parent is None else parent_workers.get(name),
        )
        for name in by_kind[PluginKind.BACKEND]
    ]
    if offline:
        workers = [OfflineWorker(run_info, spools[OFFLINE_DIR])]
    dispatcher = Dispatcher(
        workers,
        intake_size=core.queue_size,
        linger=core.batch_linger,
        redactor=Redactor(core.redact_patterns),
        full_wait=core.intake_full_wait,
    )
    collectors = [
        CollectorThread(name, instances[name][2], run_info, dispatcher.submit) for name in by_kind[PluginKind.COLLECTOR]
    ]
    if core.self_metrics and workers:
        from tracelet.selfmetrics import NAME, SelfMetrics

        sampler = SelfMetrics(workers, core.self_metrics_interval)
        collectors.append(CollectorThread(NAME, hooks_of(sampler, NAME), run_info, dispatcher.submit))
    run = Run(
        run_info,
        dispatcher,
        collectors,
        {name: instance for name, (_, instance, _) in instances.items()},
        settings=core,
        on_stop=on_stop,
    )
    run._configured = configured
    run._arguments = dict(arguments)
    run.parent = parent
    if parent is not None:  # every backend keeps the link, whether or not it maps nesting natively
        dispatcher.submit(Tag(names.TRACELET_PARENT_RUN_ID, parent.id))
    if rank is not None:  # log_all_ranks: every rank's run says which process it is
        dispatcher.submit(Tag("tracelet.rank", str(rank)))
        dispatcher.submit(Tag("tracelet.node", socket.gethostname()))
    if not workers:
        _log.warning("no backend plugin is active; logged values go nowhere", installed=sorted(loaded))
    elif offline:
        _log.info(
            "offline run: records go to the spool; deliver them with `tracelet sync`", spool=str(spools[OFFLINE_DIR].directory)
        )
    dispatcher.start()
    for collector in collectors:
        collector.start()
    if parent is not None:
        _log.debug("child run started", run=run_info.id, name=run_info.name, parent=parent.id)
        return run
    patcher = FrameworkPatcher([(name, instances[name][2]) for name in by_kind[PluginKind.FRAMEWORK]], run, strict=core.strict)
    run._attach_unpatch(patcher.stop)
    if index is not None:
        run._attach_after_stop(index.release)  # the run ended: a restarted job may claim its id
    if by_kind[PluginKind.FRAMEWORK]:
        run._attach_param_values(patcher.param_values)
    run._attach_watchers(patcher.watch, patcher.unwatch)
    try:
        patcher.start()
    except Exception:
        run.stop(RunStatus.FAILED, timeout=0)
        raise
    _log.debug("run started", run=run_info.id, name=run_info.name, project=run_info.project, plugins=list(run_info.plugins))
    return run


def _claim_run_id(core: CoreSettings, spool_root: Path, rank: int | None) -> RunIndex | None:
    """The run index entry of ``run_id`` (claimed for this process), checked against ``resume``; ``None`` without one."""
    from tracelet.runindex import RunIndex

    if core.run_id is None:
        if core.resume == "must":
            raise ConfigError("resume='must' needs a run_id to resume (start(run_id=...) or TRACELET_RUN_ID)")
        return None
    run_id = core.run_id if rank in (None, 0) else f"{core.run_id}-rank{rank}"  # log_all_ranks: a run per rank
    index = RunIndex.claim(spool_root, run_id)
    policy = core.resume or "allow"
    if policy == "must" and not index.known:
        index.release()
        raise ConfigError(
            f"resume='must': run_id {run_id!r} is not in the run index (no {index.path}); "
            "start it with resume='allow', or set spool_dir to where its first run kept its spool"
        )
    if policy == "never" and index.known:
        index.release()
        raise ConfigError(
            f"resume='never': run_id {run_id!r} already exists in the run index ({index.path}); "
            "choose a new run_id, or use resume='allow' to continue that run"
        )
    return index


def _spool(core: CoreSettings, directory: Path, run: RunInfo, backend: str, *, resumed: bool) -> BackendSpool:
    """A backend's spool; a resumed run takes over what its previous process left there."""
    from tracelet.spool import OFFLINE_DIR, BackendSpool

    if not resumed:
        return BackendSpool(directory, run, backend, fsync_interval=core.spool_fsync_interval)
    try:
        count = directory.name != OFFLINE_DIR  # an offline spool is never read back here: not counted
        return BackendSpool.reopen(directory, run, backend, fsync_interval=core.spool_fsync_interval, count=count)
    except BlockingIOError:
        raise ConfigError(
            f"run_id {run.id!r}: its spool {directory} is in use by another process (a `tracelet replay` or `tracelet sync`?)"
        ) from None
    except ValueError as error:
        raise ConfigError(
            f"run_id {run.id!r}: the spool its previous process left cannot be read: {directory}: {error}"
        ) from error


def _inert_run(core: CoreSettings, rank: int, on_stop: Callable[[Run], None]) -> Run:
    """The run of a rank that does not log: no plugin, no thread, calls that cost next to nothing."""
    from tracelet.dispatcher import Dispatcher
    from tracelet.run import Run

    info = RunInfo(
        id="",
        project=core.project or Path.cwd().name or "default",
        name=f"{core.name or 'run'}-rank{rank}",
        start_time=time.time(),
        tracelet_version=__version__,
        backends=(),
        plugins=(),
    )
    inert_settings = attrs.evolve(core, stop_timeout=0.0)
    run = Run(info, Dispatcher([], intake_size=1, linger=0.0), [], {}, settings=inert_settings, on_stop=on_stop)
    run._make_inert()
    _log.debug("not logging on this rank (only global rank 0 logs; set log_all_ranks to change it)", rank=rank)
    return run


def _inert_child(parent: Run, name: str | None, on_stop: Callable[[Run], None]) -> Run:
    from tracelet.dispatcher import Dispatcher
    from tracelet.run import Run

    parent._child_names.append(name or f"{parent.name}-{len(parent._child_names) + 1}")
    info = RunInfo(
        id="",
        project=parent.project,
        name=parent._child_names[-1],
        start_time=time.time(),
        tracelet_version=__version__,
        backends=(),
        plugins=(),
        parent=ParentRef(parent.id, parent.name),
    )
    run = Run(info, Dispatcher([], intake_size=1, linger=0.0), [], {}, settings=parent.settings, on_stop=on_stop)
    run._make_inert()
    run.parent = parent
    return run


def _select_plugins(loaded: Mapping[str, PluginInfo], resolved: ResolvedConfig) -> list[PluginInfo]:
    def default_on(info: PluginInfo) -> bool:
        enabled = resolved.enabled[info.name]
        return info.enabled_by_default if enabled is None else enabled

    installed_backends = sorted(name for name, info in loaded.items() if info.kind is PluginKind.BACKEND)
    if resolved.core.backends is None:
        backends = [loaded[name] for name in installed_backends if default_on(loaded[name])]
    else:
        unknown = [name for name in resolved.core.backends if name not in installed_backends]
        if unknown:
            raise ConfigError(
                f"unknown backend(s) {', '.join(map(repr, unknown))}; installed backends: "
                f"{', '.join(installed_backends) or 'none (pip install tracelet-mlflow, for example)'}"
            )
        backends = [loaded[name] for name in dict.fromkeys(resolved.core.backends)]
    others = [info for info in loaded.values() if info.kind is not PluginKind.BACKEND and default_on(info)]
    return backends + others


def _describe_failure(entry: PluginEntry) -> str:
    return f"{entry.name} (distribution {entry.distribution}): {entry.error}"
