"""
Bulkhead: a cap on concurrent calls, with an optional FIFO wait for a slot.

One object serves threads and asyncio at once. The slot queue itself (no
barging, hand-off to the first waiter, a limit that can move) is the
sans-I/O ``stormwall._core._bulkhead.SlotQueue``; this shell adds the lock,
the waiting, the waking and the events. Rules of the shell:

- A queued caller waits on its ticket's `Waiter`; whoever grants it a slot
  (a release, a raised limit) wakes it after dropping the lock.
- A waiter that gives up (``max_wait`` passed) leaves the queue; one that is
  cancelled after being handed a slot passes the slot on, so no slot leaks.
  It did hold that slot for an instant: it is counted, and reported, as
  acquired and released, so ``acquired - released == in_flight`` in every
  path and a gauge fed by the events ends where the statistics are.
- The lock guards a few lines of bookkeeping; it is never held while waiting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from . import _validate
from ._bus import default_bus
from ._clock import Waiter
from ._component import Component
from ._core._bulkhead import SlotQueue, Ticket
from ._errors import BulkheadFullError, StormwallError
from ._events import BulkheadAcquired, BulkheadRejected, BulkheadReleased


if TYPE_CHECKING:
    from types import TracebackType

    from ._bus import EventBus
    from ._clock import Clock
    from ._component import CallContext


__all__ = ["Bulkhead", "BulkheadStatistics"]


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """
    A snapshot of a bulkhead, from `Bulkhead.statistics`.

    Attributes:
        bulkhead: The bulkhead's name.
        max_concurrent: The cap on calls in flight (the current one, when
            it moves).
        in_flight: Calls holding a slot now.
        waiting: Callers queued for a slot now.
        acquired: Slots granted so far (at once or after waiting).
        rejected: Callers refused (full after ``max_wait``, or
            ``try_acquire`` returning ``False``).
        released: Slots given back so far.
    """

    bulkhead: str
    max_concurrent: int
    in_flight: int
    waiting: int
    acquired: int
    rejected: int
    released: int


class _Slot(Ticket):
    """A queued caller: its ticket, and the waiter to wake it with."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        Ticket.__init__(self)
        self.waiter = Waiter()


class Bulkhead(Component):
    """
    Lets at most ``max_concurrent`` calls run at once.

    Use it as ``with bulkhead:`` / ``async with bulkhead:``, or wire it into
    an executor with ``bulkhead=``.

    Args:
        max_concurrent: The cap on calls in flight.
        max_wait: How long a caller may queue for a slot, in seconds, before
            `BulkheadFullError`; ``0`` (the default) refuses at once, ``None``
            (or ``math.inf``) waits as long as needed. Waiters are served
            in arrival order.
        name: Used in events, errors and metrics (default ``"bulkhead"``).
        clock: The clock (default: the executor's, else real time).
        bus: Where to report events (default: the executor's, else
            `stormwall.default_bus`).

    Raises:
        ConfigError: A parameter is out of its domain.
    """

    __slots__ = (
        "_lock",
        "_max_wait",
        "_sequence",
        "_slots",
    )

    # Only the counters: slots and queued callers hold no timestamps.
    _timed_state: ClassVar[tuple[str, ...]] = ("_counts",)

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_wait: float | None = 0.0,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        Component.__init__(self, "bulkhead", name, clock, bus)
        self._slots: SlotQueue[_Slot] = SlotQueue(
            _validate.positive_int("max_concurrent", max_concurrent)
        )
        self._max_wait = (
            None
            if max_wait is None
            else _validate.non_negative(
                "max_wait", max_wait, finite=False, seconds=True
            )
        )
        self._lock = threading.Lock()
        # Bumped under the lock with every in-flight snapshot that is
        # reported: events from two threads may reach a handler in either
        # order, and exporters keep the newest (see BulkheadAcquired).
        self._sequence = 0

    def _fresh_state(self) -> None:
        self._counts = (0, 0, 0)

    @property
    def _counts(self) -> tuple[int, int, int]:
        """The slot queue's counters: acquired, rejected, released."""
        slots = self._slots
        return slots.acquired, slots.rejected, slots.released

    @_counts.setter
    def _counts(self, counts: tuple[int, int, int]) -> None:
        slots = self._slots
        slots.acquired, slots.rejected, slots.released = counts

    @property
    def max_concurrent(self) -> int:
        """The cap on calls in flight."""
        return self._slots.limit

    @property
    def max_wait(self) -> float | None:
        """How long a caller may queue (``None``: as long as needed)."""
        return self._max_wait

    # -- public API ----------------------------------------------------------

    def try_acquire(self) -> bool:
        """
        Take a slot if one is free and nobody is queued for it.

        Returns:
            Whether a slot was taken; release it with `release`.
        """
        slots = self._slots
        with self._lock:
            ok = slots.try_enter()
            if not ok:
                slots.refuse()
            in_flight = slots.in_flight
            self._sequence += 1
            sequence = self._sequence
        bus = self._explicit_bus or self._bound_bus or default_bus
        if bus._subs:
            if ok:
                self._report(
                    None,
                    BulkheadAcquired,
                    bulkhead=self._name,
                    in_flight=in_flight,
                    sequence=sequence,
                )
            else:
                self._report(
                    None,
                    BulkheadRejected,
                    bulkhead=self._name,
                    in_flight=in_flight,
                )
        return ok

    def release(self) -> None:
        """
        Give a slot back (to the first waiter, if any).

        Raises:
            StormwallError: No slot is held: more releases than acquisitions.
        """
        self._release(None)

    def statistics(self) -> BulkheadStatistics:
        """A snapshot of the bulkhead (see `BulkheadStatistics`)."""
        slots = self._slots
        with self._lock:
            return BulkheadStatistics(
                bulkhead=self._name,
                max_concurrent=slots.limit,
                in_flight=slots.in_flight,
                waiting=slots.waiting,
                acquired=slots.acquired,
                rejected=slots.rejected,
                released=slots.released,
            )

    def __enter__(self) -> None:
        self._acquire(None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release(None)

    async def __aenter__(self) -> None:
        await self._acquire_async(None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release(None)

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self._slots.limit}, max_wait={self._max_wait!r}, "
            f"name={self._name!r})"
        )

    # -- what the executors call --------------------------------------------

    def _enter(
        self, refuse: bool = False
    ) -> tuple[_Slot | None, bool, int, int]:
        """
        Take a free slot, or queue, or refuse (under the lock).

        ``refuse``: the caller cannot wait at all (its deadline has passed).

        Returns:
            ``(slot, entered, in_flight, sequence)``: a slot to wait on when
            queued, else ``None`` with whether a slot was taken, the calls
            in flight and the snapshot's sequence number.
        """
        slots = self._slots
        # acquire/release rather than ``with``: half the cost of the lock on
        # the hot path (see docs/internals.md, The hot path).
        lock = self._lock
        lock.acquire()
        try:
            if slots.try_enter():
                self._sequence += 1
                return None, True, slots.in_flight, self._sequence
            if self._max_wait == 0 or refuse:
                slots.refuse()
                return None, False, slots.in_flight, self._sequence
            slot = _Slot()
            slots.enqueue(slot)
            return slot, False, 0, 0
        finally:
            lock.release()

    def _acquire(
        self, ctx: CallContext | None, limit: float | None = None
    ) -> None:
        # ``limit``: the most the caller may wait (the executor passes the
        # time left before its call's deadline), below ``max_wait``.
        slot, entered, in_flight, sequence = self._enter(
            limit is not None and limit <= 0
        )
        if slot is None:
            self._entered(ctx, entered, in_flight, 0.0, sequence)
            return
        start = self._clock.now()
        deadline = None if self._max_wait is None else start + self._max_wait
        if limit is not None and (
            deadline is None or start + limit < deadline
        ):
            deadline = start + limit
        try:
            slot.waiter.wait(self._clock, deadline)
        except BaseException:
            self._abandon(ctx, slot, start)
            raise
        self._settle(ctx, slot, start)

    async def _acquire_async(
        self, ctx: CallContext | None, limit: float | None = None
    ) -> None:
        # ``limit``: the most the caller may wait (the executor passes the
        # time left before its call's deadline), below ``max_wait``.
        slot, entered, in_flight, sequence = self._enter(
            limit is not None and limit <= 0
        )
        if slot is None:
            self._entered(ctx, entered, in_flight, 0.0, sequence)
            return
        start = self._clock.now()
        deadline = None if self._max_wait is None else start + self._max_wait
        if limit is not None and (
            deadline is None or start + limit < deadline
        ):
            deadline = start + limit
        try:
            await slot.waiter.wait_async(self._clock, deadline)
        except BaseException:
            self._abandon(ctx, slot, start)
            raise
        self._settle(ctx, slot, start)

    def _release(self, ctx: CallContext | None) -> None:
        slots = self._slots
        lock = self._lock
        lock.acquire()
        try:
            if slots.in_flight <= 0:
                raise StormwallError(
                    f"bulkhead {self._name!r} released more often than "
                    "acquired"
                )
            handed = slots.leave()
            in_flight = slots.in_flight
            self._sequence += 1
            sequence = self._sequence
        finally:
            lock.release()
        if handed is not None:
            handed.waiter.notify()
        bus = self._explicit_bus or (
            ctx.bus if ctx is not None else self._bound_bus or default_bus
        )
        if bus._subs:
            self._report(
                ctx,
                BulkheadReleased,
                bulkhead=self._name,
                in_flight=in_flight if handed is None else in_flight - 1,
                sequence=sequence,
            )

    def _set_limit(self, limit: int) -> None:
        """
        Move the cap on calls in flight (the adaptive bulkhead drives it).

        Raising it grants queued callers at once, in arrival order; lowering
        it takes no slot back: no caller enters until fewer than ``limit``
        calls are in flight.

        Raises:
            ConfigError: ``limit`` is not a positive integer.
        """
        limit = _validate.positive_int("limit", limit)
        with self._lock:
            granted = self._slots.set_limit(limit)
        for slot in granted:
            slot.waiter.notify()

    # -- internals -----------------------------------------------------------

    def _entered(
        self,
        ctx: CallContext | None,
        entered: bool,
        in_flight: int,
        waited: float,
        sequence: int,
    ) -> None:
        """Report the outcome; raise `BulkheadFullError` when refused."""
        bus = self._explicit_bus or (
            ctx.bus if ctx is not None else self._bound_bus or default_bus
        )
        if entered:
            if bus._subs:
                try:
                    self._report(
                        ctx,
                        BulkheadAcquired,
                        bulkhead=self._name,
                        in_flight=in_flight,
                        waited=waited,
                        sequence=sequence,
                    )
                except BaseException:
                    # An interrupt inside a handler: the caller never learns
                    # it holds the slot, so give it back here.
                    self._release(ctx)
                    raise
            return
        if bus._subs:
            self._report(
                ctx,
                BulkheadRejected,
                bulkhead=self._name,
                in_flight=in_flight,
            )
        raise BulkheadFullError(self._name, in_flight)

    def _settle(
        self, ctx: CallContext | None, slot: _Slot, start: float
    ) -> None:
        """After the wait: keep the handed slot, or leave the queue refused."""
        slots = self._slots
        with self._lock:
            if slots.withdraw(slot):
                slots.refuse()
            in_flight = slots.in_flight
            self._sequence += 1
            sequence = self._sequence
        waited = self._clock.now() - start
        self._entered(ctx, slot.granted, in_flight, waited, sequence)

    def _abandon(
        self, ctx: CallContext | None, slot: _Slot, start: float
    ) -> None:
        """An interrupted waiter: leave the queue, or pass a handed slot on."""
        with self._lock:
            if self._slots.withdraw(slot):
                return
            # The hand-off counted the slot as acquired: give it back as a
            # release, never as a bare decrement of in_flight, or acquired
            # - released drifts from in_flight by one per abandoned slot.
            in_flight = self._slots.in_flight
            self._sequence += 1
            sequence = self._sequence
        try:
            bus = self._explicit_bus or (
                ctx.bus if ctx is not None else self._bound_bus or default_bus
            )
            if bus._subs:
                self._report(
                    ctx,
                    BulkheadAcquired,
                    bulkhead=self._name,
                    in_flight=in_flight,
                    waited=self._clock.now() - start,
                    sequence=sequence,
                )
        finally:
            self._release(ctx)
