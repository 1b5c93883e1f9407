"""
ResilientExecutor: the pipeline for synchronous code.

The loop here and in `_async.py` list the same steps in the same order; the
diff between the two is ``await`` and which wait primitive is used.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ._errors import CircuitOpenError, ConfigError, RejectedError
from ._executor import ExecutorBase, _outcome, chain, failure_outcome


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._component import CallContext


P = ParamSpec("P")
T = TypeVar("T")


class ResilientExecutor(ExecutorBase):
    """
    Run synchronous calls through the resilience pipeline.

    Every call passes the circuit breaker, the rate limiter and the bulkhead,
    runs, is recorded, and is retried with back-off while the retry policy
    allows; the fallback, if any, supplies the value of a call that failed
    for good. When retries run out, the function's own last exception is
    raised unchanged.

    Args:
        name: Names the executor in events, metrics and traces.
        limiter: A rate limiter, keyed by the call's key.
        retry_policy: When and how long to back off; ``None`` = one attempt.
        circuit_breaker: Fails calls fast while the upstream is unhealthy.
        bulkhead: Caps concurrent calls.
        timeout: Not supported here: a running thread cannot be interrupted
            safely. Use `AsyncResilientExecutor` for per-attempt timeouts, or
            ``RetryPolicy(deadline=...)`` to bound the total time.
        limiter_timeout: The longest a call may wait for the limiter;
            ``None`` waits as long as needed, ``0`` never waits.
        fallback: ``fallback(error)`` returns the value of a call that failed
            for good (rejections included).
        clock: The clock of the whole pipeline (default: the one its
            components were given, else real time).
        bus: Where events go (default: `stormwall.default_bus`).

    Raises:
        ConfigError: a parameter outside its domain, or components whose
            clocks disagree.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def _check_async_only(self) -> None:
        # A component whose state lives behind an asyncio client (a Redis
        # backend built on redis.asyncio) cannot serve a synchronous caller:
        # refuse it now rather than on the first call.
        for param, component in self._components():
            if getattr(component, "_async_only", False) or getattr(
                component, "_async_store", False
            ):
                raise ConfigError(
                    param,
                    f"{component.name!r} uses an asyncio client; give it a "
                    "synchronous client or use AsyncResilientExecutor",
                )

    def _check_timeout(self, timeout: object) -> float | None:
        if timeout is not None:
            raise ConfigError(
                "timeout",
                "per-attempt timeouts need AsyncResilientExecutor (a running "
                "thread cannot be interrupted safely); bound the total time "
                "with RetryPolicy(deadline=...)",
            )
        return None

    def run(
        self,
        key: str,
        fn: Callable[P, T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """
        Call ``fn(*args, **kwargs)`` through the pipeline.

        Args:
            key: Whose call this is: the limiter's key (e.g. a user or
                tenant id). Never a metric label unless opted in.
            fn: The function to protect.
            args: Its positional arguments.
            kwargs: Its keyword arguments.

        Returns:
            What ``fn`` returned (or the fallback's value). When retries on
            a result rejected by ``retry_on_result`` run out, that last
            result is returned as is: the fallback replaces exceptions only.

        Raises:
            CircuitOpenError: the breaker is open (chained to the last
                failure when it opened mid-retry).
            RateLimitedError: the limiter would have made the call wait past
                ``limiter_timeout``.
            BulkheadFullError: no concurrency slot within ``max_wait``.
            Exception: ``fn``'s own last exception, when retries ran out.
        """
        # `_open` only when it has work (a key to refuse, a listener to
        # tell): a call without listeners skips it.
        ctx = None
        for bus in self._buses:
            if bus._subs or key.__class__ is not str:
                ctx = self._open(key)
                break
        clock = self._clock
        breaker, limiter, bulkhead = (
            self._breaker,
            self._limiter,
            self._bulkhead,
        )
        # The clock is read only for what uses the time: events, a budget, a
        # deadline (`_dated`), a breaker's slow-call rule (`_timed`).
        started = clock.now() if ctx is not None or self._dated else 0.0
        timed = ctx is not None or self._timed
        if self._budget is not None:
            self._budget._deposit(started)
        attempt = 0
        error: BaseException | None = None
        previous: float | None = None
        try:
            while True:
                # -- admission: breaker, limiter, bulkhead
                if ctx is not None:
                    ctx.attempt = attempt + 1
                permit = None
                if breaker is not None:
                    try:
                        permit = breaker._admit(ctx)
                    except CircuitOpenError as exc:
                        return cast(
                            "T",
                            self._give_up(ctx, exc, error, attempt, started),
                        )
                try:
                    if limiter is not None:
                        limiter._acquire(key, 1, self._limiter_timeout, ctx)
                    if bulkhead is not None:
                        bulkhead._acquire(ctx)
                except BaseException as exc:
                    if breaker is not None:
                        breaker._release(permit)
                    if isinstance(exc, RejectedError):
                        return cast(
                            "T",
                            self._give_up(ctx, exc, error, attempt, started),
                        )
                    raise

                # -- the call
                attempt += 1
                t0 = clock.now() if timed else 0.0
                try:
                    if ctx is not None:
                        self._attempt_started(ctx, attempt, t0)
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    duration = clock.now() - t0 if timed else 0.0
                    if bulkhead is not None:
                        bulkhead._release(ctx)
                    if not isinstance(exc, Exception):
                        # Interrupted, not failed: free the probe slot,
                        # record nothing; the outer handler reports it.
                        if breaker is not None:
                            breaker._release(permit)
                        raise
                    if ctx is not None:
                        self._attempt_ended(ctx, _outcome(exc), duration, exc)
                    if breaker is not None:
                        breaker._on_failure(permit, exc, duration, ctx)
                    error, rejected_result = exc, None
                else:
                    duration = clock.now() - t0 if timed else 0.0
                    if bulkhead is not None:
                        bulkhead._release(ctx)
                    test = self._result_test
                    try:
                        retry = test is not None and test(result)
                    except BaseException:
                        if breaker is not None:
                            breaker._release(permit)
                        raise
                    if not retry:
                        if ctx is not None:
                            self._attempt_ended(ctx, "success", duration, None)
                        if breaker is not None:
                            breaker._on_success(permit, duration, ctx)
                        if ctx is not None:
                            self._call_ended(
                                ctx, "success", attempt, started, None
                            )
                        return result
                    if ctx is not None:
                        self._attempt_ended(ctx, "failure", duration, None)
                    if breaker is not None:
                        breaker._on_failure(permit, None, duration, ctx)
                    error, rejected_result = None, result

                # -- retry?
                try:
                    delay = None
                    if self._retry_wanted(attempt, error):
                        if breaker is not None and breaker._rejecting():
                            breaker._release(breaker._admit(ctx))
                        delay = self._retry_delay(
                            attempt,
                            error,
                            rejected_result,
                            started,
                            previous,
                            ctx,
                        )
                except CircuitOpenError as exc:
                    return cast(
                        "T", self._give_up(ctx, exc, error, attempt, started)
                    )
                except Exception as exc:
                    # A user hook (retry_on, retry_after) raised: surface its
                    # bug, with the failure it was judging as context.
                    chain(exc, error, context=True)
                    raise
                if delay is None:
                    if error is None:
                        # Retries on a result ran out: the caller gets the
                        # last result, as the function returned it.
                        if ctx is not None:
                            self._call_ended(
                                ctx, "failure", attempt, started, None
                            )
                        return cast("T", rejected_result)
                    return cast(
                        "T", self._give_up(ctx, error, None, attempt, started)
                    )
                clock.sleep(delay)
                previous = delay
        except BaseException as exc:
            if ctx is not None:
                self._abandon(ctx, exc, attempt, started)
            raise

    def _give_up(
        self,
        ctx: CallContext | None,
        error: BaseException,
        cause: BaseException | None,
        attempts: int,
        started: float,
    ) -> Any:
        """End a failed call: the fallback's value, or raise ``error``."""
        chain(error, cause)
        fallback = self._fallback
        if fallback is None or not isinstance(error, Exception):
            if ctx is not None:
                self._call_ended(
                    ctx,
                    failure_outcome(error, attempts),
                    attempts,
                    started,
                    error,
                )
            raise error
        try:
            value = fallback(error)
        except Exception as exc:
            if ctx is not None:
                self._call_ended(ctx, "failure", attempts, started, exc)
            raise
        self._fallback_used(ctx, error, attempts, started)
        return value

    def protect(
        self, key: str | Callable[..., str] = "default"
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """
        Decorate a function so every call of it runs through `run`.

        Args:
            key: A fixed key, or a function of the call's arguments that
                returns it (e.g. ``lambda user_id, **_: user_id``).

        .. versionadded:: 0.1.0
        """
        key_of = _key_function(key)

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return self.run(key_of(*args, **kwargs), fn, *args, **kwargs)

            return wrapper

        return decorate


def _key_function(key: str | Callable[..., str]) -> Callable[..., str]:
    if isinstance(key, str):

        def fixed(*_args: object, **_kwargs: object) -> str:
            return key

        return fixed
    if callable(key):
        return key
    raise ConfigError(
        "key",
        "expected a str or a function returning one, "
        f"got {type(key).__name__}",
    )


__all__ = ["ResilientExecutor"]
