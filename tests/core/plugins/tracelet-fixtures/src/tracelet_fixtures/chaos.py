"""A backend that fails on command and counts everything it receives, duplicates included.

Used by the property-based suite (``tests/core/test_fuzz.py``) and the crash loop
(``tests/core/test_crash_loop.py``). Opt-in (``backends=["fixture-chaos"]``).

What it does to a routing hook call (``tracelet_backend_log_*``), in this order:

1. **hang**: block first: on the calls numbered in ``hang_calls`` for ``hang_seconds``
   (or the script's seconds), and for as long as the file ``hang_file`` exists (a hung
   server). ``hang_then_fail`` ends a timed hang with ``ConnectionError`` (a client
   timeout) instead of going on;
2. **transient failure**: raise ``ConnectionError`` on the calls numbered in
   ``fail_calls``, on every ``fail_every``-th call, and while the file ``down_file``
   exists (a server that is down);
3. **poison**: raise :class:`tracelet.PermanentError` when the batch holds a record
   that is poison (its name is in ``poison``, or the script's predicate says so): a
   record this backend can never take;
4. **unstorable**: with ``refuse_unstorable``, raise what a real client library raises
   (``UnicodeEncodeError``, ``OverflowError``, ``ZeroDivisionError``, ``TypeError``,
   ``FileNotFoundError``: none of them ``PermanentError``) when the batch holds a record
   no real store can take (see :func:`unstorable`);
5. otherwise **record** the batch: in :attr:`ChaosBackend.records`, in a multiset keyed
   by :func:`record_key` (so :attr:`ChaosBackend.duplicates` counts what arrived
   twice), and, when ``store`` names a directory, as JSON lines in
   ``<store>/records.jsonl``, which outlives the process (read it with
   :func:`read_store`).

Calls are numbered from 1 in arrival order, failed ones included (``calls``).
Settings come from the configuration like any plugin's (``TRACELET_FIXTURE_CHAOS_FAIL_CALLS=3,4``,
``config={"fixture-chaos": {...}}``). A test that needs more than scalars (a
predicate, a hang per call) hands a :class:`ChaosScript` to :func:`use_script`
before ``tracelet.start()``: every instance created while it is set follows it
as well as its settings (``tracelet replay`` creates one too).
"""

from __future__ import annotations

import base64
import collections
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from tracelet.plugin import (
    Artifact,
    BackendRunRef,
    Figure,
    Histogram,
    Image,
    Media,
    Metric,
    Param,
    PermanentError,
    PluginInfo,
    PluginKind,
    Record,
    RunInfo,
    RunStatus,
    Tag,
    Text,
    hookimpl,
)

__all__ = [
    "ChaosBackend",
    "ChaosScript",
    "ChaosSettings",
    "StoredRecord",
    "chaos_plugin",
    "read_store",
    "record_key",
    "tracelet_plugin_info",
    "unstorable",
    "use_script",
]

STORE_FILE = "records.jsonl"
_INT64 = (-(2**63), 2**63 - 1)


@attrs.frozen
class ChaosSettings:
    """The faults a chaos backend injects, as configuration keys (all off by default)."""

    store: str = ""
    """A directory: every delivered batch is appended to ``records.jsonl`` there (survives a SIGKILL)."""
    fail_calls: tuple[int, ...] = ()
    """Routing calls (numbered from 1) that raise ``ConnectionError``."""
    fail_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Every n-th routing call raises ``ConnectionError`` (0: never)."""
    fail_start: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Start calls that raise ``ConnectionError`` before the backend starts."""
    hang_calls: tuple[int, ...] = ()
    """Routing calls that block for ``hang_seconds`` before anything else."""
    hang_seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    hang_then_fail: bool = False
    """A timed hang ends in ``ConnectionError`` (a client timeout) instead of delivering."""
    poison: tuple[str, ...] = ()
    """A batch holding a record with one of these names raises ``PermanentError``."""
    refuse_unstorable: bool = False
    """Raise what a real client raises on a record no store can take (see :func:`unstorable`)."""
    down_file: str = ""
    """While this file exists, every routing call raises ``ConnectionError``."""
    hang_file: str = ""
    """While this file exists, every routing call blocks (it goes on once the file is gone)."""


def _never(_record: Record) -> bool:
    return False


@attrs.frozen
class ChaosScript:
    """Faults for the instances created while it is in use (see :func:`use_script`), on top of the settings."""

    fail_calls: frozenset[int] = frozenset()
    """Routing calls that raise ``ConnectionError``."""
    hang_calls: Mapping[int, float] = attrs.field(factory=dict)
    """Routing call -> seconds it blocks first."""
    hang_then_fail: bool = False
    """A timed hang ends in ``ConnectionError`` instead of delivering."""
    poison: Callable[[Record], bool] = _never
    """Records this backend refuses with ``PermanentError``, whatever batch holds them."""
    fail_start: int = 0
    """Start calls that raise ``ConnectionError``."""
    refuse_unstorable: bool = False


_script: ChaosScript | None = None


@contextmanager
def use_script(script: ChaosScript | None) -> Iterator[None]:
    """Make chaos backends created inside the ``with`` block follow ``script`` (``None``: settings only)."""
    global _script
    previous, _script = _script, script
    try:
        yield
    finally:
        _script = previous


@attrs.frozen
class StoredRecord:
    """One line of a store: which process delivered the record, in which of its calls."""

    pid: int
    call: int
    hook: str
    record: Record


class ChaosBackend:
    """The per-run object. Hooks run on the backend's worker thread; tests read the counters from theirs."""

    def __init__(self, settings: ChaosSettings | None) -> None:
        self.settings = settings or ChaosSettings()
        self.script = _script or ChaosScript()
        self.run: RunInfo | None = None
        self.resumed = False
        self.status: RunStatus | None = None
        self.records: list[Record] = []
        """Every record delivered, in arrival order (duplicates included)."""
        self.counts: collections.Counter[str] = collections.Counter()
        """:func:`record_key` -> how many times that record arrived."""
        self.calls = 0
        """Routing hook calls so far, failed ones included."""
        self.start_calls = 0
        self.failures: list[tuple[int, str]] = []
        """``(call, exception type name)`` of every call that raised."""
        self._lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        self._store: int | None = None

    # --- hooks -------------------------------------------------------------------------

    @hookimpl
    def tracelet_backend_start(self, run: RunInfo) -> BackendRunRef:
        self.start_calls += 1
        if self.start_calls <= max(self.settings.fail_start, self.script.fail_start):
            raise ConnectionError(f"fixture-chaos: start attempt {self.start_calls} refused")
        self.run = run
        run_id = f"chaos-{run.id}"
        self.resumed = run.resume.get(run.backend) == run_id
        if self.settings.store:
            directory = Path(self.settings.store)
            directory.mkdir(parents=True, exist_ok=True)
            self._store = os.open(directory / STORE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return BackendRunRef(id=run_id, url=None)

    @hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        self._receive("tracelet_backend_log_metrics", metrics)

    @hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Param]) -> None:
        self._receive("tracelet_backend_log_params", params)

    @hookimpl
    def tracelet_backend_set_tags(self, tags: Sequence[Tag]) -> None:
        self._receive("tracelet_backend_set_tags", tags)

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        self._receive("tracelet_backend_log_artifacts", artifacts)

    @hookimpl
    def tracelet_backend_log_media(self, media: Sequence[Media]) -> None:
        self._receive("tracelet_backend_log_media", media)

    @hookimpl
    def tracelet_backend_end(self, status: RunStatus) -> None:
        self.status = status
        if self._store is not None:
            os.close(self._store)
            self._store = None

    # --- reading back ---------------------------------------------------------------------

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of the same record."""
        with self._lock:
            return sum(count - 1 for count in self.counts.values())

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no hook call is in progress (a hang may outlive ``stop()``); ``False`` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    # --- internals ----------------------------------------------------------------------------

    def _receive(self, hook: str, batch: Sequence[Record]) -> None:
        with self._lock:
            self.calls += 1
            call = self.calls
            self._busy += 1
        try:
            self._misbehave(call, batch)
            self._keep(call, hook, batch)
        except BaseException as error:
            self.failures.append((call, type(error).__name__))
            raise
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _misbehave(self, call: int, batch: Sequence[Record]) -> None:
        settings, script = self.settings, self.script
        hang = script.hang_calls.get(call, 0.0) + (settings.hang_seconds if call in settings.hang_calls else 0.0)
        if hang:
            time.sleep(hang)
            if settings.hang_then_fail or script.hang_then_fail:
                raise ConnectionError(f"fixture-chaos: call {call} timed out after {hang} s")
        while settings.hang_file and os.path.exists(settings.hang_file):
            time.sleep(0.01)
        if (
            call in settings.fail_calls
            or call in script.fail_calls
            or (settings.fail_every and call % settings.fail_every == 0)
            or (settings.down_file and os.path.exists(settings.down_file))
        ):
            raise ConnectionError(f"fixture-chaos: call {call} refused")
        for record in batch:
            if record.name in settings.poison or script.poison(record):
                raise PermanentError(f"fixture-chaos: {type(record).__name__.lower()} {record.name!r} is poison")
        if settings.refuse_unstorable or script.refuse_unstorable:
            for record in batch:
                error = unstorable(record)
                if error is not None:
                    raise error

    def _keep(self, call: int, hook: str, batch: Sequence[Record]) -> None:
        if self._store is not None:
            pid = os.getpid()
            lines = "".join(
                json.dumps({"pid": pid, "call": call, "hook": hook, "record": _to_json(record)}, default=str) + "\n"
                for record in batch
            )
            data = lines.encode("ascii")  # json.dumps escapes everything else, lone surrogates included
            while data:  # one write per batch; a SIGKILL may still cut it, which read_store() tolerates
                data = data[os.write(self._store, data) :]
        keys = [record_key(record) for record in batch]
        with self._lock:
            self.records.extend(batch)
            self.counts.update(keys)


# --- what a real store refuses ------------------------------------------------------------------

_STEPPED = (Metric, Image, Text, Histogram, Figure)


def unstorable(record: Record) -> Exception | None:
    """The error a real backend's client raises on ``record``, or ``None`` if a store can take it.

    Modelled on what the issue found with MLflow and its sqlite store: a string
    that is not valid UTF-8 (a lone surrogate), a step outside int64, a field of
    the wrong type, an image with no pixels, an artifact path that does not exist.
    """
    for field_name, value in _fields(record):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                return error
        if field_name == "name" and (type(value) is not str or not value):
            return ValueError(f"invalid name {value!r}")
    if isinstance(record, _STEPPED):
        step = record.step
        if type(step) is not int:
            return TypeError(f"step must be an int, not {type(step).__name__}")
        if not _INT64[0] <= step <= _INT64[1]:
            return OverflowError("Python int too large to convert to SQLite INTEGER")
        if type(record.timestamp) is not float:
            return TypeError(f"timestamp must be a float, not {type(record.timestamp).__name__}")
        if not math.isfinite(record.timestamp):
            return ValueError(f"cannot convert float {record.timestamp} to integer")
    if isinstance(record, Metric) and type(record.value) is not float:
        return TypeError(f"metric value must be a float, not {type(record.value).__name__}")
    if isinstance(record, Param) and not (record.value is None or type(record.value) in (str, int, float, bool)):
        return TypeError(f"Object of type {type(record.value).__name__} is not JSON serializable")
    if isinstance(record, Tag) and type(record.value) is not str:
        return TypeError(f"tag value must be a str, not {type(record.value).__name__}")
    if isinstance(record, Text) and type(record.text) is not str:
        return TypeError(f"text must be a str, not {type(record.text).__name__}")
    if isinstance(record, Image):
        if record.width <= 0 or record.height <= 0:
            return ZeroDivisionError("division by zero")
        if record.channels not in (1, 3, 4) or len(record.pixels) != record.width * record.height * record.channels:
            return ValueError("pixel buffer does not match the image's size")
    if isinstance(record, Histogram) and len(record.edges) != len(record.counts) + 1:
        return ValueError("a histogram needs one more edge than counts")
    if isinstance(record, Artifact) and type(record.path) is not str:
        return TypeError(f"an artifact path must be a str, not {type(record.path).__name__}")
    if isinstance(record, Artifact) and (not record.path or not os.path.exists(record.path)):
        return FileNotFoundError(f"[Errno 2] No such file or directory: {record.path!r}")
    return None


# --- record identity and the on-disk store --------------------------------------------------------


def _fields(record: Record) -> list[tuple[str, Any]]:
    if isinstance(record, Metric):
        return list(zip(Metric._fields, record, strict=True))
    return [(field.name, getattr(record, field.name)) for field in attrs.fields(type(record))]


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return value.hex()  # NaN equals NaN here, and -0.0 differs from 0.0
    if isinstance(value, tuple):
        return tuple(_canonical(item) for item in value)
    return value


def record_key(record: Record) -> str:
    """A key equal for two records exactly when they hold the same values (NaN included), for counting duplicates."""
    return repr((type(record).__name__, tuple(_canonical(value) for _, value in _fields(record))))


_TYPES: dict[str, type] = {kind.__name__: kind for kind in (Metric, Param, Tag, Artifact, Image, Text, Histogram, Figure)}


def _to_json(record: Record) -> dict[str, Any]:
    document: dict[str, Any] = {"type": type(record).__name__}
    for name, value in _fields(record):
        if isinstance(value, bytes):
            value = {"base64": base64.b64encode(value).decode("ascii")}
        document[name] = value
    return document


def _from_json(document: dict[str, Any]) -> Record:
    kind = _TYPES[document.pop("type")]
    values: dict[str, Any] = {
        name: base64.b64decode(value["base64"]) if isinstance(value, dict) and "base64" in value else value
        for name, value in document.items()
    }
    if kind is Metric:
        return Metric(**values)
    if kind is Histogram:
        values["edges"], values["counts"] = tuple(values["edges"]), tuple(values["counts"])
    record: Record = kind(**values)
    return record


def read_store(directory: str | os.PathLike[str]) -> list[StoredRecord]:
    """Every record delivered into ``<directory>/records.jsonl``, in order.

    A last line cut short by a SIGKILL (no newline) was not delivered: it is left out.
    """
    path = Path(directory) / STORE_FILE
    if not path.exists():
        return []
    stored = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # the part after the last newline is torn or empty
        entry = json.loads(line)
        stored.append(StoredRecord(entry["pid"], entry["call"], entry["hook"], _from_json(entry["record"])))
    return stored


# --- declaration ----------------------------------------------------------------------------------------


def _chaos_info(name: str) -> PluginInfo:
    return PluginInfo(
        name=name,
        kind=PluginKind.BACKEND,
        factory=ChaosBackend,
        settings=ChaosSettings,
        description="fails on command, records and counts what it receives (tests)",
        enabled_by_default=False,
        max_batch_size=50,
    )


def chaos_plugin(name: str) -> object:
    """A plugin object declaring another chaos backend called ``name``, for ``tracelet.register_plugin``."""

    class ChaosPlugin:
        @hookimpl
        def tracelet_plugin_info(self) -> PluginInfo:
            return _chaos_info(name)

    return ChaosPlugin()


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """The entry point ``fixture-chaos``: opt-in."""
    return _chaos_info("fixture-chaos")
