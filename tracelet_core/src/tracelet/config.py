"""Configuration: core settings and each plugin's settings, with where each value came from.

Precedence, lowest first:

1. the attrs defaults of :class:`CoreSettings` and of each plugin's settings class;
2. ``[tool.tracelet]`` in ``pyproject.toml`` of the working directory, then
   ``tracelet.toml`` there (top-level keys), which wins over ``pyproject.toml``;
3. environment variables ``TRACELET_<KEY>`` for core keys and
   ``TRACELET_<PLUGIN>_<KEY>`` for plugin keys (``TRACELET_MLFLOW_TRACKING_URI``);
4. arguments of ``tracelet.start()``: ``config={...}``, then keyword options.

Core keys are top level (``queue_size``); a plugin's keys sit in a table named
after it (``[tool.tracelet.mlflow]``, ``config={"mlflow": {...}}``, or a dotted
``"mlflow.tracking_uri"``). Every plugin accepts ``enabled``: ``false`` turns it
off, ``true`` turns on an opt-in plugin.

A bad value raises one :class:`~tracelet.errors.ConfigError` naming the key,
its source and the expected type. An unknown key is an error in strict mode
and a warning otherwise.
"""

from __future__ import annotations

import functools
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from tracelet.errors import ConfigError
from tracelet.info import PluginInfo
from tracelet.log import get_logger
from tracelet.redact import DEFAULT_PATTERNS

__all__ = ["CoreSettings", "ResolvedConfig", "Source", "resolve_config"]

_log = get_logger()

ENV_PREFIX = "TRACELET_"
# Read by plugin discovery before configuration exists, so not configuration keys.
DISCOVERY_VARIABLES = frozenset({"TRACELET_PLUGINS", "TRACELET_DISABLE_PLUGINS"})


@attrs.frozen
class CoreSettings:
    """Settings of tracelet-core itself (top-level keys)."""

    project: str | None = None
    """Project (experiment) name; default: the working directory's name."""
    name: str | None = None
    """Run name; default: ``run-YYYYMMDD-HHMMSS``."""
    backends: tuple[str, ...] | None = None
    """Backend plugins to deliver to; default: every installed, enabled backend."""
    strict: bool = False
    """Raise on loading and configuration problems instead of warning (tests run strict)."""
    queue_size: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    """Records held in memory per backend (and in the intake); beyond it a backend's records go to its spool."""
    batch_linger: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    """Seconds the router and each worker wait for more records before handing on a partial batch."""
    stop_timeout: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    """Default deadline of ``stop()`` and of the exit handler, in seconds."""
    retry_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    """Calls of a backend hook per batch before the batch goes to the spool (1: no retry)."""
    retry_base: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    """Seconds before a backend's first retry; doubled after each failure, with jitter."""
    retry_cap: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    """Longest wait between two attempts, in seconds."""
    breaker_threshold: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    """Consecutive failed calls after which a backend's circuit breaker opens."""
    breaker_cooldown: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    """Seconds a breaker stays open before a probe call tests the backend again."""
    handle_signals: bool = True
    """Install a SIGTERM handler and an excepthook (main thread only), chained to the previous ones."""
    sigterm_grace: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    """Seconds SIGTERM leaves for delivery before the rest is spooled and the process terminates."""
    log_all_ranks: bool = False
    """In a distributed job, every rank logs to a run of its own (named ``<name>-rank<N>``); default: rank 0 only."""
    spool_dir: str = ".tracelet/spool"
    """Where undelivered records are kept (relative paths: to the working directory at ``start()``)."""
    spool_after: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    """Seconds a record may wait in memory for a stuck backend before it is written to the spool."""
    spool_fsync_interval: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """Seconds between flushes + fsyncs of the spool's open segment (0: after every write)."""
    intake_full_wait: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """Seconds a log call waits for the router when the intake (``queue_size`` records) is full; past it, calls
    stop waiting and keep their records up to 100,000 items beyond ``queue_size`` (beyond that they are dropped and
    counted); 0: never wait. Only a loop logging faster than records can be routed waits."""
    redact_patterns: tuple[str, ...] = DEFAULT_PATTERNS
    """Secret words: a param, tag or text whose name contains one as a word is masked (empty: key masking off)."""
    mode: str = attrs.field(default="online", validator=attrs.validators.in_(("online", "offline")))
    """``online``: deliver to the backends; ``offline``: start no backend, write every record to the run's offline
    spool for ``tracelet sync`` (see docs/offline-and-resume.md)."""
    run_id: str | None = None
    """A stable run id (letters, digits, ``.``, ``_``, ``-``; at most 128) that a restarted job passes again to continue
    the same backend runs; default: a random id, never resumed."""
    resume: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(("allow", "must", "never")))
    )
    """With ``run_id``: ``allow`` (default) continues a known run or starts it, ``must`` requires a known run,
    ``never`` requires a new one."""
    self_metrics: bool = False
    """Log Tracelet's own delivery figures as metrics of the run, per backend: ``tracelet/<backend>/queue``,
    ``/spooled``, ``/delivered``, ``/latency_p50``, ``/latency_p99``, ``/breaker`` (see docs/self-metrics.md)."""
    self_metrics_interval: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds between two samples of Tracelet's own metrics (when ``self_metrics`` is on)."""


@attrs.frozen
class Source:
    """Where a configuration value came from, for messages and ``tracelet config``."""

    description: str
    """``default``, ``pyproject.toml [tool.tracelet]``, ``tracelet.toml``, ``TRACELET_X (environment)``, ``start()``."""


_DEFAULT = Source("default")


@attrs.frozen
class ResolvedConfig:
    """The outcome of :func:`resolve_config`."""

    core: CoreSettings
    plugin_settings: Mapping[str, object | None]
    """Plugin name -> its settings instance (``None`` for plugins without settings)."""
    enabled: Mapping[str, bool | None]
    """Plugin name -> its ``enabled`` key: True, False, or None for the plugin's default."""
    values: Mapping[str, tuple[Any, Source]]
    """Dotted key -> (value, source), every key of core and of each loaded plugin."""


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


@functools.cache
def _typed_converter() -> cattrs.Converter:
    """Structures values from files and arguments; no silent coercion (1.5 is not an int)."""
    converter = cattrs.Converter()

    def exact(kind: type, accepts: Callable[[Any], bool]) -> None:
        def structure(value: Any, _: Any) -> Any:
            if not accepts(value):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
            return kind(value)

        converter.register_structure_hook(kind, structure)

    exact(bool, _is_bool)
    exact(int, lambda v: isinstance(v, int) and not _is_bool(v))
    exact(float, lambda v: isinstance(v, int | float) and not _is_bool(v))
    exact(str, lambda v: isinstance(v, str))
    return converter


@functools.cache
def _environment_converter() -> cattrs.Converter:
    """Structures environment strings: ``1/true/yes/on``, numbers, ``a,b`` lists, ``k=v,k2=v2`` maps."""
    converter = cattrs.Converter()

    def to_bool(value: str, _: Any) -> bool:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean (1/0, true/false, yes/no, on/off), got {value!r}")

    def is_sequence(kind: Any) -> bool:
        return typing.get_origin(kind) in (tuple, list)

    def to_sequence(value: str, kind: Any) -> Any:
        item_type = typing.get_args(kind)[0]
        items = [converter.structure(part.strip(), item_type) for part in value.split(",") if part.strip()]
        return typing.get_origin(kind)(items)

    def is_mapping(kind: Any) -> bool:
        return typing.get_origin(kind) is dict

    def to_mapping(value: str, kind: Any) -> Any:
        key_type, value_type = typing.get_args(kind)
        result = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, separator, item = part.partition("=")
            if not separator:
                raise ValueError(f"expected key=value pairs separated by commas, got {value!r}")
            result[converter.structure(key.strip(), key_type)] = converter.structure(item.strip(), value_type)
        return result

    def is_optional(kind: Any) -> bool:
        return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)

    def to_optional(value: str, kind: Any) -> Any:
        if value.strip().lower() in ("", "none", "null"):
            return None
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return converter.structure(value, inner)

    converter.register_structure_hook(bool, to_bool)
    converter.register_structure_hook(int, lambda v, _: int(v))
    converter.register_structure_hook(float, lambda v, _: float(v))
    converter.register_structure_hook(str, lambda v, _: str(v))
    converter.register_structure_hook_func(is_optional, to_optional)
    converter.register_structure_hook_func(is_sequence, to_sequence)
    converter.register_structure_hook_func(is_mapping, to_mapping)
    return converter


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) if not typing.get_args(kind) else str(kind).replace("typing.", "")  # type: ignore[return-value]


@attrs.define
class _Schema:
    """The configuration keys known in this process, with their types."""

    fields: dict[str, attrs.Attribute[Any]]
    """Dotted key -> attrs field (plugin keys are ``plugin.key``)."""
    plugins: dict[str, PluginInfo]
    ignored_plugins: frozenset[str]
    """Plugins known but not loaded (disabled or failed): their keys are ignored silently."""

    @classmethod
    def build(cls, plugins: Mapping[str, PluginInfo], ignored: frozenset[str]) -> _Schema:
        fields = _typed_fields(CoreSettings, "")
        for name, info in plugins.items():
            fields[f"{name}.enabled"] = _ENABLED_FIELD
            if info.settings is not None:
                fields.update(_typed_fields(info.settings, f"{name}."))
        return cls(fields, dict(plugins), ignored)

    def key_for_env(self, variable: str) -> str | None:
        """Map ``TRACELET_MLFLOW_TRACKING_URI`` to ``mlflow.tracking_uri``."""
        rest = variable[len(ENV_PREFIX) :].lower()
        if rest in self.fields and "." not in rest:
            return rest
        for plugin in sorted(self.plugins, key=len, reverse=True):
            prefix = plugin.replace("-", "_") + "_"
            if rest.startswith(prefix):
                return f"{plugin}.{rest[len(prefix) :]}"
        return None

    def is_ignored_env(self, variable: str) -> bool:
        rest = variable[len(ENV_PREFIX) :].lower()
        return any(rest.startswith(name.replace("-", "_") + "_") for name in self.ignored_plugins)


def _typed_fields(settings: type, prefix: str) -> dict[str, attrs.Attribute[Any]]:
    """The fields of an attrs class by dotted key, with string annotations resolved."""
    hints = typing.get_type_hints(settings)
    return {prefix + field.name: field.evolve(type=hints.get(field.name, field.type)) for field in attrs.fields(settings)}


@attrs.define
class _EnabledHolder:
    enabled: bool | None = None


# ``plugin.enabled``: True turns an opt-in plugin on, False turns a plugin off,
# None (the default) follows the plugin's ``enabled_by_default``.
_ENABLED_FIELD = attrs.fields(_EnabledHolder).enabled.evolve(type=bool | None)


def _flatten(table: Mapping[str, Any], plugins: Mapping[str, PluginInfo], ignored: frozenset[str]) -> dict[str, Any]:
    """``{"mlflow": {"a": 1}, "queue_size": 2}`` -> ``{"mlflow.a": 1, "queue_size": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping) and (key in plugins or key in ignored):
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def _read_files(directory: Path) -> list[tuple[Mapping[str, Any], Source]]:
    layers: list[tuple[Mapping[str, Any], Source]] = []
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        section = _read_toml(pyproject).get("tool", {}).get("tracelet")
        if section is not None:
            layers.append((section, Source(f"{pyproject} [tool.tracelet]")))
    tracelet_toml = directory / "tracelet.toml"
    if tracelet_toml.is_file():
        layers.append((_read_toml(tracelet_toml), Source(str(tracelet_toml))))
    return layers


def _table_source(source: Source, key: str, table: Mapping[str, Any]) -> Source:
    """Where a key of a file came from: the plugin's own table (``[tool.tracelet.mlflow]``) for a plugin key."""
    plugin = key.split(".", 1)[0]
    if "." not in key or not isinstance(table.get(plugin), Mapping):
        return source
    if source.description.endswith("[tool.tracelet]"):
        return Source(f"{source.description[: -len('[tool.tracelet]')]}[tool.tracelet.{plugin}]")
    return Source(f"{source.description} [{plugin}]")


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        with path.open("rb") as file:
            table: dict[str, Any] = tomllib.load(file)
            return table
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def resolve_config(
    plugins: Mapping[str, PluginInfo],
    arguments: Mapping[str, Any],
    *,
    ignored_plugins: frozenset[str] = frozenset(),
    environ: Mapping[str, str] | None = None,
    directory: Path | None = None,
) -> ResolvedConfig:
    """Merge every source and validate the result.

    ``plugins`` are the loaded plugins whose keys are known; keys of
    ``ignored_plugins`` (disabled or failed) are dropped without a word.
    Raises :class:`ConfigError` for a bad value, and for an unknown key in
    strict mode.
    """
    environ = os.environ if environ is None else environ
    directory = Path.cwd() if directory is None else directory
    schema = _Schema.build(plugins, ignored_plugins)
    raw: dict[str, tuple[Any, Source, bool]] = {}  # key -> (value, source, from_environment)
    unknown: list[tuple[str, Source]] = []

    def take(key: str, value: Any, source: Source, from_environment: bool = False) -> None:
        if key in schema.fields:
            raw[key] = (value, source, from_environment)
        elif key.split(".", 1)[0] not in ignored_plugins:
            unknown.append((key, source))

    for table, source in _read_files(directory):
        for key, value in _flatten(table, plugins, ignored_plugins).items():
            take(key, value, _table_source(source, key, table))
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable in DISCOVERY_VARIABLES:
            continue
        env_key = schema.key_for_env(variable)
        if env_key is None:
            if not schema.is_ignored_env(variable):
                unknown.append((variable, Source(f"{variable} (environment)")))
            continue
        take(env_key, value, Source(f"{variable} (environment)"), from_environment=True)
    for key, value in _flatten(arguments, plugins, ignored_plugins).items():
        take(key, value, Source("start()"))

    values: dict[str, tuple[Any, Source]] = {}
    for key, field in schema.fields.items():
        if key not in raw:
            default: Any = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            if default is not attrs.NOTHING:
                values[key] = (default, _DEFAULT)
            continue
        value, source, from_environment = raw[key]
        converter = _environment_converter() if from_environment and isinstance(value, str) else _typed_converter()
        try:
            values[key] = (converter.structure(value, field.type or Any), source)
        except Exception as error:  # noqa: BLE001 - every structuring failure becomes one clear error
            raise ConfigError(
                f"invalid configuration value for {key!r} from {source.description}: "
                f"{value!r} is not a valid {_type_name(field.type)} ({error})"
            ) from None

    strict = bool(values["strict"][0])
    if unknown:
        listing = ", ".join(f"{key!r} from {source.description}" for key, source in unknown)
        message = f"unknown configuration keys: {listing}; known keys are: {', '.join(sorted(schema.fields))}"
        if strict:
            raise ConfigError(message)
        _log.warning(message)

    core = _build(CoreSettings, "", values)
    plugin_settings = {
        name: None if info.settings is None else _build(info.settings, f"{name}.", values) for name, info in plugins.items()
    }
    enabled = {name: values[f"{name}.enabled"][0] for name in plugins}
    return ResolvedConfig(core, plugin_settings, enabled, values)


_T = typing.TypeVar("_T")


def _build(kind: type[_T], prefix: str, values: Mapping[str, tuple[Any, Source]]) -> _T:
    """Instantiate an attrs settings class, turning its validators' errors into ConfigError."""
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(kind)  # type: ignore[arg-type]
    given = {field.name: values[prefix + field.name] for field in fields if prefix + field.name in values}
    try:
        return kind(**{name: value for name, (value, _) in given.items()})
    except Exception as error:  # noqa: BLE001 - a validator's error of any type names a bad value
        where = ", ".join(
            f"{prefix}{name}={value!r} from {source.description}"
            for name, (value, source) in given.items()
            if source is not _DEFAULT
        )
        raise ConfigError(
            f"invalid configuration for {prefix.rstrip('.') or 'tracelet'}: {error} ({where or 'defaults'})"
        ) from None
