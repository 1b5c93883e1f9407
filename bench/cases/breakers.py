"""
Rate-window breakers: a breaker that judges the failure rate over a window.

Every library gets the same rule where it has it: trip at a 50 % failure
rate once 10 calls are in the window, stay open 30 s; the window is the last
30 s (time-based) or the last 100 calls (count-based). stormwall's executor
holding only ``CircuitBreaker(failure_threshold=None,
failure_rate_threshold=0.5, ...)`` against nopanic's ``CircuitBreaker`` (a
time window in 10 buckets) and interlock's ``CircuitBreaker`` (count and
time windows), each used as a decorator, sync and async. stormwall's
consecutive-failure breaker is shown for scale.

Two workloads: every call succeeds; one call in 10 raises (caught by the
timed lambda alike for everyone), so the rate is judged but never trips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _harness import Case

from cases.common import FAILURES, RECOVERY, FlakyError, afn, fn
from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
)


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


SYNC = "rate-window breaker, success path, sync"
ASYNC = "rate-window breaker, success path, async"
FAIL_SYNC = "rate-window breaker, 1 call in 10 fails, sync"
FAIL_ASYNC = "rate-window breaker, 1 call in 10 fails, async"
RATE = 0.5
MINIMUM = 10
SECONDS = 30.0
CALLS = 100

STORMWALL_TIME = "stormwall run(): rate breaker, 30 s window"
STORMWALL_COUNT = "stormwall run(): rate breaker, 100-call window"
STORMWALL_CONSECUTIVE = "stormwall run(): consecutive breaker (for scale)"
NOPANIC = "nopanic @CircuitBreaker, 30 s window"
INTERLOCK_TIME = "interlock @CircuitBreaker, 30 s window"
INTERLOCK_COUNT = "interlock @CircuitBreaker, 100-call window"


class OneInTen:
    """Raises `FlakyError` on every tenth call."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        if self.n == 10:
            self.n = 0
            raise FlakyError
        return 1


class AsyncOneInTen(OneInTen):
    async def __call__(self) -> int:  # type: ignore[override]
        return OneInTen.__call__(self)


def swallow(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            return call()
        except FlakyError:
            return None

    return run


def aswallow(
    call: Callable[[], Awaitable[object]],
) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        try:
            return await call()
        except FlakyError:
            return None

    return run


def _breaker(window: str) -> CircuitBreaker:
    if window == "consecutive":
        return CircuitBreaker(
            "bench", failure_threshold=FAILURES, recovery_timeout=RECOVERY
        )
    return CircuitBreaker(
        "bench",
        failure_threshold=None,
        failure_rate_threshold=RATE,
        minimum_calls=MINIMUM,
        recovery_timeout=RECOVERY,
        **(
            {"window_duration": SECONDS}
            if window == "time"
            else {"window_size": CALLS}
        ),
    )


def stormwall_cases() -> list[Case]:
    out = []
    for label, window in (
        (STORMWALL_TIME, "time"),
        (STORMWALL_COUNT, "count"),
        (STORMWALL_CONSECUTIVE, "consecutive"),
    ):
        ok = ResilientExecutor(
            "bench", circuit_breaker=_breaker(window), bus=EventBus()
        )
        aok = AsyncResilientExecutor(
            "bench", circuit_breaker=_breaker(window), bus=EventBus()
        )
        bad = ResilientExecutor(
            "bench", circuit_breaker=_breaker(window), bus=EventBus()
        )
        abad = AsyncResilientExecutor(
            "bench", circuit_breaker=_breaker(window), bus=EventBus()
        )
        flaky, aflaky = OneInTen(), AsyncOneInTen()
        out += [
            Case(SYNC, label, lambda ex=ok: ex.run("k", fn)),
            Case(ASYNC, label, afn=lambda ex=aok: ex.run("k", afn)),
            Case(
                FAIL_SYNC,
                label,
                swallow(lambda ex=bad, f=flaky: ex.run("k", f)),
            ),
            Case(
                FAIL_ASYNC,
                label,
                afn=aswallow(lambda ex=abad, f=aflaky: ex.run("k", f)),
            ),
        ]
    return out


def _decorated(
    label: str, peer: str, make: Callable[[], Callable[[Callable], Callable]]
) -> list[Case]:
    """The four cases of one peer breaker: ``make()`` is a decorator."""
    return [
        Case(SYNC, label, make()(fn), peer=peer),
        Case(ASYNC, label, afn=make()(afn), peer=peer),
        Case(FAIL_SYNC, label, swallow(make()(OneInTen())), peer=peer),
        Case(
            FAIL_ASYNC,
            label,
            afn=aswallow(make()(_coroutine_function(AsyncOneInTen()))),
            peer=peer,
        ),
    ]


def _coroutine_function(
    call: Callable[[], Awaitable[int]],
) -> Callable[[], Awaitable[int]]:
    # Decorators tell sync from async by inspecting a function: hand them a
    # real `async def`, not a callable object.
    async def wrapped() -> int:
        return await call()

    return wrapped


def nopanic_cases() -> list[Case]:
    import nopanic

    return _decorated(
        NOPANIC,
        "nopanic",
        lambda: nopanic.CircuitBreaker(
            failure_threshold=RATE,
            min_calls=MINIMUM,
            window=SECONDS,
            reset_timeout=RECOVERY,
        ),
    )


def interlock_cases() -> list[Case]:
    import interlock

    def make(window: str) -> Callable[[], Callable[[Callable], Callable]]:
        def breaker() -> Callable[[Callable], Callable]:
            return interlock.CircuitBreaker(
                name="bench",
                config=interlock.Config(
                    failure_rate_threshold=RATE,
                    minimum_number_of_calls=MINIMUM,
                    wait_duration_in_open=RECOVERY,
                    window_type=(
                        interlock.WindowType.TIME_BASED
                        if window == "time"
                        else interlock.WindowType.COUNT_BASED
                    ),
                    window_size=int(SECONDS) if window == "time" else CALLS,
                ),
            )

        return breaker

    return _decorated(
        INTERLOCK_TIME, "interlock-cb", make("time")
    ) + _decorated(INTERLOCK_COUNT, "interlock-cb", make("count"))


def cases(smoke: bool) -> list[Case]:  # noqa: ARG001 - same cases either way
    out = stormwall_cases()
    for builder in (nopanic_cases, interlock_cases):
        try:
            out.extend(builder())
        except ImportError:
            continue
    return out
