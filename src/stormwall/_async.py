"""
AsyncResilientExecutor: the driver of the pipeline for asyncio code.

The twin of `_sync.py`, line for line; the differences are ``await``, the
wait primitives (each `Wait`'s ``awaiting`` form), and the per-attempt
timeout that only a coroutine can have. The steps live in `_pipeline.py`.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._executor import ExecutorBase, protect_args
from ._pipeline import INVOKE, RAISE, RETURN, CoroutineType, NotAwaitableError
from ._timeout import Timeout


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from ._pipeline import Call, Wait


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

    _is_async = True

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
        timeout = self._timeout
        pipe = self._pipeline
        # The plainest call skips the `Call` for its first attempt, holding
        # just the breaker's permit (see `Pipeline.enter`).
        entered = pipe.enter(key)
        quick = entered.__class__ is int
        call: Call = entered  # type: ignore[assignment]
        try:
            step = INVOKE if quick else call.admit()
            while True:
                if step is INVOKE:
                    try:
                        awaitable = fn(*args, **kwargs)
                        if type(awaitable) is not CoroutineType and (
                            not inspect.isawaitable(awaitable)
                        ):
                            raise NotAwaitableError(fn, awaitable)  # noqa: TRY301
                        if timeout is None:
                            result = await awaitable
                        else:
                            async with Timeout(self._clock, timeout):
                                result = await awaitable
                    except BaseException as exc:  # noqa: BLE001 - see the step
                        failure = exc
                    else:
                        if quick:
                            pipe.settle(entered, 0.0, None)
                            return result
                        step = call.succeeded(result)
                        continue
                    # Judged once the handler is left: no hook runs while
                    # the function's exception is being handled.
                    if quick:
                        quick = False
                        call = pipe.resume(key, entered)  # type: ignore[arg-type]
                    step = call.failed(failure)
                elif step is RETURN:
                    return call.value  # type: ignore[no-any-return]
                elif step is RAISE:
                    raise call.raising  # noqa: TRY301 - what the step decided
                else:
                    wait: Wait = step  # type: ignore[assignment]
                    try:
                        outcome = await wait.awaiting(*wait.args)  # type: ignore[misc]
                    except BaseException as exc:  # noqa: BLE001 - see fail
                        step = wait.fail(exc)
                    else:
                        step = wait.then(outcome)
        except BaseException as exc:
            if not quick:
                call.abandon(exc)
            raise

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
        key_of, bare = protect_args(fn, key)

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


__all__ = ["AsyncResilientExecutor"]
