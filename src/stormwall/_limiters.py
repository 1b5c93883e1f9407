"""
Rate limiters: token bucket, leaky bucket and sliding window.

One object serves threads and asyncio at once. The arithmetic lives in
``stormwall._core._limiters`` (sans-I/O); this module is the shell: one
``threading.Lock`` per limiter around each decision (never held while
waiting), the per-key store, the waiting, and the events.

How a request goes:

1. Under the lock, the core either admits it at once (the fast path: a
   look-up, two additions, a comparison) or computes its exact wait.
2. A wait longer than ``timeout`` raises `RateLimitedError` at once, nothing
   consumed, with the exact ``retry_after``.
3. Otherwise the request is *booked*: the permit is charged now, so later
   requests queue behind it (FIFO), and the caller sleeps until its time
   with a `Waiter` (no polling). If another caller ahead of it cancels, its
   reservation is refunded and the callers behind it are woken to recompute
   when they may go, which is only ever earlier.
4. A caller interrupted while it waits (``CancelledError``,
   ``KeyboardInterrupt``, anything) gets its reservation refunded.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import _tally, _validate
from ._bus import default_bus
from ._clock import Waiter
from ._component import Component
from ._core._keystore import KeyStore
from ._core._limiters import (
    SLACK,
    LeakyBucketPolicy,
    SlidingWindowPolicy,
    TokenBucketPolicy,
)
from ._errors import ConfigError, RateLimitedError
from ._events import LimiterAllowed, LimiterRejected, LimiterWaited


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus
    from ._clock import Clock
    from ._component import CallContext
    from ._composite import CompositeLimiter
    from ._core._limiters import BucketState, Reservation
    from ._events import Event


__all__ = [
    "LeakyBucket",
    "Limiter",
    "LimiterStatistics",
    "SlidingWindow",
    "TokenBucket",
]

_NEVER = -math.inf
# Exact classes accepted without the full check (``bool`` is an ``int``
# subclass, so it falls through to the check and is refused there).
_NUMBERS = (int, float)


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """
    A snapshot of a limiter, from `Limiter.statistics`.

    Attributes:
        limiter: The limiter's name.
        keys: Keys currently tracked (1 for a shared, ``per_key=False``
            limiter; a composite sums its tiers). Keys back at full
            capacity are forgotten lazily, so this follows the keys that
            still owe.
        allowed: Requests admitted at once.
        waited: Requests admitted after waiting for their reservation.
        rejected: Requests refused (``try_acquire`` returning ``False``,
            `RateLimitedError`).
        cancelled: Waits abandoned by cancellation; their reservations were
            refunded unless already due.
        waiting: Callers waiting right now.
        evicted: Keys forgotten: back at full capacity (lossless, by
            default), by ``max_keys`` (LRU) or by ``ttl``.
        evicted_owing: LRU evictions of keys that still owed capacity: each
            may have let that key's next request through early. If it keeps
            growing, raise ``max_keys``. TTL eviction never loses anything.
    """

    limiter: str
    keys: int
    allowed: int
    waited: int
    rejected: int
    cancelled: int
    waiting: int
    evicted: int
    evicted_owing: int


class _Ticket:
    """One waiting caller: its reservations (one per tier) and its waiter."""

    __slots__ = ("owner", "parts", "waiter")

    def __init__(self, owner: CompositeLimiter | None = None) -> None:
        self.parts: list[tuple[_KeyedLimiter, Any, Reservation]] = []
        self.waiter: Waiter | None = None
        # A composite re-plans its pinned reservations when woken early.
        self.owner = owner

    def due(self) -> float:
        """When the caller may go: the latest of its reservations."""
        return max(part[2].at for part in self.parts)


def _notify(reservations: list[Reservation] | None) -> None:
    """Wake the owners of reservations whose time moved."""
    for res in reservations or ():
        ticket = res.handle
        if isinstance(ticket, _Ticket) and ticket.waiter is not None:
            ticket.waiter.notify()


def _wait_sync(ticket: _Ticket, clock: Clock) -> None:
    """Sleep until the ticket is due; refund it if interrupted."""
    try:
        while True:
            # Publish the waiter before reading the time: a refund that moves
            # the time after the read then notifies this waiter.
            waiter = ticket.waiter = Waiter()
            if not waiter.wait(clock, ticket.due()):
                break
            if ticket.owner is not None:
                ticket.owner._replan(ticket)
    except BaseException:
        _cancel(ticket)
        raise
    _served(ticket)


async def _wait_async(ticket: _Ticket, clock: Clock) -> None:
    """`_wait_sync` for asyncio; cancellation refunds the reservation."""
    try:
        while True:
            waiter = ticket.waiter = Waiter()
            if not await waiter.wait_async(clock, ticket.due()):
                break
            if ticket.owner is not None:
                ticket.owner._replan(ticket)
    except BaseException:
        _cancel(ticket)
        raise
    _served(ticket)


def _cancel(ticket: _Ticket) -> None:
    for tier, state, res in ticket.parts:
        with tier._lock:
            later = tier._policy.refund(state, res, tier._clock.now())
            if later is None:
                tier._policy.complete(state, res)
            tier._waiting -= 1
            tier._cancelled += 1
        _notify(later)


def _note(receipt: list[Any], ticket: _Ticket) -> None:
    """Note a served ticket's permits in ``receipt`` (see `give_back`)."""
    receipt.extend(
        (tier, state, res.at, res.cost) for tier, state, res in ticket.parts
    )


def _served(ticket: _Ticket) -> None:
    for tier, state, res in ticket.parts:
        with tier._lock:
            tier._policy.complete(state, res)
            tier._waiting -= 1
            tier._waited += 1


def give_back(receipt: list[Any]) -> None:
    """
    Return the permits noted by `Limiter._acquire_refundable`.

    For an attempt that a later step refused (a full bulkhead): the
    limiter is left as if the request had never come.
    """
    for tier, state, at, cost in receipt:
        with tier._lock:
            moved = tier._policy.give_back(state, tier._clock.now(), cost, at)
        _notify(moved)


def _check_cost(cost: object, max_cost: float, what: str) -> float:
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        raise ConfigError(
            "cost", f"expected a number, got {type(cost).__name__}"
        )
    if not math.isfinite(cost) or cost <= 0:
        raise ConfigError("cost", f"must be a finite number > 0, got {cost!r}")
    if cost > max_cost:
        raise ConfigError(
            "cost", f"{cost!r} exceeds {what}: it could never be granted"
        )
    return cost


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    return _validate.non_negative(
        "timeout", timeout, finite=False, seconds=True
    )


class Limiter(Component):
    """
    The interface every limiter has; one object serves threads and asyncio.

    Limiters are keyed: each key (a user id, a tenant, an endpoint) has its
    own budget unless the limiter was built with ``per_key=False``.
    """

    __slots__ = ()

    # Whether `_acquire_refundable` notes what `give_back` can return.
    _refunds: ClassVar[bool] = False
    # Only the local limiters below keep time on a clock of this process.
    _rebindable: ClassVar[bool] = False

    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """
        Take ``cost`` permits for ``key`` if that needs no waiting.

        Args:
            key: Whose budget to charge.
            cost: How many permits (a finite number > 0).

        Returns:
            Whether the permits were taken.

        Raises:
            ConfigError: ``key`` is not a str, or ``cost`` is out of its
                domain or above what the limiter can ever grant.
        """
        raise NotImplementedError

    def acquire(
        self,
        key: str = "default",
        cost: float = 1,
        timeout: float | None = None,
    ) -> float:
        """
        Take ``cost`` permits for ``key``, waiting for them if needed.

        The wait is a reservation: booked at once in arrival order, then
        slept for; if the caller is interrupted, it is refunded.

        Args:
            key: Whose budget to charge.
            cost: How many permits (a finite number > 0).
            timeout: The longest acceptable wait in seconds; ``None`` waits
                as long as needed, ``0`` never waits.

        Returns:
            The seconds waited (``0.0`` when admitted at once).

        Raises:
            RateLimitedError: The wait would exceed ``timeout``; nothing was
                consumed, and ``retry_after`` is the exact wait.
            ConfigError: A parameter is out of its domain.
        """
        return self._acquire(key, cost, timeout, None)

    async def acquire_async(
        self,
        key: str = "default",
        cost: float = 1,
        timeout: float | None = None,  # noqa: ASYNC109 - the public name
    ) -> float:
        """
        `acquire` for asyncio: the wait suspends the task, not the thread.

        Cancelling the task while it waits refunds its reservation.

        Args:
            key: Whose budget to charge.
            cost: How many permits (a finite number > 0).
            timeout: The longest acceptable wait in seconds; ``None`` waits
                as long as needed, ``0`` never waits.

        Returns:
            The seconds waited (``0.0`` when admitted at once).

        Raises:
            RateLimitedError: The wait would exceed ``timeout``.
            ConfigError: A parameter is out of its domain.
        """
        return await self._acquire_async(key, cost, timeout, None)

    def reset(self, key: str | None = None) -> None:
        """
        Forget the state of ``key`` (every key when ``None``): back to full.

        Callers waiting on a forgotten key proceed at once.
        """
        raise NotImplementedError

    def statistics(self) -> LimiterStatistics:
        """A snapshot of this limiter's counters."""
        raise NotImplementedError

    def _take(
        self,
        key: str,  # noqa: ARG002 - the keyed limiters' signature
        ctx: CallContext | None,  # noqa: ARG002
        receipt: list[Any] | None,  # noqa: ARG002
    ) -> bool:
        """
        Take 1 permit for ``key`` if that needs no wait, else take nothing.

        Never blocks and never refuses: on ``False`` the pipeline asks
        `_acquire` (or `_acquire_async`), which may wait or refuse. This
        default grants nothing at once, so every admission goes there.
        ``key`` is a str (the pipeline checked it); ``receipt`` as in
        `_acquire_refundable`.
        """
        return False

    def _grab(self, key: str) -> bool:  # noqa: ARG002 - see _KeyedLimiter
        """
        `_take` for a call nobody hears, noting nothing: the quick way in.

        Takes 1 permit for ``key`` (a str) if that needs no wait, reports
        nothing and notes no receipt. This default grants nothing at once.
        """
        return False

    def _acquire(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        ctx: CallContext | None,
    ) -> float:
        raise NotImplementedError

    async def _acquire_async(
        self,
        key: str,
        cost: float,
        timeout: float | None,  # noqa: ASYNC109 - the public name
        ctx: CallContext | None,
    ) -> float:
        raise NotImplementedError

    def _acquire_refundable(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        ctx: CallContext | None,
        receipt: list[Any],  # noqa: ARG002 - this limiter notes nothing
    ) -> float:
        """
        `_acquire`, noting in ``receipt`` what `give_back` can return.

        A limiter that cannot take permits back (``_refunds`` false) notes
        nothing.
        """
        return self._acquire(key, cost, timeout, ctx)

    async def _acquire_refundable_async(
        self,
        key: str,
        cost: float,
        timeout: float | None,  # noqa: ASYNC109 - the public name
        ctx: CallContext | None,
        receipt: list[Any],  # noqa: ARG002 - this limiter notes nothing
    ) -> float:
        """`_acquire_refundable` for asyncio."""
        return await self._acquire_async(key, cost, timeout, ctx)

    def _names(self) -> tuple[str, ...]:
        """The names the limiter reports under (a composite: every tier's)."""
        return (self._name,)

    def _emit(
        self,
        ctx: CallContext | None,
        key: str,
        event_type: Callable[..., Event],
        **fields: Any,
    ) -> None:
        """Report like ``_report``, stamping ``key`` outside a call too."""
        if event_type is LimiterWaited:  # the pull metrics' wait histogram
            _tally.count_wait(self, fields["waited"])
        bus = self._bus_for(ctx)
        if bus._subs and bus.wants(event_type):  # type: ignore[arg-type]
            stamp = self._stamp(ctx)
            if ctx is None:
                stamp["key"] = key
            bus.emit(event_type(**stamp, limiter=self._name, **fields))


class _KeyedLimiter(Limiter):
    """A limiter with one policy and a per-key store (not the composite)."""

    __slots__ = (
        "_allowed",
        "_cancelled",
        "_keys",
        "_lock",
        "_max_cost",
        "_policy",
        "_rejected",
        "_shared",
        "_store",
        "_waited",
        "_waiting",
        "_what",
    )

    _policy: Any
    _refunds: ClassVar[bool] = True
    _rebindable: ClassVar[bool] = True
    _timed_state: ClassVar[tuple[str, ...]] = (
        "_store",
        "_keys",
        "_shared",
        "_allowed",
        "_waited",
        "_rejected",
        "_cancelled",
    )

    def __init__(
        self,
        kind: str,
        policy: TokenBucketPolicy | LeakyBucketPolicy | SlidingWindowPolicy,
        max_cost: float,
        what: str,
        name: str | None,
        per_key: bool,
        max_keys: int | None,
        ttl: float | None,
        clock: Clock | None,
        bus: EventBus | None,
    ) -> None:
        Component.__init__(self, kind, name, clock, bus)
        if not isinstance(per_key, bool):
            raise ConfigError(
                "per_key", f"expected a bool, got {type(per_key).__name__}"
            )
        max_keys = _validate.optional_positive_int("max_keys", max_keys)
        ttl = _validate.optional_positive("ttl", ttl, seconds=True)
        self._policy = policy
        self._max_cost = max_cost
        self._what = what
        self._store: KeyStore[Any] = KeyStore(
            policy.new_state, policy.full, max_keys, ttl
        )
        self._shared = None if per_key else policy.new_state()
        # The store's plain dict (an empty one when bounded): the hot paths
        # look a key up inline and call the store only on a miss.
        self._keys = self._store.fast
        self._lock = threading.Lock()
        self._allowed = 0
        self._waited = 0
        self._rejected = 0
        self._cancelled = 0
        self._waiting = 0

    def _fresh_state(self) -> None:
        policy, store = self._policy, self._store
        self._store = KeyStore(
            policy.new_state, policy.full, store.max_keys, store.ttl
        )
        self._keys = self._store.fast
        self._shared = None if self._shared is None else policy.new_state()
        self._allowed = self._waited = self._rejected = self._cancelled = 0

    def _state(self, key: str, now: float) -> Any:
        """The state charged for ``key`` (call with the lock held)."""
        return self._shared or self._store.get(key, now)

    def _check(self, key: object, cost: object) -> float:
        _validate.key(key)
        return _check_cost(cost, self._max_cost, self._what)

    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """
        Take ``cost`` permits for ``key`` if that needs no waiting.

        Args:
            key: Whose budget to charge.
            cost: How many permits (a finite number > 0).

        Returns:
            Whether the permits were taken.

        Raises:
            ConfigError: ``key`` is not a str, or ``cost`` is out of its
                domain or above what the limiter can ever grant.
        """
        # The checks are inlined: this is the hot path.
        if not (
            cost.__class__ in _NUMBERS
            and 0 < cost <= self._max_cost
            and key.__class__ is str
        ):
            cost = self._check(key, cost)
        # acquire/release, not ``with``: half the cost on CPython 3.11.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock.now()
            wait = self._policy.admit(
                self._shared
                or self._keys.get(key)
                or self._store.get(key, now),
                now,
                cost,
            )
            if wait:
                self._rejected += 1
            else:
                self._allowed += 1
        finally:
            lock.release()
        bus = self._explicit_bus or self._bound_bus or default_bus
        if bus._subs:
            if wait:
                self._emit(
                    None, key, LimiterRejected, retry_after=wait, cost=cost
                )
            else:
                self._emit(None, key, LimiterAllowed, cost=cost)
        return not wait

    def _book(
        self,
        state: Any,
        now: float,
        cost: float,
        timeout: float | None,
        wait: float,
    ) -> _Ticket | None:
        """
        Book a request that must wait ``wait``, or refuse it (lock held).

        Returns:
            The ticket to wait on, or ``None`` when refused.
        """
        policy = self._policy
        if (timeout is not None and wait > timeout) or policy.queue_full(
            state, now
        ):
            self._rejected += 1
            return None
        at = policy.earliest(state, now, cost, _NEVER)
        res = policy.take(state, now, cost, at)
        ticket = _Ticket()
        ticket.parts.append((self, state, res))
        res.handle = ticket
        self._waiting += 1
        return ticket

    def _take(
        self,
        key: str,
        ctx: CallContext | None = None,
        receipt: list[Any] | None = None,
    ) -> bool:
        # `_acquire`'s granting half for 1 permit, with nothing to check
        # (the pipeline passes a str key) and nothing to book: the hot path.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock.now()
            state = (
                self._shared
                or self._keys.get(key)
                or self._store.get(key, now)
            )
            if self._policy.admit(state, now, 1):
                return False
            self._allowed += 1
        finally:
            lock.release()
        if ctx is not None:
            # The pipeline builds a context whenever anybody listens, so
            # without one there is nobody to tell.
            bus = self._explicit_bus or ctx.bus
            if bus._subs and bus.wants(LimiterAllowed):
                self._emit(ctx, key, LimiterAllowed, cost=1)
        if receipt is not None:
            receipt.append((self, state, now, 1))
        return True

    # The quick way in: `_take` with nobody to tell and nothing to note (its
    # defaults), no frame in between (the token bucket writes its own).
    if TYPE_CHECKING:

        def _grab(self, key: str) -> bool: ...

    else:
        _grab = _take

    def _acquire(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        ctx: CallContext | None,
        receipt: list[Any] | None = None,
    ) -> float:
        if not (
            cost.__class__ in _NUMBERS
            and 0 < cost <= self._max_cost
            and key.__class__ is str
        ):
            cost = self._check(key, cost)
        if timeout is not None and not (
            timeout.__class__ in _NUMBERS and timeout >= 0
        ):
            timeout = _check_timeout(timeout)
        # Admission inline (no helper call, no tuple), and acquire/release
        # rather than ``with`` (half the cost on CPython 3.11): the hot path.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock.now()
            state = (
                self._shared
                or self._keys.get(key)
                or self._store.get(key, now)
            )
            wait: float = self._policy.admit(state, now, cost)
            if wait:
                ticket = self._book(state, now, cost, timeout, wait)
            else:
                self._allowed += 1
        finally:
            lock.release()
        if not wait:
            bus = self._explicit_bus or (
                ctx.bus if ctx is not None else self._bound_bus or default_bus
            )
            # The type too, not just "anybody": an exporter that ignores
            # LimiterAllowed (the tracer) then costs no call here.
            if bus._subs and bus.wants(LimiterAllowed):
                self._emit(ctx, key, LimiterAllowed, cost=cost)
            if receipt is not None:
                receipt.append((self, state, now, cost))
            return 0.0
        if ticket is None:
            self._refused(ctx, key, cost, wait)
        assert ticket is not None  # noqa: S101 - _refused raised
        start = self._clock.now()
        _wait_sync(ticket, self._clock)
        if receipt is not None:
            _note(receipt, ticket)
        waited = self._clock.now() - start
        self._emit(ctx, key, LimiterWaited, waited=waited, cost=cost)
        return waited

    async def _acquire_async(
        self,
        key: str,
        cost: float,
        timeout: float | None,  # noqa: ASYNC109 - the public name
        ctx: CallContext | None,
        receipt: list[Any] | None = None,
    ) -> float:
        if not (
            cost.__class__ in _NUMBERS
            and 0 < cost <= self._max_cost
            and key.__class__ is str
        ):
            cost = self._check(key, cost)
        if timeout is not None and not (
            timeout.__class__ in _NUMBERS and timeout >= 0
        ):
            timeout = _check_timeout(timeout)
        # Admission inline (no helper call, no tuple), and acquire/release
        # rather than ``with`` (half the cost on CPython 3.11): the hot path.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock.now()
            state = (
                self._shared
                or self._keys.get(key)
                or self._store.get(key, now)
            )
            wait: float = self._policy.admit(state, now, cost)
            if wait:
                ticket = self._book(state, now, cost, timeout, wait)
            else:
                self._allowed += 1
        finally:
            lock.release()
        if not wait:
            bus = self._explicit_bus or (
                ctx.bus if ctx is not None else self._bound_bus or default_bus
            )
            # The type too, not just "anybody": an exporter that ignores
            # LimiterAllowed (the tracer) then costs no call here.
            if bus._subs and bus.wants(LimiterAllowed):
                self._emit(ctx, key, LimiterAllowed, cost=cost)
            if receipt is not None:
                receipt.append((self, state, now, cost))
            return 0.0
        if ticket is None:
            self._refused(ctx, key, cost, wait)
        assert ticket is not None  # noqa: S101 - _refused raised
        start = self._clock.now()
        await _wait_async(ticket, self._clock)
        if receipt is not None:
            _note(receipt, ticket)
        waited = self._clock.now() - start
        self._emit(ctx, key, LimiterWaited, waited=waited, cost=cost)
        return waited

    _acquire_refundable = _acquire
    _acquire_refundable_async = _acquire_async

    def _refused(
        self, ctx: CallContext | None, key: str, cost: float, wait: float
    ) -> None:
        self._emit(ctx, key, LimiterRejected, retry_after=wait, cost=cost)
        raise RateLimitedError(self._name, key, wait)

    def reset(self, key: str | None = None) -> None:
        """
        Forget the state of ``key`` (every key when ``None``): back to full.

        A shared (``per_key=False``) limiter has one state, reset whatever
        the key. Callers waiting on a forgotten state proceed at once.

        Raises:
            ConfigError: ``key`` is neither ``None`` nor a str.
        """
        if key is not None:
            _validate.key(key)
        served = []
        with self._lock:
            now = self._clock.now()
            if self._shared is not None:
                served = self._policy.forget(self._shared, now)
                self._shared = self._policy.new_state()
            elif key is None:
                for state in self._store.clear():
                    served += self._policy.forget(state, now)
            else:
                state = self._store.pop(key)
                if state is not None:
                    served = self._policy.forget(state, now)
        _notify(served)

    def statistics(self) -> LimiterStatistics:
        """A snapshot of this limiter's counters (see `LimiterStatistics`)."""
        with self._lock:
            return LimiterStatistics(
                limiter=self._name,
                keys=1 if self._shared is not None else len(self._store),
                allowed=self._allowed,
                waited=self._waited,
                rejected=self._rejected,
                cancelled=self._cancelled,
                waiting=self._waiting,
                evicted=self._store.evicted,
                evicted_owing=self._store.evicted_owing,
            )

    def _available(self, key: str | None) -> float | None:
        """
        The permits grantable now without a wait (for the state gauges).

        The global state's (``key`` None), or ``key``'s; None for a per-key
        limiter asked without a key. A read-only look: it neither creates
        nor refreshes the key.
        """
        with self._lock:
            state = self._shared
            if state is None:
                if key is None:
                    return None
                state = self._store.peek(key)
            return float(self._policy.available(state, self._clock.now()))


class TokenBucket(_KeyedLimiter):
    """
    Bursts of up to ``capacity`` permits, refilled at ``refill_rate``/s.

    Over any span of ``T`` seconds a key is granted at most
    ``capacity + refill_rate * T`` permits.

    Args:
        capacity: The burst size, and the most one request may cost.
        refill_rate: Permits added per second. ``TokenBucket(10, 100 / 60)``
            allows 100 requests a minute in bursts of 10.
        name: Used in events, errors and metrics (default
            ``"token_bucket"``).
        per_key: ``False`` shares one bucket between every key (a global
            tier); events and errors still carry the caller's key.
        max_keys: Bound on the keys remembered; the least recently used key
            is forgotten beyond it (see `LimiterStatistics.evicted_owing`).
            Choose it above the number of keys active within
            ``capacity / refill_rate`` seconds.
        ttl: Keep a key whose bucket is full again for ``ttl`` idle
            seconds before forgetting it (default: forgotten lazily as soon
            as it is full; lossless either way, it changes no decision).
        clock: The clock (default: the executor's, else real time).
        bus: Where to report events (default: the executor's, else
            `stormwall.default_bus`).

    Raises:
        ConfigError: A parameter is out of its domain.
    """

    __slots__ = ()

    def __init__(
        self,
        capacity: float,
        refill_rate: float,
        *,
        name: str | None = None,
        per_key: bool = True,
        max_keys: int | None = None,
        ttl: float | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        capacity = _validate.positive("capacity", capacity)
        refill_rate = _validate.positive("refill_rate", refill_rate)
        _KeyedLimiter.__init__(
            self,
            "token_bucket",
            TokenBucketPolicy(capacity, refill_rate),
            capacity,
            f"the capacity ({capacity:g})",
            name,
            per_key,
            max_keys,
            ttl,
            clock,
            bus,
        )

    def _grab(self, key: str) -> bool:
        # `_KeyedLimiter._grab` with `TokenBucketPolicy.admit` inlined for 1
        # permit (the same float operations in the same order; a test holds
        # the two to the same decisions): the hottest path of the library,
        # where a call frame is a tenth of the cost.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock.now()
            # A token bucket keeps `BucketState`s.
            state: BucketState = (
                self._shared  # type: ignore[assignment]
                or self._keys.get(key)
                or self._store.get(key, now)
            )
            policy: TokenBucketPolicy = self._policy
            span = policy.unit
            tat = state.tat
            pending = state.pending
            if tat + span - policy.tau - now <= SLACK and (
                not pending or pending[-1].at <= now
            ):
                state.tat = (tat if tat > now else now) + span  # noqa: FURB136
                self._allowed += 1
                return True
            return False
        finally:
            lock.release()

    @property
    def capacity(self) -> float:
        """The burst size."""
        return float(self._policy.capacity)

    @property
    def refill_rate(self) -> float:
        """Permits added per second."""
        return float(self._policy.rate)

    def tokens(self, key: str = "default") -> float:
        """
        The permits ``key`` could take now (negative while owing).

        A read-only look: it neither creates nor refreshes the key.
        """
        _validate.key(key)
        with self._lock:
            state = self._shared or self._store.peek(key)
            if state is None:
                return self.capacity
            now = self._clock.now()
            return float(self._policy.tokens(state, now))

    def __repr__(self) -> str:
        return (
            f"TokenBucket({self.capacity:g}, {self.refill_rate:g}, "
            f"name={self._name!r})"
        )


class LeakyBucket(_KeyedLimiter):
    """
    A shaper: admitted requests proceed exactly ``1 / rate`` seconds apart.

    There is no burst: after an idle spell the first request goes at once,
    the next one ``1 / rate`` later (``cost / rate`` for a request costing
    ``cost``), and so on; callers that arrive early wait their turn in
    arrival order.

    Args:
        rate: Requests per second.
        capacity: How many callers may be *waiting* at once per key; a
            caller beyond it is refused at once (`RateLimitedError`, or
            ``try_acquire`` returning ``False``). ``0``: nobody may wait.
            ``None`` (the default): no bound, as for the other limiters; the
            ``timeout`` of each caller then bounds its own wait. Pick
            ``rate * longest acceptable wait`` to shed load instead of
            queueing it.
        name: Used in events, errors and metrics (default
            ``"leaky_bucket"``).
        per_key: ``False`` shares one bucket between every key.
        max_keys: Bound on the keys remembered (LRU).
        ttl: Keep a key nobody waits on, with an empty schedule, for
            ``ttl`` idle seconds before forgetting it (default: forgotten
            lazily at once; lossless either way).
        clock: The clock (default: the executor's, else real time).
        bus: Where to report events.

    Raises:
        ConfigError: A parameter is out of its domain.
    """

    __slots__ = ()

    def __init__(
        self,
        rate: float,
        *,
        capacity: int | None = None,
        name: str | None = None,
        per_key: bool = True,
        max_keys: int | None = None,
        ttl: float | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        rate = _validate.positive("rate", rate)
        if capacity is not None:
            capacity = _validate.non_negative_int("capacity", capacity)
        _KeyedLimiter.__init__(
            self,
            "leaky_bucket",
            LeakyBucketPolicy(rate, capacity),
            # Any finite cost can be scheduled; only inf is refused.
            _FINITE_MAX,
            "the largest finite float",
            name,
            per_key,
            max_keys,
            ttl,
            clock,
            bus,
        )

    @property
    def rate(self) -> float:
        """Requests per second."""
        return float(self._policy.rate)

    @property
    def capacity(self) -> int | None:
        """How many callers may wait at once (``None``: unbounded)."""
        capacity: int | None = self._policy.capacity
        return capacity

    def __repr__(self) -> str:
        return (
            f"LeakyBucket({self.rate:g}, capacity={self.capacity!r}, "
            f"name={self._name!r})"
        )


_FINITE_MAX = 1.7976931348623157e308


class SlidingWindow(_KeyedLimiter):
    """
    Exact sliding window: never more than ``limit`` in any ``window`` seconds.

    Every admitted request is remembered with its time and cost until it
    leaves the window, so memory per key grows with ``limit``; prefer a
    `TokenBucket` for large limits. A key with one request in its window
    costs about as much as a token bucket's.

    Args:
        limit: The most cost admitted within any ``window`` seconds, and the
            most one request may cost.
        window: The window length in seconds.
        name: Used in events, errors and metrics (default
            ``"sliding_window"``).
        per_key: ``False`` shares one window between every key.
        max_keys: Bound on the keys remembered (LRU).
        ttl: Keep a key whose window is empty for ``ttl`` idle seconds
            before forgetting it (default: forgotten lazily at once;
            lossless either way).
        clock: The clock (default: the executor's, else real time).
        bus: Where to report events.

    Raises:
        ConfigError: A parameter is out of its domain.
    """

    __slots__ = ()

    def __init__(
        self,
        limit: float,
        window: float,
        *,
        name: str | None = None,
        per_key: bool = True,
        max_keys: int | None = None,
        ttl: float | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        limit = _validate.positive("limit", limit)
        window = _validate.positive("window", window, seconds=True)
        _KeyedLimiter.__init__(
            self,
            "sliding_window",
            SlidingWindowPolicy(limit, window),
            limit,
            f"the limit ({limit:g})",
            name,
            per_key,
            max_keys,
            ttl,
            clock,
            bus,
        )

    @property
    def limit(self) -> float:
        """The most cost admitted within any window."""
        return float(self._policy.limit)

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return float(self._policy.window)

    def __repr__(self) -> str:
        return (
            f"SlidingWindow({self.limit:g}, {self.window:g}, "
            f"name={self._name!r})"
        )
