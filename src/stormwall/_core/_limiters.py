"""
Rate-limit arithmetic: token bucket, leaky bucket and sliding window.

Sans-I/O: every method takes ``now`` and returns a decision; nothing here
reads a clock, sleeps, awaits or locks. The shells in ``stormwall._limiters``
hold the lock around these calls and do the waiting.

Rules shared by the three policies:

- **Waiting is a reservation.** A request that cannot be admitted at once is
  *booked*: it gets an execution time ``at`` and its cost is charged to the
  state right away, so a newcomer sees it and queues behind it (FIFO: a
  later request never gets an earlier ``at`` than a queued one).
- **Refunds replay.** Cancelling a pending reservation removes it and books
  the reservations queued behind it again, in order, as if it had never
  existed; their ``at`` can only move earlier. A reservation that is already
  due when cancelled counts as consumed.
- **Composites pin.** A composite books each tier for one common moment
  (``not_before``), so every tier's guarantee holds for the time the call
  really runs; woken by a refund, it re-pins all tiers to their new latest.
- **Float dust never loops.** Times are compared as computed (a sliding
  window stores expiries, not admission times, so ``now`` reached by
  sleeping ``retry_after`` compares exactly), and the one tolerance,
  `SLACK`, admits a bucket request whose wait is below a nanosecond. Window
  sums allow a relative 1e-9 for the same reason.

Token and leaky buckets use the GCRA formulation (one float per key, the
*theoretical arrival time* ``tat``: when the bucket is full again) instead of
a token count refilled on every call: it needs no refill arithmetic, so the
admission test is two additions and a comparison.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

from ._arith import until


if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = [
    "SLACK",
    "BucketState",
    "LeakyBucketPolicy",
    "Reservation",
    "SlidingWindowPolicy",
    "TokenBucketPolicy",
    "WindowState",
    "release_all",
    "rows",
]

SLACK = 1e-9
"""Waits shorter than this (seconds) count as no wait: float dust."""

_NEVER = -math.inf


class Reservation:
    """
    A booked request: due at ``at``; the shell sleeps until then.

    Attributes:
        at: When the request may proceed (it moves earlier on refunds ahead).
        cost: The permits it holds.
        not_before: A floor on ``at`` (a composite books every tier at the
            same time), ``-inf`` when none.
        tat_before: Bucket state before this booking (token/leaky only).
        handle: Opaque to the core: the shell's waiter bookkeeping.
    """

    __slots__ = ("at", "cost", "handle", "not_before", "tat_before")

    def __init__(self, at: float, cost: float, not_before: float) -> None:
        self.at = at
        self.cost = cost
        self.not_before = not_before
        self.tat_before = _NEVER
        self.handle: object = None


# The queue of a state nobody ever waited on: one shared empty tuple, not a
# list per key (an empty list is 56 bytes, a third of a key at 1M keys).
_NO_PENDING: tuple[Reservation, ...] = ()
_Queue = list[Reservation] | tuple[Reservation, ...]


class _State:
    """What every per-key state has: a queue of reservations, a last use."""

    __slots__ = ("pending", "used")

    def __init__(self) -> None:
        # Reservations in booking order (so in non-decreasing ``at``); the
        # owners remove themselves once served. A list from the first
        # booking on (see `_queue`).
        self.pending: _Queue = _NO_PENDING
        self.used = _NEVER


def _queue(state: _State) -> list[Reservation]:
    """The state's queue as a list, made on the first booking."""
    pending = state.pending
    if pending.__class__ is list:
        return pending
    queue: list[Reservation] = list(pending)
    state.pending = queue
    return queue


class BucketState(_State):
    """A token or leaky bucket: ``tat`` is when it is full (idle) again."""

    __slots__ = ("tat",)

    def __init__(self) -> None:
        # `_State.__init__` inlined: one call less per new key.
        self.pending = _NO_PENDING
        self.used = _NEVER
        self.tat = _NEVER


_Rows = deque[tuple[float, float]]


class WindowState(_State):
    """
    A sliding window: admitted costs with their expiry, and their sum.

    ``entries`` is compact for the common case of a key with one admitted
    request in its window: ``None`` when empty; the expiry alone (a float,
    its cost being ``total``) for one request; a deque of ``(expires,
    cost)`` rows in non-decreasing expiry from the second request on, until
    the window is empty again (a deque block is about 600 bytes).
    """

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        super().__init__()
        self.entries: float | _Rows | None = None
        self.total: float = 0.0


def _push(state: WindowState, expires: float, cost: float) -> None:
    """Record a request admitted until ``expires``."""
    entries = state.entries
    if entries is None:
        # The sum of one cost is that cost: no float of its own.
        state.entries = expires
        state.total = cost
        return
    if entries.__class__ is deque:
        entries.append((expires, cost))
    else:
        state.entries = deque(
            ((entries, state.total), (expires, cost))  # type: ignore[arg-type]
        )
    state.total += cost


def _pop_newest(state: WindowState) -> None:
    """Take back the newest request."""
    entries = state.entries
    if entries.__class__ is deque:
        state.total -= entries.pop()[1]
        if entries:
            return
    state.entries = None
    state.total = 0.0


def _rows(state: WindowState) -> Iterable[tuple[float, float]]:
    """The ``(expires, cost)`` rows of a window, oldest first (no copy)."""
    entries = state.entries
    if entries is None:
        return ()
    if entries.__class__ is deque:
        return entries
    return ((entries, state.total),)  # type: ignore[return-value]


def rows(state: WindowState) -> list[tuple[float, float]]:
    """The ``(expires, cost)`` rows of a window, oldest first."""
    return list(_rows(state))


def _floor(state: _State) -> float:
    """The earliest ``at`` FIFO allows: the last queued one's."""
    pending = state.pending
    return pending[-1].at if pending else _NEVER


class _Replay:
    """Refunds and re-pinning: take reservations back, book them again."""

    __slots__ = ()

    def _unbook(self, state: Any, i: int) -> list[Reservation]:
        raise NotImplementedError

    def _book(self, state: Any, now: float, res: Reservation) -> None:
        raise NotImplementedError

    def _replay(
        self, state: Any, now: float, items: list[Reservation]
    ) -> list[Reservation]:
        """Book ``items`` again in order; return those to notify."""
        moved = []
        for res in items:
            before = res.at
            self._book(state, now, res)
            # A pinned (composite) one may now go earlier in its other
            # tiers: its owner must re-plan even if this tier kept its time.
            if res.at != before or res.not_before != _NEVER:
                moved.append(res)
        return moved

    def refund(
        self, state: Any, res: Reservation, now: float
    ) -> list[Reservation] | None:
        """
        Give back a reservation that is not yet due.

        Returns:
            The reservations queued behind it whose owners must look again
            at when they may go (only ever earlier), or ``None`` when nothing
            was refunded (it was due, or is no longer in this state).
        """
        pending = state.pending
        if res.at <= now or res not in pending:
            return None
        items = self._unbook(state, pending.index(res))
        return self._replay(state, now, items[1:])

    def repin(
        self,
        state: Any,
        res: Reservation,
        now: float,
        not_before: float,
        *,
        force: bool = False,
    ) -> list[Reservation] | None:
        """
        Book a pending reservation again in place with a new floor.

        A composite uses it to move its reservations earlier when the tiers
        allow: first with no floor (to learn each tier's earliest), then,
        with ``force=True``, pinned to the latest of those: a tier whose part
        became due in the first pass must still be charged at the time the
        call really runs, or it over-admits. The queue order is kept.

        Returns:
            The reservations behind it to notify, or ``None`` when it was
            due (unless forced) or is no longer in this state (untouched).
        """
        pending = state.pending
        if res not in pending or (res.at <= now and not force):
            return None
        items = self._unbook(state, pending.index(res))
        res.not_before = not_before
        self._book(state, now, res)
        return self._replay(state, now, items[1:])

    def complete(self, state: _State, res: Reservation) -> None:
        """Forget a served reservation (its cost stays charged)."""
        pending = state.pending
        if res in pending:
            queue = _queue(state)
            queue.remove(res)
            if not queue:
                # Back to the shared empty queue: memory stays flat per key.
                state.pending = _NO_PENDING


class _BucketPolicy(_Replay):
    """GCRA shared by the token and the leaky bucket."""

    __slots__ = ("rate", "tau", "unit")

    def __init__(self, rate: float, tau: float) -> None:
        self.rate = rate
        # The span of 1 permit, as ``cost / rate`` gives it for ``cost=1``
        # (the quick way in charges 1 permit; a division is a tenth of it).
        self.unit = 1 / rate
        # Burst tolerance in seconds: how far ahead of now ``tat`` may run
        # while requests are still admitted at once.
        self.tau = tau

    def new_state(self) -> BucketState:
        """A full bucket."""
        return BucketState()

    def _ready(self, tat: float, span: float) -> float:
        """The conformance time of a request of ``span`` seconds."""
        raise NotImplementedError

    def admit(self, state: BucketState, now: float, cost: float) -> float:
        """
        Take ``cost`` at once and return 0.0, or return the wait (untouched).
        """
        span = cost / self.rate
        tat = state.tat
        pending = state.pending
        if self._ready(tat, span) - now <= SLACK and (
            not pending or pending[-1].at <= now
        ):
            # A conditional, not max(): this is the hot path.
            state.tat = (tat if tat > now else now) + span  # noqa: FURB136
            return 0.0
        return self.earliest(state, now, cost, _NEVER) - now

    def earliest(
        self, state: BucketState, now: float, cost: float, not_before: float
    ) -> float:
        """
        When a request booked now could proceed.

        Exactly ``now`` when it could go at once, else a later time.
        """
        ready = self._ready(state.tat, cost / self.rate)
        if ready - now <= SLACK:
            ready = now
        return max(ready, now, _floor(state), not_before)

    def take(
        self,
        state: BucketState,
        now: float,
        cost: float,
        at: float,
        pinned: bool = False,
    ) -> Reservation | None:
        """
        Charge ``cost`` for execution at ``at`` (from `earliest` or later).

        A *pinned* reservation never moves earlier than ``at`` on a refund
        (a composite books every tier for the same moment).

        Returns:
            ``None`` when ``at`` is not after ``now`` (consumed at once),
            else the reservation.
        """
        span = cost / self.rate
        tat = state.tat
        if at <= now:
            state.tat = max(tat, now) + span
            return None
        res = Reservation(at, cost, at if pinned else _NEVER)
        res.tat_before = tat
        state.tat = max(tat, at) + span
        _queue(state).append(res)
        return res

    def _book(self, state: BucketState, now: float, res: Reservation) -> None:
        tat = state.tat
        res.at = self.earliest(state, now, res.cost, res.not_before)
        res.tat_before = tat
        state.tat = max(tat, res.at) + res.cost / self.rate
        _queue(state).append(res)

    def _unbook(self, state: BucketState, i: int) -> list[Reservation]:
        """Take back the reservations from index ``i`` on (newest last)."""
        pending = _queue(state)
        items = pending[i:]
        del pending[i:]
        state.tat = items[0].tat_before
        return items

    def give_back(
        self, state: BucketState, now: float, cost: float, at: float
    ) -> list[Reservation]:
        """
        Return ``cost`` taken at ``at`` for a request that never ran.

        The bucket gets back the cost less what it refilled since ``at``
        (that much it would have regained anyway, had the bucket been
        idle): never more than the request took, so nothing is over-admitted.
        Reservations booked after it are booked again, earlier.

        Returns:
            The reservations whose owners must look again at their time.
        """
        span = cost / self.rate - max(now - at, 0.0)
        if span <= 0:
            return []
        items = _later(self, state, now)
        state.tat -= span
        return self._replay(state, now, items)

    def forget(self, state: BucketState, now: float) -> list[Reservation]:
        """Reset to full; queued reservations become due now (returned)."""
        served = release_all(state, now)
        state.tat = _NEVER
        return served

    def full(self, state: BucketState, now: float) -> bool:
        """Whether forgetting the state would change no decision."""
        return state.tat <= now and not state.pending

    def queue_full(self, state: _State, now: float) -> bool:  # noqa: ARG002
        """Whether no more callers may wait (only a bounded leaky bucket)."""
        return False


class TokenBucketPolicy(_BucketPolicy):
    """Bursts up to ``capacity``, refilling ``rate`` per second."""

    __slots__ = ("capacity",)

    def __init__(self, capacity: float, rate: float) -> None:
        super().__init__(rate, capacity / rate)
        self.capacity = capacity

    def _ready(self, tat: float, span: float) -> float:
        # Conformant once the debt left after taking ``span`` fits in tau.
        return tat + span - self.tau

    def admit(self, state: BucketState, now: float, cost: float) -> float:
        """
        Take ``cost`` at once and return 0.0, or return the wait (untouched).
        """
        # `_BucketPolicy.admit` with `_ready` inlined (same float operations
        # in the same order): one call less on the limiters' hot path.
        span = cost / self.rate
        tat = state.tat
        pending = state.pending
        if tat + span - self.tau - now <= SLACK and (
            not pending or pending[-1].at <= now
        ):
            state.tat = (tat if tat > now else now) + span  # noqa: FURB136
            return 0.0
        return self.earliest(state, now, cost, _NEVER) - now

    def full(self, state: BucketState, now: float) -> bool:
        """
        Whether forgetting the state would change no decision.

        Back at full capacity, and the admission test of the largest request
        (``capacity``) passes at ``now`` as computed, float rounding
        included: the test only gets easier as time goes on and for smaller
        requests, so a fresh state decides exactly alike from now on.
        """
        tat = state.tat
        return (
            tat <= now
            and not state.pending
            and tat + self.tau - self.tau - now <= SLACK
        )

    def tokens(self, state: BucketState, now: float) -> float:
        """The tokens available at ``now`` (negative while owing)."""
        if state.tat <= now:
            return self.capacity
        return self.capacity - (state.tat - now) * self.rate

    def available(self, state: BucketState | None, now: float) -> float:
        """The permits grantable at ``now`` without a wait (never < 0)."""
        if state is None:
            return float(self.capacity)
        return max(0.0, float(self.tokens(state, now)))


class LeakyBucketPolicy(_BucketPolicy):
    """
    A shaper: requests proceed one after the other, ``cost / rate`` apart.

    ``capacity`` bounds how many requests may be queued (``None``: no bound).
    """

    __slots__ = ("capacity",)

    def __init__(self, rate: float, capacity: int | None) -> None:
        super().__init__(rate, 0.0)
        self.capacity = capacity

    def _ready(self, tat: float, span: float) -> float:  # noqa: ARG002
        # No burst: the next request goes when the previous one has leaked.
        return tat

    def available(self, state: BucketState | None, now: float) -> float:
        """
        1.0 when a request would go at once at ``now``, else 0.0.

        A shaper has no burst: whatever its cost, the next request goes
        when the previous one has leaked, one at a time.
        """
        if state is None:
            return 1.0
        pending = state.pending
        if state.tat - now <= SLACK and (not pending or pending[-1].at <= now):
            return 1.0
        return 0.0

    def queue_full(self, state: _State, now: float) -> bool:
        """Whether ``capacity`` callers are already waiting."""
        if self.capacity is None:
            return False
        waiting = 0
        for res in reversed(state.pending):
            if res.at <= now:
                break
            waiting += 1
        return waiting >= self.capacity


class SlidingWindowPolicy(_Replay):
    """
    Exact sliding window: at most ``limit`` cost in any ``window`` seconds.

    A request executed at ``t`` counts until ``t + window``, its *expiry*:
    no half-open span ``(s - window, s]`` ever holds more than ``limit``.
    The expiry is what is stored, so comparing it with a ``now`` reached by
    sleeping the advertised ``retry_after`` is exact.
    """

    __slots__ = ("limit", "tol", "window")

    def __init__(self, limit: float, window: float) -> None:
        self.limit = limit
        self.window = window
        # Sums of fractional costs carry dust; admit within a relative 1e-9.
        self.tol = limit * (1 + 1e-9)

    def new_state(self) -> WindowState:
        """An empty window."""
        return WindowState()

    @staticmethod
    def _expire(state: WindowState, now: float) -> None:
        entries = state.entries
        if entries is None:
            return
        if entries.__class__ is deque:
            while entries and entries[0][0] <= now:
                state.total -= entries.popleft()[1]
            if entries:
                return
        elif entries > now:  # type: ignore[operator]
            return
        state.entries = None
        state.total = 0.0

    def admit(self, state: WindowState, now: float, cost: float) -> float:
        """
        Take ``cost`` at once and return 0.0, or return the wait (untouched).
        """
        self._expire(state, now)
        pending = state.pending
        if (
            not pending or pending[-1].at <= now
        ) and state.total + cost <= self.tol:
            _push(state, now + self.window, cost)
            return 0.0
        return until(now, self.earliest(state, now, cost, _NEVER))

    def earliest(
        self, state: WindowState, now: float, cost: float, not_before: float
    ) -> float:
        """
        When a request booked now could proceed.

        Exactly ``now`` when it could go at once, else a later time.
        """
        self._expire(state, now)
        at = max(now, _floor(state), not_before)
        remaining = state.total
        for expires, weight in _rows(state):
            if remaining + cost <= self.tol:
                break
            # Wait for this row to leave the window.
            at = max(at, expires)
            remaining -= weight
        return at

    def take(
        self,
        state: WindowState,
        now: float,
        cost: float,
        at: float,
        pinned: bool = False,
    ) -> Reservation | None:
        """
        Charge ``cost`` for execution at ``at`` (from `earliest` or later).

        A *pinned* reservation never moves earlier than ``at`` on a refund
        (a composite books every tier for the same moment).

        Returns:
            ``None`` when ``at`` is now (consumed), else the reservation.
        """
        if at <= now:
            _push(state, now + self.window, cost)
            return None
        res = Reservation(at, cost, at if pinned else _NEVER)
        self._append(state, res)
        return res

    def _append(self, state: WindowState, res: Reservation) -> None:
        _push(state, res.at + self.window, res.cost)
        _queue(state).append(res)

    def _unbook(self, state: WindowState, i: int) -> list[Reservation]:
        """Take back the reservations from index ``i`` on (newest last)."""
        pending = _queue(state)
        items = pending[i:]
        del pending[i:]
        # Nothing was admitted at once since the first of them was booked
        # (it was queued, and newcomers queue behind it): their rows are the
        # newest. Drop them from the end.
        for _ in items:
            _pop_newest(state)
        return items

    def _book(self, state: WindowState, now: float, res: Reservation) -> None:
        res.at = self.earliest(state, now, res.cost, res.not_before)
        self._append(state, res)

    def give_back(
        self, state: WindowState, now: float, cost: float, at: float
    ) -> list[Reservation]:
        """
        Forget the request of ``cost`` taken at ``at`` that never ran.

        Exactly its own entry leaves the window; reservations booked after it
        are booked again, earlier.

        Returns:
            The reservations whose owners must look again at their time.
        """
        expires = at + self.window
        if expires <= now:
            return []  # already out of the window
        items = _later(self, state, now)
        entries = state.entries
        if entries.__class__ is deque:
            rows: _Rows = entries
            for i in range(len(rows) - 1, -1, -1):
                row = rows[i]
                if row[0] < expires:
                    break
                if row[0] == expires and row[1] == cost:
                    del rows[i]
                    state.total -= cost
                    break
            if len(rows) == 1:  # back to the compact one-request form
                state.entries, state.total = rows[0]
            elif not rows:
                state.entries = None
                state.total = 0.0
        elif entries == expires and state.total == cost:
            state.entries = None  # the lone request was this one
            state.total = 0.0
        return self._replay(state, now, items)

    def forget(self, state: WindowState, now: float) -> list[Reservation]:
        """Empty the window; queued reservations become due now (returned)."""
        served = release_all(state, now)
        state.entries = None
        state.total = 0.0
        return served

    def available(self, state: WindowState | None, now: float) -> float:
        """
        The cost admissible at ``now`` without a wait (never < 0).

        A read-only look: what has left the window is not taken out.
        """
        if state is None:
            return float(self.limit)
        pending = state.pending
        if pending and pending[-1].at > now:
            return 0.0  # callers are queued: a new one waits behind them
        used = sum(cost for expires, cost in _rows(state) if expires > now)
        return max(0.0, float(self.limit - used))

    def full(self, state: WindowState, now: float) -> bool:
        """Whether forgetting the state would change no decision."""
        entries = state.entries
        if state.pending:
            return False
        if entries is None:
            return True
        if entries.__class__ is deque:
            return entries[-1][0] <= now
        return entries <= now  # type: ignore[operator]

    def queue_full(self, state: _State, now: float) -> bool:  # noqa: ARG002
        """Never: a sliding window bounds no queue."""
        return False


def _later(policy: _Replay, state: _State, now: float) -> list[Reservation]:
    """
    Take back the reservations not yet due.

    They were booked after any request being given back: a request is
    served only once nobody queues before it.
    """
    pending = state.pending
    for i, res in enumerate(pending):
        if res.at > now:
            return policy._unbook(state, i)
    return []


def release_all(state: _State, now: float) -> list[Reservation]:
    """Make every queued reservation due now; return them to notify."""
    served = list(state.pending)
    state.pending = _NO_PENDING
    for res in served:
        res.at = min(res.at, now)
    return served
