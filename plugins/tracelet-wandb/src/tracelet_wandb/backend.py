"""The W&B backend: one Tracelet run -> one W&B run, created with ``reinit="create_new"``.

``create_new`` makes a run that is not ``wandb.run``, and the backend takes
it off W&B's list of the process's active runs (which a plain ``wandb.init()``
would otherwise return instead of a new run): a user's own ``wandb.init()`` /
``wandb.log()`` in the same script keeps its own run, and neither run gets the
other's data. wandb is imported in
:meth:`WandbBackend.tracelet_backend_start`, on the backend's worker thread,
never when the plugin is discovered.

Metrics: W&B drops a history row whose ``step=`` is lower than the run's
current step, and Tracelet's steps may go back. So no row is logged with
``step=``: every row carries its Tracelet step under :data:`STEP_KEY`, which
``define_metric("*", step_metric=STEP_KEY)`` makes every metric's x-axis (as
Lightning's ``WandbLogger`` does with ``trainer/global_step``); W&B's own
``_step`` just counts rows (numbered by the backend, continuing a resumed run's). Consecutive records of a batch that share a step
go into one row (W&B samples rows for its charts); a name repeated at the
same step starts a new row, so both values are kept. Each row's
``_timestamp`` is its first record's timestamp.

Every hook runs on the worker thread, one at a time, so the backend keeps its
state without locks. W&B's rules are applied before sending; each adjustment
is counted in :attr:`WandbBackend.adjustments` and warned about once per name.
"""

from __future__ import annotations

import copy
import glob
import io
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
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
    names,
    probe_directory,
    probe_url,
    stop_run_at_exit_first,
)
from tracelet_wandb.naming import (
    MAX_HISTOGRAM_BINS,
    RENAME_PREFIX,
    STEP_KEY,
    TAGS_CONFIG_KEY,
    KeyMapper,
    label_of,
    rebin,
    sanitise_key,
)
from tracelet_wandb.offline import earlier_parts
from tracelet_wandb.settings import PLUGIN_NAME, WandbSettings

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run as WandbRun

__all__ = ["EXIT_CODES", "TRACELET_RUN_ID_TAG", "WandbBackend"]

_log = get_logger()

TRACELET_RUN_ID_TAG = "tracelet.run_id"
"""Tag holding Tracelet's own run id, the same on every backend of a run."""

EXIT_CODES: dict[RunStatus, int] = {RunStatus.FINISHED: 0, RunStatus.FAILED: 1, RunStatus.KILLED: 143}
"""The exit code given to ``run.finish``: W&B shows 0 as *finished* and any other code as *failed*;
143 is what a shell reports for a process ended by SIGTERM (128 + 15)."""

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_RENAMED_MESSAGE = "name reserved by W&B (a leading '_') or by this backend: renamed"
_SERVICE_VARIABLE = "WANDB_SERVICE"


class _Process:
    """What this plugin did to W&B's process-wide state (its service), across the runs of the process."""

    owns_service = False
    """Whether a W&B run of this plugin started the W&B service (``wandb-core``) of this process."""


_PROCESS = _Process()

_OPEN_TRACELET_RUNS: set[str] = set()
"""Ids of the Tracelet runs whose W&B run this plugin has started and not finished."""

_LIVE_RUNS: dict[str, WandbRun] = {}
"""W&B runs this plugin started in this process and has not finished, by id (see ``tracelet_backend_start``)."""

# Adjustment counters, the keys of WandbBackend.adjustments.
RENAMED = "renamed"
PARAM_CHANGED = "param_changed"
PARAM_FLAT = "param_flat"
LABEL_TOO_LONG = "label_too_long"
HISTOGRAM_REBINNED = "histogram_rebinned"


class WandbBackend:
    """Delivers one Tracelet run to one W&B run.

    Read after (or during) a run with ``run.get_plugin("wandb")``:
    :attr:`run_id`, :attr:`run_dir` (W&B's run directory: ``files/``, the
    ``.wandb`` log), and how W&B's rules changed what was logged:
    :attr:`adjustments` (records per rule) and :attr:`renamed`.
    """

    def __init__(self, settings: WandbSettings | None = None) -> None:
        self.settings = settings or WandbSettings()
        self.run_id: str | None = None
        self.run_dir: str | None = None
        self.url: str | None = None
        self.adjustments: Counter[str] = Counter()
        """Records changed to fit W&B's rules, by rule: ``renamed``, ``param_changed``, ``param_flat``,
        ``label_too_long``, ``histogram_rebinned``."""
        self.renamed: dict[str, str] = {}
        """``"<metric|media|param>:<name>"`` -> the W&B key that name was given."""
        self._wandb: Any = None
        self._run: WandbRun | None = None
        self._warned: set[tuple[str, str]] = set()
        self._renamed_series: set[str] = set()
        self._metric_key = KeyMapper(self._on_rename("metric"))
        self._param_key = KeyMapper(self._on_rename("param"))
        self._config: dict[str, Any] = {}
        """The run's config as Tracelet set it (nested); each batch updates the top-level keys it changed."""
        self._flat_params: dict[str, str] = {}
        """A param that cannot nest -> its flat top-level config key."""
        self._tags: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._next_row = 0
        """W&B's ``_step`` of the next history row: rows are numbered by the backend, so that a resumed
        offline run goes on after its earlier parts (see :mod:`tracelet_wandb.offline`)."""
        self._tracelet_run_id = ""

    # --- lifecycle ------------------------------------------------------------------

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        """Create the W&B run (or resume ``settings.run_id`` / ``run.resume.get(run.backend)``).

        A child run (``run.parent``) goes into the W&B group named after its parent
        (``settings.group`` wins), with ``settings.job_type`` as its job type."""
        import wandb  # ~0.5 s with the wandb-core service: here on the worker thread, never at discovery
        from wandb.sdk import wandb_setup

        self._wandb = wandb
        settings = self.settings
        # A child run (run.parent) inherits its parent's settings: their run_id and run_name name the parent's run.
        resume_id = (None if run.parent else settings.run_id) or run.resume.get(run.backend)
        live = _LIVE_RUNS.get(resume_id) if resume_id else None
        if live is not None and not getattr(live, "_is_finished", False):
            # A run of this process abandoned at stop()'s deadline is still open in W&B, which refuses a
            # second init of its id ("run ID ... is in use"): `tracelet replay` in the same process attaches to it.
            return self._attached(live, run, resume_id)
        had_service = _service_running(wandb_setup)
        saved_hooks = (sys.excepthook, sys.exit)
        saved_service = os.environ.get(_SERVICE_VARIABLE)
        try:
            wandb_run = wandb.init(
                project=settings.project or run.project,
                entity=settings.entity,
                dir=settings.dir,
                id=resume_id,
                resume="allow" if resume_id else None,
                name=run.name if run.parent else (settings.run_name or run.name),
                notes=settings.notes,
                # a child run joins the group named after its parent (cross-validation folds, a sweep's trials)
                group=settings.group or (run.parent.name if run.parent else None),
                job_type=settings.job_type,
                mode=settings.mode,  # type: ignore[arg-type]  # checked by WandbSettings
                reinit="create_new",
                settings=wandb.Settings(**self._wandb_settings()),
            )
        finally:
            if not had_service and _service_running(wandb_setup):
                _PROCESS.owns_service = True
                _restore_exit_hooks(saved_hooks)
                # W&B advertises its service to child processes through the environment; this one is the
                # backend's and ends with its run, so the script's children must not attach to it.
                if saved_service is None:
                    os.environ.pop(_SERVICE_VARIABLE, None)
                else:
                    os.environ[_SERVICE_VARIABLE] = saved_service
        _LIVE_RUNS[wandb_run.id] = wandb_run
        # W&B registered its service teardown at exit: the run must stop (and finish) before it
        stop_run_at_exit_first(PLUGIN_NAME, _OPEN_TRACELET_RUNS.__contains__)
        # W&B's list of active runs is what a script's own wandb.init() returns when a run is open ("returning
        # the previous run") and what reinit="finish_previous" finishes: this run is not the script's.
        _singleton_call(wandb_setup, "remove_active_run", wandb_run)
        # Every metric's x-axis is the Tracelet step: a point whose step goes back is still kept.
        wandb_run.define_metric(STEP_KEY, hidden=True)
        wandb_run.define_metric("*", step_metric=STEP_KEY, step_sync=True)
        return self._attached(wandb_run, run, resume_id)

    def _attached(self, wandb_run: WandbRun, run: RunInfo, resume_id: str | None) -> BackendRunRef:
        self._tracelet_run_id = run.id
        _OPEN_TRACELET_RUNS.add(run.id)
        self._run = wandb_run
        self.run_id = wandb_run.id
        self.run_dir = os.path.dirname(wandb_run.dir)
        self.url = wandb_run.url
        self._next_row = wandb_run.step  # online, a resumed run's next row as the server knows it
        if resume_id:
            config = {key: value for key, value in dict(wandb_run.config).items() if key != "_wandb"}
            if wandb_run.offline:  # W&B knows nothing of the earlier parts: read them (see tracelet_wandb.offline)
                earlier = earlier_parts(Path(self.run_dir).parent, wandb_run.id, exclude=Path(self.run_dir))
                self._next_row = max(self._next_row, 0 if earlier.last_step is None else earlier.last_step + 1)
                config = {**earlier.config, **config}
            self._config = config
            self._tags = dict(config.get(TAGS_CONFIG_KEY, {}))
        own_tags = {
            names.TRACELET_VERSION: run.tracelet_version,
            names.TRACELET_PLUGINS: ",".join(run.plugins),
            TRACELET_RUN_ID_TAG: run.id,
        }
        self.tracelet_backend_set_tags([Tag(name, value) for name, value in own_tags.items()])
        return BackendRunRef(wandb_run.id, self.url)

    @hookimpl
    def tracelet_backend_check(self, timeout: float) -> str:
        """``tracelet doctor``: offline, the directory W&B writes ``wandb/`` in takes a file; online, W&B's
        server (``WANDB_BASE_URL``, else api.wandb.ai) answers and an API key is there (``WANDB_API_KEY``,
        ``~/.netrc``)."""
        mode = self.settings.mode or _WANDB_MODES.get(os.environ.get("WANDB_MODE", ""), "online")
        if mode == "disabled":
            return "mode disabled: W&B records nothing"
        if mode == "offline":
            directory = self.settings.dir or os.environ.get("WANDB_DIR") or os.getcwd()
            return "offline: " + probe_directory(os.path.join(directory, "wandb"))
        base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
        answered = probe_url(base_url, timeout, any_status=True)
        if not os.environ.get("WANDB_API_KEY") and not _netrc_has(base_url):
            raise PermissionError(f"{base_url} answers, but no W&B API key: run `wandb login` or set WANDB_API_KEY")
        return f"online: {answered}, API key found"

    def _wandb_settings(self) -> dict[str, Any]:
        settings = self.settings
        chosen: dict[str, Any] = {"console": "auto" if settings.console else "off"}
        chosen["x_disable_stats"] = not settings.system_metrics
        if settings.init_timeout is not None:
            chosen["init_timeout"] = settings.init_timeout
        if settings.finish_timeout is not None:
            chosen["finish_timeout"] = settings.finish_timeout
        return chosen

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        """Finish the W&B run with the status's exit code (:data:`EXIT_CODES`); stop the W&B service if
        this backend started it and no other W&B run of the process is open."""
        wandb_run = self._require_run()
        wandb_run.finish(exit_code=EXIT_CODES[RunStatus(status)])
        _LIVE_RUNS.pop(wandb_run.id, None)
        _OPEN_TRACELET_RUNS.discard(self._tracelet_run_id)
        if _PROCESS.owns_service:
            from wandb.sdk import wandb_setup

            # W&B's own list holds the script's runs only (see tracelet_backend_start); this plugin's other open
            # runs (a parent's, while its child ends) are in _LIVE_RUNS: the service stays while either has one.
            if not _active_runs(wandb_setup) and not _LIVE_RUNS:
                _PROCESS.owns_service = False
                try:
                    self._wandb.teardown()
                except SystemExit as error:  # W&B exits the process when its service exits non-zero: not ours to end
                    _log.warning("wandb: the W&B service ended with an error", plugin=PLUGIN_NAME, exit_code=error.code)

    # --- routing hooks ---------------------------------------------------------------

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        """One ``run.log`` row per run of consecutive metrics sharing a step; every point kept."""
        key_of = self._metric_key
        self._log_rows((key_of(name), value, step, timestamp) for name, value, step, timestamp in metrics)
        self._count_renamed(metric.name for metric in metrics)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        """Into the run's config, nested at the dots of the name (``optim.lr`` -> ``optim: {lr: ...}``).

        A name that cannot nest (a dot-path through a value, or a value where
        nested params are) stays flat under its full name. A re-logged name
        takes the last value; a changed value is warned about and counted.
        """
        changed: set[str] = set()
        for param in params:
            top = self._set_param(param.name, param.value)
            if top is not None:
                changed.add(top)
        if changed:
            self._update_config({key: copy.deepcopy(self._config[key]) for key in sorted(changed)})

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        """Into the config entry ``tracelet_tags`` (``{name: value}``, nothing lost) and, when
        ``"name:value"`` fits W&B's 64 characters, the run's tags (labels), for filtering."""
        wandb_run = self._require_run()
        for tag in tags:
            self._tags[tag.name] = tag.value
            if tag.name.startswith("tracelet."):
                continue  # Tracelet's bookkeeping stays in the config: not a label worth a filter
            label = label_of(tag.name, tag.value)
            if label is None:
                self._labels.pop(tag.name, None)
                self._adjust(LABEL_TOO_LONG, f"tag:{tag.name}", "tag too long for a W&B run tag: kept in the config only")
            else:
                self._labels[tag.name] = label
        self._config[TAGS_CONFIG_KEY] = dict(self._tags)
        self._update_config({TAGS_CONFIG_KEY: dict(self._tags)})
        labels = tuple(dict.fromkeys(self._labels.values()))
        if labels != tuple(wandb_run.tags or ()):
            wandb_run.tags = labels

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """Copy files and directories into ``files/<artifact_path>/<name>`` and save them with the run."""
        wandb_run = self._require_run()
        root = Path(wandb_run.dir)
        missing = []
        for artifact in artifacts:
            destination = root / self.settings.artifact_path / _safe_relative(artifact.name)
            if os.path.isdir(artifact.path):
                shutil.copytree(artifact.path, destination, dirs_exist_ok=True)
                pattern = glob.escape(str(destination)) + "/**/*"
            elif os.path.isfile(artifact.path):
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(artifact.path, destination)
                pattern = glob.escape(str(destination))
            else:
                missing.append(artifact.path)
                continue
            wandb_run.save(pattern, base_path=str(root), policy="now")
        if missing:  # retrying cannot make a file appear: no retry, the batch goes to the spool's rejected part
            raise PermanentError(f"artifacts not found, not saved: {', '.join(missing)}")

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        """Images and figures as ``wandb.Image``, histograms as ``wandb.Histogram``, texts as a one-cell
        ``wandb.Table`` (column ``text``), each at its step, in rows like metrics."""
        self._log_rows((self._metric_key(item.name), self._media_value(item), item.step, item.timestamp) for item in media)
        self._count_renamed(item.name for item in media)

    # --- helpers ---------------------------------------------------------------------

    def _log_rows(self, points: Any) -> None:
        """``run.log`` one row per run of consecutive ``(key, value, step, timestamp)`` sharing a step.

        ``commit=True``: with ``step=`` alone W&B holds a row back until a later step arrives, and
        the batch's last row would wait in W&B past the hook's return.
        """
        log = self._require_run().log
        row: dict[str, Any] = {}
        row_step: int | None = None
        for key, value, step, timestamp in points:
            if row and (step != row_step or key in row):
                log(row, step=self._next_row, commit=True)
                self._next_row += 1
                row = {}
            if not row:
                row = {STEP_KEY: step, "_timestamp": timestamp}
                row_step = step
            row[key] = value
        if row:
            log(row, step=self._next_row, commit=True)
            self._next_row += 1

    def _update_config(self, values: dict[str, Any]) -> None:
        config: Any = self._require_run().config  # wandb's Config.update has no type hints
        config.update(values, allow_val_change=True)

    def _media_value(self, item: Media) -> Any:
        wandb = self._wandb
        if isinstance(item, Image | Figure):
            from PIL import Image as PILImage  # a dependency of wandb.Image

            if isinstance(item, Image):
                picture = PILImage.frombytes(_PIL_MODES[item.channels], (item.width, item.height), item.pixels)
            else:
                picture = PILImage.open(io.BytesIO(item.png))
                picture.load()
            return wandb.Image(picture)
        if isinstance(item, Text):
            return wandb.Table(columns=["text"], data=[[item.text]])
        if isinstance(item, Histogram):
            return self._histogram(item)
        raise PermanentError(f"W&B backend: no W&B form for {type(item).__name__}")

    def _histogram(self, item: Histogram) -> Any:
        import numpy

        edges, counts = item.edges, item.counts
        if len(counts) > MAX_HISTOGRAM_BINS:
            edges, counts = rebin(edges, counts)  # type: ignore[assignment]
            self._adjust(
                HISTOGRAM_REBINNED,
                f"histogram:{item.name}",
                f"histogram over W&B's {MAX_HISTOGRAM_BINS} bins: neighbouring bins merged",
                bins=len(item.counts),
            )
        return self._wandb.Histogram(np_histogram=(numpy.asarray(counts, dtype=float), numpy.asarray(edges, dtype=float)))

    def _set_param(self, name: str, value: ParamValue) -> str | None:
        """Set ``name`` in the nested config; the top-level key changed, or ``None`` if nothing changed."""
        flat = self._flat_params.get(name)
        if flat is None:
            parts = name.split(".")
            parts[0] = self._param_key(parts[0])
            if not all(parts) or not _can_nest(self._config, parts):
                flat = self._param_key(name)
                if isinstance(self._config.get(flat), dict):  # a dotless name where nested params are
                    flat = RENAME_PREFIX + name
                self._flat_params[name] = flat
                self._adjust(PARAM_FLAT, f"param:{name}", "param cannot nest in the W&B config: kept flat", key=flat)
        if flat is not None:
            parts = [flat]
        node = self._config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        last = parts[-1]
        if last in node:
            if node[last] == value and type(node[last]) is type(value):
                return None
            self._adjust(PARAM_CHANGED, f"param:{name}", "param re-logged with a new value: the config holds the last")
        node[last] = value
        return parts[0]

    def _on_rename(self, space: str) -> Callable[[str, str], None]:
        def remember(name: str, key: str) -> None:
            self.renamed[f"{space}:{name}"] = key
            if space == "param":
                self._adjust(RENAMED, f"{space}:{name}", _RENAMED_MESSAGE, key=key)
            else:  # metric and media names: counted per record by _count_renamed
                self._renamed_series.add(name)

        return remember

    def _count_renamed(self, names: Any) -> None:
        """Count each record whose metric or media name was renamed (a rare case: checked after sending)."""
        renamed = self._renamed_series
        if renamed:
            for name in names:
                if name in renamed:
                    self._adjust(RENAMED, f"metric:{name}", _RENAMED_MESSAGE, key=self.renamed[f"metric:{name}"])

    def _adjust(self, rule: str, name: str, message: str, **details: object) -> None:
        """Count one record changed by ``rule``; warn once per rule and name."""
        self.adjustments[rule] += 1
        if (rule, name) not in self._warned:
            self._warned.add((rule, name))
            _log.warning(f"wandb: {message} (warned once per name)", plugin=PLUGIN_NAME, rule=rule, name=name, **details)

    def _require_run(self) -> WandbRun:
        if self._run is None:
            raise RuntimeError("the W&B backend has not started")
        return self._run


_WANDB_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}
"""``WANDB_MODE``'s values (W&B's older names included) -> the mode they mean."""


def _netrc_has(base_url: str) -> bool:
    """Whether ``~/.netrc`` (or ``NETRC``) holds a password for W&B's host: where ``wandb login`` keeps the key."""
    import netrc
    from urllib.parse import urlsplit

    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(urlsplit(base_url).hostname or "")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def _can_nest(config: dict[str, Any], parts: Sequence[str]) -> bool:
    """Whether ``parts`` is a path of dicts in ``config`` ending at a value (or nothing), never through a value."""
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            return True
        if not isinstance(child, dict):
            return False
        node = child
    return not isinstance(node.get(parts[-1]), dict)


def _safe_relative(name: str) -> str:
    """An artifact name as a relative path inside the run's files: no empty, ``.`` or ``..`` part."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or sanitise_key("_")


def _service_running(wandb_setup: Any) -> bool:
    """Whether this process has a connection to a W&B service (``wandb-core``), through W&B's singleton."""
    singleton = getattr(wandb_setup, "_singleton", None)
    return singleton is not None and getattr(singleton, "_connection", None) is not None


def _singleton_call(wandb_setup: Any, method: str, *arguments: Any) -> None:
    singleton = getattr(wandb_setup, "_singleton", None)
    function = getattr(singleton, method, None)
    if function is not None:
        function(*arguments)


def _active_runs(wandb_setup: Any) -> list[Any]:
    singleton = getattr(wandb_setup, "_singleton", None)
    return list(getattr(singleton, "_active_runs", ())) if singleton is not None else []


def _restore_exit_hooks(saved: tuple[Any, Any]) -> None:
    """Undo W&B's ``sys.excepthook`` / ``sys.exit`` replacement made when this backend started its service.

    W&B installs them to learn the script's exit code for its atexit teardown;
    this backend finishes its run itself, and the process's hooks belong to the script.
    """
    excepthook, exit_function = saved
    if type(getattr(sys.excepthook, "__self__", None)).__name__ == "ExitHooks":
        sys.excepthook = excepthook
    if type(getattr(sys.exit, "__self__", None)).__name__ == "ExitHooks":
        sys.exit = exit_function
