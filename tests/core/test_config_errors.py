"""
One table: every public constructor refuses every value outside each
parameter's domain with a ConfigError naming the parameter.

Each component's rows live in tests/support/ (``bad_inputs_*.py``), which
its own test module reads too; the executor's, the clock's and the bus's
are here.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from datetime import timedelta

import pytest

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
from tests.support.bad_inputs_breaker import BAD_INPUTS as BREAKER
from tests.support.bad_inputs_limiters import BAD_INPUTS as LIMITERS
from tests.support.bad_inputs_retry import BAD_INPUTS as RETRY


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


# -- every duration parameter takes a duration string ------------------------

# ``(class, duration parameter)``: every parameter of a public constructor
# that takes seconds. `test_table_is_every_duration_parameter` keeps it whole.
DURATIONS = [
    ("AsyncResilientExecutor", "timeout"),
    ("AsyncResilientExecutor", "limiter_timeout"),
    ("ResilientExecutor", "limiter_timeout"),
    ("Bulkhead", "max_wait"),
    ("CircuitBreaker", "recovery_timeout"),
    ("CircuitBreaker", "window_duration"),
    ("CircuitBreaker", "slow_call_duration"),
    ("CircuitBreaker", "max_recovery_timeout"),
    ("TokenBucket", "ttl"),
    ("LeakyBucket", "ttl"),
    ("SlidingWindow", "window"),
    ("SlidingWindow", "ttl"),
    ("RetryPolicy", "base_delay"),
    ("RetryPolicy", "max_delay"),
    ("RetryPolicy", "deadline"),
    ("RetryBudget", "ttl"),
    ("MockClock", "start"),
    ("RateLimitMiddleware", "timeout"),
    ("RedisBreakerStore", "sync_interval"),
    ("RedisBreakerStore", "probe_timeout"),
    ("RedisBreakerStore", "ttl"),
    ("RedisBreakerStore", "backend_timeout"),
    ("RedisBreakerStore", "retry_interval"),
    ("RedisTokenBucket", "backend_timeout"),
    ("RedisTokenBucket", "retry_interval"),
    ("RedisSlidingWindow", "window"),
    ("RedisSlidingWindow", "backend_timeout"),
    ("RedisSlidingWindow", "retry_interval"),
]

# What a row needs besides `_REQUIRED` for a short duration to be valid.
_DURATION_EXTRA = {
    ("CircuitBreaker", "max_recovery_timeout"): {"recovery_timeout": 0.1},
}

# Each unit once; every value is valid for every parameter above.
VALID_STRINGS = [
    ("250ms", 0.25),
    ("1.5s", 1.5),
    ("0.5m", 30.0),
    ("0.01h", 36.0),
]

BAD_STRINGS = ["1", "-1s", "1 s", "1.5", "1e3s", "1S", "2d", "s", "", "1.s"]

_CLASSES = {cls.__name__: cls for cls in _constructors()}


def _duration_rows():
    return [
        pytest.param(_CLASSES[cls], param, id=f"{cls}-{param}")
        for cls, param in DURATIONS
        if cls in _CLASSES  # an optional extra not installed
    ]


def _build(cls, parameter, value):
    kwargs = {
        **_REQUIRED[cls.__name__](),
        **_DURATION_EXTRA.get((cls.__name__, parameter), {}),
        parameter: value,
    }
    return cls(**kwargs)


_PLAIN = (int, float, str, bool, type(None))


def _settings(obj, path="", depth=3):
    """
    The plain values an object keeps, by attribute path: its slots and
    ``__dict__``, and those of the stormwall objects it holds (a limiter's
    store and policy, a breaker's config), a few levels down.
    """
    names = set(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        slots = getattr(klass, "__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    values = {}
    for attr in sorted(names):
        value = getattr(obj, attr, None)
        if isinstance(value, _PLAIN):
            values[path + attr] = value
        elif depth and type(value).__module__.startswith("stormwall."):
            values.update(_settings(value, f"{path}{attr}.", depth - 1))
    return values


class TestDurationStrings:
    """Every duration parameter takes "250ms", "30s", "1.5m", "2h"."""

    def test_parse_duration_is_the_public_parser(self):
        """stormwall.parse_duration reads what the constructors read."""
        from stormwall import parse_duration

        assert 0.25 == parse_duration("250ms")
        assert 5400.0 == parse_duration("1.5h")
        assert 2.0 == parse_duration(timedelta(seconds=2))
        assert 3 == parse_duration(3)
        for bad in ("-1s", "30", -1, float("nan"), True, None):
            with pytest.raises(ConfigError, match="ttl"):
                parse_duration(bad, name="ttl")

    def test_table_is_every_duration_parameter(self):
        """The rows are exactly the float parameters that take a timedelta
        (the async executor's ``timeout``: the sync one refuses any)."""
        takes_timedelta = set()
        for row in FLOAT_PARAMETERS:
            cls, parameter = row.values
            try:
                _build(cls, parameter, timedelta(milliseconds=250))
            except ConfigError:
                continue
            takes_timedelta.add((cls.__name__, parameter))

        assert takes_timedelta == {
            row for row in DURATIONS if row[0] in _CLASSES
        }

    @pytest.mark.parametrize(("text", "seconds"), VALID_STRINGS)
    @pytest.mark.parametrize(("cls", "parameter"), _duration_rows())
    def test_string_is_the_same_as_its_seconds(
        self, cls, parameter, text, seconds
    ):
        """A duration string builds the same object as its seconds."""
        from_text = _settings(_build(cls, parameter, text))
        from_seconds = _settings(_build(cls, parameter, seconds))

        assert from_seconds == from_text
        assert seconds in from_text.values()

    @pytest.mark.parametrize("text", BAD_STRINGS)
    @pytest.mark.parametrize(("cls", "parameter"), _duration_rows())
    def test_bad_string_names_the_parameter(self, cls, parameter, text):
        """A string that is not a duration is a ConfigError naming the
        parameter, never a number of seconds."""
        with pytest.raises(ConfigError) as info:
            _build(cls, parameter, text)

        assert parameter == info.value.parameter

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [*VALID_STRINGS, ("30s", 30.0), ("2h", 7200.0), (".5s", 0.5)],
    )
    def test_parser_values(self, text, seconds):
        """The parser reads each unit: ms, s, m (minutes) and h."""
        from stormwall._validate import duration

        assert seconds == duration("d", text)

    def test_string_refused_where_a_number_is_meant(self):
        """A duration string is no count or rate: ``capacity="5s"``."""
        with pytest.raises(ConfigError) as info:
            TokenBucket("5s", 1)

        assert "capacity" == info.value.parameter

    def test_out_of_range_string_names_the_parameter(self):
        """Digits past float range are refused, not read as infinity."""
        with pytest.raises(ConfigError) as info:
            _build(_CLASSES["Bulkhead"], "max_wait", "9" * 400 + "s")

        assert "max_wait" == info.value.parameter


class TestKeyHelpers:
    """The one key check and key-function helper the components share."""

    def test_key_check_names_the_parameter(self):
        """A key that is not a str is refused by limiters and executors
        alike, with the same message."""
        from stormwall._validate import key

        messages = set()
        for build in (
            lambda: key(3),
            lambda: TokenBucket(1, 1).try_acquire(3),
            lambda: ResilientExecutor("svc").run(3, lambda: None),
        ):
            with pytest.raises(ConfigError) as info:
                build()
            assert "key" == info.value.parameter
            messages.add(str(info.value))

        assert {"key: expected a str, got int"} == messages

    def test_key_function_forms(self):
        """None is the default, a callable is kept, a str is fixed only
        when asked; anything else says what was expected."""
        from stormwall._validate import key_function

        def default(*_args):
            return "d"

        def own(*_args):
            return "o"

        assert default is key_function(None, "f", default=default)
        assert own is key_function(own, "f", default=default)
        assert "k" == key_function("k", "f", fixed=True)(1, x=2)
        for value in ("k", 3, None):
            with pytest.raises(ConfigError, match="expected f, got"):
                key_function(value, "f")
