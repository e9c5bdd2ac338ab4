"""NVIDIA GPUs through NVML (``pynvml``, from the nvidia-ml-py distribution).

No GPU, no driver or no pynvml is normal, not an error: :meth:`NvmlGpus.open`
returns ``None`` after one debug line, and GPU metrics are simply absent. A
query that a device does not support (power on some boards, for instance)
is dropped for that device after one debug line, never retried nor warned
about at every sample.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs

from tracelet.plugin import get_logger, names

__all__ = ["GpuInfo", "NvmlGpus"]

_log = get_logger()


@attrs.frozen
class GpuInfo:
    """What the environment record says about one GPU."""

    index: int
    name: str
    memory_total: int


def _text(value: str | bytes) -> str:
    # pynvml returned bytes before nvidia-ml-py 11.515
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class NvmlGpus:
    """NVML, initialised; call :meth:`close` once done."""

    def __init__(self, pynvml: ModuleType, handles: list[Any]) -> None:
        self._nvml = pynvml
        self._handles = handles
        self._unsupported: set[tuple[int, str]] = set()

    @classmethod
    def open(cls) -> NvmlGpus | None:
        """Initialise NVML; ``None`` (and one debug line) when there is no usable NVIDIA GPU."""
        try:
            import pynvml
        except ImportError as error:
            _log.debug("no GPU metrics: pynvml is not importable", error=str(error))
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            _log.debug("no GPU metrics: NVML is not available", error=f"{type(error).__name__}: {error}")
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as error:
            _log.debug("no GPU metrics: NVML could not list the devices", error=f"{type(error).__name__}: {error}")
            pynvml.nvmlShutdown()
            return None
        if not handles:
            _log.debug("no GPU metrics: NVML sees no device")
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def describe(self) -> tuple[list[GpuInfo], str | None]:
        """Each GPU's model and memory, and the driver version (``None`` if NVML does not say)."""
        nvml = self._nvml
        gpus = []
        for index, handle in enumerate(self._handles):
            name = self._query(index, "name", lambda h: _text(nvml.nvmlDeviceGetName(h)), handle)
            memory = self._query(index, "memory", lambda h: nvml.nvmlDeviceGetMemoryInfo(h).total, handle)
            gpus.append(GpuInfo(index, name if name is not None else "unknown", int(memory or 0)))
        try:
            driver: str | None = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            driver = None
        return gpus, driver

    def sample(self) -> list[tuple[str, float]]:
        """``system/gpu/<i>/...`` values of every device, leaving out what a device does not support."""
        nvml = self._nvml
        values: list[tuple[str, float]] = []
        for index, handle in enumerate(self._handles):
            prefix = f"{names.SYSTEM_METRIC_PREFIX}gpu/{index}/"
            utilization = self._query(index, "utilization", lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu, handle)
            if utilization is not None:
                values.append((prefix + "utilization", float(utilization)))
            memory = self._query(index, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is not None:
                values += [
                    (prefix + "memory_used_bytes", float(memory.used)),
                    (prefix + "memory_total_bytes", float(memory.total)),
                    (prefix + "memory_percent", 100.0 * memory.used / memory.total if memory.total else 0.0),
                ]
            temperature = self._query(
                index, "temperature", lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU), handle
            )
            if temperature is not None:
                values.append((prefix + "temperature_c", float(temperature)))
            power = self._query(index, "power", nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                values.append((prefix + "power_w", power / 1000.0))  # NVML reports milliwatts
            limit = self._query(index, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            if limit is not None:
                values.append((prefix + "power_limit_w", limit / 1000.0))
        return values

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as error:
            _log.debug("nvmlShutdown failed", error=str(error))

    def _query(self, index: int, what: str, query: Callable[[Any], Any], handle: Any) -> Any:
        """``query(handle)``, or ``None`` from now on for this device once it raised an NVML error."""
        if (index, what) in self._unsupported:
            return None
        try:
            return query(handle)
        except self._nvml.NVMLError as error:
            self._unsupported.add((index, what))
            reason = f"{type(error).__name__}: {error}"
            _log.debug("GPU query failed; not asked again in this run", gpu=index, query=what, error=reason)
            return None
