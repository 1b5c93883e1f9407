"""
stormwall: observable resilience for Python.

One pipeline (circuit breaker, rate limiter, bulkhead, call, retry with
jittered back-off, timeout, fallback) runs every call, in sync and asyncio
alike, and every decision it takes is an event on a hook bus that exporters
turn into traces, metrics and logs.
"""

from __future__ import annotations

from ._async import AsyncResilientExecutor
from ._breaker import BreakerStatistics, CircuitBreaker, CircuitState
from ._bulkhead import Bulkhead, BulkheadStatistics
from ._bus import BusStatistics, EventBus, Subscription, default_bus
from ._clock import Clock, MockClock, MonotonicClock
from ._composite import CompositeLimiter
from ._errors import (
    AttemptTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    RateLimitedError,
    RejectedError,
    StormwallError,
)
from ._limiters import (
    LeakyBucket,
    Limiter,
    LimiterStatistics,
    SlidingWindow,
    TokenBucket,
)
from ._observe import Observation, observe
from ._retry import RetryBudget, RetryBudgetStatistics, RetryPolicy
from ._sync import ResilientExecutor
from ._validate import parse_duration
from ._version import __version__


__all__ = [
    "AsyncResilientExecutor",
    "AttemptTimeoutError",
    "BackendUnavailableError",
    "BreakerStatistics",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStatistics",
    "BusStatistics",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "CompositeLimiter",
    "ConfigError",
    "EventBus",
    "LeakyBucket",
    "Limiter",
    "LimiterStatistics",
    "MockClock",
    "MonotonicClock",
    "Observation",
    "RateLimitedError",
    "RejectedError",
    "ResilientExecutor",
    "RetryBudget",
    "RetryBudgetStatistics",
    "RetryPolicy",
    "SlidingWindow",
    "StormwallError",
    "Subscription",
    "TokenBucket",
    "__version__",
    "default_bus",
    "observe",
    "parse_duration",
]
