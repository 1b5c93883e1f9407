"""
The success path and the one-retry path of an executor, next to each peer.

Success path: ``fn`` returns at once. stormwall's ``run()`` with breaker +
token bucket + retry (no subscriber) is compared with limitpal's executor
built from the same three parts; stormwall with only the retry policy with
tenacity, stamina, backoff and nopanic; stormwall with only the breaker
with pybreaker, circuitbreaker and purgatory (rate-window breakers are in
``breakers.py``). One-retry path: ``fn`` fails once, then succeeds, with
zero back-off everywhere (a sleep would swamp the numbers).
"""

from __future__ import annotations

from _harness import Case

from cases.common import (
    ATTEMPTS,
    BASE_DELAY,
    FAILURES,
    HUGE,
    MAX_DELAY,
    RECOVERY,
    AsyncFailOnce,
    FailOnce,
    afn,
    async_executor,
    executor,
    fn,
)


SYNC = "success path, sync"
ASYNC = "success path, async"
RETRY = "one-retry path, sync"
ARETRY = "one-retry path, async"


def stormwall_cases() -> list[Case]:
    full, retry_only, breaker_only = (
        executor(),
        executor(limiter=False, breaker=False),
        executor(limiter=False, retry=False),
    )
    afull, aretry, abreaker = (
        async_executor(),
        async_executor(limiter=False, breaker=False),
        async_executor(limiter=False, retry=False),
    )
    flaky, aflaky = FailOnce(), AsyncFailOnce()
    rfull = executor(zero_wait=True)
    rretry = executor(limiter=False, breaker=False, zero_wait=True)
    arfull = async_executor(zero_wait=True)
    return [
        Case(SYNC, "bare call fn()", fn, peer="baseline"),
        Case(
            SYNC,
            "stormwall run(): breaker + bucket + retry",
            lambda: full.run("k", fn),
        ),
        Case(
            SYNC,
            "stormwall run(): retry only",
            lambda: retry_only.run("k", fn),
        ),
        Case(
            SYNC,
            "stormwall run(): breaker only",
            lambda: breaker_only.run("k", fn),
        ),
        Case(ASYNC, "bare await afn()", afn=afn, peer="baseline"),
        Case(
            ASYNC,
            "stormwall run(): breaker + bucket + retry",
            afn=lambda: afull.run("k", afn),
        ),
        Case(
            ASYNC,
            "stormwall run(): retry only",
            afn=lambda: aretry.run("k", afn),
        ),
        Case(
            ASYNC,
            "stormwall run(): breaker only",
            afn=lambda: abreaker.run("k", afn),
        ),
        Case(
            RETRY,
            "stormwall run(): breaker + bucket + retry",
            lambda: rfull.run("k", flaky),
        ),
        Case(
            RETRY,
            "stormwall run(): retry only",
            lambda: rretry.run("k", flaky),
        ),
        Case(
            ARETRY,
            "stormwall run(): breaker + bucket + retry",
            afn=lambda: arfull.run("k", aflaky),
        ),
    ]


def limitpal_cases() -> list[Case]:
    import limitpal as lp

    def parts(*, async_: bool, zero_wait: bool = False):
        bucket = (lp.AsyncTokenBucket if async_ else lp.TokenBucket)(
            HUGE, HUGE
        )
        policy = (
            lp.RetryPolicy(max_attempts=ATTEMPTS, base_delay=0, max_delay=0)
            if zero_wait
            else lp.RetryPolicy(
                max_attempts=ATTEMPTS,
                base_delay=BASE_DELAY,
                max_delay=MAX_DELAY,
            )
        )
        breaker = lp.CircuitBreaker(
            failure_threshold=FAILURES, recovery_timeout=RECOVERY
        )
        return {
            "limiter": bucket,
            "retry_policy": policy,
            "circuit_breaker": breaker,
        }

    sync = lp.ResilientExecutor(**parts(async_=False))
    asyn = lp.AsyncResilientExecutor(**parts(async_=True))
    rsync = lp.ResilientExecutor(**parts(async_=False, zero_wait=True))
    rasync = lp.AsyncResilientExecutor(**parts(async_=True, zero_wait=True))
    flaky, aflaky = FailOnce(), AsyncFailOnce()
    name = "limitpal executor: breaker + bucket + retry"
    return [
        Case(SYNC, name, lambda: sync.run("k", fn), peer="limitpal"),
        Case(ASYNC, name, afn=lambda: asyn.run("k", afn), peer="limitpal"),
        Case(RETRY, name, lambda: rsync.run("k", flaky), peer="limitpal"),
        Case(
            ARETRY, name, afn=lambda: rasync.run("k", aflaky), peer="limitpal"
        ),
    ]


def tenacity_cases() -> list[Case]:
    import tenacity as t

    def retrying(cls, *, zero_wait: bool = False):
        wait = (
            t.wait_none()
            if zero_wait
            else t.wait_exponential_jitter(initial=BASE_DELAY, max=MAX_DELAY)
        )
        return cls(
            stop=t.stop_after_attempt(ATTEMPTS), wait=wait, reraise=True
        )

    sync, asyn = retrying(t.Retrying), retrying(t.AsyncRetrying)
    rsync = retrying(t.Retrying, zero_wait=True)
    # tenacity sleeps even for a zero wait (time.sleep(0) costs tens of µs on
    # Linux, timer slack): also measure it with that sleep removed.
    rnosleep = t.Retrying(
        stop=t.stop_after_attempt(ATTEMPTS),
        wait=t.wait_none(),
        reraise=True,
        sleep=lambda _: None,
    )
    flaky = FailOnce()
    name = "tenacity Retrying(stop_after_attempt(3), wait_exponential_jitter)"
    return [
        Case(SYNC, name, lambda: sync(fn), peer="tenacity"),
        Case(
            ASYNC,
            name.replace("Retrying", "AsyncRetrying"),
            afn=lambda: asyn(afn),
            peer="tenacity",
        ),
        Case(
            RETRY,
            "tenacity Retrying(stop_after_attempt(3), wait_none)",
            lambda: rsync(flaky),
            peer="tenacity",
        ),
        Case(
            RETRY,
            "tenacity Retrying(..., wait_none, sleep=no-op)",
            lambda: rnosleep(flaky),
            peer="tenacity",
        ),
    ]


def stamina_cases() -> list[Case]:
    import stamina
    from stamina.instrumentation import set_on_retry_hooks

    # No instrumentation by default here: stamina would otherwise pick up the
    # prometheus_client and structlog installed in the venv (see exporters).
    set_on_retry_hooks([])
    kws = {
        "attempts": ATTEMPTS,
        "timeout": None,
        "wait_initial": BASE_DELAY,
        "wait_max": MAX_DELAY,
    }
    zero = {**kws, "wait_initial": 0, "wait_max": 0, "wait_jitter": 0}
    sync = stamina.RetryingCaller(**kws).on(Exception)
    asyn = stamina.AsyncRetryingCaller(**kws).on(Exception)
    rsync = stamina.RetryingCaller(**zero).on(Exception)
    flaky = FailOnce()

    def context() -> int:
        for attempt in stamina.retry_context(on=Exception, **kws):
            with attempt:
                return fn()
        return 0

    return [
        Case(
            SYNC,
            "stamina RetryingCaller(attempts=3)",
            lambda: sync(fn),
            peer="stamina",
        ),
        Case(
            SYNC, "stamina retry_context(attempts=3)", context, peer="stamina"
        ),
        Case(
            ASYNC,
            "stamina AsyncRetryingCaller(attempts=3)",
            afn=lambda: asyn(afn),
            peer="stamina",
        ),
        Case(
            RETRY,
            "stamina RetryingCaller(attempts=3, no wait), no hooks",
            lambda: rsync(flaky),
            peer="stamina",
        ),
    ]


def backoff_cases() -> list[Case]:
    import backoff

    sync = backoff.on_exception(
        backoff.expo,
        Exception,
        max_tries=ATTEMPTS,
        factor=BASE_DELAY,
        max_value=MAX_DELAY,
    )(fn)
    asyn = backoff.on_exception(
        backoff.expo,
        Exception,
        max_tries=ATTEMPTS,
        factor=BASE_DELAY,
        max_value=MAX_DELAY,
    )(afn)
    flaky = FailOnce()

    def flaky_fn() -> int:  # backoff wants a function (it reads __name__)
        return flaky()

    rsync = backoff.on_exception(
        backoff.constant,
        Exception,
        max_tries=ATTEMPTS,
        interval=0,
        jitter=None,
    )(flaky_fn)
    return [
        Case(
            SYNC,
            "backoff on_exception(expo, max_tries=3)",
            sync,
            peer="backoff",
        ),
        Case(
            ASYNC,
            "backoff on_exception(expo, max_tries=3)",
            afn=asyn,
            peer="backoff",
        ),
        Case(
            RETRY,
            "backoff on_exception(constant 0, max_tries=3)",
            rsync,
            peer="backoff",
        ),
    ]


def pybreaker_cases() -> list[Case]:
    import pybreaker

    breaker = pybreaker.CircuitBreaker(
        fail_max=FAILURES, reset_timeout=RECOVERY
    )
    return [
        Case(
            SYNC,
            "pybreaker CircuitBreaker.call(fn)",
            lambda: breaker.call(fn),
            peer="pybreaker",
        ),
    ]


def circuitbreaker_cases() -> list[Case]:
    import circuitbreaker

    sync = circuitbreaker.CircuitBreaker(
        failure_threshold=FAILURES, recovery_timeout=RECOVERY, name="bench"
    )(fn)
    asyn = circuitbreaker.CircuitBreaker(
        failure_threshold=FAILURES, recovery_timeout=RECOVERY, name="abench"
    )(afn)
    return [
        Case(
            SYNC, "circuitbreaker @CircuitBreaker", sync, peer="circuitbreaker"
        ),
        Case(
            ASYNC,
            "circuitbreaker @CircuitBreaker",
            afn=asyn,
            peer="circuitbreaker",
        ),
    ]


def purgatory_cases() -> list[Case]:
    from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

    sync = SyncCircuitBreakerFactory(
        default_threshold=FAILURES, default_ttl=RECOVERY
    )("bench")(fn)
    asyn = AsyncCircuitBreakerFactory(
        default_threshold=FAILURES, default_ttl=RECOVERY
    )("bench")(afn)
    return [
        Case(
            SYNC,
            "purgatory SyncCircuitBreakerFactory decorator",
            sync,
            peer="purgatory",
        ),
        Case(
            ASYNC,
            "purgatory AsyncCircuitBreakerFactory decorator",
            afn=asyn,
            peer="purgatory",
        ),
    ]


def nopanic_cases() -> list[Case]:
    import nopanic

    def policy(*, zero_wait: bool = False) -> nopanic.retry:
        return nopanic.retry(
            attempts=ATTEMPTS,
            on=Exception,
            backoff=(
                0.0
                if zero_wait
                else nopanic.backoff.full_jitter(
                    base=BASE_DELAY, cap=MAX_DELAY
                )
            ),
        )

    flaky, aflaky = FailOnce(), AsyncFailOnce()

    def flaky_fn() -> int:  # decorators want a function, not an object
        return flaky()

    async def aflaky_fn() -> int:
        return await aflaky()

    name = "nopanic @retry(attempts=3, full_jitter)"
    zero = "nopanic @retry(attempts=3, backoff=0)"
    return [
        Case(SYNC, name, policy()(fn), peer="nopanic"),
        Case(ASYNC, name, afn=policy()(afn), peer="nopanic"),
        Case(RETRY, zero, policy(zero_wait=True)(flaky_fn), peer="nopanic"),
        Case(
            ARETRY,
            zero,
            afn=policy(zero_wait=True)(aflaky_fn),
            peer="nopanic",
        ),
    ]


def cases(smoke: bool) -> list[Case]:  # noqa: ARG001 - same cases either way
    out = stormwall_cases()
    for builder in (
        limitpal_cases,
        tenacity_cases,
        stamina_cases,
        backoff_cases,
        pybreaker_cases,
        circuitbreaker_cases,
        purgatory_cases,
        nopanic_cases,
    ):
        try:
            out.extend(builder())
        except ImportError:
            continue
    return out
