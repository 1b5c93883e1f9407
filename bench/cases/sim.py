"""
The simulator's speed: simulated calls per real second.

One hour of 100 calls/s of virtual traffic (360,000 calls) through the
async executor with breaker + token bucket + retry, against an upstream of
20 ms that fails 1 % of requests; the smoke run simulates a minute. The
target: the hour in under 30 s of real time.
"""

from __future__ import annotations

import time

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    RetryPolicy,
    TokenBucket,
    sim,
)


HOUR = 3600.0
RATE = 100.0


def measure(*, smoke: bool, progress) -> dict:
    duration = 60.0 if smoke else HOUR
    executor = AsyncResilientExecutor(
        "bench-sim",
        circuit_breaker=CircuitBreaker(),
        limiter=TokenBucket(capacity=200, refill_rate=500),
        retry_policy=RetryPolicy(max_attempts=3, base_delay=0.05),
    )
    upstream = sim.Upstream(latency=0.02, failure_rate=0.01)
    progress(f"simulator: {duration:g} virtual s at {RATE:g} calls/s")
    started = time.perf_counter()
    result = sim.run(executor, upstream, rate=RATE, duration=duration)
    elapsed = time.perf_counter() - started
    calls = result.summary["offered"]
    return {
        "virtual_seconds": duration,
        "calls": calls,
        "attempts": result.summary["attempts"],
        "real_seconds": elapsed,
        "calls_per_second": calls / elapsed,
        "speed_up": duration / elapsed,
    }
