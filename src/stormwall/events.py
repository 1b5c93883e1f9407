"""
The events stormwall reports (public module).

Import event classes from here to subscribe to them::

    from stormwall.events import RetryScheduled
"""

from __future__ import annotations

from ._events import (
    AttemptEnded,
    AttemptStarted,
    BackendError,
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    CallStarted,
    Event,
    ExecutorObserved,
    FallbackUsed,
    LimiterAllowed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)


__all__ = [
    "AttemptEnded",
    "AttemptStarted",
    "BackendError",
    "BreakerRejected",
    "BreakerStateChanged",
    "BulkheadAcquired",
    "BulkheadRejected",
    "BulkheadReleased",
    "CallEnded",
    "CallStarted",
    "Event",
    "ExecutorObserved",
    "FallbackUsed",
    "LimiterAllowed",
    "LimiterRejected",
    "LimiterWaited",
    "RetryBudgetExhausted",
    "RetryScheduled",
]
