"""
Pull metrics (issue 18): counted in process, read at collection time.

Each state gauge on both paths (a real ``prometheus_client`` registry and a
real OpenTelemetry SDK reader), no NaN anywhere, a scrape, a collection and
``statistics()`` agreeing by construction, counting switched on only while
a pull exporter is attached, a garbage-collected breaker leaving the
scrape, and log exporters subscribing to nothing their levels filter out.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import math

import pytest


pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")
structlog = pytest.importorskip("structlog")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from stormwall import (  # noqa: E402
    Bulkhead,
    CircuitBreaker,
    EventBus,
    LeakyBucket,
    MockClock,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
    tally,
)
from stormwall.exporters.otel import MetricsExporter  # noqa: E402
from stormwall.exporters.prometheus import PrometheusExporter  # noqa: E402
from stormwall.exporters.structlog import StructlogExporter  # noqa: E402


class Boom(Exception):
    pass


class Paths:
    """Both pull paths attached to one bus."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.registry = CollectorRegistry()
        self.prometheus = PrometheusExporter(self.registry)
        self.prometheus.attach(self.bus)
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader], shutdown_on_exit=False
        )
        MetricsExporter(self.provider).attach(self.bus)

    def scrape(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def collect(self) -> dict[tuple[str, frozenset], float]:
        found = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        value = getattr(p, "value", None)
                        if value is None:
                            value = p.sum
                        found[
                            (metric.name, frozenset(p.attributes.items()))
                        ] = value
        return found


@pytest.fixture
def paths():
    p = Paths()
    yield p
    p.provider.shutdown()


def point(collected, name, **labels):
    return collected.get((name, frozenset(labels.items())))


def fail_or_pass(failures, calls):
    """A function that fails ``failures`` of its first ``calls`` calls."""
    script = iter([Boom()] * failures + ["ok"] * (calls - failures))

    def fn():
        step = next(script)
        if isinstance(step, Exception):
            raise step
        return step

    return fn


class TestGauges:
    """Each state gauge, on a scrape and on an OTel collection."""

    def test_failure_rate(self, paths):
        """A 20-call window with 5 failures shows a failure rate of 0.25."""
        breaker = CircuitBreaker(
            "win",
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=20,
            minimum_calls=20,
        )
        ex = ResilientExecutor(
            "svc", circuit_breaker=breaker, clock=MockClock(), bus=paths.bus
        )
        fn = fail_or_pass(5, 20)

        for _ in range(20):
            with contextlib.suppress(Boom):
                ex.run("k", fn)

        assert 0.25 == breaker.statistics().failure_rate
        assert 0.25 == paths.scrape(
            "stormwall_circuit_breaker_failure_rate", breaker="win"
        )
        assert 0.25 == point(
            paths.collect(),
            "stormwall.circuit_breaker.failure_rate",
            breaker="win",
        )

    def test_rates_absent_below_minimum_calls(self, paths):
        """Below minimum_calls there is no rate: absent, never NaN."""
        breaker = CircuitBreaker(
            "young",
            failure_rate_threshold=0.5,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.5,
            window_size=20,
            minimum_calls=10,
        )
        ex = ResilientExecutor(
            "svc", circuit_breaker=breaker, clock=MockClock(), bus=paths.bus
        )

        ex.run("k", lambda: "ok")

        text = generate_latest(paths.registry).decode()
        assert "stormwall_circuit_breaker_failure_rate{" not in text
        assert "stormwall_circuit_breaker_slow_call_rate{" not in text
        assert "NaN" not in text
        collected = paths.collect()
        assert not any(math.isnan(v) for v in collected.values())
        assert None is point(
            collected,
            "stormwall.circuit_breaker.failure_rate",
            breaker="young",
        )

    def test_thresholds_beside_the_rates(self, paths):
        """
        Each rate rule's threshold is a gauge next to its rate, so a
        dashboard draws where the breaker trips and an alert can fire
        before it does, whatever each breaker's threshold; a breaker with
        no rate rule has no threshold series.
        """
        rated = CircuitBreaker(
            "rated",
            failure_threshold=None,
            failure_rate_threshold=0.3,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.9,
        )
        plain = CircuitBreaker("plain", failure_threshold=5)
        executors = [
            ResilientExecutor(
                name, circuit_breaker=b, clock=MockClock(), bus=paths.bus
            )
            for name, b in (("a", rated), ("b", plain))
        ]
        for ex in executors:
            ex.run("k", lambda: "ok")

        collected = paths.collect()
        for name, value in (
            ("failure_rate_threshold", 0.3),
            ("slow_call_rate_threshold", 0.9),
        ):
            assert value == paths.scrape(
                f"stormwall_circuit_breaker_{name}", breaker="rated"
            )
            assert value == point(
                collected,
                f"stormwall.circuit_breaker.{name}",
                breaker="rated",
            )
            assert None is paths.scrape(
                f"stormwall_circuit_breaker_{name}", breaker="plain"
            )
            assert None is point(
                collected,
                f"stormwall.circuit_breaker.{name}",
                breaker="plain",
            )

    def test_thresholds_on_the_key_label_path(self):
        """With key labels (the event-driven path) the thresholds are
        read at scrape time too."""
        bus, registry = EventBus(), CollectorRegistry()
        PrometheusExporter(registry, key_label_limit=5).attach(bus)
        breaker = CircuitBreaker(
            "keyed", failure_threshold=None, failure_rate_threshold=0.6
        )
        ex = ResilientExecutor(
            "svc", circuit_breaker=breaker, clock=MockClock(), bus=bus
        )

        ex.run("k", lambda: "ok")

        assert 0.6 == registry.get_sample_value(
            "stormwall_circuit_breaker_failure_rate_threshold",
            {"breaker": "keyed"},
        )

    def test_slow_call_rate(self, paths):
        """Slow calls over the window show as a rate on both paths."""
        clock = MockClock()
        breaker = CircuitBreaker(
            "slow",
            failure_threshold=None,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.9,
            window_size=4,
            minimum_calls=4,
        )
        ex = ResilientExecutor(
            "svc", circuit_breaker=breaker, clock=clock, bus=paths.bus
        )

        for seconds in (2.0, 0.0, 0.0, 0.0):
            ex.run("k", lambda s=seconds: clock.sleep(s))

        assert 0.25 == paths.scrape(
            "stormwall_circuit_breaker_slow_call_rate", breaker="slow"
        )
        assert 0.25 == point(
            paths.collect(),
            "stormwall.circuit_breaker.slow_call_rate",
            breaker="slow",
        )

    def test_available_permits_without_a_call(self, paths):
        """Spending 10 permits outside any call shows on the next scrape
        and collection (a global tier only)."""
        bucket = TokenBucket(
            100, 1e-9, name="global", per_key=False, clock=MockClock()
        )
        ResilientExecutor("svc", limiter=bucket, bus=paths.bus)

        assert bucket.try_acquire("anyone", cost=10)

        assert 90 == pytest.approx(
            paths.scrape(
                "stormwall_rate_limiter_available_permits", limiter="global"
            )
        )
        assert 90 == pytest.approx(
            point(
                paths.collect(),
                "stormwall.rate_limiter.available_permits",
                limiter="global",
            )
        )

    @pytest.mark.parametrize(
        ("make", "spend", "expected"),
        [
            pytest.param(
                lambda c: SlidingWindow(10, 60, per_key=False, clock=c),
                3,
                7,
                id="sliding-window",
            ),
            pytest.param(
                lambda c: LeakyBucket(1, per_key=False, clock=c),
                1,
                0,
                id="leaky-bucket-busy",
            ),
            pytest.param(
                lambda c: LeakyBucket(1, per_key=False, clock=c),
                0,
                1,
                id="leaky-bucket-idle",
            ),
        ],
    )
    def test_available_permits_of_every_global_limiter(
        self, paths, make, spend, expected
    ):
        """A global sliding window shows its room left in the window, a
        global leaky bucket 1 when a request would go at once, else 0, on
        both paths."""
        limiter = make(MockClock())
        ResilientExecutor("svc", limiter=limiter, bus=paths.bus)
        if spend:
            assert limiter.try_acquire("anyone", cost=spend)
        name = limiter.name

        assert expected == paths.scrape(
            "stormwall_rate_limiter_available_permits", limiter=name
        )
        assert expected == point(
            paths.collect(),
            "stormwall.rate_limiter.available_permits",
            limiter=name,
        )

    def test_available_permits_per_key_under_the_key_label_cap(self):
        """With key_label_limit, the permits gauge has a key label: a
        per-key limiter's permits for each key the label names (never
        "__other__"), a global one's under the key ""."""
        registry = CollectorRegistry()
        bus = EventBus()
        PrometheusExporter(registry, key_label_limit=2).attach(bus)
        clock = MockClock()
        keyed = TokenBucket(10, 1e-9, name="keyed", clock=clock)
        window = SlidingWindow(5, 60, name="global", per_key=False)
        ex = ResilientExecutor("svc", limiter=keyed, clock=clock, bus=bus)
        ResilientExecutor("other", limiter=window, clock=clock, bus=bus)
        for key in ("a", "a", "b", "c"):
            ex.run(key, lambda: 1)
        assert keyed.try_acquire("b", cost=4)
        assert window.try_acquire("x", cost=2)

        def permits(**labels):
            return registry.get_sample_value(
                "stormwall_rate_limiter_available_permits", labels
            )

        assert 8 == pytest.approx(permits(limiter="keyed", key="a"))
        assert 5 == pytest.approx(permits(limiter="keyed", key="b"))
        assert None is permits(limiter="keyed", key="c")
        assert None is permits(limiter="keyed", key="__other__")
        assert 3 == permits(limiter="global", key="")
        assert "NaN" not in generate_latest(registry).decode()

    def test_per_key_limiter_has_no_permit_gauge(self, paths):
        """A per-key limiter has no global permit count: absent."""
        ResilientExecutor(
            "svc", limiter=TokenBucket(5, 1, name="keyed"), bus=paths.bus
        ).run("k", lambda: 1)

        assert None is paths.scrape(
            "stormwall_rate_limiter_available_permits", limiter="keyed"
        )

    def test_bulkhead_limit_and_in_flight(self, paths):
        """The bulkhead's cap and its calls in flight, read from it."""
        bulkhead = Bulkhead(3, name="pool")
        ex = ResilientExecutor("svc", bulkhead=bulkhead, bus=paths.bus)

        def inside():
            return (
                paths.scrape("stormwall_bulkhead_in_flight", bulkhead="pool"),
                point(
                    paths.collect(),
                    "stormwall.bulkhead.in_flight",
                    bulkhead="pool",
                ),
            )

        assert (1, 1) == ex.run("k", inside)
        assert 3 == paths.scrape("stormwall_bulkhead_limit", bulkhead="pool")
        assert 3 == point(
            paths.collect(), "stormwall.bulkhead.limit", bulkhead="pool"
        )

    def test_retry_budget_available(self, paths):
        """The executor's retry budget: retries it would allow now."""
        clock = MockClock()
        budget = RetryBudget(
            ratio=0.5, min_per_second=0.1, ttl=10, clock=clock
        )
        ex = ResilientExecutor(
            "svc",
            retry_policy=RetryPolicy(
                max_attempts=2, base_delay=0, jitter=None, budget=budget
            ),
            clock=clock,
            bus=paths.bus,
        )

        for _ in range(4):
            ex.run("k", lambda: 1)

        available = budget.statistics().available
        assert available == paths.scrape(
            "stormwall_retry_budget_available", executor="svc"
        )
        assert available == point(
            paths.collect(), "stormwall.retry_budget.available", executor="svc"
        )


class TestByConstruction:
    """A scrape, a collection and statistics() read the same numbers."""

    def test_scrape_collect_and_statistics_agree(self, paths):
        """Counts of calls, limiter decisions, breaker rejections and
        bulkhead rejections agree everywhere."""
        clock = MockClock()
        bucket = TokenBucket(3, 1e-9, name="tb", clock=clock)
        breaker = CircuitBreaker("b", failure_threshold=2)
        ex = ResilientExecutor(
            "svc",
            limiter=bucket,
            limiter_timeout=0,
            circuit_breaker=breaker,
            clock=clock,
            bus=paths.bus,
        )
        for fn in (lambda: 1, fail_or_pass(1, 1), fail_or_pass(1, 1)):
            with contextlib.suppress(Boom):
                ex.run("k", fn)
        for _ in range(2):
            with contextlib.suppress(Exception):  # rejected, and counted
                ex.run("k", lambda: 1)

        collected = paths.collect()
        limiter = bucket.statistics()
        for result in ("allowed", "waited", "rejected"):
            expected = getattr(limiter, result)
            assert expected == paths.scrape(
                "stormwall_rate_limiter_requests_total",
                limiter="tb",
                result=result,
            )
            assert expected == point(
                collected,
                "stormwall.rate_limiter.requests",
                limiter="tb",
                result=result,
            )
        rejected = breaker.statistics().rejected
        assert rejected == paths.scrape(
            "stormwall_circuit_breaker_rejections_total", breaker="b"
        )
        assert rejected == point(
            collected, "stormwall.circuit_breaker.rejections", breaker="b"
        )
        for outcome in ("success", "failure", "rejected"):
            assert paths.scrape(
                "stormwall_calls_total", executor="svc", outcome=outcome
            ) == point(
                collected, "stormwall.calls", executor="svc", outcome=outcome
            )

    def test_histograms_agree(self, paths):
        """Duration counts and sums match on both paths."""
        clock = MockClock()
        ex = ResilientExecutor("svc", clock=clock, bus=paths.bus)
        for seconds in (0.003, 0.2, 0.2, 3.0):
            ex.run("k", lambda s=seconds: clock.sleep(s))

        total = paths.scrape(
            "stormwall_call_duration_seconds_sum",
            executor="svc",
            outcome="success",
        )
        assert 3.403 == pytest.approx(total)
        assert 3.403 == pytest.approx(
            point(
                paths.collect(),
                "stormwall.call.duration",
                executor="svc",
                outcome="success",
            )
        )
        assert 3 == paths.scrape(
            "stormwall_call_duration_seconds_bucket",
            executor="svc",
            outcome="success",
            le="0.25",
        )


class TestCounting:
    """Counting runs only while a pull exporter is attached."""

    def test_switched_on_by_attach_off_by_close(self):
        """No exporter: no counting; attached: counted; closed: stopped,
        and the numbers are kept."""
        bus = EventBus()
        ex = ResilientExecutor("svc", bus=bus)
        ex.run("k", lambda: 1)
        assert None is bus._tally

        sub = tally.attach(bus)
        ex.run("k", lambda: 1)
        sub.close()
        ex.run("k", lambda: 1)

        calls = tally.read(bus).tally.calls
        assert 1 == sum(calls[("svc", "success")][: len(tally.BUCKETS) + 1])
        assert None is bus._tally

    @pytest.mark.parametrize("listened", [False, True])
    @pytest.mark.parametrize("switch", ["on", "off"])
    def test_a_running_call_is_counted_whole_or_not_at_all(
        self, listened, switch
    ):
        """Counting switched on (or off) while a call runs: its retries
        follow its call and attempts, like a trace attached mid-call,
        which traces the next call: never a retry without its call."""
        bus = EventBus()
        if listened:
            bus.subscribe(lambda event: None)
        sub = tally.attach(bus) if switch == "off" else None
        ex = ResilientExecutor(
            "svc",
            retry_policy=RetryPolicy(
                max_attempts=3,
                base_delay=0,
                budget=RetryBudget(ratio=0.01, min_per_second=0.1, ttl=10.0),
            ),
            bus=bus,
            clock=MockClock(),
        )
        calls = []

        def switch_then_fail():
            calls.append(1)
            if len(calls) == 1:
                nonlocal sub
                if sub is None:
                    sub = tally.attach(bus)
                else:
                    sub.close()
            raise Boom

        with pytest.raises(Boom):
            ex.run("k", switch_then_fail)  # a retry, then one denied
        assert len(calls) == 2
        counts = tally.read(bus).tally
        counted = ("svc", "failure") in counts.calls
        assert counted is (switch == "off")
        assert (("svc", "Boom") in counts.retries) is counted
        assert ("svc" in counts.exhausted) is counted
        if sub is not None:
            sub.close()

    def test_no_subscriber_means_no_call_context(self):
        """A pull exporter does not make executors build call contexts:
        the bus still has no (loud) subscriber."""
        paths = Paths()
        try:
            assert () == paths.bus._subs
        finally:
            paths.provider.shutdown()

    def test_collected_breaker_leaves_the_scrape(self, paths):
        """A breaker nobody holds leaves the state gauges; its counters
        stay (a counter never goes backwards)."""
        breaker = CircuitBreaker("gone", bus=paths.bus)
        breaker.force_open()
        assert 1 == paths.scrape(
            "stormwall_circuit_breaker_state",
            breaker="gone",
            state="forced_open",
        )

        del breaker
        gc.collect()

        assert None is paths.scrape(
            "stormwall_circuit_breaker_state",
            breaker="gone",
            state="forced_open",
        )
        assert 1 == paths.scrape(
            "stormwall_circuit_breaker_transitions_total",
            breaker="gone",
            from_state="closed",
            to_state="forced_open",
        )


class TestLogFiltering:
    """A log exporter subscribes to nothing its levels filter out."""

    def test_filtered_types_are_not_subscribed(self):
        """Behind a filtering logger at ERROR, only types that can log at
        ERROR or above are subscribed (a breaker opening)."""
        from stormwall.events import (
            AttemptEnded,
            BreakerStateChanged,
            CallEnded,
        )

        logger = structlog.wrap_logger(
            structlog.PrintLogger(io.StringIO()),
            wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        ).bind()
        bus = EventBus()

        sub = StructlogExporter(logger).attach(bus)

        assert BreakerStateChanged in sub.event_types
        assert CallEnded not in sub.event_types
        assert AttemptEnded not in sub.event_types

    def test_everything_filtered_subscribes_quietly(self):
        """When nothing can pass, the bus has no subscriber that makes
        executors build events, and a call logs nothing."""
        out = io.StringIO()
        logger = structlog.wrap_logger(
            structlog.PrintLogger(out),
            wrapper_class=structlog.make_filtering_bound_logger(
                logging.CRITICAL
            ),
        ).bind()
        bus = EventBus()

        StructlogExporter(logger).attach(bus)
        ResilientExecutor("svc", bus=bus).run("k", lambda: 1)

        assert () == bus._subs
        assert "" == out.getvalue()

    def test_successes_below_the_level_build_nothing(self):
        """Behind a filtering logger at INFO, calls and attempts are taken
        only for the outcomes that log at INFO or above: a success takes
        the quick way in and logs nothing, a failure still logs its lines
        with the call's identity."""
        from stormwall import MockClock, RetryPolicy
        from stormwall._pipeline import QuickCall
        from stormwall.events import AttemptEnded, CallEnded

        out = io.StringIO()
        logger = structlog.wrap_logger(
            structlog.PrintLogger(out),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.KeyValueRenderer(sort_keys=True),
            ],
        ).bind()
        bus = EventBus()
        sub = StructlogExporter(logger).attach(bus)
        ex = ResilientExecutor(
            "svc",
            retry_policy=RetryPolicy(max_attempts=2, base_delay=0),
            clock=MockClock(),
            bus=bus,
        )

        assert "success" not in sub.filters[CallEnded].outcomes
        assert "success" not in sub.filters[AttemptEnded].outcomes
        assert 1 == ex.run("k", lambda: 1)
        assert QuickCall is ex._pipeline.enter("k").__class__
        assert 1 == ex.run("k", lambda: 1)
        assert "" == out.getvalue()

        with pytest.raises(ValueError, match="boom"):
            ex.run("k", _boom)

        lines = out.getvalue().splitlines()
        assert [
            "event='stormwall.attempt.ended'",
            "event='stormwall.retry.scheduled'",
            "event='stormwall.attempt.ended'",
            "event='stormwall.call.ended'",
        ] == [
            next(f for f in line.split() if f.startswith("event="))
            for line in lines
        ]
        assert all("call_id=" in line for line in lines)


def _boom():
    raise ValueError("boom")
