"""
ResilientExecutor: the driver of the pipeline for synchronous code.

The steps live in `_pipeline.py`; this driver calls the function when a step
says `INVOKE` and blocks on each `Wait`. The async driver (`_async.py`) is
the same loop with ``await`` and the per-attempt timeout.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._executor import ExecutorBase, protect_args
from ._pipeline import INVOKE, RAISE, RETURN, AwaitableError, awaitable, plain


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._pipeline import Call, Wait


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
            ``None`` waits as long as needed, ``0`` never waits. A retry
            policy's ``deadline`` bounds this wait and the bulkhead's too:
            a wait that would end past it is refused at once.
        fallback: ``fallback(error)`` returns the value of a call that failed
            for good (rejections included).
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

    _is_async = False

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
                ``limiter_timeout``, or past the retry policy's ``deadline``.
            BulkheadFullError: no concurrency slot within ``max_wait`` (or
                before the ``deadline``).
            TypeError: ``fn`` is a coroutine function, or returned an
                awaitable: use `AsyncResilientExecutor` (not retried, not a
                breaker failure).
            Exception: ``fn``'s own last exception, when retries ran out.
        """
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
                        result = fn(*args, **kwargs)
                        if type(result) not in plain and awaitable(result):
                            raise AwaitableError(fn, result)  # noqa: TRY301
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
                        outcome = wait.blocking(*wait.args)  # type: ignore[misc]
                    except BaseException as exc:  # noqa: BLE001 - see fail
                        step = wait.fail(exc)
                    else:
                        step = wait.then(outcome)
        except BaseException as exc:
            if not quick:
                call.abandon(exc)
            raise

    @overload
    def protect(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    @overload
    def protect(
        self, key: str = "default", /
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...

    @overload
    def protect(
        self, /, *, key: str | Callable[..., str]
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...

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
            TypeError: the function is a coroutine function (use
                `AsyncResilientExecutor`), at decoration time.
            ConfigError: ``key`` is neither a str nor a function.

        .. versionadded:: 0.1.0
        """
        key_of, bare = protect_args(fn, key)

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            if inspect.iscoroutinefunction(fn):
                raise AwaitableError(fn, None)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return self.run(key_of(*args, **kwargs), fn, *args, **kwargs)

            return wrapper

        return decorate if bare is None else decorate(bare)


__all__ = ["ResilientExecutor"]
