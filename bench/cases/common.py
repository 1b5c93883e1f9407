"""What every case module shares: the workloads and the stormwall builders."""

from __future__ import annotations

from importlib import metadata

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)


# Large enough that no limiter ever runs dry during a run: the admit path is
# what is measured, and nobody waits.
HUGE = 10**12
# The breaker and retry settings every library gets alike where it has them:
# 3 attempts, exponential back-off from 0.1 s (never slept on the success
# path), 5 consecutive failures to open, 30 s to recover.
ATTEMPTS = 3
BASE_DELAY = 0.1
MAX_DELAY = 10.0
FAILURES = 5
RECOVERY = 30.0

PEERS = (
    "limitpal",
    "tenacity",
    "stamina",
    "backoff",
    "pybreaker",
    "circuitbreaker",
    "purgatory",
    "limits",
    "pyrate-limiter",
    "aiolimiter",
    "nopanic",
    "interlock-cb",
    "nopanic-redis",
)


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def fn() -> int:
    return 1


async def afn() -> int:
    return 1


class FlakyError(Exception):
    """What the one-retry workload raises."""


class FailOnce:
    """Fails every other call: each run() fails once, then succeeds."""

    def __init__(self) -> None:
        self.odd = False

    def __call__(self) -> int:
        self.odd = not self.odd
        if self.odd:
            raise FlakyError
        return 1


class AsyncFailOnce(FailOnce):
    async def __call__(self) -> int:  # type: ignore[override]
        return FailOnce.__call__(self)


def retry_policy(*, zero_wait: bool = False) -> RetryPolicy:
    if zero_wait:
        return RetryPolicy(max_attempts=ATTEMPTS, base_delay=0, jitter=None)
    return RetryPolicy(
        max_attempts=ATTEMPTS, base_delay=BASE_DELAY, max_delay=MAX_DELAY
    )


def executor(
    cls: type = ResilientExecutor,
    *,
    bus: EventBus | None = None,
    limiter: bool = True,
    breaker: bool = True,
    retry: bool = True,
    zero_wait: bool = False,
):
    """A stormwall executor with the requested parts and its own bus."""
    bus = EventBus() if bus is None else bus
    return cls(
        "bench",
        limiter=TokenBucket(HUGE, HUGE) if limiter else None,
        retry_policy=retry_policy(zero_wait=zero_wait) if retry else None,
        circuit_breaker=(
            CircuitBreaker(
                "bench", failure_threshold=FAILURES, recovery_timeout=RECOVERY
            )
            if breaker
            else None
        ),
        bus=bus,
    )


def async_executor(**kwargs):
    return executor(AsyncResilientExecutor, **kwargs)
