"""MLflow's rules for names and values, applied without importing mlflow.

MLflow refuses a whole ``log_batch`` request when one key breaks a rule, so the
backend maps every name to a valid key before sending. The rules mirror
``mlflow.utils.validation`` (3.17.2) on POSIX:

- a metric, param or tag key uses only letters, digits, ``_ - . / :`` and
  spaces (``\\w`` is Unicode, as in MLflow) and is at most 250 characters;
- a key is also a file path in some stores: it must not change under
  ``posixpath.normpath`` (no empty, ``.`` or ``..`` segment, no leading or
  trailing ``/``) and must not start with ``..``;
- the key of an image logged with ``MlflowClient.log_image(key=...)`` uses only
  ASCII letters, digits, ``_ - . /`` and spaces.

Mapping (documented in ``docs/plugins/mlflow.md``): each character MLflow
refuses becomes ``_``; empty and ``.`` segments are dropped and a ``..`` at the
start of a segment becomes ``__``; a key longer than 250 characters is cut and
ends with ``_`` plus 8 hex digits of the original name's SHA-1, so two long
names stay apart. When two different names would map to the same key, the
later one gets the same digest suffix.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "KeyMapper",
    "is_valid_image_key",
    "is_valid_key",
    "sanitise_artifact_path",
    "sanitise_image_key",
    "sanitise_key",
]

# mlflow.utils.validation, MLflow 3.17.2.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

_VALID_KEY = re.compile(r"[/\w.\- :]*")
_INVALID_KEY_CHAR = re.compile(r"[^/\w.\- :]")
_VALID_IMAGE_KEY = re.compile(r"[a-zA-Z0-9_\-./ ]+")
_INVALID_IMAGE_KEY_CHAR = re.compile(r"[^a-zA-Z0-9_\-./ ]")
_INVALID_PATH_CHAR = re.compile(r"[#%\\\x00-\x1f\x7f]")  # refused or decoded by mlflow.utils.uri.validate_path_is_safe
_DIGEST_LENGTH = 8


def _is_unique_path(key: str) -> bool:
    """MLflow's ``not path_not_unique(key)``: ``key`` is its own normalised path."""
    normalised = posixpath.normpath(key)
    return normalised == key and normalised != "." and not normalised.startswith(("..", "/"))


def is_valid_key(key: str) -> bool:
    """Whether MLflow accepts ``key`` as a metric, param or tag key."""
    return len(key) <= MAX_KEY_LENGTH and _VALID_KEY.fullmatch(key) is not None and _is_unique_path(key)


def is_valid_image_key(key: str) -> bool:
    """Whether ``MlflowClient.log_image`` accepts ``key`` (and the artifact store its file name)."""
    return len(key) <= MAX_KEY_LENGTH and _VALID_IMAGE_KEY.fullmatch(key) is not None and _is_unique_path(key)


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LENGTH]


def _with_digest(key: str, name: str) -> str:
    """``key`` cut to fit, plus ``_`` and the digest of the original ``name``."""
    return f"{key[: MAX_KEY_LENGTH - _DIGEST_LENGTH - 1].rstrip('/')}_{_digest(name)}"


def _fix_path(key: str) -> str:
    segments = [segment for segment in key.split("/") if segment not in ("", ".")]
    segments = ["__" + segment[2:] if segment.startswith("..") else segment for segment in segments]
    return "/".join(segments) or "_"


def _sanitise(name: str, invalid: re.Pattern[str]) -> str:
    key = _fix_path(invalid.sub("_", name))
    return _with_digest(key, name) if len(key) > MAX_KEY_LENGTH else key


def sanitise_key(name: str) -> str:
    """A metric, param or tag key MLflow accepts, as close to ``name`` as the rules allow."""
    return name if is_valid_key(name) else _sanitise(name, _INVALID_KEY_CHAR)


def sanitise_image_key(name: str) -> str:
    """An image key ``MlflowClient.log_image`` accepts, as close to ``name`` as the rules allow."""
    return name if is_valid_image_key(name) else _sanitise(name, _INVALID_IMAGE_KEY_CHAR)


def sanitise_artifact_path(name: str) -> str:
    """A relative artifact path MLflow's artifact stores accept: no ``#``, ``%``, ``\\``, control characters or ``..``."""
    return _fix_path(_INVALID_PATH_CHAR.sub("_", name))


class KeyMapper:
    """Maps names to MLflow keys in one key space (a run's metrics, params or tags).

    The mapping is remembered, so a name maps to the same key for the whole
    run, and two different names never share a key. ``on_rename(name, key)``
    is called once per name whose key differs from it.
    """

    def __init__(self, sanitise: Callable[[str], str], on_rename: Callable[[str, str], None]) -> None:
        self._sanitise = sanitise
        self._on_rename = on_rename
        self._keys: dict[str, str] = {}
        self._owners: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        key = self._keys.get(name)
        return self._assign(name) if key is None else key

    def _assign(self, name: str) -> str:
        key = self._sanitise(name)
        if self._owners.get(key, name) != name:
            key = _with_digest(key, name)
        self._keys[name] = key
        self._owners[key] = name
        if key != name:
            self._on_rename(name, key)
        return key
