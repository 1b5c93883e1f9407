"""
The bulkhead's sans-I/O slot queue (``stormwall._core._bulkhead``).

Unit tests of its rules (no barging, FIFO hand-off, withdrawal, a limit
that grows or shrinks) and a Hypothesis state machine that drives it with
random entries, waits, withdrawals, releases and limit moves against a
reference model written as a plain list.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from stormwall._core._bulkhead import SlotQueue, Ticket


def _queued(slots, n):
    tickets = [Ticket() for _ in range(n)]
    for ticket in tickets:
        slots.enqueue(ticket)
    return tickets


class TestSlotQueue:
    def test_enters_up_to_the_limit(self):
        """try_enter takes free slots, then refuses."""
        slots = SlotQueue(2)

        assert [True, True, False] == [slots.try_enter() for _ in range(3)]
        assert (2, 2) == (slots.in_flight, slots.acquired)

    def test_no_barging_past_a_waiter(self):
        """A free slot is not taken by a newcomer while someone waits."""
        slots = SlotQueue(1)
        slots.try_enter()
        (first,) = _queued(slots, 1)
        slots.limit = 2  # a free slot, but set directly: nobody granted

        assert not slots.try_enter()
        assert not first.granted

    def test_leave_hands_the_slot_to_the_first_waiter(self):
        """A release grants the oldest ticket; in_flight does not dip."""
        slots = SlotQueue(1)
        slots.try_enter()
        first, second = _queued(slots, 2)

        assert first is slots.leave()
        assert (True, False) == (first.granted, second.granted)
        assert (1, 1, 1) == (slots.in_flight, slots.waiting, slots.released)

    def test_withdraw_leaves_the_queue_unless_granted(self):
        """A waiter leaves the queue; a granted one keeps its slot."""
        slots = SlotQueue(1)
        slots.try_enter()
        first, second = _queued(slots, 2)
        slots.leave()

        assert not slots.withdraw(first)
        assert slots.withdraw(second)
        assert (1, 0) == (slots.in_flight, slots.waiting)

    def test_growing_the_limit_grants_waiters_in_order(self):
        """A raised limit grants queued tickets at once, oldest first."""
        slots = SlotQueue(1)
        slots.try_enter()
        tickets = _queued(slots, 3)

        assert tickets[:2] == slots.set_limit(3)
        assert (3, 1) == (slots.in_flight, slots.waiting)
        assert tickets[2:] == slots.set_limit(10)

    def test_shrinking_the_limit_takes_nothing_back(self):
        """Below a lowered limit again before anyone enters."""
        slots = SlotQueue(3)
        for _ in range(3):
            slots.try_enter()
        (waiter,) = _queued(slots, 1)

        assert [] == slots.set_limit(1)
        assert None is slots.leave()
        assert None is slots.leave()
        assert not slots.try_enter()
        assert waiter is slots.leave()
        assert (1, 0) == (slots.in_flight, slots.waiting)


class SlotQueueMachine(RuleBasedStateMachine):
    """The slot queue against a model: a holder count and a list."""

    waiting_tickets = Bundle("waiting_tickets")

    def __init__(self):
        super().__init__()
        self.slots = SlotQueue(2)
        self.limit = 2
        self.in_flight = 0
        self.queue = []  # tickets, oldest first
        self.counts = {"acquired": 0, "rejected": 0, "released": 0}

    def _grant_model(self):
        granted = []
        while self.queue and self.in_flight < self.limit:
            granted.append(self.queue.pop(0))
            self.in_flight += 1
            self.counts["acquired"] += 1
        return granted

    @rule()
    def try_enter(self):
        free = self.in_flight < self.limit and not self.queue
        if free:
            self.in_flight += 1
            self.counts["acquired"] += 1

        assert free == self.slots.try_enter()

    @rule()
    def refuse(self):
        self.counts["rejected"] += 1
        self.slots.refuse()

    # As the shell does: only after try_enter failed.
    @precondition(lambda self: self.queue or self.in_flight >= self.limit)
    @rule(target=waiting_tickets)
    def enqueue(self):
        ticket = Ticket()
        self.queue.append(ticket)
        self.slots.enqueue(ticket)
        return ticket

    @rule(ticket=consumes(waiting_tickets))
    def withdraw(self, ticket):
        # Still queued: it leaves. Granted meanwhile: it holds a slot.
        queued = ticket in self.queue
        if queued:
            self.queue.remove(ticket)

        assert queued == self.slots.withdraw(ticket)

    @precondition(lambda self: self.in_flight > 0)
    @rule()
    def leave(self):
        self.in_flight -= 1
        self.counts["released"] += 1
        granted = self._grant_model()

        assert (granted[0] if granted else None) is self.slots.leave()

    @rule(limit=st.integers(min_value=1, max_value=6))
    def set_limit(self, limit):
        self.limit = limit
        granted = self._grant_model()

        assert granted == self.slots.set_limit(limit)

    @invariant()
    def agrees_with_the_model(self):
        slots = self.slots

        assert (self.limit, self.in_flight, len(self.queue)) == (
            slots.limit,
            slots.in_flight,
            slots.waiting,
        )
        assert self.counts == {
            "acquired": slots.acquired,
            "rejected": slots.rejected,
            "released": slots.released,
        }
        assert self.queue == list(slots._queue)

    @invariant()
    def no_slot_leaks_and_nobody_waits_for_a_free_slot(self):
        slots = self.slots

        assert slots.acquired - slots.released == slots.in_flight
        assert all(not t.granted for t in slots._queue)
        assert not slots.waiting or slots.in_flight >= slots.limit


# No timing checks: on a loaded machine (CI shares its cores) generating a
# step can take longer than Hypothesis' health check allows; the model
# comparison is what this test is for.
SlotQueueMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSlotQueueMachine = SlotQueueMachine.TestCase
