"""Resource metrics (``system/...``) from successive counter readings."""

from __future__ import annotations

from types import ModuleType

from tracelet.plugin import names
from tracelet_system.counters import Counters, Reader, open_reader

__all__ = ["ResourceSampler"]

P = names.SYSTEM_METRIC_PREFIX


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


class ResourceSampler:
    """Turns counter readings into ``(name, value)`` pairs; not thread-safe (one collector thread).

    Levels (memory, swap, disk usage, load, RSS, threads) come from each
    reading. Percentages and rates need the previous reading too, so the
    first :meth:`sample` has none: they start with the second one and cover
    the time since the previous sample.
    """

    def __init__(self, psutil: ModuleType, *, per_core: bool, disk_path: str, reader: Reader | None = None) -> None:
        self._psutil = psutil
        self._disk_path = disk_path
        self._reader = reader if reader is not None else open_reader(psutil, per_core=per_core)
        self._previous: Counters | None = None
        self._has_load = hasattr(psutil, "getloadavg")

    def sample(self) -> list[tuple[str, float]]:
        now = self._reader.read()
        before, self._previous = self._previous, now
        used_memory = now.memory_total - now.memory_available
        used_swap = now.swap_total - now.swap_free
        disk = self._psutil.disk_usage(self._disk_path)
        values: list[tuple[str, float]] = [
            (P + "memory/used_bytes", float(used_memory)),
            (P + "memory/available_bytes", float(now.memory_available)),
            (P + "memory/percent", _percent(used_memory, now.memory_total)),
            (P + "swap/used_bytes", float(used_swap)),
            (P + "swap/percent", _percent(used_swap, now.swap_total)),
            (P + "disk/used_bytes", float(disk.used)),
            (P + "disk/free_bytes", float(disk.free)),
            (P + "disk/percent", float(disk.percent)),
            (P + "process/rss_bytes", float(now.process_rss)),
            (P + "process/threads", float(now.process_threads)),
        ]
        if self._has_load:
            one, five, fifteen = self._psutil.getloadavg()
            values += [(P + "load/1m", one), (P + "load/5m", five), (P + "load/15m", fifteen)]
        if before is not None:
            values += self._changes(before, now)
        return values

    def close(self) -> None:
        self._reader.close()

    @staticmethod
    def _changes(before: Counters, now: Counters) -> list[tuple[str, float]]:
        """Percentages and per-second rates over the time between two readings."""
        seconds = now.monotonic - before.monotonic
        if seconds <= 0:
            return []
        values = [
            (P + "cpu/percent", _cpu_percent(before.cpu, now.cpu)),
            (P + "process/cpu_percent", 100.0 * max(0.0, now.process_cpu - before.process_cpu) / seconds),
        ]
        values += [
            (f"{P}cpu/{index}/percent", _cpu_percent(old, new))
            for index, (old, new) in enumerate(zip(before.cores, now.cores, strict=False))
        ]
        for name, old, new in (
            ("disk/read_bytes_per_s", before.disk_read, now.disk_read),
            ("disk/write_bytes_per_s", before.disk_written, now.disk_written),
            ("network/recv_bytes_per_s", before.net_received, now.net_received),
            ("network/sent_bytes_per_s", before.net_sent, now.net_sent),
        ):
            # A counter that went backwards was reset (a device went away): skip this interval.
            if old is not None and new is not None and new >= old:
                values.append((P + name, (new - old) / seconds))
        return values


def _cpu_percent(before: tuple[float, float], now: tuple[float, float]) -> float:
    busy = now[0] - before[0]
    total = now[1] - before[1]
    return min(100.0, max(0.0, _percent(busy, total)))
