"""
The log exporters (structlog and stdlib logging): one line per event that
matters, at its level, with no argument or exception message, and with
``levels`` and ``logger`` checked when the exporter is built.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest

from stormwall import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import (
    AttemptStarted,
    CallEnded,
    CallStarted,
    LimiterAllowed,
    RetryScheduled,
)
from stormwall.exporters import _logs
from stormwall.exporters.logging import LoggingExporter


try:
    import structlog
    import structlog.testing
except ImportError:  # the stdlib half needs nothing
    structlog = None


needs_structlog = pytest.mark.skipif(
    structlog is None, reason="structlog is not installed"
)

SECRET = "hunter2-s3cr3t"  # noqa: S105 - the value that must not leak


class Boom(Exception):
    pass


def script(*items):
    it = iter(items)

    def fn(*args, **kwargs):
        item = next(it)
        if isinstance(item, BaseException):
            raise item
        return item

    return fn


class Captured:
    """What one exporter logged, as (event name, level, fields) lines."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, dict]] = []
        self.raw: list[object] = []

    def find(self, name, **fields):
        found = [
            (level, f)
            for n, level, f in self.lines
            if n == name and all(f.get(k) == v for k, v in fields.items())
        ]
        assert found, (name, fields, self.lines)
        return found[0]

    def names(self):
        return [n for n, _, _ in self.lines]


@contextmanager
def capture_stdlib(caplog, **kwargs):
    caplog.set_level(logging.DEBUG, logger="stormwall.events")
    bus = EventBus()
    LoggingExporter(**kwargs).attach(bus)
    captured = Captured()
    yield bus, captured
    for record in caplog.records:
        if record.name != "stormwall.events":
            continue
        fields = dict(record.stormwall)
        captured.lines.append((fields.pop("event"), record.levelno, fields))
        captured.raw.append(record)


@contextmanager
def capture_structlog(caplog, **kwargs):
    bus = EventBus()
    from stormwall.exporters.structlog import StructlogExporter

    StructlogExporter(**kwargs).attach(bus)
    captured = Captured()
    with structlog.testing.capture_logs() as entries:
        yield bus, captured
    for entry in entries:
        fields = dict(entry)
        name = fields.pop("event")
        level = logging.getLevelName(fields.pop("log_level").upper())
        captured.lines.append((name, level, fields))
        captured.raw.append(entry)


@pytest.fixture(
    params=[
        pytest.param("structlog", marks=needs_structlog),
        "logging",
    ]
)
def capture(request, caplog):
    """Capture lines from one exporter, structlog or stdlib."""
    if request.param == "structlog":
        structlog.reset_defaults()
        return lambda **kw: capture_structlog(caplog, **kw)
    return lambda **kw: capture_stdlib(caplog, **kw)


def retry(**kwargs):
    kwargs.setdefault("max_attempts", 2)
    kwargs.setdefault("base_delay", 1.0)
    kwargs.setdefault("jitter", None)
    return RetryPolicy(**kwargs)


def scenario(bus, clock):
    """Retry, a breaker round trip, limiter and bulkhead rejections."""
    ResilientExecutor("svc", retry_policy=retry(), clock=clock, bus=bus).run(
        "k", script(Boom(), "ok")
    )

    guarded = ResilientExecutor(
        "guarded",
        circuit_breaker=CircuitBreaker(
            "b", failure_threshold=1, recovery_timeout=10
        ),
        clock=clock,
        bus=bus,
    )
    with pytest.raises(Boom):
        guarded.run("k", script(Boom()))
    clock.advance(10)
    guarded.run("k", script("ok"))

    limited = ResilientExecutor(
        "limited",
        limiter=TokenBucket(1, 0.001, name="tb"),
        limiter_timeout=0,
        clock=clock,
        bus=bus,
    )
    limited.run("k", script("ok"))
    with pytest.raises(RateLimitedError):
        limited.run("k", script("never"))

    bulk = ResilientExecutor(
        "bulk", bulkhead=Bulkhead(1, name="bh"), clock=clock, bus=bus
    )

    def hold():
        with pytest.raises(BulkheadFullError):
            bulk.run("k", script("never"))

    bulk.run("k", hold)


class TestLevels:
    """Default levels are the documented ones, in structlog and stdlib."""

    def test_defaults(self, capture):
        """Retry and rejections WARNING, open ERROR, half-open WARNING,
        closed INFO, a successful attempt DEBUG."""
        with capture() as (bus, logs):
            scenario(bus, MockClock())

        state = "stormwall.circuit_breaker.state_changed"
        assert {
            "retry": logging.WARNING,
            "attempt success": logging.DEBUG,
            "open": logging.ERROR,
            "half_open": logging.WARNING,
            "closed": logging.INFO,
            "limiter rejected": logging.WARNING,
            "bulkhead rejected": logging.WARNING,
        } == {
            "retry": logs.find("stormwall.retry.scheduled")[0],
            "attempt success": logs.find(
                "stormwall.attempt.ended", outcome="success"
            )[0],
            "open": logs.find(state, to_state="open")[0],
            "half_open": logs.find(state, to_state="half_open")[0],
            "closed": logs.find(state, to_state="closed")[0],
            "limiter rejected": logs.find("stormwall.rate_limiter.rejected")[
                0
            ],
            "bulkhead rejected": logs.find("stormwall.bulkhead.rejected")[0],
        }

    def test_fields(self, capture):
        """A retry line carries executor, key, attempt, delay, error type."""
        with capture() as (bus, logs):
            scenario(bus, MockClock())

        _, fields = logs.find("stormwall.retry.scheduled")
        assert {
            "executor": "svc",
            "key": "k",
            "attempt": 1,
            "delay": 1.0,
            "error_type": "Boom",
        } == {
            k: fields[k]
            for k in ("executor", "key", "attempt", "delay", "error_type")
        }

    def test_overrides(self, capture):
        """levels= overrides a default, by name or qualified name; None
        silences a line."""
        with capture(
            levels={
                "stormwall.retry.scheduled": "info",
                "stormwall.attempt.ended:success": logging.WARNING,
                "stormwall.circuit_breaker.state_changed:open": None,
            }
        ) as (bus, logs):
            scenario(bus, MockClock())

        assert (logging.INFO, logging.WARNING) == (
            logs.find("stormwall.retry.scheduled")[0],
            logs.find("stormwall.attempt.ended", outcome="success")[0],
        )
        assert [] == [
            f
            for n, _, f in logs.lines
            if n == "stormwall.circuit_breaker.state_changed"
            and f["to_state"] == "open"
        ]
        assert logs.find(
            "stormwall.circuit_breaker.state_changed", to_state="closed"
        )

    def test_silence_everything(self, capture):
        """Every level None: no line at all."""
        with capture(levels=dict.fromkeys(_logs.DEFAULT_LEVELS)) as (
            bus,
            logs,
        ):
            scenario(bus, MockClock())

        assert [] == logs.lines

    def test_bad_levels(self):
        """Unknown level names, non-stormwall keys and non-mappings are
        ConfigErrors naming levels."""
        for bad in (
            {"stormwall.retry.scheduled": "loud"},
            {"retry": "info"},
            ["stormwall.retry.scheduled"],
        ):
            with pytest.raises(ConfigError, match="levels"):
                LoggingExporter(levels=bad)


def log_exporters():
    """Both log exporters' classes (structlog's when installed)."""
    classes = [LoggingExporter]
    if structlog is not None:
        from stormwall.exporters.structlog import StructlogExporter

        classes.append(StructlogExporter)
    return classes


class TestLevelValidation:
    """A typo in ``levels`` is refused, with the nearest valid name."""

    @pytest.mark.parametrize("exporter", log_exporters())
    @pytest.mark.parametrize(
        ("levels", "suggestion"),
        [
            pytest.param(
                {"stormwall.retry.shceduled": "info"},
                "'stormwall.retry.scheduled'",
                id="misspelt-event",
            ),
            pytest.param(
                {"stormwall.circuit_breaker.opened": "error"},
                "'stormwall.circuit_breaker.",
                id="unknown-event",
            ),
            pytest.param(
                {"stormwall.call.ended:succes": None},
                "'stormwall.call.ended:success'",
                id="misspelt-outcome",
            ),
            pytest.param(
                {"stormwall.circuit_breaker.state_changed:opened": "error"},
                "'stormwall.circuit_breaker.state_changed:open'",
                id="misspelt-state",
            ),
            pytest.param(
                {"stormwall.retry.scheduled": "warnig"},
                "'warning'",
                id="misspelt-level",
            ),
        ],
    )
    def test_nearest_valid_name(self, exporter, levels, suggestion):
        """An unknown event name, outcome, state or level name is a
        ConfigError naming ``levels`` that suggests the nearest one."""
        with pytest.raises(ConfigError) as info:
            exporter(levels=levels)

        assert "levels" == info.value.parameter
        assert f"did you mean {suggestion}" in str(info.value)

    @pytest.mark.parametrize("exporter", log_exporters())
    @pytest.mark.parametrize(
        "levels",
        [
            pytest.param({"stormwall.retry.scheduled:failure": 30}, id="qual"),
            pytest.param({"stormwall.retry.scheduled": 0}, id="zero"),
            pytest.param({"stormwall.retry.scheduled": -10}, id="negative"),
            pytest.param({"stormwall.retry.scheduled": 51}, id="too-high"),
            pytest.param({"stormwall.retry.scheduled": True}, id="bool"),
            pytest.param({"stormwall.retry.scheduled": 20.0}, id="float"),
            pytest.param({"stormwall.retry.scheduled": ""}, id="empty"),
            pytest.param({42: "info"}, id="not-a-str"),
        ],
    )
    def test_bad_values(self, exporter, levels):
        """A qualifier on an event that has none, a level outside 1..50, a
        bool, a float or a non-string name is a ConfigError naming
        ``levels``."""
        with pytest.raises(ConfigError) as info:
            exporter(levels=levels)

        assert "levels" == info.value.parameter

    @pytest.mark.parametrize("exporter", log_exporters())
    def test_valid_levels_accepted(self, exporter):
        """Every event name, its outcomes or states, level names in any
        case, custom ints and None are accepted."""
        exporter(
            levels={
                "stormwall.call.ended:cancelled": "DEBUG",
                "stormwall.attempt.ended:timeout": "Warning",
                "stormwall.circuit_breaker.state_changed:forced_open": 50,
                "stormwall.rate_limiter.allowed": 5,
                "stormwall.bulkhead.released": "critical",
                "stormwall.executor.observed": None,
                "stormwall.backend.error": "error",
            }
        )


class TestLoggerValidation:
    """The ``logger`` parameter is checked when the exporter is built."""

    @needs_structlog
    @pytest.mark.parametrize(
        "logger",
        [
            pytest.param(1, id="int"),
            pytest.param("stormwall", id="str"),
            pytest.param(logging.getLogger("x"), id="stdlib-logger"),
        ],
    )
    def test_structlog_refuses_non_loggers(self, logger):
        """A value without structlog's level methods, or a stdlib logger
        (it takes no keyword fields), is a ConfigError naming ``logger``."""
        from stormwall.exporters.structlog import StructlogExporter

        with pytest.raises(ConfigError) as info:
            StructlogExporter(logger=logger)

        assert "logger" == info.value.parameter

    @needs_structlog
    def test_structlog_custom_level_needs_log(self):
        """A numeric level with no method of its own needs ``log()``."""
        from stormwall.exporters.structlog import StructlogExporter

        class LevelMethodsOnly:
            def debug(self, event, **kw): ...
            def info(self, event, **kw): ...
            def warning(self, event, **kw): ...
            def error(self, event, **kw): ...
            def critical(self, event, **kw): ...

        StructlogExporter(logger=LevelMethodsOnly())
        with pytest.raises(ConfigError) as info:
            StructlogExporter(
                logger=LevelMethodsOnly(),
                levels={"stormwall.retry.scheduled": 25},
            )

        assert "levels" == info.value.parameter


class TestPrivacy:
    """Neither call arguments nor exception messages reach a log line."""

    def test_no_secret_anywhere(self, capture, caplog):
        """A secret argument and a secret exception message are in no
        record: only the exception type is."""
        fn = script(Boom(f"bad password {SECRET}"), Boom(SECRET))
        with capture() as (bus, logs):
            ex = ResilientExecutor(
                "svc",
                retry_policy=retry(),
                fallback=lambda error: None,
                clock=MockClock(),
                bus=bus,
            )
            ex.run("k", fn, SECRET, password=SECRET)

        assert logs.lines
        assert SECRET not in repr(logs.lines)
        assert SECRET not in caplog.text
        for raw in logs.raw:
            if isinstance(raw, logging.LogRecord):
                assert (None, ()) == (raw.exc_info, raw.args)
                assert SECRET not in raw.getMessage()
                assert SECRET not in repr(vars(raw))
        assert (
            "Boom" == logs.find("stormwall.retry.scheduled")[1]["error_type"]
        )


class TestTraceIds:
    """Trace and span ids are on the line when a span is active."""

    def test_with_and_without_span(self, capture):
        """Inside a span: its ids; outside: none."""
        sdk = pytest.importorskip("opentelemetry.sdk.trace")
        tracer = sdk.TracerProvider().get_tracer("test")
        with capture() as (bus, logs):
            ex = ResilientExecutor(
                "svc", retry_policy=retry(), clock=MockClock(), bus=bus
            )
            ex.run("outside", script(Boom(), "ok"))
            with tracer.start_as_current_span("request") as span:
                ex.run("inside", script(Boom(), "ok"))
        context = span.get_span_context()

        _, inside = logs.find("stormwall.retry.scheduled", key="inside")
        _, outside = logs.find("stormwall.retry.scheduled", key="outside")
        assert (
            format(context.trace_id, "032x"),
            format(context.span_id, "016x"),
        ) == (inside["trace_id"], inside["span_id"])
        assert set() == {"trace_id", "span_id"} & set(outside)


class TestSubscription:
    """Exporters subscribe only to what they may log, once per bus."""

    def test_unlogged_events_are_not_built(self):
        """With default levels the executors never build call or attempt
        starts or limiter grants; an all-silent exporter wants nothing."""
        bus, quiet = EventBus(), EventBus()
        LoggingExporter().attach(bus)
        LoggingExporter(levels=dict.fromkeys(_logs.DEFAULT_LEVELS)).attach(
            quiet
        )

        assert (False, False, False, True, True) == (
            bus.wants(CallStarted),
            bus.wants(AttemptStarted),
            bus.wants(LimiterAllowed),
            bus.wants(RetryScheduled),
            bus.wants(CallEnded),
        )
        assert (False, False) == (
            quiet.wants(RetryScheduled),
            quiet.wants(CallEnded),
        )

    def test_attach_twice(self, capture):
        """Attaching twice to one bus logs each line once."""
        with capture() as (bus, _):
            pass
        exporter = LoggingExporter()
        first = exporter.attach(bus)

        assert first is exporter.attach(bus)
        first.close()
        assert first is not exporter.attach(bus)


class TestStdlib:
    """The stdlib exporter: readable messages, extra, no configuration."""

    def test_message_and_extra(self, caplog):
        """Fields are rendered in the message and kept in record.stormwall."""
        with capture_stdlib(caplog) as (bus, _):
            ResilientExecutor(
                "svc", retry_policy=retry(), clock=MockClock(), bus=bus
            ).run("k", script(TimeoutError(), "ok"))

        record = next(
            r
            for r in caplog.records
            if r.stormwall["event"] == "stormwall.retry.scheduled"
        )
        assert (
            "stormwall.retry.scheduled executor=svc key=k call_id="
            in record.getMessage()
        )
        assert record.getMessage().endswith(
            "attempt=1 delay=1 error_type=TimeoutError"
        )
        assert ("stormwall.events", "svc", 1.0) == (
            record.name,
            record.stormwall["executor"],
            record.stormwall["delay"],
        )

    def test_odd_values_are_quoted(self, caplog):
        """A key with spaces or '=' is quoted, so the message stays
        unambiguous; '%' needs no escaping."""
        with capture_stdlib(caplog) as (bus, _):
            ResilientExecutor("svc", clock=MockClock(), bus=bus).run(
                "a b=c 100%", script("ok")
            )

        assert "key='a b=c 100%'" in caplog.records[-1].getMessage()

    def test_disabled_level_builds_no_record(self):
        """A logger not enabled for a line's level makes no record."""

        class Counting(logging.Logger):
            made = 0

            def makeRecord(self, *args, **kwargs):
                Counting.made += 1
                return super().makeRecord(*args, **kwargs)

        logger = Counting("counting", logging.WARNING)
        logger.propagate = False
        logger.addHandler(logging.NullHandler())
        bus = EventBus()
        LoggingExporter(logger).attach(bus)
        ex = ResilientExecutor(
            "svc", retry_policy=retry(), clock=MockClock(), bus=bus
        )

        ex.run("k", script("ok"))
        assert 0 == Counting.made
        ex.run("k", script(Boom(), "ok"))
        assert 1 == Counting.made  # the retry, at WARNING

    def test_custom_level_and_adapter(self, caplog):
        """A non-standard int level and a LoggerAdapter both work."""
        caplog.set_level(1, logger="mine")
        adapter = logging.LoggerAdapter(
            logging.getLogger("mine"), {"request": "r1"}
        )
        bus = EventBus()
        LoggingExporter(
            adapter, levels={"stormwall.retry.scheduled": 25}
        ).attach(bus)

        ResilientExecutor(
            "svc", retry_policy=retry(), clock=MockClock(), bus=bus
        ).run("k", script(Boom(), "ok"))

        assert [(25, "r1")] == [
            (r.levelno, r.request)
            for r in caplog.records
            if r.stormwall["event"] == "stormwall.retry.scheduled"
        ]

    def test_never_configures_logging(self):
        """No handler is added and no level set, on any logger."""
        root = logging.getLogger()
        before = (
            list(root.handlers),
            root.level,
            logging.getLogger("stormwall.events").handlers,
            logging.getLogger("stormwall.events").level,
            logging.getLogger("stormwall").handlers,
            logging.getLogger("stormwall").level,
        )
        bus = EventBus()
        LoggingExporter().attach(bus)
        ResilientExecutor("svc", clock=MockClock(), bus=bus).run(
            "k", script("ok")
        )

        assert before == (
            list(root.handlers),
            root.level,
            logging.getLogger("stormwall.events").handlers,
            logging.getLogger("stormwall.events").level,
            logging.getLogger("stormwall").handlers,
            logging.getLogger("stormwall").level,
        )

    def test_bad_logger(self):
        """A logger that is not a Logger or LoggerAdapter is a ConfigError."""
        with pytest.raises(ConfigError, match="logger"):
            LoggingExporter(logger="stormwall")

    def test_bad_bus(self):
        """attach() takes an EventBus or None."""
        with pytest.raises(ConfigError, match="bus"):
            LoggingExporter().attach(bus="default")


@needs_structlog
class TestStructlog:
    """The structlog exporter: event name as `event`, no configuration."""

    def test_never_configures_structlog(self):
        """Building, attaching and logging leave structlog's config alone."""
        from stormwall.exporters.structlog import StructlogExporter

        structlog.reset_defaults()
        before = structlog.get_config()
        bus = EventBus()
        StructlogExporter(logger=structlog.get_logger("x")).attach(bus)
        ResilientExecutor(
            "svc", retry_policy=retry(), clock=MockClock(), bus=bus
        ).run("k", script(TimeoutError(), "ok"))

        assert before == structlog.get_config()

    def test_custom_logger_keeps_its_context(self):
        """A bound logger given by the user keeps its bound values."""
        from stormwall.exporters.structlog import StructlogExporter

        structlog.reset_defaults()
        bus = EventBus()
        with structlog.testing.capture_logs() as entries:
            StructlogExporter(
                logger=structlog.get_logger().bind(service="api")
            ).attach(bus)
            ResilientExecutor(
                "svc", retry_policy=retry(), clock=MockClock(), bus=bus
            ).run("k", script(Boom(), "ok"))

        retried = next(
            e for e in entries if e["event"] == "stormwall.retry.scheduled"
        )
        assert ("api", "warning", "svc") == (
            retried["service"],
            retried["log_level"],
            retried["executor"],
        )
