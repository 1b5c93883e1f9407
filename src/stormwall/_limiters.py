"""Rate limiters (being written)."""

from __future__ import annotations


class Limiter:
    """Base of every limiter."""


class LimiterStatistics:
    """Snapshot."""


class TokenBucket(Limiter):
    """Token bucket."""


class LeakyBucket(Limiter):
    """Leaky bucket."""


class SlidingWindow(Limiter):
    """Sliding window."""


class CompositeLimiter(Limiter):
    """Composite."""
