"""Exceptions raised by Tracelet to its callers."""

from __future__ import annotations

__all__ = ["ConfigError", "PermanentError", "PluginError", "TraceletError"]


class TraceletError(Exception):
    """Base class of every error Tracelet raises on purpose."""


class ConfigError(TraceletError, ValueError):
    """A configuration value is invalid or unknown.

    The message names the key, where the value came from (an environment
    variable, a file, or an argument of ``start()``) and what was expected.
    """


class PluginError(TraceletError):
    """A plugin could not be loaded, configured or started (raised in strict mode)."""


class PermanentError(TraceletError):
    """Raised by a backend hook for a failure that retrying cannot fix (a rejected value, a deleted run).

    Core does not retry the batch: it is counted as failed and kept in the
    spool's ``rejected`` part, which ``tracelet replay`` sends again (after
    the cause was fixed). Any other exception is retried with backoff.
    """
