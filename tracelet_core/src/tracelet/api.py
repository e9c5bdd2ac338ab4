"""The module-level API: ``tracelet.start()``, the active run, and functions that log to it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tracelet import lifecycle
from tracelet._version import __version__
from tracelet.errors import ConfigError, PluginError, TraceletError
from tracelet.info import PluginInfo, PluginKind, RunInfo
from tracelet.log import get_logger
from tracelet.records import RunStatus, Tag

if TYPE_CHECKING:
    import pluggy

    from tracelet.config import CoreSettings, ResolvedConfig
    from tracelet.plugins import PluginEntry
    from tracelet.run import Run

__all__ = [
    "active_run",
    "flush",
    "log_artifact",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_text",
    "set_tags",
    "start",
    "stop",
]

_log = get_logger()
_start_lock = threading.RLock()
_active: Run | None = None


def start(
    project: str | None = None,
    name: str | None = None,
    backends: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Start a run that delivers to every configured backend, and make it the active run.

    ``backends=None`` means every installed backend plugin that is enabled by
    default. ``config`` holds configuration keys (``{"queue_size": 10_000,
    "mlflow": {"tracking_uri": ...}}``); ``options`` are more keys and win
    over ``config``. If a run is already active, it is stopped first
    (status ``FINISHED``), so re-running a notebook cell just works.

    Returns without waiting for backends to start: each backend starts on
    its own worker thread while records queue up.

    Raises :class:`~tracelet.errors.ConfigError` for an invalid or (in strict
    mode) unknown configuration key or an unknown backend name, and, in
    strict mode, :class:`~tracelet.errors.PluginError` when a plugin failed to
    load or to be created.
    """
    global _active
    with _start_lock:
        if _active is not None:
            _log.info("a run is active; finishing it before starting the new one", run=_active.id, name=_active.name)
            _active.stop(RunStatus.FINISHED)
        arguments: dict[str, Any] = dict(config or {})
        arguments.update(options)
        for key, value in (("project", project), ("name", name), ("backends", backends)):
            if value is not None:
                arguments[key] = tuple(value) if key == "backends" else value
        run = _build_run(arguments)
        _active = run
        lifecycle.register_exit_handler()
        if run.info.id and not run._inert and run.settings.handle_signals:
            lifecycle.install_signal_handlers(run.settings.sigterm_grace)
        return run


def _build_run(arguments: Mapping[str, Any]) -> Run:
    # The machinery is imported on first start(), keeping `import tracelet` close to its dependencies' cost.
    import socket

    from tracelet.collectors import CollectorThread
    from tracelet.config import resolve_config
    from tracelet.delivery import DeliveryPolicy
    from tracelet.dispatcher import Dispatcher
    from tracelet.patching import FrameworkPatcher
    from tracelet.plugins import discover, hooks_of
    from tracelet.ranks import global_rank, local_rank
    from tracelet.redact import Redactor
    from tracelet.replay import pending_spools
    from tracelet.run import Run
    from tracelet.spool import BackendSpool
    from tracelet.worker import BackendWorker

    entries = discover()
    loaded = {entry.name: entry.info for entry in entries if entry.info is not None}
    ignored = frozenset(entry.name for entry in entries if entry.info is None)
    resolved = resolve_config(loaded, arguments, ignored_plugins=ignored)
    core = resolved.core
    failed = [entry for entry in entries if entry.status == "failed"]
    if core.strict and failed:
        message = "plugins failed to load: " + "; ".join(_describe_failure(entry) for entry in failed)
        raise PluginError(message) from failed[0].exception

    rank = global_rank()
    if rank not in (None, 0) and not core.log_all_ranks:
        return _inert_run(core, rank)
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
        on_stop=_deactivate,
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
    run._attach_patcher(patcher)
    try:
        patcher.start()
    except Exception:
        run.stop(RunStatus.FAILED, timeout=0)
        raise
    _log.debug("run started", run=run_info.id, name=run_info.name, project=run_info.project, plugins=list(run_info.plugins))
    return run


def _inert_run(core: CoreSettings, rank: int) -> Run:
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
    run = Run(info, Dispatcher([], intake_size=1, linger=0.0), [], {}, settings=inert_settings, on_stop=_deactivate)
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


def _deactivate(run: Run) -> None:
    global _active
    with _start_lock:
        if _active is run:
            _active = None


def _reset_after_fork() -> None:
    """A forked child may have been forked while another thread held the lock: start with a fresh one."""
    global _start_lock
    _start_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def active_run() -> Run | None:
    """The run started by :func:`start` and not yet stopped, if any."""
    return _active


def _require_run(function: str) -> Run:
    run = _active
    if run is None:
        raise TraceletError(f"no active run: call tracelet.start() before tracelet.{function}()")
    return run


def log_metric(name: str, value: Any, step: int | None = None, timestamp: float | None = None) -> None:
    """Log one scalar to the active run (see :meth:`Run.log_metric`)."""
    run = _active
    if run is None:
        run = _require_run("log_metric")
    run.log_metric(name, value, step, timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several scalars at one step to the active run."""
    _require_run("log_metrics").log_metrics(metrics, step)


def log_params(params: Mapping[str, Any]) -> None:
    """Log parameters to the active run; nested mappings are flattened as ``"a.b.c"``."""
    _require_run("log_params").log_params(params)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run."""
    _require_run("set_tags").set_tags(tags)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> None:
    """Upload a file or directory to the active run's backends."""
    _require_run("log_artifact").log_artifact(path, name)


def log_image(name: str, image: Any, step: int | None = None) -> None:
    """Log an image (numpy array, torch tensor or PIL image) to the active run."""
    _require_run("log_image").log_image(name, image, step)


def log_text(name: str, text: str, step: int | None = None) -> None:
    """Log a text snippet to the active run."""
    _require_run("log_text").log_text(name, text, step)


def log_histogram(name: str, values: Any, step: int | None = None, *, bins: int = 64) -> None:
    """Log the distribution of ``values`` to the active run."""
    _require_run("log_histogram").log_histogram(name, values, step, bins=bins)


def log_figure(name: str, figure: Any, step: int | None = None) -> None:
    """Log a matplotlib figure to the active run."""
    _require_run("log_figure").log_figure(name, figure, step)


def flush(timeout: float | None = None) -> bool:
    """Wait until everything logged to the active run is delivered; ``True`` if it all was.

    With no active run there is nothing to deliver: returns ``True``.
    """
    run = _active
    return True if run is None else run.flush(timeout)


def stop(status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> bool:
    """Stop the active run (see :meth:`Run.stop`); with none active, return ``True``."""
    run = _active
    return True if run is None else run.stop(status, timeout)
