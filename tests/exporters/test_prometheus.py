"""
The prometheus_client exporter: every metric of the vocabulary, series
created at 0 when first seen, capped key labels, registries, multiprocess
mode, and `serve_metrics`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest


prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from stormwall import (  # noqa: E402
    AsyncResilientExecutor,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)
from stormwall.exporters import _vocabulary as vocab  # noqa: E402
from stormwall.exporters.prometheus import (  # noqa: E402
    PrometheusExporter,
    serve_metrics,
)


class Boom(Exception):
    pass


def script(*items):
    """A function returning or raising ``items`` in turn."""
    it = iter(items)

    def fn():
        item = next(it)
        if isinstance(item, BaseException):
            raise item
        return item

    return fn


def retry(**kwargs):
    kwargs.setdefault("max_attempts", 2)
    kwargs.setdefault("base_delay", 1.0)
    kwargs.setdefault("jitter", None)
    return RetryPolicy(**kwargs)


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def bus():
    return EventBus()


@pytest.fixture
def exporter(registry, bus):
    exp = PrometheusExporter(registry)
    exp.attach(bus)
    return exp


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def series(registry, name):
    """Every sample of ``name`` as {frozenset(labels): value}."""
    return {
        frozenset(s.labels.items()): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def run_scenario(bus, clock):
    """Every kind of event, once or more, through synchronous executors."""
    svc = ResilientExecutor(
        "svc",
        circuit_breaker=CircuitBreaker(
            "b", failure_threshold=2, recovery_timeout=10
        ),
        retry_policy=retry(),
        clock=clock,
        bus=bus,
    )
    assert "ok" == svc.run("k", script("ok"))
    assert "ok" == svc.run("k", script(Boom(), "ok"))  # retried once
    with pytest.raises(Boom):
        svc.run("k", script(Boom(), Boom()))  # trips the breaker
    with pytest.raises(CircuitOpenError):
        svc.run("k", script("never"))
    clock.advance(10)
    assert "ok" == svc.run("k", script("ok"))  # probe closes it

    bucket = TokenBucket(1, 1, name="tb")
    limited = ResilientExecutor(
        "limited", limiter=bucket, clock=clock, bus=bus
    )
    strict = ResilientExecutor(
        "strict", limiter=bucket, limiter_timeout=0, clock=clock, bus=bus
    )
    limited.run("k", script(1))  # allowed
    limited.run("k", script(2))  # waits 1 s for the token
    with pytest.raises(RateLimitedError):
        strict.run("k", script(3))

    bulk = ResilientExecutor(
        "bulk", bulkhead=Bulkhead(1, name="bh"), clock=clock, bus=bus
    )

    def hold():
        with pytest.raises(BulkheadFullError):
            bulk.run("k", script("never"))
        return "held"

    assert "held" == bulk.run("k", hold)

    budgeted = ResilientExecutor(
        "budgeted",
        retry_policy=retry(
            budget=RetryBudget(ratio=0.01, min_per_second=0, clock=clock)
        ),
        clock=clock,
        bus=bus,
    )
    with pytest.raises(Boom):
        budgeted.run("k", script(Boom(), "never"))

    fallback = ResilientExecutor(
        "fb", fallback=lambda error: "fallback", clock=clock, bus=bus
    )
    assert "fallback" == fallback.run("k", script(Boom()))
    emit_backend_errors(bus, clock)


def emit_backend_errors(bus, clock):
    """A shared backend failing: a failed round trip, then a decision
    taken while it cools down (as a Redis limiter reports them)."""
    from stormwall.events import BackendError

    for cooldown in (False, True):
        bus.emit(
            BackendError(
                time=clock.now(),
                component="shared",
                backend="redis",
                operation="acquire",
                policy="fail_open",
                error=ConnectionError("down"),
                cooldown=cooldown,
            )
        )


class TestScenario:
    """A scripted scenario shows up in every metric of the table."""

    def test_calls_attempts_retries(self, registry, bus, exporter):
        """Calls and attempts are counted by outcome, retries by error type."""
        run_scenario(bus, MockClock())

        assert {
            "success": 3,
            "failure": 1,
            "rejected": 1,
            "fallback": 0,
            "cancelled": 0,
        } == {
            o: value(
                registry, "stormwall_calls_total", executor="svc", outcome=o
            )
            for o in vocab.CALL_OUTCOMES
        }
        assert {
            "success": 3,
            "failure": 3,
            "timeout": 0,
            "cancelled": 0,
        } == {
            o: value(
                registry, "stormwall_attempts_total", executor="svc", outcome=o
            )
            for o in vocab.ATTEMPT_OUTCOMES
        }
        assert 2 == value(
            registry,
            "stormwall_retries_total",
            executor="svc",
            error_type="Boom",
        )
        assert 1 == value(
            registry,
            "stormwall_calls_total",
            executor="fb",
            outcome="fallback",
        )
        assert 1 == value(
            registry,
            "stormwall_calls_total",
            executor="strict",
            outcome="rejected",
        )

    def test_durations(self, registry, bus, exporter):
        """Call durations include the back-off; attempts are timed alone."""
        run_scenario(bus, MockClock())

        # the retried call slept 1 s, the failed one 1 s, others 0
        assert 2.0 == value(
            registry,
            "stormwall_call_duration_seconds_sum",
            executor="svc",
            outcome="success",
        ) + value(
            registry,
            "stormwall_call_duration_seconds_sum",
            executor="svc",
            outcome="failure",
        )
        assert 3 == value(
            registry,
            "stormwall_call_duration_seconds_count",
            executor="svc",
            outcome="success",
        )
        assert 6 == sum(
            value(
                registry,
                "stormwall_attempt_duration_seconds_count",
                executor="svc",
                outcome=o,
            )
            for o in ("success", "failure")
        )

    def test_breaker(self, registry, bus, exporter):
        """A trip, a rejection and a recovery: transitions, rejections and a
        state gauge back at closed."""
        run_scenario(bus, MockClock())

        assert {"closed": 1, "open": 0, "half_open": 0} == {
            s: value(
                registry,
                "stormwall_circuit_breaker_state",
                breaker="b",
                state=s,
            )
            for s in ("closed", "open", "half_open")
        }
        transitions = {
            pair: value(
                registry,
                "stormwall_circuit_breaker_transitions_total",
                breaker="b",
                from_state=pair[0],
                to_state=pair[1],
            )
            for pair in vocab.BREAKER_TRANSITION_PAIRS
        }
        assert {
            ("closed", "open"): 1,
            ("open", "half_open"): 1,
            ("half_open", "closed"): 1,
        } == {pair: n for pair, n in transitions.items() if n}
        assert 1 == value(
            registry, "stormwall_circuit_breaker_rejections_total", breaker="b"
        )

    def test_limiter(self, registry, bus, exporter):
        """Allowed, waited and rejected are counted; the wait is timed."""
        run_scenario(bus, MockClock())

        assert {"allowed": 1, "waited": 1, "rejected": 1} == {
            r: value(
                registry,
                "stormwall_rate_limiter_requests_total",
                limiter="tb",
                result=r,
            )
            for r in vocab.LIMITER_RESULTS
        }
        assert (1, 1.0) == (
            value(
                registry,
                "stormwall_rate_limiter_wait_duration_seconds_count",
                limiter="tb",
            ),
            value(
                registry,
                "stormwall_rate_limiter_wait_duration_seconds_sum",
                limiter="tb",
            ),
        )

    def test_bulkhead_and_budget(self, registry, bus, exporter):
        """A full bulkhead and an empty retry budget are counted; in_flight
        is back at 0."""
        run_scenario(bus, MockClock())

        assert 1 == value(
            registry, "stormwall_bulkhead_rejections_total", bulkhead="bh"
        )
        assert 0 == value(
            registry, "stormwall_bulkhead_in_flight", bulkhead="bh"
        )
        assert 1 == value(
            registry,
            "stormwall_retry_budget_exhausted_total",
            executor="budgeted",
        )

    def test_in_flight_while_inside(self, registry, bus, exporter):
        """The in_flight gauge counts the calls inside the bulkhead."""
        ex = ResilientExecutor(
            "bulk", bulkhead=Bulkhead(2, name="bh"), bus=bus
        )

        def inside():
            return value(
                registry, "stormwall_bulkhead_in_flight", bulkhead="bh"
            )

        assert 1 == ex.run("k", inside)
        assert 0 == inside()

    def test_every_metric_exposed(self, registry, bus, exporter):
        """The text exposition has every metric of the table, with its type,
        help text and labels."""
        run_scenario(bus, MockClock())
        text = generate_latest(registry).decode()

        for spec in vocab.METRICS:
            assert f"# TYPE {spec.prometheus_name} {spec.kind}" in text
            assert f"# HELP {spec.prometheus_name} {spec.description}" in text
            samples = [
                s
                for m in registry.collect()
                for s in m.samples
                if s.name.startswith(
                    spec.prometheus_name.removesuffix("_total")
                )
                and not s.name.endswith("_created")
            ]
            assert samples, spec.prometheus_name
            for s in samples:
                assert set(spec.labels) == set(s.labels) - {"le"}

    def test_histogram_buckets(self, registry, bus, exporter):
        """Duration histograms use the shared seconds-shaped buckets."""
        run_scenario(bus, MockClock())

        for name in (
            "stormwall_call_duration_seconds",
            "stormwall_attempt_duration_seconds",
            "stormwall_rate_limiter_wait_duration_seconds",
        ):
            bounds = sorted(
                {
                    float(dict(labels)["le"])
                    for labels in series(registry, name + "_bucket")
                }
            )
            assert [*vocab.DURATION_BUCKETS, float("inf")] == bounds

    def test_sync_and_async_agree(self, harness):
        """Both executors produce the same samples for the same script."""
        registry = CollectorRegistry()
        exp = PrometheusExporter(registry)
        ex = harness.executor(
            retry_policy=retry(max_attempts=3),
            circuit_breaker=CircuitBreaker("b"),
            clock=MockClock(),
        )
        exp.attach(ex.bus)

        harness.run(ex, "k", [Boom(), "ok"])

        assert {
            "calls": 1,
            "attempts_failure": 1,
            "attempts_success": 1,
            "retries": 1,
            "duration": 1.0,
        } == {
            "calls": value(
                registry,
                "stormwall_calls_total",
                executor="svc",
                outcome="success",
            ),
            "attempts_failure": value(
                registry,
                "stormwall_attempts_total",
                executor="svc",
                outcome="failure",
            ),
            "attempts_success": value(
                registry,
                "stormwall_attempts_total",
                executor="svc",
                outcome="success",
            ),
            "retries": value(
                registry,
                "stormwall_retries_total",
                executor="svc",
                error_type="Boom",
            ),
            "duration": value(
                registry,
                "stormwall_call_duration_seconds_sum",
                executor="svc",
                outcome="success",
            ),
        }


class TestSeriesKnownInAdvance:
    """Series whose labels are known in advance exist at 0 from first use."""

    def test_untripped_breaker_state(self, registry, bus, exporter):
        """A breaker that never tripped shows closed = 1, the others 0."""
        ex = ResilientExecutor(
            "calm", circuit_breaker=CircuitBreaker("quiet"), bus=bus
        )

        ex.run("k", script("ok"))

        assert {s: float(s == "closed") for s in vocab.BREAKER_STATES} == {
            s: value(
                registry,
                "stormwall_circuit_breaker_state",
                breaker="quiet",
                state=s,
            )
            for s in vocab.BREAKER_STATES
        }

    def test_counters_zeroed_on_first_call(self, registry, bus, exporter):
        """One successful call creates every known counter series at 0."""
        ex = ResilientExecutor(
            "svc",
            circuit_breaker=CircuitBreaker("b"),
            limiter=TokenBucket(10, 10, name="tb"),
            bulkhead=Bulkhead(2, name="bh"),
            bus=bus,
        )

        ex.run("k", script("ok"))

        expected_zero = [
            *(
                ("stormwall_calls_total", {"executor": "svc", "outcome": o})
                for o in vocab.CALL_OUTCOMES
                if o != "success"
            ),
            *(
                ("stormwall_attempts_total", {"executor": "svc", "outcome": o})
                for o in vocab.ATTEMPT_OUTCOMES
                if o != "success"
            ),
            *(
                (
                    "stormwall_circuit_breaker_transitions_total",
                    {"breaker": "b", "from_state": f, "to_state": t},
                )
                for f, t in vocab.BREAKER_TRANSITION_PAIRS
            ),
            ("stormwall_circuit_breaker_rejections_total", {"breaker": "b"}),
            *(
                (
                    "stormwall_rate_limiter_requests_total",
                    {"limiter": "tb", "result": r},
                )
                for r in vocab.LIMITER_RESULTS
                if r != "allowed"
            ),
            ("stormwall_bulkhead_rejections_total", {"bulkhead": "bh"}),
            ("stormwall_bulkhead_in_flight", {"bulkhead": "bh"}),
            ("stormwall_retry_budget_exhausted_total", {"executor": "svc"}),
        ]
        assert [0.0] * len(expected_zero) == [
            registry.get_sample_value(name, labels)
            for name, labels in expected_zero
        ]

    def test_cancelled_series_born_at_zero(self, registry, bus, exporter):
        """The cancelled calls and attempts series exist at 0 from the
        executor's first call, so rate() sees the first cancellation."""
        ex = ResilientExecutor("svc", bus=bus, clock=MockClock())

        ex.run("k", script("ok"))

        assert [0.0, 0.0] == [
            value(registry, name, executor="svc", outcome="cancelled")
            for name in ("stormwall_calls_total", "stormwall_attempts_total")
        ]

        with pytest.raises(KeyboardInterrupt):
            ex.run("k", script(KeyboardInterrupt()))

        assert [1.0, 1.0] == [
            value(registry, name, executor="svc", outcome="cancelled")
            for name in ("stormwall_calls_total", "stormwall_attempts_total")
        ]

    def test_composite_tiers_zeroed(self, registry, bus, exporter):
        """Each tier of a composite limiter gets its zeroed series."""
        from stormwall import CompositeLimiter

        ex = ResilientExecutor(
            "svc",
            limiter=CompositeLimiter(
                TokenBucket(10, 10, name="a"), TokenBucket(10, 10, name="b")
            ),
            bus=bus,
        )

        ex.run("k", script("ok"))

        assert [0.0, 0.0] == [
            value(
                registry,
                "stormwall_rate_limiter_requests_total",
                limiter=name,
                result="rejected",
            )
            for name in ("a", "b")
        ]

    def test_forced_transition_without_a_call(self, registry, bus, exporter):
        """A breaker first seen through a forced transition gets its state
        series and its zeroed transitions."""
        breaker = CircuitBreaker("b", bus=bus)

        breaker.force_open()

        assert (1.0, 0.0, 1.0, 0.0) == (
            value(
                registry,
                "stormwall_circuit_breaker_state",
                breaker="b",
                state="forced_open",
            ),
            value(
                registry,
                "stormwall_circuit_breaker_state",
                breaker="b",
                state="closed",
            ),
            value(
                registry,
                "stormwall_circuit_breaker_transitions_total",
                breaker="b",
                from_state="closed",
                to_state="forced_open",
            ),
            value(
                registry,
                "stormwall_circuit_breaker_transitions_total",
                breaker="b",
                from_state="closed",
                to_state="open",
            ),
        )


class TestCardinality:
    """The call key never explodes the series count."""

    def test_no_key_label_by_default(self, registry, bus, exporter):
        """100,000 distinct keys produce no per-key series."""
        ex = ResilientExecutor("svc", clock=MockClock(), bus=bus)
        fn = script(*range(100_000))

        for i in range(100_000):
            ex.run(f"user-{i}", fn)

        assert "key=" not in generate_latest(registry).decode()
        assert 100_000 == value(
            registry,
            "stormwall_calls_total",
            executor="svc",
            outcome="success",
        )
        assert 5 == len(series(registry, "stormwall_calls_total"))

    def test_capped_key_label(self, registry, bus):
        """With key_label_limit=N, at most N + 1 key values exist."""
        PrometheusExporter(registry, key_label_limit=5).attach(bus)
        ex = ResilientExecutor("svc", clock=MockClock(), bus=bus)
        fn = script(*range(100_000))

        for i in range(100_000):
            ex.run(f"user-{i}", fn)

        keys = {
            dict(labels)["key"]
            for labels in series(registry, "stormwall_calls_total")
        }
        assert {*(f"user-{i}" for i in range(5)), "__other__"} == keys
        assert 99_995 == value(
            registry,
            "stormwall_calls_total",
            executor="svc",
            outcome="success",
            key="__other__",
        )
        assert 0 == value(
            registry,
            "stormwall_calls_total",
            executor="svc",
            outcome="failure",
            key="user-3",
        )

    def test_capped_key_label_on_limiter(self, registry, bus):
        """Limiter requests share the cap and the key values of calls."""
        PrometheusExporter(registry, key_label_limit=2).attach(bus)
        ex = ResilientExecutor(
            "svc",
            limiter=TokenBucket(5, 1, name="tb", max_keys=100),
            clock=MockClock(),
            bus=bus,
        )

        for i in range(1_000):
            ex.run(f"user-{i}", script("ok"))

        keys = {
            dict(labels)["key"]
            for labels in series(
                registry, "stormwall_rate_limiter_requests_total"
            )
        }
        assert {"user-0", "user-1", "__other__"} == keys
        assert 998 == value(
            registry,
            "stormwall_rate_limiter_requests_total",
            limiter="tb",
            result="allowed",
            key="__other__",
        )

    def test_bad_limit(self, registry):
        """A negative or non-int limit is a ConfigError naming it."""
        for bad in (-1, 1.5, True, "3"):
            with pytest.raises(ConfigError, match="key_label_limit"):
                PrometheusExporter(registry, key_label_limit=bad)


class TestRegistries:
    """One exporter per registry; exporters never collide."""

    def test_two_registries(self, bus):
        """Two exporters on two registries both count."""
        first, second = CollectorRegistry(), CollectorRegistry()
        PrometheusExporter(first).attach(bus)
        PrometheusExporter(second).attach(bus)

        ResilientExecutor("svc", bus=bus).run("k", script("ok"))

        assert [1.0, 1.0] == [
            value(
                r, "stormwall_calls_total", executor="svc", outcome="success"
            )
            for r in (first, second)
        ]

    def test_second_exporter_on_a_registry(self, registry):
        """A second exporter on the same registry is a ConfigError, and
        registers nothing; after close() it is allowed."""
        first = PrometheusExporter(registry)

        with pytest.raises(ConfigError, match="registry"):
            PrometheusExporter(registry)
        first.close()
        PrometheusExporter(registry)

    def test_partial_clash_rolls_back(self, registry):
        """A clash on a later metric unregisters the ones made before."""
        prometheus_client.Gauge(
            "stormwall_bulkhead_in_flight", "mine", registry=registry
        )

        with pytest.raises(ConfigError):
            PrometheusExporter(registry)

        assert [] == [
            m.name
            for m in registry.collect()
            if m.name != "stormwall_bulkhead_in_flight"
        ]

    def test_attach_twice_counts_once(self, registry, bus):
        """Attaching to the same bus twice returns the same subscription."""
        exp = PrometheusExporter(registry)
        first = exp.attach(bus)
        second = exp.attach(bus)

        ResilientExecutor("svc", bus=bus).run("k", script("ok"))

        assert first is second
        assert 1 == value(
            registry,
            "stormwall_calls_total",
            executor="svc",
            outcome="success",
        )

    def test_not_a_registry(self):
        """registry must be a CollectorRegistry."""
        with pytest.raises(ConfigError, match="registry"):
            PrometheusExporter(registry=object())

    def test_default_registry_and_bus(self, tmp_path):
        """The default registry: attach twice to the default bus and once to
        another, no duplicate timeseries, every call counted once."""
        code = textwrap.dedent(
            """
            from prometheus_client import REGISTRY
            from stormwall import EventBus, ResilientExecutor
            from stormwall.exporters.prometheus import PrometheusExporter

            exp = PrometheusExporter()
            exp.attach()
            exp.attach()
            other = EventBus()
            exp.attach(other)
            ResilientExecutor("a").run("k", lambda: 1)
            ResilientExecutor("b", bus=other).run("k", lambda: 1)
            print(
                REGISTRY.get_sample_value(
                    "stormwall_calls_total",
                    {"executor": "a", "outcome": "success"},
                ),
                REGISTRY.get_sample_value(
                    "stormwall_calls_total",
                    {"executor": "b", "outcome": "success"},
                ),
            )
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

        assert ("1.0 1.0", "") == (done.stdout.strip(), done.stderr)


class TestServeMetrics:
    """serve_metrics exposes /metrics on a loopback port."""

    def test_port_zero(self, registry, bus, exporter):
        """Port 0 binds a free port; GET /metrics returns stormwall series."""
        ResilientExecutor("svc", bus=bus).run("k", script("ok"))

        with serve_metrics(0, registry=registry) as server:
            assert server.port > 0
            assert f"http://127.0.0.1:{server.port}/metrics" == server.url
            with urllib.request.urlopen(server.url, timeout=10) as response:  # noqa: S310 - loopback
                body = response.read().decode()

        assert (
            'stormwall_calls_total{executor="svc",outcome="success"} 1.0'
            in body
        )

    def test_close_frees_the_port(self, registry):
        """close() stops the server; it is idempotent."""
        server = serve_metrics(registry=registry)
        server.close()
        server.close()

        with pytest.raises(OSError):
            urllib.request.urlopen(server.url, timeout=2)  # noqa: S310 - loopback

    def test_busy_port_names_the_address(self, registry):
        """Binding a port already in use raises an OSError subclass whose
        message names host:port, chained to the original error."""
        first = serve_metrics(0, registry=registry)
        try:
            with pytest.raises(
                OSError, match=f"127.0.0.1:{first.port}"
            ) as info:
                serve_metrics(first.port, registry=registry)
        finally:
            first.close()

        assert isinstance(info.value.__cause__, OSError)
        assert info.value.errno == info.value.__cause__.errno

    def test_bad_port(self):
        """A port outside 0..65535 is a ConfigError."""
        for bad in (-1, 65536, "80", 1.0):
            with pytest.raises(ConfigError, match="port"):
                serve_metrics(bad)


WORKER = """
import os, sys
from stormwall import Bulkhead, CircuitBreaker, ResilientExecutor
from stormwall.exporters.prometheus import PrometheusExporter

PrometheusExporter().attach()
ex = ResilientExecutor(
    "svc",
    circuit_breaker=CircuitBreaker("b", failure_threshold=1),
    bulkhead=Bulkhead(4, name="bh"),
)

def inside():
    return 1

def boom():
    raise RuntimeError

ex.run("k", inside)
if sys.argv[1] == "trip":
    try:
        ex.run("k", boom)
    except RuntimeError:
        pass
print(os.getpid())
"""

COLLECT = """
import json, sys
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.exposition import generate_latest

if len(sys.argv) > 1:
    multiprocess.mark_process_dead(int(sys.argv[1]))
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
samples = {}
for metric in registry.collect():
    assert metric.type in ("counter", "gauge", "histogram"), metric.type
    for s in metric.samples:
        samples[s.name + repr(sorted(s.labels.items()))] = s.value
print(json.dumps(samples))
"""


class TestMultiprocess:
    """Multiprocess mode aggregates sensibly across workers."""

    def _run(self, env, code, *args):
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=60,
        )
        assert "" == done.stderr
        return done.stdout.strip()

    def test_two_workers(self, tmp_path):
        """Counters add up, the breaker state is 1 for a state any live
        worker is in, and a dead worker's state goes away."""
        import json

        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        tripped = self._run(env, WORKER, "trip")
        self._run(env, WORKER, "calm")

        both = json.loads(self._run(env, COLLECT))
        after = json.loads(self._run(env, COLLECT, tripped))

        def state(samples, s):
            return samples[
                "stormwall_circuit_breaker_state"
                + repr(sorted({"breaker": "b", "state": s}.items()))
            ]

        calls = "stormwall_calls_total" + repr(
            sorted({"executor": "svc", "outcome": "success"}.items())
        )
        failures = "stormwall_calls_total" + repr(
            sorted({"executor": "svc", "outcome": "failure"}.items())
        )
        in_flight = "stormwall_bulkhead_in_flight" + repr(
            sorted({"bulkhead": "bh"}.items())
        )
        assert (2.0, 1.0, 0.0) == (
            both[calls],
            both[failures],
            both[in_flight],
        )
        assert (1.0, 1.0, 0.0) == (
            state(both, "open"),
            state(both, "closed"),
            state(both, "half_open"),
        )
        assert (0.0, 1.0) == (state(after, "open"), state(after, "closed"))

    def test_gauge_modes(self, registry):
        """Gauges declare a live aggregation; nothing is an Enum or Info."""
        exp = PrometheusExporter(registry)

        assert ("livemax", "livesum") == (
            exp._breaker_state._multiprocess_mode,
            exp._in_flight._multiprocess_mode,
        )
        assert {"counter", "gauge", "histogram"} >= {
            m.type for m in registry.collect()
        }


class TestAsync:
    """The async executor feeds the same metrics."""

    def test_async_rejection(self, registry, bus, exporter):
        """An open breaker's rejection of an async call is counted."""
        import asyncio

        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = AsyncResilientExecutor(
            "svc", circuit_breaker=breaker, clock=MockClock(), bus=bus
        )

        async def boom():
            raise Boom

        async def main():
            with pytest.raises(Boom):
                await ex.run("k", boom)
            with pytest.raises(CircuitOpenError):
                await ex.run("k", boom)

        asyncio.run(main())

        assert (1.0, 1.0, 1.0) == (
            value(
                registry,
                "stormwall_calls_total",
                executor="svc",
                outcome="rejected",
            ),
            value(
                registry,
                "stormwall_circuit_breaker_rejections_total",
                breaker="b",
            ),
            value(
                registry,
                "stormwall_circuit_breaker_state",
                breaker="b",
                state="open",
            ),
        )
