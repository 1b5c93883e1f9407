"""
Exercise the public API under mypy --strict (checked in CI, never run).

If a signature loses its types, this file stops type-checking.
"""

from __future__ import annotations

import random
from typing import assert_type

import stormwall
from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    MockClock,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import CallEnded, RetryScheduled
from stormwall.testing import EventRecorder


clock = MockClock()
executor = ResilientExecutor(
    "users-api",
    limiter=TokenBucket(capacity=10, refill_rate=100 / 60),
    retry_policy=RetryPolicy(
        max_attempts=3, base_delay=0.5, rng=random.Random(7)
    ),
    circuit_breaker=CircuitBreaker(failure_threshold=5),
    clock=clock,
)
aexecutor = AsyncResilientExecutor("users-api-async", clock=clock)


def fetch(user_id: str, *, verbose: bool = False) -> dict[str, int]:
    return {user_id: int(verbose)}


async def afetch(user_id: str) -> list[str]:
    return [user_id]


assert_type(executor.run("user:1", fetch, "1"), dict[str, int])
assert_type(executor.run("user:1", fetch, "1", verbose=True), dict[str, int])


async def use_async() -> None:
    assert_type(await aexecutor.run("user:1", afetch, "1"), list[str])

    @aexecutor.protect(key=lambda user_id: user_id)
    async def protected(user_id: str) -> int:
        return len(user_id)

    assert_type(await protected("abc"), int)

    @aexecutor.protect
    async def bare(user_id: str, *, times: int = 1) -> bytes:
        return user_id.encode() * times

    assert_type(await bare("abc", times=2), bytes)


@executor.protect(key="static")
def protected_sync(n: int) -> float:
    return n / 2


assert_type(protected_sync(3), float)


@executor.protect
def bare_sync(n: int, *, half: bool = False) -> list[int]:
    return [n // 2 if half else n]


assert_type(bare_sync(3, half=True), list[int])
assert_type(executor.protect("static")(fetch)("1"), dict[str, int])

with EventRecorder() as recorder:
    pass
assert_type(recorder.of_type(CallEnded), list[CallEnded])
assert_type(recorder.assert_emitted(RetryScheduled, delay=0.5), RetryScheduled)
assert_type(stormwall.default_bus, stormwall.EventBus)
