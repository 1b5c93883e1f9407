"""
One table: every public constructor refuses every value outside each
parameter's domain with a ConfigError naming the parameter.

Each component's rows live in tests/support/ (``bad_inputs_*.py``), which
its own test module reads too; the executor's, the clock's and the bus's
are here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import threading
from datetime import timedelta

import pytest

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    CircuitBreaker,
    CompositeLimiter,
    ConfigError,
    LeakyBucket,
    MockClock,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    SlidingWindow,
    StormwallError,
    TokenBucket,
    sim,
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


# -- every numeric parameter, fed the extremes -------------------------------

# Values at and past the edges of int and float. Each must give a working
# object or a ConfigError naming the parameter: never an OverflowError, a
# MemoryError, a ValueError or TypeError from deep inside, nor a hang.
EXTREMES = [
    pytest.param(HUGE, id="1e400-int"),
    pytest.param(-HUGE, id="minus-1e400-int"),
    pytest.param(10**18, id="1e18-int"),
    # repr() of an int past 4300 digits raises ValueError: no message may.
    pytest.param(-(10**5000), id="int-past-repr"),
    pytest.param(10**5000, id="positive-int-past-repr"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="minus-inf"),
    pytest.param(math.nan, id="nan"),
    pytest.param(-0.0, id="minus-zero"),
    pytest.param(1e308, id="1e308"),
    pytest.param(5e-324, id="5e-324"),
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
]


def _prometheus_registry():
    from prometheus_client import CollectorRegistry  # the extra

    return CollectorRegistry()


_REQUIRED["PrometheusExporter"] = lambda: {"registry": _prometheus_registry()}


def _numeric_parameters():
    """``(class, parameter)`` for every number parameter of a constructor."""
    rows = []
    for cls in _constructors():
        for param in inspect.signature(cls).parameters.values():
            kinds = set(str(param.annotation).split(" | "))
            if kinds & {"int", "float"}:
                rows.append(
                    pytest.param(
                        cls, param.name, id=f"{cls.__name__}-{param.name}"
                    )
                )
    return rows


def _in_time(fn, seconds=10):
    """
    ``fn()``, failing rather than waiting forever when it takes too long.

    In a daemon thread: a signal cannot stop a simulation (its executor
    catches what the handler raises, and retries).
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # re-raised below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _failing_twice():
    """A function failing twice, then returning: retries, breaker records."""
    failures = [OSError(), OSError()]

    def call():
        if failures:
            raise failures.pop()
        return "ok"

    return call


def _use(obj):
    """
    Use what was built once, where a bad value would bite at run time (a
    window's bucket arithmetic, a back-off's growth, a wait's deadline).
    """
    limiters = CompositeLimiter | TokenBucket | LeakyBucket | SlidingWindow
    if isinstance(obj, limiters):
        for _ in range(3):
            obj.try_acquire("k")
        return
    parts = {
        CircuitBreaker: "circuit_breaker",
        RetryPolicy: "retry_policy",
        Bulkhead: "bulkhead",
    }
    if isinstance(obj, RetryBudget):
        obj = RetryPolicy(budget=obj)
    for cls, option in parts.items():
        if isinstance(obj, cls):
            executor = ResilientExecutor(
                "svc", clock=MockClock(), **{option: obj}
            )
            # One call: a second one after back-offs of 1e308 s would start
            # past float range, where the mock clock has no time left.
            with contextlib.suppress(OSError, StormwallError):
                executor.run("k", _failing_twice())
    if isinstance(obj, ResilientExecutor):
        obj.run("k", lambda: None)
    if isinstance(obj, MockClock):
        obj.sleep(1)
        obj.now()


# A rule on two parameters names the one its documentation is written on,
# whichever of the two is extreme (the message says both).
_PAIRED = {
    "base_delay": "max_delay",  # max_delay >= base_delay
    "ttl": "min_per_second",  # a budget's min_per_second * ttl is finite
    "capacity": "refill_rate",  # a Redis bucket refills within 10 years
}


def _works_or_names(build, parameter):
    """Build (and use); a ConfigError must name ``parameter``."""
    paired = _PAIRED.get(parameter)
    refused = None
    try:
        obj = _in_time(build)
        # Built: in use, only a cost above a tiny capacity is refused.
        parameter, paired = "cost", None
        _in_time(lambda: _use(obj))
    except ConfigError as error:
        refused = error
    if refused is not None:
        assert refused.parameter in {parameter, paired}, str(refused)


def _virtual_loop(start):
    sim.VirtualEventLoop(start).close()


class TestExtremeValues:
    """Every number parameter, fed values past the edges of int and float."""

    def test_every_listed_parameter_is_found(self):
        """The enumeration sees the integer parameters too."""
        found = {
            (p.values[0].__name__, p.values[1]) for p in _numeric_parameters()
        }

        assert {
            ("CircuitBreaker", "window_size"),
            ("CircuitBreaker", "minimum_calls"),
            ("LeakyBucket", "capacity"),
            ("TokenBucket", "max_keys"),
            ("Bulkhead", "max_concurrent"),
            ("RetryPolicy", "max_attempts"),
        } <= found
        assert {row.values[:2] for row in FLOAT_PARAMETERS} <= {
            row.values for row in _numeric_parameters()
        }

    @pytest.mark.parametrize("value", EXTREMES)
    @pytest.mark.parametrize(("cls", "parameter"), _numeric_parameters())
    def test_constructor(self, cls, parameter, value):
        """A working object, or a ConfigError naming the parameter."""
        if cls.__name__ not in _REQUIRED:
            pytest.fail(f"add {cls.__name__} to _REQUIRED")
        options = {
            # The rules that read the parameter, on.
            "CircuitBreaker": {"failure_rate_threshold": 0.5},
        }.get(cls.__name__, {})
        kwargs = {**_REQUIRED[cls.__name__](), **options, parameter: value}

        _works_or_names(lambda: cls(**kwargs), parameter)

    @pytest.mark.parametrize("value", EXTREMES)
    @pytest.mark.parametrize(
        ("build", "parameter"),
        [
            pytest.param(
                lambda v: sim.Upstream(latency=v), "latency", id="latency"
            ),
            pytest.param(
                lambda v: sim.Upstream(failure_rate=v),
                "failure_rate",
                id="failure_rate",
            ),
            pytest.param(
                lambda v: sim.Upstream(failure_rate=[(v, 0.5)]),
                "failure_rate",
                id="failure_rate-time",
            ),
            pytest.param(
                lambda v: sim.Upstream(capacity=v),
                "capacity",
                id="capacity",
            ),
            pytest.param(_virtual_loop, "start", id="loop-start"),
            pytest.param(
                lambda v: sim.run(
                    AsyncResilientExecutor("s"), rate=v, duration=1
                ),
                "rate",
                id="run-rate",
            ),
            pytest.param(
                lambda v: sim.run(
                    AsyncResilientExecutor("s"), clients=v, duration=1
                ),
                "clients",
                id="run-clients",
            ),
            pytest.param(
                lambda v: sim.run(
                    AsyncResilientExecutor("s"), rate=1, duration=v
                ),
                "duration",
                id="run-duration",
            ),
            pytest.param(
                lambda v: sim.run(
                    AsyncResilientExecutor("s"), rate=1, duration=1, seed=v
                ),
                "seed",
                id="run-seed",
            ),
            *(
                pytest.param(
                    lambda v, p=p: sim.occ_contention(
                        **{"clients": 2, "strategy": "full", "runs": 1, p: v}
                    ),
                    p,
                    id=f"occ-{p}",
                )
                for p in ("clients", "base_delay", "max_delay", "runs", "seed")
            ),
        ],
    )
    def test_simulator(self, build, parameter, value):
        """The simulator's numbers too: a run, or a ConfigError."""
        _works_or_names(lambda: build(value), parameter)
