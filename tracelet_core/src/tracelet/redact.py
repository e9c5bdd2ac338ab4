"""Masking secrets before a record reaches a plugin or the spool.

The router thread calls :meth:`Redactor.record` on every param, tag and text
record (rare records; metrics carry no text and pass untouched), so one
choke point covers what the training script logs, what collectors gather and
what plugins submit with ``Run.log_record``. Nothing downstream of the router
(backend queues, the spool, ``tracelet replay``, plugins) ever sees the
secret.

Two rules:

- a record whose *name* matches a secret pattern has its value replaced by
  :data:`MASK`. A pattern matches a whole word of the name, where words are
  split at ``.``, ``_``, ``-``, ``/``, spaces and camelCase humps
  (``HF_TOKEN``, ``wandb.apiKey``, ``env.DB_PASSWORD`` match; ``max_tokens``,
  ``tokenizer`` and ``author`` do not); a pattern of several words
  (``api_key``) matches those words in a row;
- in every param, tag and text value, credentials embedded in URLs
  (``https://user:token@host/path``) are removed (``https://host/path``), and
  ``KEY=value`` pairs whose key matches (``--api-key=sk-1``, ``TOKEN=abc`` in
  a command line) become ``KEY=***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from tracelet.records import Param, Tag, Text

__all__ = ["DEFAULT_PATTERNS", "MASK", "Redactor"]

MASK = "***"

DEFAULT_PATTERNS: tuple[str, ...] = (
    "api_key",
    "apikey",
    "token",
    "secret",
    "secrets",
    "password",
    "passwd",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "private_key",
    "access_key",
)

# scheme://userinfo@ -> scheme://  (userinfo holds no "/", "@" or whitespace)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def _words(name: str) -> str:
    """``"env.DB_Password"`` -> ``"_env_db_password_"``: lower-case words joined and framed by ``_``."""
    return "_" + "_".join(filter(None, _SEPARATORS.split(_HUMP.sub("_", name).lower()))) + "_"


@attrs.frozen
class Redactor:
    """Masks secrets in param, tag and text records (see the module's docstring)."""

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    """Secret words; an empty tuple turns key matching off (URL credentials are still stripped)."""
    _keys: tuple[str, ...] = attrs.field(init=False)
    _assignment: re.Pattern[str] | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        keys = tuple(word for word in (_words(pattern) for pattern in self.patterns) if word != "__")
        object.__setattr__(self, "_keys", keys)
        if keys:
            alternatives = "|".join(re.escape(key.strip("_")).replace("_", "[^A-Za-z0-9=]?") for key in keys)
            # KEY=value where KEY ends in a secret word: --api-key=..., HF_TOKEN=..., wandb.password=...
            assignment = re.compile(rf"(?i)((?:\b|_)(?:{alternatives})\s*=\s*)([^\s&;,'\"]+)")
            object.__setattr__(self, "_assignment", assignment)
        else:
            object.__setattr__(self, "_assignment", None)

    def is_secret(self, name: str) -> bool:
        """Whether a value named ``name`` is masked whole."""
        words = _words(name)
        return any(key in words for key in self._keys)

    def text(self, value: str) -> str:
        """``value`` without URL credentials and with ``KEY=secret`` pairs masked."""
        if "://" in value:
            value = _URL_CREDENTIALS.sub(r"\1", value)
        if self._assignment is not None and "=" in value:
            value = self._assignment.sub(rf"\g<1>{MASK}", value)
        return value

    def record(self, record: object) -> object:
        """``record`` with its secrets masked (the same object when nothing was secret)."""
        if isinstance(record, Param | Tag):
            name, value = record.name, record.value
            if self.is_secret(name):
                masked = MASK
            elif type(value) is str:
                masked = self.text(value)
            else:
                return record
            return record if masked == value else attrs.evolve(record, value=masked)
        if isinstance(record, Text):
            cleaned = MASK if self.is_secret(record.name) else self.text(record.text)
            return record if cleaned == record.text else attrs.evolve(record, text=cleaned)
        return record

    def records(self, records: Iterable[object]) -> list[object]:
        return [self.record(record) for record in records]
