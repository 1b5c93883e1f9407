"""
Success-path ns per run() with breaker + token bucket + retry, sync and async,
with no subscriber and with one no-op subscriber.

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live in
``bench/cases/``; results in docs/performance.md). Run this one with
``python bench/bench_executor.py`` in any venv that has stormwall[all].
"""

from __future__ import annotations

from _harness import HEADER, measure, measure_async, row

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)


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


def main() -> None:
    lines = [HEADER]
    lines.append(row("bare call fn()", measure(fn)))
    for label, listening in (
        ("no subscriber", False),
        ("1 no-op subscriber", True),
    ):
        bus = EventBus()
        if listening:
            bus.subscribe(lambda e: None)
        sync = build(ResilientExecutor, bus)
        lines.append(
            row(
                f"ResilientExecutor.run, {label}",
                measure(lambda: sync.run("k", fn)),
            )
        )
        aex = build(AsyncResilientExecutor, bus)
        lines.append(
            row(
                f"AsyncResilientExecutor.run, {label}",
                measure_async(lambda: aex.run("k", afn)),
            )
        )
    lines.append(row("await afn() (bare)", measure_async(afn)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
