"""
One table: every public constructor refuses every value outside each
parameter's domain with a ConfigError naming the parameter.

Rows for each component live beside its tests (``_bad_inputs_*.py``); the
executor's, the clock's and the bus's are here.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
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


# -- every float parameter, given an int no float can hold -------------------

# ``float(10**400)`` raises OverflowError, and so does ``math.isnan`` on it.
HUGE = 10**400

# Public modules whose classes are constructors to check; an optional one
# whose extra is not installed is skipped.
_MODULES = (
    "stormwall",
    "stormwall.integrations.asgi",
    "stormwall.integrations.httpx",
    "stormwall.backends.redis",
    "stormwall.exporters.logging",
    "stormwall.exporters.otel",
    "stormwall.exporters.prometheus",
    "stormwall.exporters.structlog",
)


def _redis_client():
    import redis  # only when the extra is installed

    return redis.Redis()  # connects lazily: nothing is sent here


async def _asgi_app(scope, receive, send):
    """An ASGI application that is never called."""


# What each constructor needs besides the parameter under test: its
# required arguments, and the options that make the parameter meaningful.
_REQUIRED = {
    "TokenBucket": lambda: {"capacity": 1, "refill_rate": 1},
    "LeakyBucket": lambda: {"rate": 1},
    "SlidingWindow": lambda: {"limit": 1, "window": 1},
    "Bulkhead": lambda: {"max_concurrent": 1},
    "CircuitBreaker": lambda: {"slow_call_duration": 1},
    "RetryPolicy": dict,
    "RetryBudget": dict,
    "MockClock": dict,
    "ResilientExecutor": dict,
    "AsyncResilientExecutor": dict,
    "RateLimitMiddleware": lambda: {
        "app": _asgi_app,
        "limiter": TokenBucket(1, 1),
    },
    "RedisBreakerStore": lambda: {"client": _redis_client()},
    "RedisTokenBucket": lambda: {
        "client": _redis_client(),
        "capacity": 1,
        "refill_rate": 1,
    },
    "RedisSlidingWindow": lambda: {
        "client": _redis_client(),
        "limit": 1,
        "window": 1,
    },
}


def _constructors():
    """Every public class that validates its arguments, once each."""
    seen = {}
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - an extra not installed
            continue
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and not issubclass(obj, BaseException)
                and not dataclasses.is_dataclass(obj)
                and obj not in seen
            ):
                seen[obj] = None
    return list(seen)


def _float_parameters():
    """``(class, parameter)`` for every float parameter of a constructor."""
    rows = []
    for cls in _constructors():
        for param in inspect.signature(cls).parameters.values():
            annotation = str(param.annotation)
            # A hook whose return type mentions float is not a number.
            if "float" in annotation and "Callable" not in annotation:
                rows.append(
                    pytest.param(
                        cls, param.name, id=f"{cls.__name__}-{param.name}"
                    )
                )
    return rows


FLOAT_PARAMETERS = _float_parameters()


class TestIntTooLargeForAFloat:
    """An int past float range is a ConfigError, never an OverflowError."""

    def test_every_float_parameter_is_found(self):
        """The enumeration sees the parameters the issue listed, at least."""
        found = {(p.values[0].__name__, p.values[1]) for p in FLOAT_PARAMETERS}

        assert {
            ("TokenBucket", "capacity"),
            ("TokenBucket", "refill_rate"),
            ("TokenBucket", "ttl"),
            ("LeakyBucket", "rate"),
            ("SlidingWindow", "window"),
            ("Bulkhead", "max_wait"),
            ("RetryPolicy", "base_delay"),
            ("RetryPolicy", "max_delay"),
            ("RetryPolicy", "multiplier"),
            ("RetryPolicy", "jitter"),
            ("RetryPolicy", "deadline"),
            ("RetryBudget", "ratio"),
            ("RetryBudget", "min_per_second"),
            ("CircuitBreaker", "recovery_timeout"),
            ("CircuitBreaker", "failure_rate_threshold"),
            ("CircuitBreaker", "window_duration"),
            ("CircuitBreaker", "slow_call_duration"),
            ("CircuitBreaker", "slow_call_rate_threshold"),
            ("CircuitBreaker", "max_recovery_timeout"),
            ("ResilientExecutor", "limiter_timeout"),
            ("AsyncResilientExecutor", "timeout"),
            ("MockClock", "start"),
        } <= found

    @pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
    @pytest.mark.parametrize(("cls", "parameter"), FLOAT_PARAMETERS)
    def test_names_the_parameter(self, cls, parameter, sign):
        """10**400 (or its negative) raises ConfigError naming the
        parameter, for every float parameter of every public constructor."""
        required = _REQUIRED.get(cls.__name__)
        assert required is not None, (
            f"add {cls.__name__} to _REQUIRED: it has float parameters"
        )
        kwargs = {**required(), parameter: sign * HUGE}

        with pytest.raises(ConfigError) as info:
            cls(**kwargs)

        assert parameter == info.value.parameter
