"""
Added ns per successful run() with a PrometheusExporter attached, next to the
raw prometheus_client work it does per call.

Per successful call with breaker + token bucket + retry the exporter does 3
counter increments (call, attempt, limiter allowed) and 2 histogram
observations (call and attempt duration); "raw" measures exactly those on
pre-resolved children, so the difference is the exporter's own overhead
(event building, bus dispatch, label look-ups).

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live
in ``bench/cases/``; results in docs/performance.md). Run this one
with ``python bench/bench_exporters_prometheus.py`` in any venv that has
stormwall[all].
"""

from __future__ import annotations

from _harness import HEADER, measure, measure_async, row
from prometheus_client import CollectorRegistry, Counter, Histogram

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.exporters._vocabulary import DURATION_BUCKETS
from stormwall.exporters.prometheus import _EVENT_TYPES, PrometheusExporter


def build(cls: type, bus: EventBus):  # type: ignore[type-arg]
    return cls(
        "bench",
        limiter=TokenBucket(capacity=1e12, refill_rate=1e12),
        retry_policy=RetryPolicy(max_attempts=3),
        circuit_breaker=CircuitBreaker("bench"),
        bus=bus,
    )


def fn() -> int:
    return 1


async def afn() -> int:
    return 1


def raw_work():
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["a", "b"], registry=registry)
    histogram = Histogram(
        "h", "h", ["a", "b"], registry=registry, buckets=DURATION_BUCKETS
    )
    c1, c2, c3 = (counter.labels("x", str(i)) for i in range(3))
    h1, h2 = (histogram.labels("x", str(i)) for i in range(2))

    def work() -> None:
        c1.inc()
        h1.observe(0.001)
        c2.inc()
        h2.observe(0.001)
        c3.inc()

    return work


def main() -> None:
    lines = [HEADER]
    lines.append(
        row("raw: 3 inc + 2 observe (prometheus_client)", measure(raw_work()))
    )
    results = {}
    cases = (
        ("no subscriber", None),
        ("no-op subscriber to the same event types", "noop"),
        ("exporter", True),
    )
    for label, attached in cases:
        bus = EventBus()
        if attached == "noop":
            bus.subscribe(lambda e: None, *_EVENT_TYPES)
        elif attached:
            PrometheusExporter(CollectorRegistry()).attach(bus)
        sync = build(ResilientExecutor, bus)
        results["sync", attached] = measure(lambda: sync.run("k", fn))
        lines.append(
            row(f"ResilientExecutor.run, {label}", results["sync", attached])
        )
        aex = build(AsyncResilientExecutor, bus)
        results["async", attached] = measure_async(lambda: aex.run("k", afn))
        lines.append(
            row(
                f"AsyncResilientExecutor.run, {label}",
                results["async", attached],
            )
        )
    for kind in ("sync", "async"):
        added = results[kind, True][0] - results[kind, None][0]
        own = results[kind, True][0] - results[kind, "noop"][0]
        lines.append(f"| added by the exporter ({kind}) | {added:,.0f} | |")
        lines.append(
            f"| of which the exporter's own handling ({kind}) | {own:,.0f} | |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
