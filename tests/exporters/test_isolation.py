"""
A failing exporter (logging, structlog, prometheus or a bare handler)
never changes what a call returns or raises, nor silences the others.
"""

from __future__ import annotations

import io
import logging

import pytest

from stormwall import CircuitBreaker, MockClock, RetryPolicy
from stormwall.exporters.logging import LoggingExporter


class Boom(Exception):
    pass


class BackendDown(Exception):
    pass


def raising_handler(event):
    raise BackendDown


def logging_exporter(monkeypatch):
    """A LoggingExporter whose logger has a handler that raises."""

    class Raising(logging.Handler):
        def emit(self, record):
            raise BackendDown

    logger = logging.getLogger("isolation.raising")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "handlers", [Raising()])
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    monkeypatch.setattr(logger.manager, "disable", 0)
    logger.manager._clear_cache()
    return LoggingExporter(logger)


def structlog_exporter(monkeypatch):
    """A StructlogExporter whose processor chain raises."""
    structlog = pytest.importorskip("structlog")
    from stormwall.exporters.structlog import StructlogExporter

    def processor(logger, method, event_dict):
        raise BackendDown

    logger = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()), processors=[processor]
    )
    return StructlogExporter(logger)


def prometheus_exporter(monkeypatch):
    """A PrometheusExporter whose metric writes raise."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, values

    from stormwall.exporters.prometheus import PrometheusExporter

    def broken(self, *args):
        raise BackendDown

    exporter = PrometheusExporter(CollectorRegistry())
    monkeypatch.setattr(values.MutexValue, "inc", broken)
    monkeypatch.setattr(values.MutexValue, "set", broken)
    return exporter


class Plain:
    """A bare handler that raises on every event."""

    def attach(self, bus):
        return bus.subscribe(raising_handler)


@pytest.fixture(
    params=[
        pytest.param(lambda mp: Plain(), id="handler"),
        pytest.param(logging_exporter, id="logging"),
        pytest.param(structlog_exporter, id="structlog"),
        pytest.param(prometheus_exporter, id="prometheus"),
    ]
)
def broken(request, monkeypatch):
    """An exporter (or handler) whose backend raises."""
    return request.param(monkeypatch)


def build(harness, broken):
    ex = harness.executor(
        retry_policy=RetryPolicy(max_attempts=2, base_delay=1, jitter=None),
        circuit_breaker=CircuitBreaker("b", failure_threshold=5),
        clock=MockClock(),
    )
    broken.attach(ex.bus)
    return ex


def bus_reports(caplog):
    return [r for r in caplog.records if r.name == "stormwall"]


class TestFaultIsolation:
    """A failing exporter never changes what a call returns or raises."""

    def test_value_unchanged(self, harness, broken, caplog):
        """A retried call still returns its value."""
        ex = build(harness, broken)

        assert "ok" == harness.run(ex, "k", [Boom(), "ok"])
        assert "ok" == harness.run(ex, "k", ["ok"])

        reports = bus_reports(caplog)
        assert [logging.ERROR] == [r.levelno for r in reports]
        assert isinstance(reports[0].exc_info[1], BackendDown)
        assert 1 < ex.bus.statistics().handler_errors

    def test_exception_unchanged(self, harness, broken, caplog):
        """A failing call raises the function's own exception, untouched."""
        ex = build(harness, broken)
        last = Boom("last")

        with pytest.raises(Boom) as info:
            harness.run(ex, "k", [Boom("first"), last])

        assert last is info.value
        assert info.value.__cause__ is None
        assert 1 == len(bus_reports(caplog))

    def test_other_subscribers_still_hear(self, harness, broken):
        """Subscribers after the broken one still receive every event."""
        ex = build(harness, broken)
        heard = []
        ex.bus.subscribe(heard.append)

        harness.run(ex, "k", ["ok"])

        assert [e.name for e in ex.recorder.events] == [e.name for e in heard]
        assert "stormwall.call.ended" == heard[-1].name
