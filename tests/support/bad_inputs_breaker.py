"""
Constructor calls of `CircuitBreaker` that must raise `ConfigError`.

Each row is ``(callable, expected ConfigError.parameter)``.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from stormwall import CircuitBreaker, EventBus


CB = CircuitBreaker
HUGE = 10**400


def _row(make, parameter, id):  # noqa: A002 - mirrors pytest.param
    return pytest.param(make, parameter, id=f"breaker-{id}")


BAD_INPUTS = [
    # name
    _row(lambda: CB(""), "name", "name-empty"),
    _row(lambda: CB(" b "), "name", "name-spaces"),
    _row(lambda: CB(3), "name", "name-int"),
    # failure_threshold
    _row(lambda: CB(failure_threshold=0), "failure_threshold", "ft-zero"),
    _row(lambda: CB(failure_threshold=-1), "failure_threshold", "ft-neg"),
    _row(lambda: CB(failure_threshold=2.5), "failure_threshold", "ft-float"),
    _row(lambda: CB(failure_threshold=True), "failure_threshold", "ft-bool"),
    _row(lambda: CB(failure_threshold="5"), "failure_threshold", "ft-str"),
    _row(
        lambda: CB(failure_threshold=None),
        "failure_threshold",
        "ft-none-and-no-rate-rule",
    ),
    # recovery_timeout
    _row(lambda: CB(recovery_timeout=0), "recovery_timeout", "rt-zero"),
    _row(lambda: CB(recovery_timeout=-1.0), "recovery_timeout", "rt-neg"),
    _row(lambda: CB(recovery_timeout=math.nan), "recovery_timeout", "rt-nan"),
    _row(lambda: CB(recovery_timeout=math.inf), "recovery_timeout", "rt-inf"),
    _row(lambda: CB(recovery_timeout=True), "recovery_timeout", "rt-bool"),
    _row(lambda: CB(recovery_timeout="30"), "recovery_timeout", "rt-str"),
    _row(lambda: CB(recovery_timeout=None), "recovery_timeout", "rt-none"),
    _row(
        lambda: CB(recovery_timeout=timedelta(0)),
        "recovery_timeout",
        "rt-timedelta-zero",
    ),
    # half_open_max_calls
    _row(lambda: CB(half_open_max_calls=0), "half_open_max_calls", "hom-zero"),
    _row(lambda: CB(half_open_max_calls=-2), "half_open_max_calls", "hom-neg"),
    _row(
        lambda: CB(half_open_max_calls=1.0), "half_open_max_calls", "hom-float"
    ),
    _row(
        lambda: CB(half_open_max_calls=True), "half_open_max_calls", "hom-bool"
    ),
    _row(
        lambda: CB(half_open_max_calls=None), "half_open_max_calls", "hom-none"
    ),
    # success_threshold
    _row(lambda: CB(success_threshold=0), "success_threshold", "st-zero"),
    _row(lambda: CB(success_threshold=-1), "success_threshold", "st-neg"),
    _row(lambda: CB(success_threshold=1.5), "success_threshold", "st-float"),
    _row(lambda: CB(success_threshold=False), "success_threshold", "st-bool"),
    # failure_rate_threshold
    _row(
        lambda: CB(failure_rate_threshold=0),
        "failure_rate_threshold",
        "frt-zero",
    ),
    _row(
        lambda: CB(failure_rate_threshold=-0.5),
        "failure_rate_threshold",
        "frt-neg",
    ),
    _row(
        lambda: CB(failure_rate_threshold=1.01),
        "failure_rate_threshold",
        "frt-above-one",
    ),
    _row(
        lambda: CB(failure_rate_threshold=50),
        "failure_rate_threshold",
        "frt-percent",
    ),
    _row(
        lambda: CB(failure_rate_threshold=math.nan),
        "failure_rate_threshold",
        "frt-nan",
    ),
    _row(
        lambda: CB(failure_rate_threshold=math.inf),
        "failure_rate_threshold",
        "frt-inf",
    ),
    _row(
        lambda: CB(failure_rate_threshold=True),
        "failure_rate_threshold",
        "frt-bool",
    ),
    _row(
        lambda: CB(failure_rate_threshold="0.5"),
        "failure_rate_threshold",
        "frt-str",
    ),
    # window_size
    _row(lambda: CB(window_size=0), "window_size", "ws-zero"),
    _row(lambda: CB(window_size=-10), "window_size", "ws-neg"),
    _row(lambda: CB(window_size=10.0), "window_size", "ws-float"),
    _row(lambda: CB(window_size=True), "window_size", "ws-bool"),
    _row(lambda: CB(window_size=None), "window_size", "ws-none"),
    # The ring is allocated whole: 10**12 was a MemoryError, 10**400 an
    # OverflowError; above a million calls, window_duration is the answer.
    _row(
        lambda: CB(failure_rate_threshold=0.5, window_size=10**12),
        "window_size",
        "ws-terabyte",
    ),
    _row(
        lambda: CB(failure_rate_threshold=0.5, window_size=HUGE),
        "window_size",
        "ws-huge",
    ),
    _row(lambda: CB(window_size=1_000_001), "window_size", "ws-above-max"),
    # window_duration
    _row(lambda: CB(window_duration=0), "window_duration", "wd-zero"),
    _row(lambda: CB(window_duration=-1), "window_duration", "wd-neg"),
    _row(lambda: CB(window_duration=math.nan), "window_duration", "wd-nan"),
    _row(lambda: CB(window_duration=math.inf), "window_duration", "wd-inf"),
    _row(lambda: CB(window_duration=True), "window_duration", "wd-bool"),
    _row(lambda: CB(window_duration="60"), "window_duration", "wd-str"),
    # Below 1 ms: 5e-324 / 20 buckets is 0, a division by zero per call.
    _row(
        lambda: CB(failure_rate_threshold=0.5, window_duration=5e-324),
        "window_duration",
        "wd-denormal",
    ),
    _row(
        lambda: CB(window_duration=timedelta(microseconds=999)),
        "window_duration",
        "wd-below-one-ms",
    ),
    # minimum_calls
    _row(lambda: CB(minimum_calls=0), "minimum_calls", "mc-zero"),
    _row(lambda: CB(minimum_calls=-1), "minimum_calls", "mc-neg"),
    _row(lambda: CB(minimum_calls=2.0), "minimum_calls", "mc-float"),
    _row(lambda: CB(minimum_calls=True), "minimum_calls", "mc-bool"),
    _row(lambda: CB(minimum_calls=None), "minimum_calls", "mc-none"),
    # slow_call_duration
    _row(lambda: CB(slow_call_duration=0), "slow_call_duration", "scd-zero"),
    _row(lambda: CB(slow_call_duration=-1), "slow_call_duration", "scd-neg"),
    _row(
        lambda: CB(slow_call_duration=math.nan),
        "slow_call_duration",
        "scd-nan",
    ),
    _row(
        lambda: CB(slow_call_duration=math.inf),
        "slow_call_duration",
        "scd-inf",
    ),
    _row(
        lambda: CB(slow_call_duration=True), "slow_call_duration", "scd-bool"
    ),
    _row(lambda: CB(slow_call_duration="1"), "slow_call_duration", "scd-str"),
    # slow_call_rate_threshold
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=0),
        "slow_call_rate_threshold",
        "scrt-zero",
    ),
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=1.5),
        "slow_call_rate_threshold",
        "scrt-above-one",
    ),
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=-0.1),
        "slow_call_rate_threshold",
        "scrt-neg",
    ),
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=math.nan),
        "slow_call_rate_threshold",
        "scrt-nan",
    ),
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=True),
        "slow_call_rate_threshold",
        "scrt-bool",
    ),
    _row(
        lambda: CB(slow_call_rate_threshold=0.5),
        "slow_call_rate_threshold",
        "scrt-without-slow-call-duration",
    ),
    # max_recovery_timeout
    _row(
        lambda: CB(max_recovery_timeout=0), "max_recovery_timeout", "mrt-zero"
    ),
    _row(
        lambda: CB(max_recovery_timeout=-1), "max_recovery_timeout", "mrt-neg"
    ),
    _row(
        lambda: CB(max_recovery_timeout=math.nan),
        "max_recovery_timeout",
        "mrt-nan",
    ),
    _row(
        lambda: CB(max_recovery_timeout=math.inf),
        "max_recovery_timeout",
        "mrt-inf",
    ),
    _row(
        lambda: CB(max_recovery_timeout=True),
        "max_recovery_timeout",
        "mrt-bool",
    ),
    _row(
        lambda: CB(recovery_timeout=30, max_recovery_timeout=10),
        "max_recovery_timeout",
        "mrt-below-recovery-timeout",
    ),
    # an int no float can hold (float(10**400) overflows)
    _row(lambda: CB(recovery_timeout=HUGE), "recovery_timeout", "rt-huge"),
    _row(
        lambda: CB(failure_rate_threshold=HUGE),
        "failure_rate_threshold",
        "frt-huge",
    ),
    _row(lambda: CB(window_duration=HUGE), "window_duration", "wd-huge"),
    _row(
        lambda: CB(slow_call_duration=-HUGE), "slow_call_duration", "scd-huge"
    ),
    _row(
        lambda: CB(slow_call_duration=1, slow_call_rate_threshold=HUGE),
        "slow_call_rate_threshold",
        "scrt-huge",
    ),
    _row(
        lambda: CB(max_recovery_timeout=HUGE),
        "max_recovery_timeout",
        "mrt-huge",
    ),
    # record_on / ignore_on
    _row(lambda: CB(record_on=42), "record_on", "record_on-int"),
    _row(lambda: CB(record_on=(ValueError, 1)), "record_on", "record_on-mix"),
    _row(lambda: CB(record_on=(int,)), "record_on", "record_on-not-exc"),
    _row(lambda: CB(ignore_on="ValueError"), "ignore_on", "ignore_on-str"),
    _row(lambda: CB(ignore_on=(str,)), "ignore_on", "ignore_on-not-exc"),
    # clock / bus / store
    _row(lambda: CB(clock=object()), "clock", "clock-object"),
    _row(lambda: CB(bus=object()), "bus", "bus-object"),
    _row(lambda: CB(bus=EventBus), "bus", "bus-class"),
    _row(lambda: CB(store=object()), "store", "store-given"),
]
