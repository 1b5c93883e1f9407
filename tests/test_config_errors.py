"""
One table: every public constructor refuses every value outside each
parameter's domain with a ConfigError naming the parameter.

Rows for each component live beside its tests (``_bad_inputs_*.py``); the
executor's, the clock's and the bus's are here.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from _bad_inputs_breaker import BAD_INPUTS as BREAKER
from _bad_inputs_limiters import BAD_INPUTS as LIMITERS
from _bad_inputs_retry import BAD_INPUTS as RETRY
from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    ConfigError,
    MockClock,
    ResilientExecutor,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
)
from stormwall.testing import EventRecorder


def executor_rows():
    rows = []
    for cls in (ResilientExecutor, AsyncResilientExecutor):
        tag = cls.__name__
        cases = [
            ({"name": ""}, "name"),
            ({"name": 3}, "name"),
            ({"name": " padded "}, "name"),
            ({"limiter": object()}, "limiter"),
            ({"retry_policy": 3}, "retry_policy"),
            ({"circuit_breaker": "b"}, "circuit_breaker"),
            ({"bulkhead": 4}, "bulkhead"),
            ({"limiter_timeout": -1}, "limiter_timeout"),
            ({"limiter_timeout": math.nan}, "limiter_timeout"),
            ({"limiter_timeout": math.inf}, "limiter_timeout"),
            ({"limiter_timeout": "1"}, "limiter_timeout"),
            ({"fallback": "x"}, "fallback"),
            ({"clock": object()}, "clock"),
            ({"bus": object()}, "bus"),
        ]
        if cls is AsyncResilientExecutor:
            cases += [
                ({"timeout": 0}, "timeout"),
                ({"timeout": -1}, "timeout"),
                ({"timeout": math.nan}, "timeout"),
                ({"timeout": math.inf}, "timeout"),
                ({"timeout": True}, "timeout"),
            ]
        else:
            cases.append(({"timeout": 1.0}, "timeout"))
        for i, (kwargs, param) in enumerate(cases):
            name = kwargs.pop("name", "svc")
            rows.append(
                pytest.param(
                    lambda cls=cls, name=name, kwargs=kwargs: cls(
                        name, **kwargs
                    ),
                    param,
                    id=f"{tag}-{param}-{i}",
                )
            )
    return rows


OTHER = [
    pytest.param(lambda: MockClock(start=-1), "start", id="mockclock-start"),
    pytest.param(lambda: MockClock(autojump="yes"), "autojump", id="autojump"),
    pytest.param(lambda: EventRecorder(bus=3), "bus", id="recorder-bus"),
]


@pytest.mark.parametrize(
    ("build", "parameter"),
    [*LIMITERS, *RETRY, *BREAKER, *executor_rows(), *OTHER],
)
def test_bad_input_names_the_parameter(build, parameter):
    """A value outside its domain raises ConfigError naming the parameter."""
    with pytest.raises(ConfigError) as info:
        build()

    assert parameter == info.value.parameter
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{parameter}:")


class TestTimedelta:
    """A timedelta is a duration: accepted for durations, refused elsewhere."""

    @pytest.mark.parametrize(
        ("build", "parameter"),
        [
            pytest.param(
                lambda: TokenBucket(timedelta(seconds=5), 1),
                "capacity",
                id="capacity",
            ),
            pytest.param(
                lambda: TokenBucket(5, timedelta(seconds=1)),
                "refill_rate",
                id="refill_rate",
            ),
            pytest.param(
                lambda: SlidingWindow(timedelta(seconds=1), 1),
                "limit",
                id="limit",
            ),
            pytest.param(
                lambda: CircuitBreaker(failure_rate_threshold=timedelta(1)),
                "failure_rate_threshold",
                id="rate",
            ),
        ],
    )
    def test_refused_for_numbers(self, build, parameter):
        """A timedelta where a plain number is meant is a ConfigError."""
        with pytest.raises(ConfigError) as info:
            build()

        assert parameter == info.value.parameter

    def test_accepted_for_durations(self):
        """Durations take a timedelta and normalise it to seconds."""
        window = SlidingWindow(5, timedelta(minutes=1))
        breaker = CircuitBreaker(
            failure_threshold=1,
            recovery_timeout=timedelta(seconds=90),
            clock=MockClock(),
        )
        policy = RetryPolicy(max_delay=timedelta(seconds=20))
        with pytest.raises(ZeroDivisionError):
            ResilientExecutor(circuit_breaker=breaker).run("k", lambda: 1 / 0)

        assert 60.0 == window.window
        assert 90.0 == breaker.retry_after
        assert 20.0 == policy.max_delay
