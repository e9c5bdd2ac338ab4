"""Retry policy and circuit breaker: how a backend's worker reacts to failing hooks.

Both live on the backend's worker thread only, so they hold no lock.
"""

from __future__ import annotations

import enum
import random

import attrs

__all__ = ["BreakerState", "CircuitBreaker", "DeliveryPolicy"]


@attrs.frozen
class DeliveryPolicy:
    """Per-backend delivery settings, taken from the core configuration."""

    retry_attempts: int = 5
    """Calls of a routing hook per batch before the batch goes to the spool (1 = no retry)."""
    retry_base: float = 0.5
    """Seconds before the first retry; doubled each time, with jitter."""
    retry_cap: float = 30.0
    """Longest wait between two attempts."""
    breaker_threshold: int = 5
    """Consecutive failed calls that open the circuit breaker."""
    breaker_cooldown: float = 30.0
    """Seconds the breaker stays open before one probe call tests the backend again."""
    spool_after: float = 0.5
    """Seconds a record may wait in memory for a stuck backend before it is written to the spool."""

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure (1-based): equal jitter around ``base * 2**(attempt-1)``."""
        ceiling = min(self.retry_cap, self.retry_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    """Calls go through."""
    OPEN = "open"
    """Calls are not made; records go to the spool until the cool-down ends."""
    HALF_OPEN = "half-open"
    """One probe call is allowed; its outcome closes or re-opens the breaker."""


class CircuitBreaker:
    """Counts consecutive failures of one backend and stops calling it for a while after too many."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0

    def allow(self, now: float) -> bool:
        """Whether a call may be made now (moves an expired open breaker to half-open)."""
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self._cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
        return True

    def wait(self, now: float) -> float:
        """Seconds until the next call is allowed (0 when closed or half-open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - now)

    def success(self) -> None:
        self.failures = 0
        self.state = BreakerState.CLOSED

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self._threshold:
            self.state = BreakerState.OPEN
            self._opened_at = now

    def trip(self, now: float) -> None:
        """Open the breaker now (a batch used up its retries)."""
        self.state = BreakerState.OPEN
        self._opened_at = now
