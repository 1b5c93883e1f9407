"""Circuit breaker (being written)."""

from __future__ import annotations

import enum


class CircuitState(enum.StrEnum):
    """States."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class CircuitBreaker:
    """Breaker."""


class BreakerStatistics:
    """Snapshot."""
