"""
Tests of the bulkhead: cap, FIFO hand-off, max_wait, cancellation, events.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    BulkheadFullError,
    BulkheadStatistics,
    ConfigError,
    EventBus,
    MockClock,
    StormwallError,
)
from stormwall._clock import Waiter, call_at
from stormwall.events import (
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
)
from tests.support.bad_inputs_limiters import BAD_INPUTS


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


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt in a thread's wait, without the risk."""


def _balanced(bulkhead, events=None):
    """Assert the statistics (and the events, when given) agree."""
    stats = bulkhead.statistics()
    assert stats.acquired - stats.released == stats.in_flight, stats
    if events is not None:
        acquired = [e for e in events if isinstance(e, BulkheadAcquired)]
        released = [e for e in events if isinstance(e, BulkheadReleased)]
        moves = sorted(acquired + released, key=lambda e: e.sequence)
        assert (stats.acquired, stats.released) == (
            len(acquired),
            len(released),
        )
        # What a gauge fed by these events shows: the newest snapshot.
        assert stats.in_flight == (moves[-1].in_flight if moves else 0)


class TestStatisticsAfterCancelledHandOff:
    """A waiter handed a slot and cancelled before using it is counted as
    acquired and released: acquired - released == in_flight always."""

    def test_sync_waiter_interrupted_after_hand_off(self):
        """The thread's wait is interrupted right after the hand-off (a
        timer that releases the slot, then raises, runs inside the wait)."""
        clock = MockClock(start=100.0)
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        bulkhead = Bulkhead(1, max_wait=5, clock=clock, bus=bus)
        bulkhead.try_acquire()

        def release_then_interrupt():
            bulkhead.release()  # hands the slot to the waiter below
            raise Interrupt

        call_at(clock, 101.0, release_then_interrupt)
        with pytest.raises(Interrupt), bulkhead:
            pytest.fail("the interrupted waiter must not enter")

        stats = bulkhead.statistics()
        assert (2, 2, 0) == (stats.acquired, stats.released, stats.in_flight)
        _balanced(bulkhead, events)

    def test_sync_hand_off_passes_on_to_the_next_waiter(self, monkeypatch):
        """With a second thread queued, the abandoned slot goes on to it,
        and the counts balance while it holds the slot and after."""
        original = Waiter.wait

        def wait(waiter, clock, deadline):
            woken = original(waiter, clock, deadline)
            if threading.current_thread().name == "interrupted":
                raise Interrupt
            return woken

        monkeypatch.setattr(Waiter, "wait", wait)
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        bulkhead = Bulkhead(1, max_wait=None, bus=bus)
        bulkhead.try_acquire()
        errors, entered, leave = [], threading.Event(), threading.Event()

        def interrupted():
            with pytest.raises(Interrupt) as info, bulkhead:
                pass
            errors.append(info.value)

        def holder():
            with bulkhead:
                entered.set()
                leave.wait(5)

        first = threading.Thread(target=interrupted, name="interrupted")
        first.start()
        wait_until(lambda: bulkhead.statistics().waiting == 1)
        second = threading.Thread(target=holder)
        second.start()
        wait_until(lambda: bulkhead.statistics().waiting == 2)

        bulkhead.release()  # to the first, interrupted: on to the second
        first.join(5)
        entered.wait(5)
        inside = bulkhead.statistics()
        _balanced(bulkhead, events)
        leave.set()
        second.join(5)

        assert 1 == len(errors)
        assert (1, 3, 2) == (
            inside.in_flight,
            inside.acquired,
            inside.released,
        )
        assert 0 == bulkhead.statistics().in_flight
        _balanced(bulkhead, events)

    @pytest.mark.asyncio
    async def test_async_task_cancelled_after_hand_off(self):
        """The issue's repro: acquired 2, released 1, in_flight 0."""
        clock = MockClock(start=100.0, autojump=False)
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock, bus=bus)
        bulkhead.try_acquire()

        async def enter():
            async with bulkhead:
                pytest.fail("the cancelled waiter must not enter")

        task = asyncio.create_task(enter())
        await asyncio.sleep(0)
        bulkhead.release()  # hand the slot to the task...
        task.cancel()  # ...and cancel it before it resumes
        with pytest.raises(asyncio.CancelledError):
            await task

        stats = bulkhead.statistics()
        assert (2, 2, 0) == (stats.acquired, stats.released, stats.in_flight)
        _balanced(bulkhead, events)

    @pytest.mark.asyncio
    async def test_executor_call_cancelled_after_hand_off(self):
        """Through AsyncResilientExecutor (events on the executor's bus):
        the counts and the events balance after the cancelled call."""
        clock = MockClock(start=100.0, autojump=False)
        bus = EventBus()
        events = []
        bus.subscribe(events.append)
        bulkhead = Bulkhead(1, max_wait=None, clock=clock)
        executor = AsyncResilientExecutor(bulkhead=bulkhead, bus=bus)
        bulkhead.try_acquire()

        async def service():
            pytest.fail("the cancelled call must not run")

        task = asyncio.create_task(executor.run("k", service))
        for _ in range(5):
            await asyncio.sleep(0)
        assert 1 == bulkhead.statistics().waiting
        bulkhead.release()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert 0 == bulkhead.statistics().in_flight
        _balanced(bulkhead, events)

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.sampled_from(["enter", "try", "release", "cancel", "run"]),
            max_size=40,
        ),
        st.randoms(use_true_random=False),
    )
    def test_counts_balance_under_random_cancellation(self, steps, rng):
        """Random arrivals, hand-offs and cancellations of asyncio waiters:
        the statistics balance after every step, the events at the end."""
        asyncio.run(_drive(steps, rng))


async def _drive(steps, rng):
    """Run ``steps`` against one bulkhead; check the counts after each."""
    clock = MockClock(start=0.0, autojump=False)
    bus = EventBus()
    events = []
    bus.subscribe(events.append)
    bulkhead = Bulkhead(2, max_wait=None, clock=clock, bus=bus)
    held = 0  # slots this driver took with try_acquire
    tasks = []

    async def enter():
        async with bulkhead:
            await asyncio.sleep(0)

    for step in steps:
        if step == "enter":
            tasks.append(asyncio.create_task(enter()))
        elif step == "try":
            held += bulkhead.try_acquire()
        elif step == "release" and held:
            bulkhead.release()  # hands the slot over at once, if queued
            held -= 1
        elif step == "cancel" and tasks:
            tasks[rng.randrange(len(tasks))].cancel()
        elif step == "run":
            await asyncio.sleep(0)
        # A handed-off waiter reports its acquisition when it resumes, so
        # the events balance only once every task has finished.
        _balanced(bulkhead)
    for _ in range(held):
        bulkhead.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    _balanced(bulkhead, events)
    assert 0 == bulkhead.statistics().in_flight
