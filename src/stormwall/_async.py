"""
AsyncResilientExecutor: the pipeline for asyncio code.

The twin of `_sync.py`, step for step; the differences are ``await``, the
wait primitives, and the per-attempt timeout that only a coroutine can have.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from ._clock import MonotonicClock, call_at
from ._errors import AttemptTimeoutError, CircuitOpenError, RejectedError
from ._executor import (
    ExecutorBase,
    _outcome,
    chain,
    chain_handled,
    failure_outcome,
    tally_abandon,
)
from ._limiters import give_back
from ._sync import _protect_args


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from types import TracebackType

    from ._clock import Clock
    from ._component import CallContext


P = ParamSpec("P")
T = TypeVar("T")


class AsyncResilientExecutor(ExecutorBase):
    """
    Run coroutine functions through the resilience pipeline.

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
        timeout: Seconds one attempt may run before it is cancelled and
            fails with `AttemptTimeoutError` (retryable, and a breaker
            failure, by default). Kept on the pipeline's clock, so it fires
            in virtual time under `MockClock`.
        limiter_timeout: The longest a call may wait for the limiter;
            ``None`` waits as long as needed, ``0`` never waits. A retry
            policy's ``deadline`` bounds this wait and the bulkhead's too:
            a wait that would end past it is refused at once.
        fallback: ``fallback(error)`` returns the value of a call that failed
            for good (rejections included); an awaitable it returns is
            awaited.
        clock: The clock of the whole pipeline (default: the one its
            components were given, else real time).
        bus: Where events go (default: `stormwall.default_bus`).

    Components given no ``name`` take the executor's, so each executor's
    breaker, limiter and bulkhead report under their own name; two distinct
    components of one kind and name on one bus are logged as a warning on
    the ``stormwall`` logger when wired (their metrics would blend).

    Raises:
        ConfigError: a parameter outside its domain, components whose
            clocks disagree, or a limiter that can never grant the 1 permit
            an attempt takes.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def run(
        self,
        key: str,
        fn: Callable[P, Awaitable[T]],
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
                ``limiter_timeout``, or past the retry policy's ``deadline``.
            BulkheadFullError: no concurrency slot within ``max_wait`` (or
                before the ``deadline``).
            AttemptTimeoutError: the last attempt ran past ``timeout``.
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
        timeout = self._timeout
        # A breaker whose state lives behind an asyncio client (a Redis store)
        # is asked with awaits; a local one with plain calls (no await cost).
        remote = breaker is not None and breaker._async_store
        # The clock is read only for what uses the time: events, a budget, a
        # deadline (`_dated`), a breaker's slow-call rule (`_timed`).
        # tally: pull metrics (stormwall/_tally.py), None unless a pull
        # exporter is attached to this bus; it needs the times too.
        tally = self._bus._tally
        started = (
            clock.now()
            if ctx is not None or self._dated or tally is not None
            else 0.0
        )
        timed = ctx is not None or self._timed or tally is not None
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
                        permit = (
                            await breaker._admit_async(ctx)
                            if remote
                            else breaker._admit(ctx)
                        )
                    except CircuitOpenError as exc:
                        return cast(
                            "T",
                            await self._give_up(
                                ctx, exc, error, attempt, started
                            ),
                        )
                if limiter is not None or bulkhead is not None:
                    # A permit the bulkhead then refuses is given back; no
                    # wait runs past the deadline (``left``: the time left).
                    deadline = self._deadline
                    receipt: list[Any] | None = None
                    try:
                        left = (
                            None
                            if deadline is None
                            else started + deadline - clock.now()
                        )
                        if limiter is not None:
                            wait = self._limiter_timeout
                            if left is not None and (
                                wait is None or left < wait
                            ):
                                wait = left if left > 0 else 0.0
                            if self._refunds:
                                receipt = []
                                waited = (
                                    await limiter._acquire_refundable_async(
                                        key, 1, wait, ctx, receipt
                                    )
                                )
                            else:
                                waited = await limiter._acquire_async(
                                    key, 1, wait, ctx
                                )
                            if left is not None and waited:
                                left -= waited
                        if bulkhead is not None:
                            if left is None:
                                await bulkhead._acquire_async(ctx)
                            else:
                                await bulkhead._acquire_async(ctx, left)
                    except BaseException as exc:
                        if receipt:
                            give_back(receipt)
                        if breaker is not None:
                            if remote:
                                await breaker._release_async(permit)
                            else:
                                breaker._release(permit)
                        if isinstance(exc, RejectedError):
                            return cast(
                                "T",
                                await self._give_up(
                                    ctx, exc, error, attempt, started
                                ),
                            )
                        raise

                # -- the call
                attempt += 1
                t0 = clock.now() if timed else 0.0
                try:
                    if ctx is not None:
                        self._attempt_started(ctx, attempt, t0)
                    awaitable = fn(*args, **kwargs)
                    if type(awaitable) is not _Coroutine and (
                        not inspect.isawaitable(awaitable)
                    ):
                        raise _NotAwaitableError(fn, awaitable)  # noqa: TRY301
                    if timeout is None:
                        result = await awaitable
                    else:
                        async with _Timeout(clock, timeout):
                            result = await awaitable
                except BaseException as exc:
                    duration = clock.now() - t0 if timed else 0.0
                    if tally is not None:  # tally: attempt end (raised)
                        tally.attempt(self._name, _outcome(exc), duration)
                    if bulkhead is not None:
                        bulkhead._release(ctx)
                    if not isinstance(exc, Exception) or isinstance(
                        exc, _NotAwaitableError
                    ):
                        # Interrupted, not failed (or misused): free the
                        # probe slot, record nothing; the outer handler
                        # reports it.
                        if breaker is not None:
                            if remote:
                                await breaker._release_async(permit)
                            else:
                                breaker._release(permit)
                        raise
                    if ctx is not None:
                        self._attempt_ended(ctx, _outcome(exc), duration, exc)
                    if breaker is not None:
                        if remote:
                            await breaker._on_failure_async(
                                permit, exc, duration, ctx
                            )
                        else:
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
                            if remote:
                                await breaker._release_async(permit)
                            else:
                                breaker._release(permit)
                        raise
                    if tally is not None:  # tally: attempt end (returned)
                        tally.attempt(
                            self._name,
                            "failure" if retry else "success",
                            duration,
                        )
                    if not retry:
                        if ctx is not None:
                            self._attempt_ended(ctx, "success", duration, None)
                        if breaker is not None:
                            if remote:
                                await breaker._on_success_async(
                                    permit, duration, ctx
                                )
                            else:
                                breaker._on_success(permit, duration, ctx)
                        if ctx is not None:
                            self._call_ended(
                                ctx, "success", attempt, started, None
                            )
                        if tally is not None:  # tally: call end (success)
                            tally.call(
                                self._name, "success", t0 + duration - started
                            )
                        return result
                    if ctx is not None:
                        self._attempt_ended(ctx, "failure", duration, None)
                    if breaker is not None:
                        if remote:
                            await breaker._on_failure_async(
                                permit, None, duration, ctx
                            )
                        else:
                            breaker._on_failure(permit, None, duration, ctx)
                    error, rejected_result = None, result

                # -- retry?
                try:
                    delay = None
                    if self._retry_wanted(attempt, error):
                        if breaker is not None and breaker._rejecting():
                            if remote:
                                await breaker._release_async(
                                    await breaker._admit_async(ctx)
                                )
                            else:
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
                        "T",
                        await self._give_up(ctx, exc, error, attempt, started),
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
                        if tally is not None:  # tally: call end (result)
                            tally.call(
                                self._name, "failure", clock.now() - started
                            )
                        return cast("T", rejected_result)
                    return cast(
                        "T",
                        await self._give_up(
                            ctx, error, None, attempt, started
                        ),
                    )
                await clock.sleep_async(delay)
                previous = delay
        except BaseException as exc:
            if ctx is not None:
                self._abandon(ctx, exc, attempt, started)
            if tally is not None:  # tally: call end (raised)
                tally_abandon(self, tally, exc, attempt, started)
            raise

    async def _give_up(
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
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            # As if it had run while handling the failure: keep it.
            chain_handled(exc, error)
            if ctx is not None:
                self._call_ended(ctx, "failure", attempts, started, exc)
            raise
        self._fallback_used(ctx, error, attempts, started)
        return value

    @overload
    def protect(
        self, fn: Callable[P, Awaitable[T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def protect(
        self, key: str = "default", /
    ) -> Callable[
        [Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]
    ]: ...

    @overload
    def protect(
        self, /, *, key: str | Callable[..., str]
    ) -> Callable[
        [Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]
    ]: ...

    def protect(
        self,
        fn: Any = None,
        /,
        *,
        key: Any = None,
    ) -> Any:
        """
        Decorate a function so every call of it runs through `run`.

        Use it bare (``@executor.protect``) or called
        (``@executor.protect(key=...)``); bare, or called without a key,
        every call uses the key ``"default"``, like `run` callers who share
        one budget.

        Args:
            fn: The function, when used bare; or a fixed key (a str).
            key: A fixed key, or a function of the call's arguments that
                returns it (e.g. ``lambda user_id, **_: user_id``); by
                keyword, since a function given first is the one to protect.

        Raises:
            ConfigError: ``key`` is neither a str nor a function.

        .. versionadded:: 0.1.0
        """
        key_of, bare = _protect_args(fn, key)

        def decorate(
            fn: Callable[P, Awaitable[T]],
        ) -> Callable[P, Coroutine[Any, Any, T]]:
            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return await self.run(
                    key_of(*args, **kwargs), fn, *args, **kwargs
                )

            return wrapper

        return decorate if bare is None else decorate(bare)


_Coroutine = types.CoroutineType


class _NotAwaitableError(TypeError):
    """
    A sync function given to the async executor.

    A usage error: never retried, never recorded as an upstream failure.
    """

    def __init__(self, fn: object, value: object) -> None:
        name = getattr(fn, "__qualname__", repr(fn))
        super().__init__(
            f"{name} returned {type(value).__name__}, not an awaitable: "
            "AsyncResilientExecutor runs coroutine functions; use "
            "ResilientExecutor for synchronous code"
        )


class _Timeout:
    """
    Cancel the current task at a deadline on the pipeline's clock.

    Like `asyncio.timeout`, but the deadline is kept by the clock, so under
    `MockClock` it fires in virtual time; with the real clock it is
    `asyncio.timeout` itself.

    The cancellation is only ever requested on the task's own loop and only
    while the attempt is still inside the block, and a cancellation that was
    requested but not delivered before the block ended is consumed here, so
    no stray `CancelledError` reaches the caller's next ``await``.
    """

    __slots__ = (
        "_cancel",
        "_clock",
        "_exited",
        "_expired",
        "_loop",
        "_seconds",
        "_task",
    )

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._expired = False
        self._exited = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: Any = None

    async def __aenter__(self) -> None:
        if isinstance(self._clock, MonotonicClock):
            self._cancel = asyncio.timeout(self._seconds)
            await self._cancel.__aenter__()
            return
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._cancel = call_at(
            self._clock, self._clock.now() + self._seconds, self._expire
        )

    def _expire(self) -> None:
        """The deadline passed (called from whoever moved the clock)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        """On the task's loop: cancel the attempt, unless it is over."""
        task = self._task
        if self._exited or task is None or task.done():
            return
        self._expired = True
        task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(self._clock, MonotonicClock):
            try:
                await self._cancel.__aexit__(exc_type, exc, tb)
            except TimeoutError as timeout:
                raise AttemptTimeoutError(self._seconds) from timeout
            return
        self._exited = True
        self._cancel()
        task = self._task
        if not self._expired or task is None:
            return
        others = task.uncancel()
        if exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError
        ):
            if others == 0:
                raise AttemptTimeoutError(self._seconds) from exc
            return  # cancelled from outside as well: let it propagate
        # The attempt ended without seeing our cancellation (it finished
        # first, or swallowed it): consume a still-pending one here.
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            # Someone else cancelled too (before or meanwhile): theirs wins.
            if others > 0 or task.cancelling() > others:
                raise


__all__ = ["AsyncResilientExecutor"]
