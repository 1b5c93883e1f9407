"""
A concurrent fuzz of the limiters: asyncio callers with costs, timeouts and
cancellations, on tiers shared between composites and standalone use, under
manual virtual time. Every admission is logged and checked against each
limiter's bound afterwards.

This is the scenario that once found a composite re-plan over-admitting after
a cancelled waiter's refund; it keeps that from coming back.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from stormwall import (
    CompositeLimiter,
    LeakyBucket,
    MockClock,
    RateLimitedError,
    SlidingWindow,
    TokenBucket,
)


TOL = 1e-6
SEEDS = 400


def token_bucket_violation(rows, capacity, rate):
    rows = sorted(rows)
    for i, (t0, _) in enumerate(rows):
        total = 0.0
        for t1, cost in rows[i:]:
            total += cost
            if total > capacity + rate * (t1 - t0) + TOL:
                return (t0, t1, total)
    return None


def window_violation(rows, limit, window):
    rows = sorted(rows)
    for t, _ in rows:
        inside = sum(c for s, c in rows if t - window + TOL < s <= t)
        if inside > limit + TOL:
            return (t, inside)
    return None


def spacing_violation(rows, rate):
    rows = sorted(rows)
    for (t0, c0), (t1, _) in itertools.pairwise(rows):
        if t1 - t0 < c0 / rate - TOL:
            return (t0, t1, c0)
    return None


def tiers(limiter):
    if isinstance(limiter, CompositeLimiter):
        return list(limiter.limiters)
    return [limiter]


async def play(seed):
    rng = random.Random(seed)
    clock = MockClock(
        start=rng.choice([0.0, 100.0, 1e6 + 0.37]), autojump=False
    )
    tb = TokenBucket(
        rng.choice([1, 2, 2.5]),
        rng.choice([0.3, 1, 1 / 3]),
        name="tb",
        clock=clock,
    )
    lb = LeakyBucket(rng.choice([0.5, 1, 1 / 3]), name="lb", clock=clock)
    sw = SlidingWindow(
        rng.choice([1, 2, 3]),
        rng.choice([1.0, 2.5, 1 / 3]),
        name="sw",
        clock=clock,
    )
    users = [
        CompositeLimiter(tb, sw, clock=clock),
        tb,
        sw,
        lb,
        CompositeLimiter(sw, lb, clock=clock),
    ]
    admitted = {"tb": [], "lb": [], "sw": []}
    tasks = []

    async def caller(limiter, cost, wait):
        try:
            await limiter.acquire_async("k", cost, timeout=wait)
        except RateLimitedError:
            return
        for tier in tiers(limiter):
            admitted[tier.name].append((clock.now(), cost))

    for _ in range(30):
        limiter = rng.choice(users)
        biggest = min(2, *(t._max_cost for t in tiers(limiter)))
        cost = rng.choice([1, 0.3, 0.7, biggest])
        wait = rng.choice([None, None, 0, 1.5, 5])
        tasks.append(asyncio.create_task(caller(limiter, cost, wait)))
        await asyncio.sleep(0)
        if rng.random() < 0.25:
            rng.choice(tasks).cancel()
        await clock.advance_async(rng.choice([0, 0, 0.1, 1 / 3, 0.7, 1.3]))
    for _ in range(200):
        await clock.advance_async(1.0)
    await asyncio.gather(*tasks, return_exceptions=True)

    problems = []
    found = token_bucket_violation(admitted["tb"], tb.capacity, tb.refill_rate)
    if found:
        problems.append(("token bucket over-admitted", found))
    found = window_violation(admitted["sw"], sw.limit, sw.window)
    if found:
        problems.append(("sliding window over-admitted", found))
    found = spacing_violation(admitted["lb"], lb.rate)
    if found:
        problems.append(("leaky bucket spacing", found))
    for limiter in (tb, lb, sw):
        waiting = limiter.statistics().waiting
        if waiting:
            problems.append((f"{limiter.name} leaked waiters", waiting))
    return problems


class TestConcurrentFuzz:
    @pytest.mark.parametrize("chunk", range(4))
    def test_bounds_hold_with_cancellations(self, chunk):
        """Shared tiers never over-admit nor leak waiters, whatever the
        interleaving of costs, timeouts and cancellations."""
        failures = {}
        for seed in range(chunk, SEEDS, 4):
            problems = asyncio.run(play(seed))
            if problems:
                failures[seed] = problems

        assert {} == failures
