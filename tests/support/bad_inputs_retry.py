"""
Invalid arguments to `RetryPolicy` and `RetryBudget`, one row each.

Each row is ``pytest.param(build, parameter, id=...)``: calling ``build``
must raise ``ConfigError`` whose ``.parameter`` is ``parameter``.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from stormwall import RetryBudget, RetryPolicy


NAN = math.nan
INF = math.inf
HUGE = 10**400  # an int no float can hold: float(HUGE) overflows


def _policy(**kwargs):
    return lambda: RetryPolicy(**kwargs)


def _budget(**kwargs):
    return lambda: RetryBudget(**kwargs)


def _rows(build, param, prefix, cases):
    return [
        pytest.param(build(**{param: value}), param, id=f"{prefix}-{case}")
        for case, value in cases
    ]


BAD_INPUTS = [
    # -- RetryPolicy --------------------------------------------------------
    *_rows(
        _policy,
        "max_attempts",
        "retry-max_attempts",
        [
            ("zero", 0),
            ("negative", -1),
            ("float", 2.0),
            ("nan", NAN),
            ("inf", INF),
            ("bool", True),
            ("str", "3"),
            ("none", None),
        ],
    ),
    *_rows(
        _policy,
        "base_delay",
        "retry-base_delay",
        [
            ("negative", -0.1),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "0.1"),
            ("none", None),
            ("negative-timedelta", timedelta(seconds=-1)),
        ],
    ),
    *_rows(
        _policy,
        "max_delay",
        "retry-max_delay",
        [
            ("zero", 0),
            ("negative", -1.0),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "10"),
            ("none", None),
            ("zero-timedelta", timedelta(0)),
            # Below 1 ms: 5e-324 / 10 buckets is 0, a division by zero.
            ("denormal", 5e-324),
            ("below-one-ms", 0.0009),
        ],
    ),
    pytest.param(
        _policy(base_delay=2.0, max_delay=1.0),
        "max_delay",
        id="retry-max_delay-below-base_delay",
    ),
    *_rows(
        _policy,
        "multiplier",
        "retry-multiplier",
        [
            ("zero", 0),
            ("below-one", 0.5),
            ("negative", -2.0),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "2"),
            ("none", None),
            ("timedelta", timedelta(seconds=2)),
        ],
    ),
    *_rows(
        _policy,
        "jitter",
        "retry-jitter",
        [
            ("unknown-mode", "uniform"),
            ("wrong-case", "FULL"),
            ("empty", ""),
            ("zero", 0),
            ("zero-float", 0.0),
            ("above-one", 1.5),
            ("negative", -0.1),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("timedelta", timedelta(seconds=1)),
            ("list", []),
        ],
    ),
    *_rows(
        _policy,
        "retry_on",
        "retry-retry_on",
        [
            ("int", 42),
            ("str", "Exception"),
            ("none", None),
            ("non-exception-class", int),
            ("tuple-with-int", (ValueError, 42)),
            ("tuple-with-class", (ValueError, int)),
            ("list", [ValueError]),
        ],
    ),
    *_rows(
        _policy,
        "retry_on_result",
        "retry-retry_on_result",
        [("int", 42), ("str", "ok"), ("bool", True)],
    ),
    *_rows(
        _policy,
        "deadline",
        "retry-deadline",
        [
            ("zero", 0),
            ("negative", -1.0),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "1"),
            ("zero-timedelta", timedelta(0)),
        ],
    ),
    *_rows(
        _policy,
        "retry_after",
        "retry-retry_after",
        [("int", 42), ("str", "Retry-After"), ("bool", False)],
    ),
    *_rows(
        _policy,
        "budget",
        "retry-budget",
        [
            ("int", 42),
            ("object", object()),
            ("policy", RetryPolicy()),
            ("bool", True),
        ],
    ),
    *_rows(
        _policy,
        "rng",
        "retry-rng",
        [
            ("int", 42),
            ("object", object()),
            ("str", "random"),
            ("random-not-callable", type("R", (), {"random": 0.5})()),
        ],
    ),
    pytest.param(
        lambda: RetryPolicy().delay(0), "attempt", id="retry-delay-zero"
    ),
    pytest.param(
        lambda: RetryPolicy().delay(-1), "attempt", id="retry-delay-negative"
    ),
    pytest.param(
        lambda: RetryPolicy().delay(1.0), "attempt", id="retry-delay-float"
    ),
    pytest.param(
        lambda: RetryPolicy().delay(True), "attempt", id="retry-delay-bool"
    ),
    # -- RetryBudget ----------------------------------------------------------
    *_rows(
        _budget,
        "ratio",
        "budget-ratio",
        [
            ("zero", 0),
            ("negative", -0.1),
            ("above-one", 1.5),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "0.2"),
            ("none", None),
            ("timedelta", timedelta(seconds=0.5)),
        ],
    ),
    *_rows(
        _budget,
        "min_per_second",
        "budget-min_per_second",
        [
            ("negative", -1.0),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "10"),
            ("none", None),
            ("timedelta", timedelta(seconds=1)),
        ],
    ),
    pytest.param(
        _budget(min_per_second=1e300, ttl=1e300),
        "min_per_second",
        id="budget-min_per_second-reserve-overflows",
    ),
    *_rows(
        _budget,
        "ttl",
        "budget-ttl",
        [
            ("zero", 0),
            ("negative", -1.0),
            ("nan", NAN),
            ("inf", INF),
            ("huge-int", HUGE),
            ("bool", True),
            ("str", "10"),
            ("none", None),
            ("zero-timedelta", timedelta(0)),
            # Below 1 ms: 5e-324 / 10 buckets is 0, a division by zero.
            ("denormal", 5e-324),
            ("below-one-ms", 0.0009),
        ],
    ),
    *_rows(
        _budget,
        "clock",
        "budget-clock",
        [("int", 42), ("object", object()), ("str", "monotonic")],
    ),
]
