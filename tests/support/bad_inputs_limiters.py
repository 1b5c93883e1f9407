"""
Invalid arguments to the limiters and the bulkhead, one row each.

Each row is ``pytest.param(build, parameter, id=...)``: calling ``build``
must raise ``ConfigError`` whose ``.parameter`` is ``parameter``.
"""

from __future__ import annotations

import math

import pytest

from stormwall import (
    Bulkhead,
    CompositeLimiter,
    LeakyBucket,
    MockClock,
    SlidingWindow,
    TokenBucket,
)


NAN = math.nan
INF = math.inf
HUGE = 10**400  # an int no float can hold: float(HUGE) overflows

# Values no positive finite number parameter accepts.
_NOT_POSITIVE = [
    ("zero", 0),
    ("negative", -1),
    ("nan", NAN),
    ("inf", INF),
    ("huge-int", HUGE),
    ("huge-negative-int", -HUGE),
    ("bool", True),
    ("str", "1"),
    ("none", None),
]
_NOT_POSITIVE_INT = [
    ("zero", 0),
    ("negative", -3),
    ("float", 2.5),
    ("bool", True),
    ("str", "10"),
]
_NOT_OPTIONAL_POSITIVE = [
    ("zero", 0),
    ("negative", -1.0),
    ("nan", NAN),
    ("inf", INF),
    ("huge-int", HUGE),
    ("bool", False),
    ("str", "5"),
]


def _rows(prefix, param, build, cases):
    return [
        pytest.param(
            (lambda value=value: build(value)),
            param,
            id=f"{prefix}-{param}-{label}",
        )
        for label, value in cases
    ]


def _common(prefix, make):
    """Rows for the keyword options every keyed limiter shares."""
    return [
        *_rows(
            prefix,
            "max_keys",
            lambda v: make(max_keys=v),
            _NOT_POSITIVE_INT,
        ),
        *_rows(prefix, "ttl", lambda v: make(ttl=v), _NOT_OPTIONAL_POSITIVE),
        pytest.param(
            lambda: make(per_key=1), "per_key", id=f"{prefix}-per_key-int"
        ),
        pytest.param(
            lambda: make(per_key=None), "per_key", id=f"{prefix}-per_key-none"
        ),
        pytest.param(lambda: make(name=""), "name", id=f"{prefix}-name-empty"),
        pytest.param(lambda: make(name=3), "name", id=f"{prefix}-name-int"),
        pytest.param(
            lambda: make(clock=object()), "clock", id=f"{prefix}-clock-object"
        ),
        pytest.param(
            lambda: make(bus=object()), "bus", id=f"{prefix}-bus-object"
        ),
    ]


def _twice(tier):
    return CompositeLimiter(tier, tier)


BAD_INPUTS = [
    # TokenBucket
    *_rows(
        "token_bucket", "capacity", lambda v: TokenBucket(v, 1), _NOT_POSITIVE
    ),
    *_rows(
        "token_bucket",
        "refill_rate",
        lambda v: TokenBucket(1, v),
        _NOT_POSITIVE,
    ),
    *_common("token_bucket", lambda **kw: TokenBucket(1, 1, **kw)),
    # LeakyBucket
    *_rows("leaky_bucket", "rate", LeakyBucket, _NOT_POSITIVE),
    *_rows(
        "leaky_bucket",
        "capacity",
        lambda v: LeakyBucket(1, capacity=v),
        [("negative", -1), ("float", 1.5), ("bool", True), ("str", "2")],
    ),
    *_common("leaky_bucket", lambda **kw: LeakyBucket(1, **kw)),
    # SlidingWindow
    *_rows(
        "sliding_window", "limit", lambda v: SlidingWindow(v, 1), _NOT_POSITIVE
    ),
    *_rows(
        "sliding_window",
        "window",
        lambda v: SlidingWindow(1, v),
        _NOT_POSITIVE,
    ),
    *_common("sliding_window", lambda **kw: SlidingWindow(1, 1, **kw)),
    # CompositeLimiter
    pytest.param(CompositeLimiter, "limiters", id="composite-limiters-none"),
    pytest.param(
        lambda: CompositeLimiter(object()),
        "limiters",
        id="composite-limiters-object",
    ),
    pytest.param(
        lambda: CompositeLimiter(
            CompositeLimiter(TokenBucket(1, 1)), TokenBucket(1, 1)
        ),
        "limiters",
        id="composite-limiters-nested",
    ),
    pytest.param(
        lambda: _twice(TokenBucket(1, 1)),
        "limiters",
        id="composite-limiters-duplicate",
    ),
    pytest.param(
        lambda: CompositeLimiter(
            TokenBucket(1, 1, clock=MockClock()),
            TokenBucket(1, 1, clock=MockClock()),
        ),
        "limiters",
        id="composite-limiters-two-clocks",
    ),
    pytest.param(
        lambda: CompositeLimiter(
            TokenBucket(1, 1, clock=MockClock()), clock=MockClock()
        ),
        "clock",
        id="composite-clock-disagrees",
    ),
    pytest.param(
        lambda: CompositeLimiter(TokenBucket(1, 1), name=""),
        "name",
        id="composite-name-empty",
    ),
    # Bulkhead
    *_rows(
        "bulkhead",
        "max_concurrent",
        Bulkhead,
        [*_NOT_POSITIVE_INT, ("none", None)],
    ),
    *_rows(
        "bulkhead",
        "max_wait",
        lambda v: Bulkhead(1, max_wait=v),
        [
            ("negative", -0.5),
            ("nan", NAN),
            ("huge-int", HUGE),
            ("huge-negative-int", -HUGE),
            ("bool", True),
            ("str", "1"),
        ],
    ),
    pytest.param(
        lambda: Bulkhead(1, name=""), "name", id="bulkhead-name-empty"
    ),
    pytest.param(
        lambda: Bulkhead(1, clock=42), "clock", id="bulkhead-clock-int"
    ),
]
"""Every invalid constructor argument: ``(build, parameter)`` rows."""
