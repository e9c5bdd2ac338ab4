"""The ``system`` collector: its hooks, all called on the collector's own thread."""

from __future__ import annotations

import os
import time

from tracelet.plugin import Metric, Record, RunInfo, artifact_dir, get_logger, hookimpl
from tracelet_system.environment import allowed_variables, environment_tags, write_requirements
from tracelet_system.gpu import NvmlGpus
from tracelet_system.resources import ResourceSampler
from tracelet_system.settings import PLUGIN_NAME, SystemSettings

__all__ = ["SystemCollector"]

_log = get_logger()


class SystemCollector:
    """Samples resources every ``settings.interval`` seconds; records the environment once at start.

    Metrics carry the sample number as their step (0 for the sample taken at
    start). psutil and pynvml are imported in :meth:`tracelet_collect_start`.
    """

    def __init__(self, settings: SystemSettings | None = None) -> None:
        self.settings = settings or SystemSettings()
        self._sampler: ResourceSampler | None = None
        self._gpus: NvmlGpus | None = None
        self._samples = 0

    @hookimpl
    def tracelet_collect_start(self, run: RunInfo) -> list[Record]:
        import psutil

        settings = self.settings
        self._sampler = ResourceSampler(psutil, per_core=settings.per_core, disk_path=settings.disk_path or os.getcwd())
        self._gpus = NvmlGpus.open() if settings.gpu else None
        records: list[Record] = []
        if settings.environment:
            gpus, driver = self._gpus.describe() if self._gpus is not None else ([], None)
            records += environment_tags(
                cpu_count=psutil.cpu_count(),
                memory_total=psutil.virtual_memory().total,
                gpus=gpus,
                gpu_driver=driver,
                variables=allowed_variables(os.environ, settings.env_vars),
            )
        if settings.requirements:
            # Backends read the file later on their own threads; core deletes the directory after the run.
            records.append(write_requirements(artifact_dir(run, PLUGIN_NAME)))
        return records

    @hookimpl
    def tracelet_collect_interval(self) -> float:
        return self.settings.interval

    @hookimpl
    def tracelet_collect_sample(self) -> list[Metric]:
        if self._sampler is None:  # start failed; core has logged why
            return []
        values = self._sampler.sample()
        if self._gpus is not None:
            values += self._gpus.sample()
        step, now = self._samples, time.time()
        self._samples += 1
        return [Metric(name, value, step, now) for name, value in values]

    @hookimpl
    def tracelet_collect_stop(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._gpus is not None:
            self._gpus.close()
            self._gpus = None
        _log.debug("system collector stopped", samples=self._samples)
