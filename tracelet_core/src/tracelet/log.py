"""Tracelet's internal logger.

Messages go through structlog to the stdlib logger named ``tracelet``, so a
user controls them with ordinary ``logging`` configuration. We wrap our own
logger instead of calling ``structlog.configure()``, which would change the
user's global structlog setup.

Every line is scrubbed of secrets (:func:`tracelet.redact.scrub`: URL
credentials, bearer tokens, ``KEY=secret`` values) after it is rendered, so
the event, every field and the traceback of an exception are covered: a
backend error quoting ``http://user:pass@host`` reaches stderr without the
password. Lines are rare (warnings, once per cause), never per record.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from tracelet.redact import scrub

__all__ = ["get_logger"]


def _render(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
    """Render ``event key=value ...`` with a formatted traceback on its own lines."""
    event = str(event_dict.pop("event", ""))
    exception = event_dict.pop("exception", None)
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {fields}" if fields else event
    return scrub(f"{message}\n{exception}" if exception else message)


_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.processors.format_exc_info,
    _render,
]


def get_logger(name: str = "tracelet") -> structlog.stdlib.BoundLogger:
    """Return a structlog logger writing to the stdlib logger ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger
