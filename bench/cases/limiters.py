"""
Limiter decisions alone, in memory, one key, a limit never reached.

stormwall's ``TokenBucket.try_acquire`` against aiolimiter's
``await AsyncLimiter.acquire()`` (and stormwall's own ``await
acquire_async``), limits' ``FixedWindowRateLimiter.hit`` and
``MovingWindowRateLimiter.hit`` on ``MemoryStorage``, pyrate-limiter's
``Limiter.try_acquire`` (in-memory log bucket, and its state token bucket),
and limitpal's ``TokenBucket.acquire``.
"""

from __future__ import annotations

from _harness import Case

from cases.common import HUGE
from stormwall import SlidingWindow, TokenBucket


SYNC = "limiter decision, sync"
ASYNC = "limiter decision, async"


def stormwall_cases() -> list[Case]:
    tb = TokenBucket(HUGE, HUGE)
    bounded = TokenBucket(HUGE, HUGE, max_keys=10_000)
    sw = SlidingWindow(HUGE, 1.0)
    atb = TokenBucket(HUGE, HUGE)
    return [
        Case(SYNC, "stormwall TokenBucket.try_acquire()", tb.try_acquire),
        Case(
            SYNC,
            "stormwall TokenBucket.try_acquire('k')",
            lambda: tb.try_acquire("k"),
        ),
        Case(
            SYNC,
            "stormwall TokenBucket(max_keys).try_acquire('k')",
            lambda: bounded.try_acquire("k"),
        ),
        Case(
            SYNC,
            "stormwall SlidingWindow.try_acquire('k')",
            lambda: sw.try_acquire("k"),
        ),
        Case(
            ASYNC,
            "stormwall await TokenBucket.acquire_async('k')",
            afn=lambda: atb.acquire_async("k"),
        ),
    ]


def limits_cases() -> list[Case]:
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    item = RateLimitItemPerSecond(HUGE)
    fixed = FixedWindowRateLimiter(MemoryStorage())
    moving = MovingWindowRateLimiter(MemoryStorage())
    # The moving window remembers every hit of the window: a one-second window
    # keeps that list as short as the run allows.
    counter = SlidingWindowCounterRateLimiter(MemoryStorage())
    return [
        Case(
            SYNC,
            "limits FixedWindowRateLimiter.hit (MemoryStorage)",
            lambda: fixed.hit(item, "k"),
            peer="limits",
        ),
        Case(
            SYNC,
            "limits MovingWindowRateLimiter.hit (MemoryStorage)",
            lambda: moving.hit(item, "k"),
            peer="limits",
        ),
        Case(
            SYNC,
            "limits SlidingWindowCounterRateLimiter.hit (MemoryStorage)",
            lambda: counter.hit(item, "k"),
            peer="limits",
        ),
    ]


def pyrate_cases() -> list[Case]:
    from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

    rates = [Rate(10**9, Duration.SECOND)]
    log = Limiter(InMemoryBucket(rates))
    out = [
        Case(
            SYNC,
            "pyrate-limiter Limiter.try_acquire (InMemoryBucket)",
            lambda: log.try_acquire("k", blocking=False),
            peer="pyrate-limiter",
        ),
    ]
    try:
        from pyrate_limiter import (
            StateBucket,
        )
        from pyrate_limiter import (
            TokenBucket as PyrateTokenBucket,
        )

        state = Limiter(StateBucket(rates, algorithm=PyrateTokenBucket()))
        out.append(
            Case(
                SYNC,
                "pyrate-limiter Limiter.try_acquire "
                "(StateBucket, TokenBucket)",
                lambda: state.try_acquire("k", blocking=False),
                peer="pyrate-limiter",
            )
        )
    except (ImportError, TypeError, ValueError):
        pass
    return out


def aiolimiter_cases() -> list[Case]:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(HUGE, 1)
    return [
        Case(
            ASYNC,
            "aiolimiter await AsyncLimiter.acquire()",
            afn=limiter.acquire,
            peer="aiolimiter",
        ),
        Case(
            SYNC,
            "aiolimiter AsyncLimiter.has_capacity()",
            limiter.has_capacity,
            peer="aiolimiter",
        ),
    ]


def limitpal_cases() -> list[Case]:
    import limitpal as lp

    tb = lp.TokenBucket(HUGE, HUGE)
    atb = lp.AsyncTokenBucket(HUGE, HUGE)
    return [
        Case(
            SYNC,
            "limitpal TokenBucket.acquire('k')",
            lambda: tb.acquire("k"),
            peer="limitpal",
        ),
        Case(
            SYNC,
            "limitpal TokenBucket.allow('k')",
            lambda: tb.allow("k"),
            peer="limitpal",
        ),
        Case(
            ASYNC,
            "limitpal await AsyncTokenBucket.acquire('k')",
            afn=lambda: atb.acquire("k"),
            peer="limitpal",
        ),
    ]


def cases(smoke: bool) -> list[Case]:  # noqa: ARG001 - same cases either way
    out = stormwall_cases()
    for builder in (
        limits_cases,
        pyrate_cases,
        aiolimiter_cases,
        limitpal_cases,
    ):
        try:
            out.extend(builder())
        except ImportError:
            continue
    return out
