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
  (``https://user:token@host/path``, the password may contain ``@``) are
  removed (``https://host/path``); ``KEY=value`` pairs whose key matches
  (``--api-key=sk-1``, ``TOKEN=abc`` in a command line) become ``KEY=***``;
  a command-line option whose name matches, followed by its value
  (``--api-key sk-1``, ``--db-password 'a b'``), becomes ``--api-key ***``
  (a value starting with ``-`` or ``=`` is the next option or an assignment, kept);
  ``key: value`` pairs whose key matches (``"password": "x"`` in the JSON of
  a list or dict param, ``Authorization: Bearer x`` in a header) have their
  value masked; a ``Bearer``/``Basic`` credential becomes ``Bearer ***``.

The same text rules, with the default patterns, are :func:`scrub`: what
leaves the process as text outside records goes through it (every line of
Tracelet's logger, exceptions kept in ``stats().last_error``, the backend
run URL in the spool's ``meta.json``, ``tracelet config`` output).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from tracelet.records import Param, Tag, Text

__all__ = ["DEFAULT_PATTERNS", "MASK", "Redactor", "scrub"]

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

# scheme://userinfo@ -> scheme://. The userinfo runs to the last "@" before the path, so a password
# holding "@" goes whole; it holds no "/", whitespace or quote (those end a URL in text).
_URL_CREDENTIALS = re.compile(r"""(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'"]*@""")
# "Bearer <token>" / "Basic <base64>" wherever it appears (an Authorization header's value). A token
# has 6+ characters, one of them not a letter, so prose ("bearer of news", "Basic usage") stays.
_SCHEME_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[A-Za-z]*[0-9\-._~+/])[A-Za-z0-9\-._~+/]{6,}=*")
# The value after "key:" or "key =": quoted (JSON, a Python repr) or up to a separator.
_VALUE = r"""(?:(?:bearer|basic|digest)\s+)?(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&'"}\]]+)"""
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
    _pair: re.Pattern[str] | None = attrs.field(init=False)
    _option: re.Pattern[str] | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        keys = tuple(word for word in (_words(pattern) for pattern in self.patterns) if word != "__")
        object.__setattr__(self, "_keys", keys)
        if keys:
            alternatives = "|".join(re.escape(key.strip("_")).replace("_", "[^A-Za-z0-9=]?") for key in keys)
            # KEY=value where KEY ends in a secret word: --api-key=..., HF_TOKEN=..., wandb.password=...
            assignment = re.compile(rf"(?i)((?:\b|_)(?:{alternatives})\s*=\s*)([^\s&;,'\"]+)")
            # key: value, the key quoted or not: {"password": "x"}, {'token': 1}, Authorization: Bearer x
            pair = re.compile(rf"""(?i)((?:\b|_)(?:{alternatives})(["']?)\s*:\s*)({_VALUE})""")
            # --option value, the option's last word(s) a secret word: --api-key sk-1, --db.password x
            option = re.compile(rf"""(?i)((?:^|\s)--?(?:[A-Za-z0-9]+[-_.])*(?:{alternatives})\s+)(?![-=])({_VALUE})""")
            object.__setattr__(self, "_assignment", assignment)
            object.__setattr__(self, "_pair", pair)
            object.__setattr__(self, "_option", option)
        else:
            object.__setattr__(self, "_assignment", None)
            object.__setattr__(self, "_pair", None)
            object.__setattr__(self, "_option", None)

    def is_secret(self, name: str) -> bool:
        """Whether a value named ``name`` is masked whole."""
        words = _words(name)
        return any(key in words for key in self._keys)

    def text(self, value: str) -> str:
        """``value`` without URL credentials; ``KEY=secret``, ``key: secret``, ``--key secret`` and bearer tokens masked."""
        if "://" in value:
            value = _URL_CREDENTIALS.sub(r"\1", value)
        if self._assignment is not None and "=" in value:
            value = self._assignment.sub(rf"\g<1>{MASK}", value)
        if self._pair is not None and ":" in value:
            value = self._pair.sub(_mask_pair_value, value)
        if self._option is not None and "-" in value:
            value = self._option.sub(rf"\g<1>{MASK}", value)
        return _SCHEME_CREDENTIALS.sub(rf"\1\2{MASK}", value)

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


def _mask_pair_value(match: re.Match[str]) -> str:
    """``key: value`` -> ``key: ***``, keeping the value's quotes (JSON stays JSON)."""
    value = match.group(3)
    quote = value[0] if value[:1] in ("'", '"') else match.group(2)  # a JSON number after a quoted key: "***"
    return f"{match.group(1)}{quote}{MASK}{quote}"


_DEFAULT = Redactor()


def scrub(text: str) -> str:
    """``text`` with the secrets a line of text can carry masked, by the default patterns.

    URL credentials removed (``https://user:pass@host`` -> ``https://host``),
    ``KEY=secret`` and ``key: secret`` values and ``Bearer``/``Basic``
    credentials replaced by :data:`MASK`. For whatever leaves the process as
    text outside records: log lines and tracebacks, exception messages kept in
    stats, URLs written to the spool's metadata, CLI output. Not for the hot
    path: a few regular-expression passes over ``text``.
    """
    return _DEFAULT.text(text)
