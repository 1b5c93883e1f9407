"""
The bulkhead's slot queue: who holds a slot, who waits, in arrival order.

A sans-I/O state machine (trio's ``CapacityLimiter`` without the waiting):
the shell (``stormwall._bulkhead``) holds the lock around every call here,
and does the waiting and the waking itself. Rules:

- A newcomer takes a free slot only when nobody is queued: it never barges
  past a waiter.
- A freed slot goes straight to the first waiter (its ticket is marked
  ``granted`` and returned for the shell to wake), so the count in flight
  does not dip between a release and the next grant.
- A waiter that gives up before being granted leaves the queue
  (`withdraw`); one that gives up after being granted holds a slot and must
  `leave` like any holder, so no slot leaks.
- The limit can move (`set_limit`; the adaptive bulkhead drives it).
  Growing it grants queued tickets at once, in arrival order, up to the new
  limit. Shrinking it takes nothing back: calls in flight finish, and no
  grant is made until fewer than the new limit are in flight.
- ``acquired - released == in_flight`` always: every grant is counted as
  acquired, every `leave` as released.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar


__all__ = ["SlotQueue", "Ticket"]


class Ticket:
    """A queued caller; ``granted`` once a slot was handed to it."""

    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False


_T = TypeVar("_T", bound=Ticket)


class SlotQueue(Generic[_T]):
    """At most ``limit`` slots held at once, and a FIFO queue of tickets."""

    __slots__ = (
        "_queue",
        "acquired",
        "in_flight",
        "limit",
        "rejected",
        "released",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._queue: deque[_T] = deque()
        self.acquired = 0
        self.rejected = 0
        self.released = 0

    @property
    def waiting(self) -> int:
        """Tickets queued now."""
        return len(self._queue)

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody is queued for it."""
        if self.in_flight < self.limit and not self._queue:
            self.in_flight += 1
            self.acquired += 1
            return True
        return False

    def refuse(self) -> None:
        """Count a caller turned away (full, or gave up waiting)."""
        self.rejected += 1

    def enqueue(self, ticket: _T) -> None:
        """Queue ``ticket`` last; only after `try_enter` failed."""
        self._queue.append(ticket)

    def withdraw(self, ticket: _T) -> bool:
        """
        Take a waiter that gives up out of the queue.

        Returns:
            ``True`` when it left the queue; ``False`` when it had been
            granted a slot meanwhile (it holds it: `leave` gives it back).
        """
        if ticket.granted:
            return False
        self._queue.remove(ticket)
        return True

    def leave(self) -> _T | None:
        """
        Give a slot back (the caller checks one is held).

        Returns:
            The ticket the slot was handed to (wake it), or ``None``.
        """
        self.released += 1
        self.in_flight -= 1
        if self._queue and self.in_flight < self.limit:
            return self._grant()
        return None

    def set_limit(self, limit: int) -> list[_T]:
        """
        Move the limit (a positive integer; the caller checks it).

        Returns:
            The tickets granted because the limit grew, in arrival order
            (wake them); empty when it shrank or nobody waits.
        """
        self.limit = limit
        granted: list[_T] = []
        while self._queue and self.in_flight < limit:
            granted.append(self._grant())
        return granted

    def _grant(self) -> _T:
        """Hand a slot to the first waiter."""
        ticket = self._queue.popleft()
        ticket.granted = True
        self.in_flight += 1
        self.acquired += 1
        return ticket
