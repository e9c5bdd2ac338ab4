"""Raw resource counters at one instant, read cheaply.

Two readers give the same :class:`Counters`: :class:`ProcfsReader` on Linux
and :class:`PsutilReader` everywhere else (and on Linux when ``/proc`` cannot
be opened). Why not psutil alone: its swap, disk and network calls re-open
and re-parse ``/proc`` files and probe ``/sys`` for every disk on each call,
which made one sample cost ~6x a bare ``cpu_percent(); virtual_memory()``
pair. :class:`ProcfsReader` keeps the few files open and re-reads them with
one ``pread`` each, which brings a whole sample near that pair's cost
(see ``benchmarks/system_sample_cost.py``). Both use psutil's definitions.
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import NamedTuple, Protocol

__all__ = ["Counters", "ProcfsReader", "PsutilReader", "Reader", "open_reader"]

# A small first guess: allocating the read buffer costs more than the read for a large one.
_FIRST_READ_SIZE = 8192


class Counters(NamedTuple):
    """Cumulative counters and levels; rates and percentages come from two of these."""

    monotonic: float
    cpu: tuple[float, float]
    """``(busy, total)`` CPU time of the machine, any unit (percent = busy delta / total delta)."""
    cores: tuple[tuple[float, float], ...]
    """``(busy, total)`` per logical CPU; empty unless asked for."""
    memory_total: int
    memory_available: int
    swap_total: int
    swap_free: int
    disk_read: int | None
    """Bytes read from whole disks since boot (``None``: not available here)."""
    disk_written: int | None
    net_received: int | None
    """Bytes received on every interface since boot (``None``: not available here)."""
    net_sent: int | None
    process_cpu: float
    """User + system CPU seconds of this process."""
    process_rss: int
    process_threads: int


class Reader(Protocol):
    def read(self) -> Counters: ...

    def close(self) -> None: ...


def _busy_total(user: float, nice: float, system: float, idle: float, iowait: float, rest: float) -> tuple[float, float]:
    """psutil's rule: busy is everything but idle and iowait (guest time is already in user)."""
    total = user + nice + system + idle + iowait + rest
    return total - idle - iowait, total


class ProcfsReader:
    """Linux: ``/proc/stat``, ``/proc/meminfo``, ``/proc/diskstats``, ``/proc/net/dev``, ``/proc/self/stat``."""

    def __init__(self, *, per_core: bool) -> None:
        self._per_core = per_core
        self._ticks_per_second = os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        # Whole disks only, as psutil counts them: partitions would count every byte twice.
        self._disks = {name.replace("!", "/").encode() for name in os.listdir("/sys/block")}
        self._fds: dict[str, int] = {}
        self._read_sizes: dict[str, int] = {}
        try:
            for path in ("/proc/stat", "/proc/meminfo", "/proc/diskstats", "/proc/net/dev", "/proc/self/stat"):
                self._fds[path] = os.open(path, os.O_RDONLY)
                self._read_sizes[path] = _FIRST_READ_SIZE
        except OSError:
            self.close()
            raise

    def read(self) -> Counters:
        now = time.monotonic()
        cpu, cores = self._cpu()
        memory = self._meminfo()
        disk_read, disk_written = self._diskstats()
        received, sent = self._net_dev()
        process = self._pread("/proc/self/stat").rsplit(b")", 1)[1].split()
        return Counters(
            now,
            cpu,
            cores,
            memory[b"MemTotal:"],
            memory.get(b"MemAvailable:", memory[b"MemFree:"]),
            memory[b"SwapTotal:"],
            memory[b"SwapFree:"],
            disk_read,
            disk_written,
            received,
            sent,
            (int(process[11]) + int(process[12])) / self._ticks_per_second,
            int(process[21]) * self._page_size,
            int(process[17]),
        )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _pread(self, path: str) -> bytes:
        """The whole file, read from its start (``/proc`` regenerates it)."""
        fd, size = self._fds[path], self._read_sizes[path]
        data = os.pread(fd, size, 0)
        while len(data) == size:  # maybe cut short (many CPUs, many disks): grow the buffer for good
            size *= 4
            data = os.pread(fd, size, 0)
        self._read_sizes[path] = size
        return data

    def _cpu(self) -> tuple[tuple[float, float], tuple[tuple[float, float], ...]]:
        lines = self._pread("/proc/stat").split(b"\n")
        cpu = self._cpu_line(lines[0])
        if not self._per_core:
            return cpu, ()
        return cpu, tuple(self._cpu_line(line) for line in lines[1:] if line.startswith(b"cpu"))

    @staticmethod
    def _cpu_line(line: bytes) -> tuple[float, float]:
        # cpuN user nice system idle iowait irq softirq steal guest guest_nice
        user, nice, system, idle, iowait, *rest = (float(value) for value in line.split()[1:9])
        return _busy_total(user, nice, system, idle, iowait, sum(rest))

    def _meminfo(self) -> dict[bytes, int]:
        values = {}
        for line in self._pread("/proc/meminfo").split(b"\n"):
            if line.startswith((b"Mem", b"Swap")):
                key, value = line.split()[:2]
                values[key] = int(value) * 1024
        return values

    def _diskstats(self) -> tuple[int, int]:
        read = written = 0
        for line in self._pread("/proc/diskstats").split(b"\n"):
            fields = line.split()
            if len(fields) > 9 and fields[2] in self._disks:
                # Sectors in /proc/diskstats are 512 bytes whatever the device's sector size.
                read += int(fields[5]) * 512
                written += int(fields[9]) * 512
        return read, written

    def _net_dev(self) -> tuple[int, int]:
        received = sent = 0
        for line in self._pread("/proc/net/dev").split(b"\n")[2:]:
            _, colon, counters = line.partition(b":")
            if colon:
                fields = counters.split()
                received += int(fields[0])
                sent += int(fields[8])
        return received, sent


# psutil's cpu_times fields that _busy_total names; guest and guest_nice are already in user and nice (Linux).
_NAMED_CPU_TIMES = frozenset({"user", "nice", "system", "idle", "iowait", "guest", "guest_nice"})


class PsutilReader:
    """Any platform psutil supports."""

    def __init__(self, psutil: ModuleType, *, per_core: bool) -> None:
        self._psutil = psutil
        self._per_core = per_core
        self._process = psutil.Process()

    def read(self) -> Counters:
        psutil = self._psutil
        now = time.monotonic()
        cores = tuple(self._busy_total(times) for times in psutil.cpu_times(percpu=True)) if self._per_core else ()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_io_counters(nowrap=False)
        net = psutil.net_io_counters(nowrap=False)
        with self._process.oneshot():
            process_times = self._process.cpu_times()
            rss = self._process.memory_info().rss
            threads = self._process.num_threads()
        return Counters(
            now,
            self._busy_total(psutil.cpu_times()),
            cores,
            memory.total,
            memory.available,
            swap.total,
            swap.free,
            None if disk is None else disk.read_bytes,
            None if disk is None else disk.write_bytes,
            None if net is None else net.bytes_recv,
            None if net is None else net.bytes_sent,
            process_times.user + process_times.system,
            rss,
            threads,
        )

    def close(self) -> None:
        pass

    @staticmethod
    def _busy_total(times: object) -> tuple[float, float]:
        values = times._asdict()  # type: ignore[attr-defined]
        rest = sum(value for key, value in values.items() if key not in _NAMED_CPU_TIMES)
        return _busy_total(
            values["user"], values.get("nice", 0.0), values["system"], values["idle"], values.get("iowait", 0.0), rest
        )


def open_reader(psutil: ModuleType, *, per_core: bool) -> Reader:
    """The cheapest reader that works here."""
    if psutil.LINUX:
        try:
            return ProcfsReader(per_core=per_core)
        except (OSError, ValueError):
            pass
    return PsutilReader(psutil, per_core=per_core)
