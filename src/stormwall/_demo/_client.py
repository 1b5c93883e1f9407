"""
The demo's client side: users calling the upstream through one executor.

Every user (key ``user:1`` ... ``user:N``) makes calls at random (Poisson)
times at ``--rate`` calls per second, *open loop*: a slow or failing upstream
does not slow the arrivals down, as with real traffic. Each call goes
through one `AsyncResilientExecutor` with the settings of `pipeline_settings`
(a per-user token bucket, retries with full jitter honouring
``Retry-After``, a retry budget, a circuit breaker, a bulkhead and a
per-attempt timeout). The client counts nothing itself: the status line
listens to the executor's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx

from stormwall import (
    AsyncResilientExecutor,
    AttemptTimeoutError,
    Bulkhead,
    CircuitBreaker,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)
from stormwall.integrations.httpx import parse_retry_after


if TYPE_CHECKING:
    from collections.abc import Callable

    from stormwall import EventBus


__all__ = [
    "BREAKER",
    "BULKHEAD",
    "EXECUTOR",
    "LIMITER",
    "Load",
    "PipelineSettings",
    "ServerError",
    "ThrottledError",
    "build_executor",
    "pipeline_settings",
    "retry_after_hint",
]

EXECUTOR: Final = "upstream-api"
BREAKER: Final = "upstream"
LIMITER: Final = "per-user"
BULKHEAD: Final = "upstream"


class ServerError(Exception):
    """
    The upstream answered 5xx: worth retrying, and a breaker failure.
    """

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status


class ThrottledError(Exception):
    """
    The upstream answered 429: retried after its ``Retry-After``.

    Not a breaker failure (the breaker ignores it): a server that says "slow
    down" is alive, and tripping on it would turn a rate limit into an
    outage.
    """

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("upstream answered 429")
        self.retry_after = retry_after


def retry_after_hint(error: object) -> float | None:
    """The `RetryPolicy` ``retry_after`` hook: the 429's server hint."""
    if isinstance(error, ThrottledError):
        return error.retry_after
    return None


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """
    The resilience settings of the demo, derived from the run's length.

    Attributes:
        bucket_capacity: Per-user burst size.
        bucket_rate: Per-user refill, calls per second.
        limiter_timeout: Longest wait for a permit before rejecting.
        attempt_timeout: Seconds one attempt may take.
        max_attempts: Attempts per call, the first included.
        base_delay: Back-off before the first retry.
        max_delay: Cap on a back-off, ``Retry-After`` hints included.
        deadline: Seconds a whole call (retries included) may take.
        budget_ratio: Retries allowed per call, across all calls.
        failure_threshold: Consecutive failures that trip the breaker.
        failure_rate_threshold: Failure rate over the window that trips it.
        window_size: The breaker's count window.
        minimum_calls: Calls in the window before a rate is computed.
        recovery_timeout: Seconds the breaker stays open before probing.
        max_recovery_timeout: Cap of the doubling open period on re-trips.
        half_open_max_calls: Probes in flight while half-open.
        success_threshold: Successful probes that close it.
        bulkhead_limit: Attempts in flight at once, across all users.
    """

    bucket_capacity: float
    bucket_rate: float
    limiter_timeout: float
    attempt_timeout: float
    max_attempts: int
    base_delay: float
    max_delay: float
    deadline: float
    budget_ratio: float
    failure_threshold: int
    failure_rate_threshold: float
    window_size: int
    minimum_calls: int
    recovery_timeout: float
    max_recovery_timeout: float
    half_open_max_calls: int
    success_threshold: int
    bulkhead_limit: int


def pipeline_settings(
    duration: float, rate: float, users: int
) -> PipelineSettings:
    """
    The settings for ``users`` users at ``rate`` calls/s each, ``duration`` s.

    The breaker's timing scales with the run: its open period is about a
    twentieth of the run (1.5 s for 30 s), so it probes, re-trips and, once
    the upstream recovers, closes within the phases of even a short run.
    The bulkhead scales with the load: it holds the attempts in flight of
    a healthy or degraded upstream, and fills when the upstream stops
    answering at the start of the outage. Everything else is what a real
    client of a fast API would use.
    """
    recovery = min(5.0, max(0.25, duration / 20))
    return PipelineSettings(
        # Refill a quarter above the users' average rate, with a burst of
        # two seconds of calls: random (Poisson) normal traffic passes, a
        # short wait at most; the degraded phase's retries, half as many
        # calls again, get throttled.
        bucket_capacity=max(2.0, 2 * rate),
        bucket_rate=1.25 * rate,
        limiter_timeout=0.25,
        # Healthy answers take milliseconds; a spike of half a second is a
        # failure worth retrying elsewhere rather than waiting for.
        attempt_timeout=0.5,
        max_attempts=3,
        base_delay=0.05,
        # Also the cap on Retry-After hints: a user waits at most a second.
        max_delay=1.0,
        deadline=2.5,
        # A degraded upstream would otherwise see ~1.5x its normal load.
        budget_ratio=0.25,
        # Ten in a row trips fast on a hard-down upstream; the rate rule
        # (60 % of the last 50 attempts) is what the degraded phase, at
        # about a third of attempts failing, stays under.
        failure_threshold=10,
        failure_rate_threshold=0.6,
        window_size=50,
        minimum_calls=20,
        recovery_timeout=recovery,
        max_recovery_timeout=2 * recovery,
        # Three probes at once, all three must succeed: one lucky call in
        # an outage does not close the breaker.
        half_open_max_calls=3,
        success_threshold=3,
        # A fifth of a second of the whole load: healthy calls take
        # milliseconds (one or two in flight), degraded ones a few more
        # (spikes up to the 0.5 s timeout); an upstream that hangs fills
        # it in a quarter of a second, and the rest are refused at once
        # instead of piling up until the breaker trips.
        bulkhead_limit=max(4, math.ceil(0.2 * users * rate)),
    )


def build_executor(
    settings: PipelineSettings, bus: EventBus, seed: int
) -> AsyncResilientExecutor:
    """The demo's executor, reporting on ``bus``."""
    return AsyncResilientExecutor(
        EXECUTOR,
        limiter=TokenBucket(
            settings.bucket_capacity,
            settings.bucket_rate,
            name=LIMITER,
            max_keys=10_000,
        ),
        limiter_timeout=settings.limiter_timeout,
        retry_policy=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=settings.base_delay,
            max_delay=settings.max_delay,
            jitter="full",
            retry_on=(
                httpx.TransportError,
                ServerError,
                ThrottledError,
                AttemptTimeoutError,
            ),
            retry_after=retry_after_hint,
            deadline=settings.deadline,
            budget=RetryBudget(ratio=settings.budget_ratio),
            rng=random.Random(seed),
        ),
        circuit_breaker=CircuitBreaker(
            BREAKER,
            failure_threshold=settings.failure_threshold,
            failure_rate_threshold=settings.failure_rate_threshold,
            window_size=settings.window_size,
            minimum_calls=settings.minimum_calls,
            recovery_timeout=settings.recovery_timeout,
            max_recovery_timeout=settings.max_recovery_timeout,
            half_open_max_calls=settings.half_open_max_calls,
            success_threshold=settings.success_threshold,
            ignore_on=(ThrottledError,),
        ),
        bulkhead=Bulkhead(settings.bulkhead_limit, name=BULKHEAD),
        timeout=settings.attempt_timeout,
        bus=bus,
    )


async def fetch(client: httpx.AsyncClient, path: str) -> int:
    """
    GET ``path``; the status of a success, else raise for 429 and 5xx.
    """
    response = await client.get(path)
    if response.status_code == 429:
        raise ThrottledError(
            parse_retry_after(response.headers.get("retry-after"))
        )
    if response.status_code >= 500:
        raise ServerError(response.status_code)
    return response.status_code


class Load:
    """
    ``users`` users calling the upstream at ``rate`` calls/s each.

    Args:
        executor: The pipeline every call goes through.
        client: The HTTP client (its base URL is the upstream).
        users: How many users (keys ``user:1`` ...).
        rate: Average calls per second per user.
        seed: Seeds the arrival times.
        elapsed: Seconds since the run began (the phases' clock).
    """

    def __init__(
        self,
        executor: AsyncResilientExecutor,
        client: httpx.AsyncClient,
        users: int,
        rate: float,
        seed: int,
        elapsed: Callable[[], float],
    ) -> None:
        self._executor = executor
        self._elapsed = elapsed
        self._client = client
        self._users = users
        self._rate = rate
        self._seed = seed
        self._calls: set[asyncio.Task[None]] = set()

    async def run(self, duration: float) -> None:
        """Make calls until ``duration`` s in (calls in flight go on)."""
        users = [
            asyncio.create_task(self._user(i, duration))
            for i in range(1, self._users + 1)
        ]
        try:
            await asyncio.gather(*users)
        finally:
            for task in users:
                task.cancel()

    async def drain(self, grace: float) -> None:
        """Let calls in flight finish for ``grace`` s, then cancel them."""
        pending = set(self._calls)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _user(self, number: int, duration: float) -> None:
        """One user's arrivals until the end of the run."""
        rng = random.Random(f"stormwall-demo-user:{self._seed}:{number}")
        key = f"user:{number}"
        while True:
            await asyncio.sleep(rng.expovariate(self._rate))
            if self._elapsed() >= duration:
                return
            task = asyncio.create_task(self._call(key, f"/users/{number}"))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, key: str, path: str) -> None:
        """One call; its outcome is counted from the executor's events."""
        # Failures and rejections are the point of the demo: the status line
        # and the exporters saw them on the bus; nothing to do here.
        with contextlib.suppress(Exception):
            await self._executor.run(key, fetch, self._client, path)
