"""
The composite limiter: several limiters as one, all or nothing.

Each tier keeps its own policy, per-key store and lock; the composite takes
the tiers' locks together (always in one order) around each decision and
books a waiting request in every tier for the same moment. The waiting and
the refunds are the keyed limiters' own (see ``stormwall._limiters``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from . import _validate
from ._clock import one_clock
from ._component import Component
from ._core._arith import until
from ._errors import ConfigError, RateLimitedError
from ._events import LimiterAllowed, LimiterRejected, LimiterWaited
from ._limiters import (
    _NEVER,
    _NUMBERS,
    Limiter,
    LimiterStatistics,
    _check_timeout,
    _KeyedLimiter,
    _note,
    _notify,
    _Ticket,
    _wait_async,
    _wait_sync,
)


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus
    from ._clock import Clock
    from ._component import CallContext
    from ._core._limiters import Reservation


__all__ = ["CompositeLimiter"]


class CompositeLimiter(Limiter):
    """
    Several limiters as one, all or nothing: e.g. per user *and* global.

    A request is admitted only when every tier admits it; the wait is the
    longest of the tiers' waits, and every tier books it for the same moment
    (so each tier's guarantee holds for the time the call actually runs). A
    refusal by any tier charges none of the others. Each tier reports its
    own events under its own name; a tier that would have admitted a refused
    request reports nothing.

    Args:
        *limiters: The tiers: `TokenBucket`, `LeakyBucket` or
            `SlidingWindow` instances, each used once. A tier may still be
            used on its own elsewhere.
        name: The composite's name (default ``"composite_limiter"``).
        clock: The clock; tiers without one adopt it. Tiers given different
            clocks are an error.
        bus: Where tiers without their own ``bus`` report.

    A refused request raises `RateLimitedError` whose ``limiter`` is the
    name of the refusing tier with the longest wait, and whose
    ``retry_after`` is the composite's exact wait.

    Raises:
        ConfigError: No tiers, a tier that is not a keyed limiter, a tier
            given twice, or tiers on different clocks.
    """

    __slots__ = (
        "_allowed",
        "_cancelled",
        "_locks",
        "_max_cost",
        "_order",
        "_rejected",
        "_tiers",
        "_waited",
        "_waiting",
    )

    def __init__(
        self,
        *limiters: Limiter,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        Component.__init__(self, "composite_limiter", name, clock, bus)
        if not limiters:
            raise ConfigError("limiters", "give at least one limiter")
        tiers: list[_KeyedLimiter] = []
        for tier in limiters:
            if not isinstance(tier, _KeyedLimiter):
                raise ConfigError(
                    "limiters",
                    "expected TokenBucket, LeakyBucket or SlidingWindow "
                    f"instances, got {type(tier).__name__}",
                )
            if any(tier is seen for seen in tiers):
                raise ConfigError(
                    "limiters", f"{tier.name!r} is given more than once"
                )
            tiers.append(tier)
        clock = one_clock(
            *(("limiters", tier._explicit_clock) for tier in tiers),
            ("clock", self._explicit_clock),
            hint="every tier must keep time with the same clock",
        )
        if clock is not None:
            self._explicit_clock = self._clock = clock
            for tier in tiers:
                tier._clock = clock
        if self._explicit_bus is not None:
            for tier in tiers:
                if tier._explicit_bus is None:
                    tier._explicit_bus = self._explicit_bus
        self._tiers = tuple(tiers)
        # Tier locks are taken together, always in this order, so two
        # composites sharing tiers cannot deadlock.
        self._order = tuple(sorted(tiers, key=id))
        self._locks = tuple(tier._lock for tier in self._order)
        self._max_cost = min(tier._max_cost for tier in tiers)
        self._allowed = 0
        self._waited = 0
        self._rejected = 0
        self._cancelled = 0
        self._waiting = 0

    @property
    def limiters(self) -> tuple[Limiter, ...]:
        """The tiers, in the order given."""
        return self._tiers

    def _bind(
        self, executor: str, clock: Clock, bus: EventBus, param: str
    ) -> None:
        super()._bind(executor, clock, bus, param)
        # Unnamed tiers: "<composite>.<kind>", numbered when a kind repeats,
        # so each tier keeps its own metric series.
        unnamed = [tier for tier in self._tiers if not tier._named]
        kinds = [tier.name for tier in unnamed]
        numbers: dict[str, int] = {}
        for tier, kind in zip(unnamed, kinds, strict=True):
            name = f"{self._name}.{kind}"
            if kinds.count(kind) > 1:
                numbers[kind] = numbers.get(kind, 0) + 1
                name += f".{numbers[kind]}"
            tier._adopt_name(name)
        for tier in self._tiers:
            tier._bind(executor, clock, bus, param)

    def _names(self) -> tuple[str, ...]:
        return tuple(tier.name for tier in self._tiers)

    _rebindable: ClassVar[bool] = True
    _timed_state: ClassVar[tuple[str, ...]] = (
        "_allowed",
        "_waited",
        "_rejected",
        "_cancelled",
    )

    def _rebind_clock(self, clock: Clock, param: str) -> Callable[[], None]:
        restores = [tier._rebind_clock(clock, param) for tier in self._tiers]
        restores.append(super()._rebind_clock(clock, param))

        def restore() -> None:
            for undo in reversed(restores):
                undo()

        return restore

    def _fresh_state(self) -> None:
        self._allowed = self._waited = self._rejected = self._cancelled = 0

    def _check(self, key: object, cost: object) -> float:
        _validate.key(key)
        for tier in self._tiers:
            cost = tier._check(key, cost)
        return float(cost)  # type: ignore[arg-type]

    def _begin(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        receipt: list[Any] | None = None,
    ) -> tuple[float, _Ticket | None, list[tuple[_KeyedLimiter, float]]]:
        """
        Admit, book or refuse in every tier at once.

        Returns:
            ``(wait, ticket, refusals)``: ``wait`` 0.0 when admitted; a
            ticket when booked; the refusing tiers with their waits.
        """
        locks = self._locks
        for lock in locks:
            lock.acquire()
        try:
            now = self._clock.now()
            tiers = self._tiers
            states = []
            ats = []
            at = now
            for tier in tiers:
                state = tier._shared or tier._store.get(key, now)
                tier_at = tier._policy.earliest(state, now, cost, _NEVER)
                states.append(state)
                ats.append(tier_at)
                at = max(at, tier_at)
            if at <= now:
                for tier, state in zip(tiers, states, strict=True):
                    tier._policy.take(state, now, cost, now)
                    tier._allowed += 1
                    if receipt is not None:
                        receipt.append((tier, state, now, cost))
                self._allowed += 1
                return 0.0, None, []
            wait = until(now, at)
            refusals = [
                (tier, until(now, tier_at))
                for tier, state, tier_at in zip(
                    tiers, states, ats, strict=True
                )
                if (timeout is not None and until(now, tier_at) > timeout)
                or tier._policy.queue_full(state, now)
            ]
            if refusals:
                for tier, _ in refusals:
                    tier._rejected += 1
                self._rejected += 1
                return wait, None, refusals
            ticket = _Ticket(self)
            for tier, state in zip(tiers, states, strict=True):
                res = tier._policy.take(state, now, cost, at, pinned=True)
                res.handle = ticket
                ticket.parts.append((tier, state, res))
                tier._waiting += 1
            self._waiting += 1
            return wait, ticket, []
        finally:
            for lock in reversed(locks):
                lock.release()

    def _replan(self, ticket: _Ticket) -> None:
        """
        Move a woken ticket earlier if every tier now allows it.

        Each tier's reservation is first re-booked in place with no floor,
        which tells when that tier alone would let it go; then all are
        pinned to the latest of those times. Queue order is kept.
        """
        moved: list[Reservation] = []
        locks = self._locks
        for lock in locks:
            lock.acquire()
        try:
            now = self._clock.now()
            # Both passes move the reservations queued behind ours; notify
            # the union, or a waiter moved earlier in the first pass (and
            # left there) sleeps past its booking.
            for tier, state, res in ticket.parts:
                moved += tier._policy.repin(state, res, now, _NEVER) or ()
            at = ticket.due()
            for tier, state, res in ticket.parts:
                moved += (
                    tier._policy.repin(state, res, now, at, force=True) or ()
                )
        finally:
            for lock in reversed(locks):
                lock.release()
        _notify([res for res in moved if res.handle is not ticket])

    def _prepare(
        self, key: object, cost: object, timeout: object
    ) -> tuple[float, float | None]:
        if not (
            cost.__class__ in _NUMBERS
            and key.__class__ is str
            and 0 < cost <= self._max_cost
        ):
            cost = self._check(key, cost)
        if timeout is not None and not (
            timeout.__class__ in _NUMBERS and timeout >= 0
        ):
            timeout = _check_timeout(timeout)
        return cost, timeout

    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """
        Take ``cost`` permits for ``key`` from every tier, if none must wait.

        Returns:
            Whether the permits were taken (from all tiers, or from none).

        Raises:
            ConfigError: ``key`` is not a str, or ``cost`` is out of any
                tier's domain.
        """
        cost, _ = self._prepare(key, cost, None)
        wait, _ticket, refusals = self._begin(key, cost, 0.0)
        self._report_outcome(None, key, cost, wait, refusals)
        return not wait

    def _report_outcome(
        self,
        ctx: CallContext | None,
        key: str,
        cost: float,
        wait: float,
        refusals: list[tuple[_KeyedLimiter, float]],
    ) -> None:
        if not wait:
            for tier in self._tiers:
                tier._emit(ctx, key, LimiterAllowed, cost=cost)
        for tier, retry_after in refusals:
            tier._emit(
                ctx, key, LimiterRejected, retry_after=retry_after, cost=cost
            )

    def _start(
        self,
        ctx: CallContext | None,
        key: str,
        cost: float,
        timeout: float | None,
        receipt: list[Any] | None = None,
    ) -> tuple[float, _Ticket | None]:
        wait, ticket, refusals = self._begin(key, cost, timeout, receipt)
        self._report_outcome(ctx, key, cost, wait, refusals)
        if refusals:
            # Name the tier that binds: the one with the longest wait.
            worst = max(refusals, key=lambda r: r[1])[0]
            raise RateLimitedError(worst.name, key, wait)
        return wait, ticket

    def _finish(
        self, ctx: CallContext | None, key: str, cost: float, waited: float
    ) -> float:
        for tier in self._tiers:
            tier._emit(ctx, key, LimiterWaited, waited=waited, cost=cost)
        return waited

    def _acquire(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        ctx: CallContext | None,
        receipt: list[Any] | None = None,
    ) -> float:
        cost, timeout = self._prepare(key, cost, timeout)
        _, ticket = self._start(ctx, key, cost, timeout, receipt)
        if ticket is None:
            return 0.0
        start = self._clock.now()
        try:
            _wait_sync(ticket, self._clock)
        except BaseException:
            self._settle(cancelled=True)
            raise
        self._settle(cancelled=False)
        if receipt is not None:
            _note(receipt, ticket)
        return self._finish(ctx, key, cost, self._clock.now() - start)

    async def _acquire_async(
        self,
        key: str,
        cost: float,
        timeout: float | None,  # noqa: ASYNC109 - the public name
        ctx: CallContext | None,
        receipt: list[Any] | None = None,
    ) -> float:
        cost, timeout = self._prepare(key, cost, timeout)
        _, ticket = self._start(ctx, key, cost, timeout, receipt)
        if ticket is None:
            return 0.0
        start = self._clock.now()
        try:
            await _wait_async(ticket, self._clock)
        except BaseException:
            self._settle(cancelled=True)
            raise
        self._settle(cancelled=False)
        if receipt is not None:
            _note(receipt, ticket)
        return self._finish(ctx, key, cost, self._clock.now() - start)

    _refunds: ClassVar[bool] = True
    _acquire_refundable = _acquire
    _acquire_refundable_async = _acquire_async

    def _settle(self, *, cancelled: bool) -> None:
        # The composite's own counters share the first tier's lock: any lock
        # would do, and this one is taken for every decision anyway.
        with self._order[0]._lock:
            self._waiting -= 1
            if cancelled:
                self._cancelled += 1
            else:
                self._waited += 1

    def reset(self, key: str | None = None) -> None:
        """Reset ``key`` (every key when ``None``) in every tier."""
        for tier in self._tiers:
            tier.reset(key)

    def statistics(self) -> LimiterStatistics:
        """
        The composite's own decisions; ``keys`` and evictions sum the tiers.

        Each tier's `Limiter.statistics` shows what it decided itself.
        """
        tiers = [tier.statistics() for tier in self._tiers]
        with self._order[0]._lock:
            return LimiterStatistics(
                limiter=self._name,
                keys=sum(s.keys for s in tiers),
                allowed=self._allowed,
                waited=self._waited,
                rejected=self._rejected,
                cancelled=self._cancelled,
                waiting=self._waiting,
                evicted=sum(s.evicted for s in tiers),
                evicted_owing=sum(s.evicted_owing for s in tiers),
            )

    def __repr__(self) -> str:
        tiers = ", ".join(repr(t) for t in self._tiers)
        return f"CompositeLimiter({tiers}, name={self._name!r})"
