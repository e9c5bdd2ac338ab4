"""The ``hydra`` plugin's hooks: a Hydra job's composed config, overrides and ``.hydra/`` files reach the run.

A job is captured at one of two moments, whichever comes first for it:

- ``tracelet.start()`` called inside the job (in the ``@hydra.main`` task
  function): core patches at start, and :meth:`HydraPatcher.tracelet_patch`
  finds Hydra's config of the running job (``HydraConfig``) and captures it
  there. With ``start()``/``stop()`` (or ``with tracelet.start():``) inside
  the task function, every job of a ``--multirun`` is a Tracelet run of its
  own, and nothing needs patching before the job (a launcher may run it in
  another process);
- a job starting while a run is active (``start()`` before ``@hydra.main``
  runs): ``Callbacks.on_job_start``, through which Hydra notifies the
  ``hydra.callbacks`` of every job after writing its ``.hydra/`` files and
  before calling the task function, is wrapped for the run. The class method
  is wrapped rather than a callback added to the user's config, so the
  user's configuration and ``.hydra/hydra.yaml`` stay as they wrote them.
  In a multirun under one such run, the jobs share it: each job's params
  overwrite the previous job's (a backend that keeps versions, like MLflow's
  ``<key>.v2``, keeps all) and the second and later jobs' files go to
  ``hydra/job<num>/``; a warning says so once.

What a job gives: its config (the composed config without the ``hydra``
node) as params, flattened (``optimizer.lr``), interpolations resolved,
missing values ``???`` and interpolations that cannot be resolved as their
text (``${oc.env:UNSET}``); the tags ``hydra.overrides`` (the job's overrides,
space-separated), ``hydra.job.name``, ``hydra.job.num`` (multirun),
``hydra.mode`` and ``hydra.output_dir``; and the directory artifact ``hydra``
with copies of ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` in
which core's redaction masked secrets (artifacts are files: core's record
redaction cannot see into them).

Importing this module imports neither Hydra nor OmegaConf.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from tracelet.plugin import PatchSet, Redactor, Run, artifact_dir, capture_errors, get_logger, hookimpl
from tracelet_hydra.settings import PLUGIN_NAME, HydraSettings

__all__ = ["HYDRA_FILES", "MISSING", "TARGET", "HydraPatcher", "config_values"]

TARGET = "hydra._internal.callbacks"
MISSING = "???"
"""What a missing value (OmegaConf's ``???``) is logged as."""
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")

_log = get_logger()


class HydraPatcher:
    """Captures the Hydra jobs of one run and converts OmegaConf objects given to ``log_params``."""

    def __init__(self, settings: HydraSettings | None = None) -> None:
        self.settings = settings or HydraSettings()
        self._patches = PatchSet()
        self._lock = threading.Lock()
        self._jobs = 0

    @hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return [TARGET] if self.settings.capture_jobs else []

    @hookimpl
    def tracelet_patch(self, run: Run, module: ModuleType) -> None:
        callbacks = module.Callbacks
        original = callbacks.on_job_start

        @functools.wraps(original)
        def on_job_start(hydra_callbacks: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(hydra_callbacks, config, *args, **kwargs)
            with capture_errors(PLUGIN_NAME, strict=run.strict):
                self._capture_job(run, config)
            return result

        self._patches.replace(callbacks, "on_job_start", on_job_start)
        with capture_errors(PLUGIN_NAME, strict=run.strict):
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():  # start() was called inside a job: capture it now
                instance: Any = HydraConfig.instance()
                # HydraConfig keeps the job's whole composed config as the parent of its hydra node.
                self._capture_job(run, instance.cfg.hydra._get_parent())

    @hookimpl
    def tracelet_unpatch(self) -> None:
        self._patches.restore()

    @hookimpl
    def tracelet_param_values(self, value: object) -> Mapping[str, Any] | None:
        """An OmegaConf ``DictConfig``/``ListConfig`` (a list: its indices as names) as :func:`config_values` gives it."""
        omegaconf = sys.modules.get("omegaconf")  # not imported: the value cannot be one of its objects
        if omegaconf is None or not isinstance(value, omegaconf.DictConfig | omegaconf.ListConfig):
            return None
        values = config_values(value)  # an error is core's to log once (raised in strict mode)
        if isinstance(values, list):
            return {str(index): item for index, item in enumerate(values)}
        return values if isinstance(values, dict) else None

    def _capture_job(self, run: Run, config: Any) -> None:
        from omegaconf import OmegaConf

        hydra = config.hydra
        with self._lock:
            self._jobs += 1
            first = self._jobs == 1
        if not first and self._jobs == 2:
            _log.warning(
                "Hydra jobs share one Tracelet run: each job's params overwrite the last; "
                "call tracelet.start() inside the task function for a run per job",
                plugin=PLUGIN_NAME,
            )
        params = {str(key): _item(config, key) for key in config if key != "hydra"}
        run.log_params(params)
        job_num = None if OmegaConf.is_missing(hydra.job, "num") else hydra.job.num
        tags = {
            "hydra.overrides": " ".join(str(override) for override in hydra.overrides.task),
            "hydra.job.name": str(hydra.job.name),
            "hydra.mode": getattr(hydra.mode, "name", str(hydra.mode)),
            "hydra.output_dir": str(hydra.runtime.output_dir),
        }
        if job_num is not None:
            tags["hydra.job.num"] = str(job_num)
        run.set_tags(tags)
        if self.settings.artifacts and hydra.output_subdir is not None:
            self._log_files(run, Path(str(hydra.runtime.output_dir)) / str(hydra.output_subdir), first, job_num)

    def _log_files(self, run: Run, source: Path, first: bool, job_num: Any) -> None:
        """Upload masked copies of the job's ``.hydra/`` files, as the directory artifact ``hydra``."""
        redactor = Redactor(run.settings.redact_patterns)
        target = artifact_dir(run.info, PLUGIN_NAME)
        copied = 0
        for name in HYDRA_FILES:
            path = source / name
            if path.is_file():
                (target / name).write_text(redactor.text(path.read_text(encoding="utf-8")), encoding="utf-8")
                copied += 1
        if copied:
            run.log_artifact(target, "hydra" if first else f"hydra/job{job_num if job_num is not None else self._jobs}")


def config_values(config: Any) -> Any:
    """An OmegaConf ``DictConfig``/``ListConfig`` as plain dicts and lists, ready for ``log_params``.

    Interpolations are resolved; a missing value (``???``) is :data:`MISSING`;
    an interpolation that cannot be resolved (to a missing value, an unset
    environment variable) is kept as its text (``${oc.env:UNSET}``). Anything
    else is returned as it is.
    """
    from omegaconf import DictConfig, ListConfig

    if isinstance(config, DictConfig | ListConfig):
        if config._is_missing():
            return MISSING
        if config._is_none():
            return None
        if isinstance(config, DictConfig):
            return {str(key): _item(config, key) for key in config}
        return [_item(config, index) for index in range(len(config))]
    return config


def _item(container: Any, key: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if OmegaConf.is_missing(container, key):
        return MISSING
    try:
        value = container[key]
    except Exception:  # noqa: BLE001 - an interpolation OmegaConf cannot resolve: keep its text
        node = container._get_node(key)
        return MISSING if node is None else str(node._value())
    if isinstance(value, DictConfig | ListConfig):
        return config_values(value)
    return value
