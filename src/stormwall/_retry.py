"""
Retry: which failures to retry, how long to wait, how many retries in all.

`RetryPolicy` is an immutable, stateless configuration: it classifies
failures and computes delays (the arithmetic lives in
``stormwall._core._backoff``) but never sleeps and keeps no per-call state,
so one policy serves any number of executors, threads and tasks. The
executor keeps the per-call state (attempt number, previous delay, deadline)
and passes it in.

`RetryBudget` is the shared, stateful part: a sliding-window allowance of
retries relative to calls (Finagle's ``RetryBudget``; gRPC's retry
throttling has the same aim with a token count), so an outage cannot turn
every call into ``max_attempts`` calls.

Rules the executors rely on (docs/internals.md):

- `RetryPolicy._retries` never retries a ``BaseException`` that is not an
  ``Exception`` (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``),
  nor a `RejectedError`: stormwall's own local rejections are never retried,
  whatever ``retry_on`` says.
- A ``retry_after`` hint, when the hook returns one, replaces the computed
  back-off and is clamped to ``[0, max_delay]``.
- `RetryBudget._withdraw` spends nothing when it denies.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NoReturn

from . import _validate
from ._component import Component
from ._core import _backoff
from ._core._window import BucketWindow
from ._errors import ConfigError, RejectedError


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._clock import Clock
    from ._core._backoff import RandomSource


__all__ = ["RetryBudget", "RetryBudgetStatistics", "RetryPolicy"]


_JITTER_MODES: Final = ("full", "equal", "decorrelated")

# Jitter dispatch codes, resolved once at construction so `_backoff` does not
# compare strings on every retry.
_NONE, _FULL, _EQUAL, _DECORRELATED, _PROPORTIONAL = range(5)
_MODE_CODES: Final = {
    "full": _FULL,
    "equal": _EQUAL,
    "decorrelated": _DECORRELATED,
}


class _DefaultMaxDelay(float):
    """
    The type of `RetryPolicy`'s ``max_delay`` default: reads as ``10.0``.

    Only the one instance below is ever made, so ``max_delay is
    _DEFAULT_MAX_DELAY`` tells "not given" from a user's own ``10.0``
    while the signature and the docs still show the documented default.
    """

    __slots__ = ()


_DEFAULT_MAX_DELAY: Final = _DefaultMaxDelay(10.0)


def _plain_number(param: str, value: object) -> None:
    """Refuse a ``timedelta`` where a dimensionless number is expected."""
    if isinstance(value, timedelta):
        raise ConfigError(param, "expected a number, got timedelta")


def _optional_callable(param: str, value: object) -> Any:
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise ConfigError(
            param, f"expected a callable or None, got {type(value).__name__}"
        )
    return value


def _check_jitter(value: object) -> tuple[str | float | None, int, float]:
    """The normalised jitter, its dispatch code and its fraction."""
    if value is None:
        return None, _NONE, 0.0
    if isinstance(value, str):
        if value not in _MODE_CODES:
            raise ConfigError(
                "jitter",
                f"expected one of {', '.join(map(repr, _JITTER_MODES))}, "
                f"None or a fraction in (0, 1], got {value!r}",
            )
        return value, _MODE_CODES[value], 0.0
    _plain_number("jitter", value)
    try:
        fraction = _validate.fraction("jitter", value)
    except ConfigError as exc:
        raise ConfigError(
            "jitter",
            f"{exc.args[0].partition(': ')[2]} (use None for no jitter)",
        ) from None
    return fraction, _PROPORTIONAL, fraction


class RetryPolicy:
    """
    When to retry a failed call and how long to wait before each retry.

    The delay after the *n*-th failure is ``base_delay * multiplier **
    (n - 1)``, capped at ``max_delay``, then jittered. Immutable and
    stateless: share one policy between executors freely.

    Args:
        max_attempts: Attempts in total, the first one included (``1``
            disables retrying). Choose it from how long the caller can
            wait: with the defaults, 3 attempts cost up to
            ``0.1 + 0.2`` seconds of back-off. Each extra attempt multiplies
            the worst-case load an outage puts on the server; pair large
            values with a `RetryBudget`.
        base_delay: Seconds before the first retry (a number or a
            ``timedelta``; ``0`` retries at once). Pick about the time the
            dependency needs to recover from a blip: tens of milliseconds
            for an in-datacentre service, a second for a third-party API.
        max_delay: The cap on any single delay, server hints included. Keep
            it well below the caller's own timeout, or use ``deadline``.
            When not given it is 10 seconds, or ``base_delay`` when that is
            larger (then every delay is ``base_delay``, jittered); a given
            ``max_delay`` below ``base_delay`` is a `ConfigError`.
        multiplier: Growth factor of the delay per failure (``1``: constant
            back-off). ``2`` is the common choice; lower values retry
            sooner but back off from a struggling server more slowly.
        jitter: ``"full"`` (uniform in ``[0, d]``, the default and the best
            at spreading clients that failed together), ``"equal"``
            (``d/2`` plus up to ``d/2``: keeps a minimum wait),
            ``"decorrelated"`` (each delay drawn from ``[base_delay,
            3 * previous]``, capped: grows without a fixed schedule), a
            fraction ``f`` in ``(0, 1]`` (``d * (1 ± f)``: predictable
            waits) or ``None`` (exact ``d``: only for tests, or a single
            client).
        retry_on: Which exceptions to retry: an exception class, a tuple of
            them, or a predicate taking the exception. Narrow it to
            transient errors (timeouts, connection resets, 5xx); retrying a
            400 only repeats the mistake.
        retry_on_result: ``None``, or a predicate taking a returned value;
            a truthy answer retries (e.g. ``lambda r: r.status_code ==
            503``). When retries run out, the last result is returned.
        deadline: ``None``, or the seconds (or ``timedelta``) a whole call,
            retries and back-off included, may take; no retry is scheduled
            whose back-off would end past it. Set it from the caller's
            latency budget.
        retry_after: ``None``, or a hook taking the exception (or the
            retried result) and returning a server hint in seconds (a
            number or a ``timedelta``), e.g. parsed from a ``Retry-After``
            header, or ``None`` for the normal back-off. A hint is clamped
            to ``[0, max_delay]``; a NaN hint is ignored.
        budget: A `RetryBudget` shared by the executors that should stop
            retrying together when their dependency is down.
        rng: The random source for jitter: any object with ``random() ->
            float`` in ``[0, 1)``, e.g. ``random.Random(7)`` in a test.
            Defaults to a private ``random.Random()``.

    Raises:
        ConfigError: A parameter is outside its domain; it is named in the
            error.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_code",
        "_fraction",
        "_retry_types",
        "_span",
        "_test",
        "base_delay",
        "budget",
        "deadline",
        "jitter",
        "max_attempts",
        "max_delay",
        "multiplier",
        "retry_after",
        "retry_on",
        "retry_on_result",
        "rng",
    )

    max_attempts: int
    base_delay: float
    max_delay: float
    multiplier: float
    jitter: Literal["full", "equal", "decorrelated"] | float | None
    retry_on: (
        type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], object]
    )
    retry_on_result: Callable[[Any], object] | None
    deadline: float | None
    retry_after: Callable[[Any], float | timedelta | None] | None
    budget: RetryBudget | None
    rng: RandomSource
    _code: int
    _fraction: float
    _retry_types: tuple[type[BaseException], ...] | None
    _span: float
    _test: Callable[[BaseException], bool]

    # Positional like the documented signature; callers should use keywords.
    def __init__(
        self,
        max_attempts: int = 3,
        base_delay: float | timedelta = 0.1,
        max_delay: float | timedelta = _DEFAULT_MAX_DELAY,
        multiplier: float = 2.0,
        jitter: Literal["full", "equal", "decorrelated"]
        | float
        | None = "full",
        retry_on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], object] = (Exception,),
        retry_on_result: Callable[[Any], object] | None = None,
        deadline: float | timedelta | None = None,
        retry_after: Callable[[Any], float | timedelta | None] | None = None,
        budget: RetryBudget | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        init = object.__setattr__
        init(
            self,
            "max_attempts",
            _validate.positive_int("max_attempts", max_attempts),
        )
        base = _validate.non_negative("base_delay", base_delay, seconds=True)
        if max_delay is _DEFAULT_MAX_DELAY:
            # Not given: the cap must not turn a valid base_delay into an
            # error about a parameter the user never set.
            cap = max(float(_DEFAULT_MAX_DELAY), base)
        else:
            cap = _validate.positive("max_delay", max_delay, seconds=True)
        if cap < base:
            raise ConfigError(
                "max_delay",
                f"must be >= base_delay ({base!r}), got {max_delay!r}",
            )
        _plain_number("multiplier", multiplier)
        mult = _validate.positive("multiplier", multiplier)
        if mult < 1.0:
            raise ConfigError(
                "multiplier", f"must be >= 1, got {multiplier!r}"
            )
        init(self, "base_delay", base)
        init(self, "max_delay", cap)
        init(self, "multiplier", mult)
        init(self, "_span", _backoff.log_span(base, cap))

        normalised, code, fraction = _check_jitter(jitter)
        init(self, "jitter", normalised)
        init(self, "_code", code)
        init(self, "_fraction", fraction)

        if isinstance(retry_on, type) and not issubclass(
            retry_on, BaseException
        ):
            # A class is callable, so it would pass as a predicate and fail
            # only on the first error: ``retry_on=int`` is a typo for types.
            raise ConfigError(
                "retry_on",
                f"expected an exception class, got {retry_on.__name__}",
            )
        init(self, "_test", _validate.exception_matcher("retry_on", retry_on))
        # Types are checked inline in `_retries`, sparing a closure call on
        # every failure; a predicate goes through `_test`.
        if isinstance(retry_on, type):
            init(self, "_retry_types", (retry_on,))
        elif isinstance(retry_on, tuple):
            init(self, "_retry_types", retry_on)
        else:
            init(self, "_retry_types", None)
        init(self, "retry_on", retry_on)

        init(
            self,
            "retry_on_result",
            _optional_callable("retry_on_result", retry_on_result),
        )
        init(
            self,
            "deadline",
            _validate.optional_positive("deadline", deadline, seconds=True),
        )
        init(
            self,
            "retry_after",
            _optional_callable("retry_after", retry_after),
        )
        if budget is not None:
            _validate.instance_of("budget", budget, RetryBudget, "RetryBudget")
        init(self, "budget", budget)
        if rng is None:
            rng = random.Random()
        elif not callable(getattr(rng, "random", None)):
            raise ConfigError(
                "rng",
                "expected an object with a random() method, "
                f"got {type(rng).__name__}",
            )
        init(self, "rng", rng)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(
            f"RetryPolicy is immutable; build a new one to change {name!r}"
        )

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(
            f"RetryPolicy is immutable; cannot delete {name!r}"
        )

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts!r}, "
            f"base_delay={self.base_delay!r}, max_delay={self.max_delay!r}, "
            f"multiplier={self.multiplier!r}, jitter={self.jitter!r}, "
            f"retry_on={self.retry_on!r}, "
            f"retry_on_result={self.retry_on_result!r}, "
            f"deadline={self.deadline!r}, "
            f"retry_after={self.retry_after!r}, budget={self.budget!r})"
        )

    # -- public --------------------------------------------------------------

    def delay(self, attempt: int, error: object = None) -> float:
        """
        The delay before retrying after the ``attempt``-th failure.

        Meant for tests and for users who drive their own loop. Decorrelated
        jitter has no history here, so it uses the un-jittered back-off of
        the previous failure as "previous" (``base_delay`` for the first).

        Args:
            attempt: The failure number, from 1.
            error: The exception (or retried result) that failed the
                attempt; when given, the ``retry_after`` hook may turn it
                into a server hint. ``None`` means no hint.

        Returns:
            Seconds, in ``[0, max_delay]``.

        Raises:
            ConfigError: ``attempt`` is not an ``int`` >= 1.
        """
        attempt = _validate.positive_int("attempt", attempt)
        if error is None:
            return self._jittered(attempt, None)
        return self._backoff(attempt, error, None)

    # -- what the executors call (docs/internals.md) -------------------------

    def _retries(self, error: BaseException) -> bool:
        """Whether the exception ``error`` may be retried."""
        # Cancellation, KeyboardInterrupt and SystemExit are not failures of
        # the call; local rejections are stormwall's own refusal, and
        # retrying them would only hammer our own limiter or breaker.
        if not isinstance(error, Exception) or isinstance(
            error, RejectedError
        ):
            return False
        types = self._retry_types
        if types is not None:
            return isinstance(error, types)
        return self._test(error)

    def _retries_result(self, result: object) -> bool:
        """Whether the returned ``result`` should be retried."""
        test = self.retry_on_result
        return test is not None and bool(test(result))

    def _backoff(
        self,
        attempt: int,
        error_or_result: object,
        previous_delay: float | None,
    ) -> float:
        """
        The delay before the retry that follows failure number ``attempt``.

        ``previous_delay`` is the delay this call slept before its last
        attempt (``None`` before the first retry); only decorrelated jitter
        uses it. A ``retry_after`` hint, when the hook gives one, wins.
        """
        hook = self.retry_after
        if hook is not None:
            hint = self._hint(hook(error_or_result))
            if hint is not None:
                return hint
        return self._jittered(attempt, previous_delay)

    # -- helpers -------------------------------------------------------------

    def _hint(self, value: object) -> float | None:
        """A ``retry_after`` hook's answer, clamped, or ``None``."""
        if value is None:
            return None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, int | float):
            # A broken hook is a bug to surface, not a reason to guess.
            msg = (
                "retry_after hook must return seconds (a number or a "
                f"timedelta) or None, got {type(value).__name__}"
            )
            raise TypeError(msg)
        if isinstance(value, int):
            # Clamped exactly, before float(): an int past float range
            # (10**400) would raise OverflowError there.
            return float(min(max(value, 0), self.max_delay))
        if math.isnan(value):
            return None
        return _backoff.clamp(float(value), self.max_delay)

    def _jittered(self, attempt: int, previous: float | None) -> float:
        """The jittered back-off, without server hints."""
        code = self._code
        base, cap = self.base_delay, self.max_delay
        if code == _DECORRELATED:
            if previous is None:
                previous = (
                    base
                    if attempt <= 1
                    else _backoff.exponential(
                        attempt - 1, base, self.multiplier, cap, self._span
                    )
                )
            return _backoff.clamp(
                _backoff.decorrelated_jitter(previous, base, cap, self.rng),
                cap,
            )
        d = _backoff.exponential(
            attempt, base, self.multiplier, cap, self._span
        )
        if code == _FULL:
            return _backoff.clamp(_backoff.full_jitter(d, self.rng), cap)
        if code == _EQUAL:
            return _backoff.clamp(_backoff.equal_jitter(d, self.rng), cap)
        if code == _PROPORTIONAL:
            return _backoff.proportional_jitter(
                d, self._fraction, cap, self.rng
            )
        return d

    def _drawing_from(self, rng: RandomSource) -> Callable[[], None]:
        """
        Draw jitter from ``rng`` until the returned function is called.

        The simulator's seam: a seeded run must not depend on the policy's
        own generator (nor advance it).
        """
        own = self.rng
        object.__setattr__(self, "rng", rng)
        return lambda: object.__setattr__(self, "rng", own)


# Buckets per ttl in the budget's window. More buckets age calls out more
# smoothly (a call counts for between ttl * (1 - 1/_SLICES) and ttl seconds)
# at the cost of a longer roll-over after an idle period. Ten keeps the
# window within 10 % of ttl for the price of twenty integers.
_SLICES: Final = 10

# Absorbs float rounding in ratio * calls (0.57 * 100 == 56.99999999999999):
# an allowance that is an integer on paper must allow that many retries.
_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """
    A snapshot of a `RetryBudget`.

    Attributes:
        calls: Logical calls deposited within the current window.
        retries: Retries withdrawn within the current window.
        available: Retries that would be allowed right now
            (``floor(ratio * calls + min_per_second * ttl - retries)``, at
            least 0).
        total_calls: Calls deposited since the budget was created.
        total_retries: Retries allowed since the budget was created.
        total_denied: Retries denied since the budget was created.
    """

    calls: int
    retries: int
    available: int
    total_calls: int
    total_retries: int
    total_denied: int


class RetryBudget(Component):
    """
    A cap on retries across all calls, relative to traffic.

    Over a sliding window of ``ttl`` seconds, retries are allowed while
    ``retries <= ratio * calls + min_per_second * ttl`` (Finagle's
    ``RetryBudget``, whose defaults these are). When a
    dependency fails every call, retries stay a fraction of the traffic
    instead of multiplying it by ``max_attempts``; a denied retry ends the
    call with its last failure and reports ``RetryBudgetExhausted``.

    Thread-safe (one lock, O(1) work per call). Share one budget between the
    executors that call the same dependency.

    Args:
        ratio: Retries allowed per logical call, a fraction in ``(0, 1]``.
            It is the extra load you accept during an outage: ``0.2`` lets
            an outage add at most 20 % to the traffic the dependency sees.
        min_per_second: Retries per second allowed regardless of traffic
            (``0``: none). It keeps low-traffic clients able to retry (with
            3 calls a minute, ``ratio`` alone would almost never allow
            one); set it to what the dependency tolerates as a floor, a
            few per second.
        ttl: The window, in seconds (or a ``timedelta``). Calls and retries
            count for between ``0.9 * ttl`` and ``ttl`` seconds; at least
            1 ms. Longer windows smooth bursts but remember a past outage
            longer; 10 seconds follows Finagle.
        clock: The clock for `statistics`; executors pass their own time
            to the budget and adopt or check this clock when wired.

    Raises:
        ConfigError: A parameter is outside its domain.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_lock",
        "_min_per_second",
        "_ratio",
        "_reserve",
        "_total_calls",
        "_total_denied",
        "_total_retries",
        "_ttl",
        "_window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float | timedelta = 10.0,
        clock: Clock | None = None,
    ) -> None:
        Component.__init__(self, "retry_budget", None, clock, None)
        _plain_number("ratio", ratio)
        self._ratio = _validate.fraction("ratio", ratio)
        _plain_number("min_per_second", min_per_second)
        self._min_per_second = _validate.non_negative(
            "min_per_second", min_per_second
        )
        self._ttl = _validate.window("ttl", ttl)
        self._reserve = self._min_per_second * self._ttl
        if math.isinf(self._reserve):
            raise ConfigError(
                "min_per_second", "min_per_second * ttl must be finite"
            )
        self._lock = threading.Lock()
        # Two counters: [calls, retries].
        self._window = BucketWindow(self._ttl, _SLICES, 2)
        self._total_calls = 0
        self._total_retries = 0
        self._total_denied = 0

    _timed_state: ClassVar[tuple[str, ...]] = (
        "_window",
        "_total_calls",
        "_total_retries",
        "_total_denied",
    )

    def _fresh_state(self) -> None:
        self._window = BucketWindow(self._ttl, _SLICES, 2)
        self._total_calls = self._total_retries = self._total_denied = 0

    @property
    def ratio(self) -> float:
        """Retries allowed per logical call in the window."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed regardless of traffic."""
        return self._min_per_second

    @property
    def ttl(self) -> float:
        """The window in seconds."""
        return self._ttl

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, "
            f"min_per_second={self._min_per_second!r}, ttl={self._ttl!r})"
        )

    def statistics(self) -> RetryBudgetStatistics:
        """
        A snapshot of the window and the lifetime counters, as of now.
        """
        now = self._clock.now()
        with self._lock:
            calls, retries = self._window.sums(now)
            return RetryBudgetStatistics(
                calls=calls,
                retries=retries,
                available=max(0, math.floor(self._allowance(calls) - retries)),
                total_calls=self._total_calls,
                total_retries=self._total_retries,
                total_denied=self._total_denied,
            )

    # -- what the executors call (docs/internals.md) -------------------------

    def _deposit(self, now: float) -> None:
        """Count one logical call at ``now``."""
        # acquire/release rather than ``with``: half the cost of the lock
        # on the hot path (every call deposits).
        lock = self._lock
        lock.acquire()
        try:
            self._window.bucket(now)[0] += 1
            self._total_calls += 1
        finally:
            lock.release()

    def _withdraw(self, now: float) -> bool:
        """Spend one retry at ``now``; ``False`` (nothing spent) if denied."""
        lock = self._lock
        lock.acquire()
        try:
            window = self._window
            newest = window.bucket(now)
            past = window.past
            if past[1] + newest[1] + 1 > self._allowance(past[0] + newest[0]):
                self._total_denied += 1
                return False
            newest[1] += 1
            self._total_retries += 1
            return True
        finally:
            lock.release()

    @property
    def _window_calls(self) -> int:
        """Calls in the window as of the last record (time not moved)."""
        return next(self._window.latest())

    @property
    def _window_retries(self) -> int:
        """Retries in the window as of the last record (time not moved)."""
        return list(self._window.latest())[1]

    # -- helpers (call with the lock held) -----------------------------------

    def _allowance(self, calls: int) -> float:
        """Retries the window allows for ``calls``, rounding slack included."""
        allowed = self._ratio * calls + self._reserve
        return allowed + _EPSILON * max(1.0, allowed)
