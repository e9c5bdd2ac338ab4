"""Run assembly: from ``start()``'s arguments to a running :class:`~tracelet.run.Run`.

Discovers the plugins, resolves the configuration, picks the plugins the run
uses (backends, collectors on local rank 0, frameworks), creates their
per-run objects, and wires the dispatcher, the backend workers, the
collectors and the framework patcher together. A rank that does not log gets
an inert run: no plugin, no thread. :func:`configure` is the
discover-then-resolve sequence that ``start()``, ``tracelet replay`` and
``tracelet config`` share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tracelet._version import __version__
from tracelet.errors import ConfigError, PluginError
from tracelet.info import PluginInfo, PluginKind, RunInfo
from tracelet.log import get_logger
from tracelet.records import RunStatus, Tag

if TYPE_CHECKING:
    import pluggy

    from tracelet.config import CoreSettings, ResolvedConfig
    from tracelet.plugins import PluginEntry
    from tracelet.run import Run

__all__ = ["Configured", "build_run", "configure"]

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


def build_run(arguments: Mapping[str, Any], on_stop: Callable[[Run], None]) -> Run:
    """Discover plugins, resolve the configuration, create the plugins and start a run's threads.

    ``arguments`` are ``start()``'s configuration keys; ``on_stop`` is called when the run stops (the
    API clears its active run). Raises what ``start()`` documents.
    """
    # Imported here, not at module level: tests replace tracelet.plugins.hooks_of, and the machinery
    # stays out of `import tracelet`.
    import socket

    from tracelet.collectors import CollectorThread
    from tracelet.delivery import DeliveryPolicy
    from tracelet.dispatcher import Dispatcher
    from tracelet.patching import FrameworkPatcher
    from tracelet.plugins import hooks_of
    from tracelet.ranks import global_rank, local_rank
    from tracelet.redact import Redactor
    from tracelet.replay import pending_spools
    from tracelet.run import Run
    from tracelet.spool import BackendSpool
    from tracelet.worker import BackendWorker

    configured = configure(arguments)
    entries, loaded, resolved = configured.entries, configured.loaded, configured.resolved
    core = resolved.core
    failed = [entry for entry in entries if entry.status == "failed"]
    if core.strict and failed:
        message = "plugins failed to load: " + "; ".join(_describe_failure(entry) for entry in failed)
        raise PluginError(message) from failed[0].exception

    rank = global_rank()
    if rank not in (None, 0) and not core.log_all_ranks:
        return _inert_run(core, rank, on_stop)
    selected = _select_plugins(loaded, resolved)
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
    run_name = core.name or time.strftime("run-%Y%m%d-%H%M%S")
    run_info = RunInfo(
        id=os.urandom(16).hex(),  # a random run id; the uuid module costs 20 ms to import
        project=core.project or Path.cwd().name or "default",
        name=run_name if rank in (None, 0) else f"{run_name}-rank{rank}",
        start_time=time.time(),
        tracelet_version=__version__,
        backends=tuple(by_kind[PluginKind.BACKEND]),
        plugins=tuple(instances),
    )
    policy = DeliveryPolicy(
        retry_attempts=core.retry_attempts,
        retry_base=core.retry_base,
        retry_cap=core.retry_cap,
        breaker_threshold=core.breaker_threshold,
        breaker_cooldown=core.breaker_cooldown,
        spool_after=core.spool_after,
    )
    spool_root = Path(core.spool_dir).absolute()
    left = pending_spools(spool_root)
    if left:
        _log.warning(
            "undelivered records from earlier runs are waiting in the spool; run `tracelet replay` to deliver them",
            spools=len(left),
            runs=len({path.parent.name for path in left}),
            spool_dir=str(spool_root),
        )
    workers = [
        BackendWorker(
            name,
            instances[name][2],
            run_info,
            max_batch_size=instances[name][0].max_batch_size,
            queue_size=core.queue_size,
            linger=core.batch_linger,
            spool=BackendSpool(spool_root / run_info.id / name, run_info, name, fsync_interval=core.spool_fsync_interval),
            policy=policy,
        )
        for name in by_kind[PluginKind.BACKEND]
    ]
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
    run = Run(
        run_info,
        dispatcher,
        collectors,
        {name: instance for name, (_, instance, _) in instances.items()},
        settings=core,
        on_stop=on_stop,
    )
    if rank is not None:  # log_all_ranks: every rank's run says which process it is
        dispatcher.submit(Tag("tracelet.rank", str(rank)))
        dispatcher.submit(Tag("tracelet.node", socket.gethostname()))
    if not workers:
        _log.warning("no backend plugin is active; logged values go nowhere", installed=sorted(loaded))
    dispatcher.start()
    for collector in collectors:
        collector.start()
    patcher = FrameworkPatcher([(name, instances[name][2]) for name in by_kind[PluginKind.FRAMEWORK]], run, strict=core.strict)
    run._attach_unpatch(patcher.stop)
    run._attach_watchers(patcher.watch, patcher.unwatch)
    try:
        patcher.start()
    except Exception:
        run.stop(RunStatus.FAILED, timeout=0)
        raise
    _log.debug("run started", run=run_info.id, name=run_info.name, project=run_info.project, plugins=list(run_info.plugins))
    return run


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
