"""
Tests of the bulkhead: cap, FIFO hand-off, max_wait, cancellation, events.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from _bad_inputs_limiters import BAD_INPUTS
from stormwall import (
    Bulkhead,
    BulkheadFullError,
    BulkheadStatistics,
    ConfigError,
    EventBus,
    MockClock,
    StormwallError,
)
from stormwall.events import (
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
)


def wait_until(predicate, timeout=5.0):
    """Poll (real time) until ``predicate()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.0005)


class TestBulkhead:
    @pytest.mark.parametrize(
        ("build", "parameter"),
        [p for p in BAD_INPUTS if p.id.startswith("bulkhead-")],
    )
    def test_bad_input(self, build, parameter):
        """Out-of-domain arguments are ConfigErrors naming the parameter."""
        with pytest.raises(ConfigError) as info:
            build()

        assert parameter == info.value.parameter

    def test_cap_and_refusal(self):
        """max_wait=0 refuses at once when every slot is taken."""
        bulkhead = Bulkhead(2, name="db")

        with bulkhead, bulkhead:
            with pytest.raises(BulkheadFullError) as info, bulkhead:
                pass
            inside = bulkhead.statistics().in_flight

        assert 2 == inside
        assert ("db", 2) == (info.value.bulkhead, info.value.in_flight)
        assert 0 == bulkhead.statistics().in_flight

    def test_try_acquire_and_release(self):
        """try_acquire takes a free slot; release gives it back."""
        bulkhead = Bulkhead(1)

        first = bulkhead.try_acquire()
        second = bulkhead.try_acquire()
        bulkhead.release()
        third = bulkhead.try_acquire()
        bulkhead.release()

        assert (True, False, True) == (first, second, third)

    def test_release_more_than_acquired(self):
        """Releasing a slot nobody holds is an error."""
        bulkhead = Bulkhead(1)

        with pytest.raises(StormwallError, match="released more often"):
            bulkhead.release()

    def test_statistics(self):
        """statistics() documents the counters."""
        bulkhead = Bulkhead(1, name="s")
        with bulkhead:
            bulkhead.try_acquire()

        expected = BulkheadStatistics(
            bulkhead="s",
            max_concurrent=1,
            in_flight=0,
            waiting=0,
            acquired=1,
            rejected=1,
            released=1,
        )
        assert expected == bulkhead.statistics()

    def test_max_wait_rejects_in_virtual_time(self):
        """A waiter gives up after max_wait (MockClock, no real wait)."""
        clock = MockClock(start=100.0)
        bulkhead = Bulkhead(1, max_wait=2.5, clock=clock)
        bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError), bulkhead:
            pass

        assert 102.5 == clock.now()
        assert 0 == bulkhead.statistics().waiting

    def test_cap_under_threads(self):
        """Threads never exceed max_concurrent in flight."""
        bulkhead = Bulkhead(3, max_wait=None)
        lock = threading.Lock()
        inside = 0
        peak = 0

        def worker():
            nonlocal inside, peak
            for _ in range(200):
                with bulkhead:
                    with lock:
                        inside += 1
                        peak = max(peak, inside)
                    time.sleep(0)
                    with lock:
                        inside -= 1

        threads = [
            threading.Thread(target=worker, daemon=True) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)

        assert not any(t.is_alive() for t in threads)
        assert peak <= 3
        assert 1600 == bulkhead.statistics().acquired

    def test_fifo_hand_off_threads(self):
        """A release hands the slot to the first waiter; no barging."""
        clock = MockClock(start=100.0, autojump=False)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock)
        bulkhead.try_acquire()
        order = []

        def worker(name):
            with bulkhead:
                order.append(name)

        threads = []
        for n, name in enumerate("abc", 1):
            t = threading.Thread(target=worker, args=(name,), daemon=True)
            t.start()
            threads.append(t)
            wait_until(lambda n=n: bulkhead.statistics().waiting == n)
        bulkhead.release()
        # The slot went to "a": a newcomer cannot barge in meanwhile.
        barged = bulkhead.try_acquire()
        for t in threads:
            t.join(5)

        assert not barged
        assert ["a", "b", "c"] == order
        assert 0 == bulkhead.statistics().in_flight

    @pytest.mark.asyncio
    async def test_cap_and_fifo_under_tasks(self):
        """Tasks share the cap and enter in arrival order."""
        bulkhead = Bulkhead(2, max_wait=None)
        order = []
        inside = 0
        peak = 0

        async def worker(i):
            nonlocal inside, peak
            async with bulkhead:
                order.append(i)
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0)
                inside -= 1

        await asyncio.gather(*(worker(i) for i in range(20)))

        assert 2 == peak
        assert list(range(20)) == order

    @pytest.mark.asyncio
    async def test_async_max_wait(self):
        """async with gives up after max_wait in virtual time."""
        clock = MockClock(start=100.0)
        bulkhead = Bulkhead(1, max_wait=1.5, clock=clock)
        bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            async with bulkhead:
                pass

        assert 101.5 == clock.now()

    @pytest.mark.asyncio
    async def test_cancelled_waiter_leaves_queue(self):
        """A waiter cancelled before its turn just leaves the queue."""
        clock = MockClock(start=100.0, autojump=False)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock)
        bulkhead.try_acquire()

        async def enter():
            async with bulkhead:
                pass

        task = asyncio.create_task(enter())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        bulkhead.release()

        assert 0 == bulkhead.statistics().waiting
        assert 0 == bulkhead.statistics().in_flight

    @pytest.mark.asyncio
    async def test_cancelled_after_hand_off_passes_slot_on(self):
        """A waiter cancelled after being handed a slot passes it on."""
        clock = MockClock(start=100.0, autojump=False)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock)
        bulkhead.try_acquire()
        entered = []

        async def enter(name):
            async with bulkhead:
                entered.append(name)
                await asyncio.sleep(0)

        first = asyncio.create_task(enter("first"))
        second = asyncio.create_task(enter("second"))
        await asyncio.sleep(0)
        # Hand the slot to "first", then cancel it before it runs.
        bulkhead.release()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 5)

        assert ["second"] == entered
        assert 0 == bulkhead.statistics().in_flight

    def test_events(self):
        """Acquired (with waited), Released and Rejected are reported."""
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        clock = MockClock(start=100.0)
        bulkhead = Bulkhead(1, max_wait=1.0, name="b", clock=clock, bus=bus)

        with bulkhead, pytest.raises(BulkheadFullError), bulkhead:
            pass

        assert [
            BulkheadAcquired(
                time=100.0, bulkhead="b", in_flight=1, waited=0.0, sequence=1
            ),
            BulkheadRejected(time=101.0, bulkhead="b", in_flight=1),
            BulkheadReleased(
                time=101.0, bulkhead="b", in_flight=0, sequence=3
            ),
        ] == events

    def test_waited_reported_after_hand_off(self):
        """A waiter that got a slot reports how long it queued."""
        bus = EventBus()
        events = []
        bus.subscribe(events.append, BulkheadAcquired)
        clock = MockClock(start=100.0, autojump=False)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock, bus=bus)
        bulkhead.try_acquire()
        t = threading.Thread(target=bulkhead._acquire, args=(None,))
        t.start()
        wait_until(lambda: bulkhead.statistics().waiting == 1)

        clock.advance(2)
        bulkhead.release()
        t.join(5)

        assert [0.0, 2.0] == [e.waited for e in events]
        assert 1 == bulkhead.statistics().in_flight

    def test_properties_and_repr(self):
        """The configuration is readable back."""
        bulkhead = Bulkhead(4, max_wait=None, name="x")

        assert (4, None) == (bulkhead.max_concurrent, bulkhead.max_wait)
        assert "Bulkhead(4, max_wait=None, name='x')" == repr(bulkhead)


class TestEndlessMaxWait:
    """max_wait=math.inf (or past threading.TIMEOUT_MAX) waits for a slot."""

    @pytest.mark.parametrize(
        "max_wait",
        [math.inf, threading.TIMEOUT_MAX * 2],
        ids=["inf", "twice-timeout-max"],
    )
    def test_sync_waiter_gets_the_slot(self, max_wait):
        """A thread queued with an endless max_wait enters on release."""
        bulkhead = Bulkhead(1, max_wait=max_wait)
        bulkhead.try_acquire()
        entered = []

        def enter():
            with bulkhead:
                entered.append(True)

        t = threading.Thread(target=enter, daemon=True)
        t.start()
        wait_until(
            lambda: bulkhead.statistics().waiting == 1 or not t.is_alive()
        )
        bulkhead.release()
        t.join(5)

        assert [True] == entered
        assert 0 == bulkhead.statistics().in_flight

    def test_mock_clock_autojump_does_not_jump_to_infinity(self):
        """Under an autojump MockClock an infinite max_wait waits for the
        release instead of moving time to inf and refusing."""
        clock = MockClock(start=100.0)
        bulkhead = Bulkhead(1, max_wait=math.inf, clock=clock)
        bulkhead.try_acquire()
        entered = []

        def enter():
            with bulkhead:
                entered.append(clock.now())

        t = threading.Thread(target=enter, daemon=True)
        t.start()
        wait_until(
            lambda: bulkhead.statistics().waiting == 1 or not t.is_alive()
        )
        bulkhead.release()
        t.join(5)

        assert [100.0] == entered
        assert 0 == bulkhead.statistics().rejected

    @pytest.mark.asyncio
    async def test_async_waiter_gets_the_slot(self):
        """The async twin under an autojump MockClock."""
        clock = MockClock(start=100.0)
        bulkhead = Bulkhead(1, max_wait=math.inf, clock=clock)
        bulkhead.try_acquire()

        async def enter():
            async with bulkhead:
                return clock.now()

        task = asyncio.create_task(enter())
        for _ in range(5):
            await asyncio.sleep(0)
        bulkhead.release()

        assert 100.0 == await asyncio.wait_for(task, 5)
