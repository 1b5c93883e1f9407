"""
The clocks: `MonotonicClock`'s real sleeps and waiters, and `MockClock` in
autojump and manual mode (timers, waiters, validation, long waits).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from stormwall import ConfigError, MockClock, MonotonicClock
from stormwall._clock import Waiter, call_at


WATCHDOG = 5.0  # real seconds a thread may take before a test calls it stuck


def start(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def wait_for(predicate, timeout=WATCHDOG):
    """Spin (real time, briefly) until a background thread reached a state."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for a background thread")
        time.sleep(0.0005)


class TestMonotonicClock:
    def test_now_is_monotonic(self):
        """now() never goes backwards."""
        clock = MonotonicClock()

        a = clock.now()
        b = clock.now()

        assert b >= a

    def test_non_positive_sleep_returns_at_once(self):
        """A sleep of zero or less returns without sleeping."""
        clock = MonotonicClock()
        before = time.monotonic()

        clock.sleep(0)
        clock.sleep(-5)

        assert time.monotonic() - before < 0.05

    @pytest.mark.asyncio
    async def test_async_sleep(self):
        """sleep_async sleeps for real, briefly."""
        clock = MonotonicClock()
        before = clock.now()

        await clock.sleep_async(0.002)
        await clock.sleep_async(0)

        assert clock.now() - before >= 0.002

    def test_waiter_notified_from_another_thread(self):
        """A real-time wait ends early when another thread notifies."""
        clock = MonotonicClock()
        waiter = Waiter()
        threading.Timer(0.002, waiter.notify).start()

        notified = waiter.wait(clock, clock.now() + WATCHDOG)

        assert notified is True

    def test_waiter_deadline(self):
        """A real-time wait returns False at its deadline."""
        clock = MonotonicClock()

        assert Waiter().wait(clock, clock.now() + 0.001) is False

    @pytest.mark.asyncio
    async def test_async_waiter_notified_from_thread(self):
        """An async wait is woken by a notify from another thread."""
        clock = MonotonicClock()
        waiter = Waiter()
        threading.Timer(0.002, waiter.notify).start()

        notified = await waiter.wait_async(clock, clock.now() + WATCHDOG)

        assert notified is True

    @pytest.mark.asyncio
    async def test_async_waiter_deadline(self):
        """An async real-time wait returns False at its deadline."""
        clock = MonotonicClock()

        assert await Waiter().wait_async(clock, clock.now() + 0.001) is False

    @pytest.mark.asyncio
    async def test_call_at_real_clock(self):
        """call_at runs the callback on the loop once the deadline passes."""
        clock = MonotonicClock()
        fired = asyncio.Event()

        call_at(clock, clock.now() + 0.001, fired.set)

        await asyncio.wait_for(fired.wait(), WATCHDOG)


class TestMockClockAutojump:
    def test_sleep_jumps(self):
        """A sleep moves virtual time at once and is recorded."""
        clock = MockClock(start=100.0)

        clock.sleep(30)
        clock.sleep(0)
        clock.sleep(-1)

        assert 130.0 == clock.now()
        assert [30] == clock.sleeps

    @pytest.mark.asyncio
    async def test_async_sleep_jumps(self):
        """sleep_async moves virtual time at once."""
        clock = MockClock()

        await clock.sleep_async(2.5)

        assert 2.5 == clock.now()

    def test_long_backoff_costs_no_real_time(self):
        """Five 30 s sleeps take milliseconds of real time."""
        clock = MockClock()
        before = time.monotonic()

        for _ in range(5):
            clock.sleep(30)

        assert 150.0 == clock.now()
        assert time.monotonic() - before < 0.5

    def test_jump_fires_earlier_timers_in_order(self):
        """Timers due before a sleep's deadline fire on the way, in order."""
        clock = MockClock()
        fired = []
        call_at(clock, 2.0, lambda: fired.append(("b", clock.now())))
        call_at(clock, 1.0, lambda: fired.append(("a", clock.now())))
        call_at(clock, 9.0, lambda: fired.append(("late", clock.now())))

        clock.sleep(5)

        assert [("a", 1.0), ("b", 2.0)] == fired
        assert 5.0 == clock.now()

    def test_notified_wait_stops_the_jump(self):
        """A timed wait notified by a timer on the way returns at that time."""
        clock = MockClock()
        waiter = Waiter()
        call_at(clock, 3.0, waiter.notify)

        notified = waiter.wait(clock, 10.0)

        assert notified is True
        assert 3.0 == clock.now()

    def test_call_at_past_deadline_runs_now(self):
        """A callback whose deadline has passed runs at once."""
        clock = MockClock(start=5.0)
        fired = []

        call_at(clock, 1.0, lambda: fired.append(True))

        assert [True] == fired

    def test_cancelled_timer_does_not_fire(self):
        """Cancelling a timer keeps its callback from running."""
        clock = MockClock()
        fired = []
        cancel = call_at(clock, 1.0, lambda: fired.append(True))

        cancel()
        clock.advance(2)

        assert [] == fired

    @pytest.mark.asyncio
    async def test_timeout_cancels_sleeping_task_at_its_deadline(self):
        """A task cancelled by a timer mid-jump stops at the timer's time."""
        clock = MockClock()
        task = asyncio.current_task()
        assert task is not None
        call_at(clock, 1.0, task.cancel)

        with pytest.raises(asyncio.CancelledError):
            await clock.sleep_async(10)
        task.uncancel()

        assert 1.0 == clock.now()

    def test_wait_without_deadline_needs_a_notify(self):
        """An untimed wait blocks even in autojump mode until notified."""
        clock = MockClock()
        waiter = Waiter()
        result = []
        t = start(lambda: result.append(waiter.wait(clock, None)))

        time.sleep(0.002)
        assert [] == result
        waiter.notify()
        t.join(WATCHDOG)

        assert [True] == result

    def test_notify_before_wait(self):
        """A notification that arrives first makes the wait return at once."""
        waiter = Waiter()
        waiter.notify()
        waiter.notify()

        assert waiter.wait(MockClock(), None) is True


class TestMockClockManual:
    def test_threads_block_until_advance(self):
        """A sleeping thread wakes only once advance() passes its deadline."""
        clock = MockClock(autojump=False)
        woke = []
        t = start(lambda: (clock.sleep(5), woke.append(clock.now())))
        wait_for(lambda: clock._timers)

        clock.advance(4.999)
        assert [] == woke
        clock.advance(0.001)
        t.join(WATCHDOG)

        assert [5.0] == woke

    def test_threads_wake_in_deadline_order(self):
        """Sleeping threads wake in deadline order, each at its own time."""
        clock = MockClock(autojump=False)
        woke = []
        lock = threading.Lock()

        def sleeper(d):
            clock.sleep(d)
            with lock:
                woke.append((d, clock.now()))

        threads = [start(sleeper, d) for d in (3, 1, 2, 5, 4)]
        wait_for(lambda: len(clock._timers) == 5)

        clock.advance(10)
        for t in threads:
            t.join(WATCHDOG)

        assert [1, 2, 3, 4, 5] == [d for d, _ in woke]

    @pytest.mark.asyncio
    async def test_tasks_wake_in_deadline_order(self):
        """Sleeping tasks wake in deadline order once time advances."""
        clock = MockClock(autojump=False)
        woke = []

        async def sleeper(d):
            await clock.sleep_async(d)
            woke.append((d, clock.now()))

        tasks = [asyncio.create_task(sleeper(d)) for d in (3, 1, 2)]
        await asyncio.sleep(0)
        assert [] == woke

        await clock.advance_async(2)
        assert [(1, 1.0), (2, 2.0)] == woke  # each ran at its own deadline
        await clock.advance_async(1)
        await asyncio.gather(*tasks)

        assert [1, 2, 3] == [d for d, _ in woke]

    def test_waiter_notified_before_deadline(self):
        """A manual-mode wait returns True when notified before advance."""
        clock = MockClock(autojump=False)
        waiter = Waiter()
        result = []
        t = start(lambda: result.append(waiter.wait(clock, 10.0)))
        wait_for(lambda: clock._timers)

        waiter.notify()
        t.join(WATCHDOG)

        assert [True] == result
        assert 0.0 == clock.now()

    def test_cancelled_timers_are_compacted(self):
        """Thousands of cancelled timers do not pile up in the heap."""
        clock = MockClock(autojump=False)

        for i in range(10_000):
            call_at(clock, 1e6 + i, lambda: None)()

        assert len(clock._timers) < 200

    @pytest.mark.asyncio
    async def test_async_waiter_cancelled_cleanly(self):
        """Cancelling a task in a manual-mode wait leaves no live timer."""
        clock = MockClock(autojump=False)
        task = asyncio.create_task(Waiter().wait_async(clock, 10.0))
        await asyncio.sleep(0)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert all(t.cancelled for t in clock._timers)

    @pytest.mark.asyncio
    async def test_async_deadline(self):
        """A manual-mode async wait returns False when time passes it."""
        clock = MockClock(autojump=False)
        task = asyncio.create_task(Waiter().wait_async(clock, 1.0))
        await asyncio.sleep(0)

        await clock.advance_async(1)

        assert task.done()
        assert task.result() is False


class TestMockClockValidation:
    @pytest.mark.parametrize(
        ("kwargs", "param"),
        [
            pytest.param({"start": -1}, "start", id="start-negative"),
            pytest.param({"start": math.nan}, "start", id="start-nan"),
            pytest.param({"start": math.inf}, "start", id="start-inf"),
            pytest.param({"start": "0"}, "start", id="start-str"),
            pytest.param({"autojump": 1}, "autojump", id="autojump-int"),
        ],
    )
    def test_bad_construction(self, kwargs, param):
        """Bad constructor arguments raise ConfigError naming them."""
        with pytest.raises(ConfigError) as info:
            MockClock(**kwargs)

        assert param == info.value.parameter

    def test_advance_refuses_negative(self):
        """Time can't go backwards."""
        clock = MockClock()

        with pytest.raises(ConfigError, match="seconds"):
            clock.advance(-1)
        with pytest.raises(ConfigError, match="backwards"):
            MockClock(start=5).jump_to(4)

    @pytest.mark.parametrize(
        "when",
        [math.nan, math.inf, -math.inf, "7", None, True, 10**400],
        ids=["nan", "inf", "-inf", "str", "none", "bool", "huge-int"],
    )
    def test_jump_to_refuses_what_is_not_a_finite_time(self, when):
        """jump_to(nan) used to fire every timer: a time that is not a
        finite number is a ConfigError naming ``when``; nothing fires."""
        clock = MockClock(start=1)
        fired = []
        call_at(clock, 2.0, lambda: fired.append(2.0))

        with pytest.raises(ConfigError) as info:
            clock.jump_to(when)

        assert "when" == info.value.parameter
        assert [] == fired
        assert 1.0 == clock.now()

    @pytest.mark.parametrize(
        "seconds",
        [math.nan, math.inf, "1", None, True, 10**400],
        ids=["nan", "inf", "str", "none", "bool", "huge-int"],
    )
    def test_advance_refuses_what_is_not_a_finite_duration(self, seconds):
        """advance and advance_async refuse the same values, naming
        ``seconds``; nothing fires."""
        clock = MockClock(start=1)
        fired = []
        call_at(clock, 2.0, lambda: fired.append(2.0))

        with pytest.raises(ConfigError) as sync_info:
            clock.advance(seconds)
        with pytest.raises(ConfigError) as async_info:
            asyncio.run(clock.advance_async(seconds))

        assert "seconds" == sync_info.value.parameter
        assert "seconds" == async_info.value.parameter
        assert [] == fired
        assert 1.0 == clock.now()

    def test_jump_to_accepts_an_int(self):
        """jump_to takes an int as well as a float."""
        clock = MockClock(start=1)

        clock.jump_to(3)

        assert 3.0 == clock.now()

    def test_jump_to(self):
        """jump_to moves to an absolute time."""
        clock = MockClock(start=1)

        clock.jump_to(7.5)

        assert 7.5 == clock.now()


class TestWaiterNotifyRace:
    def test_second_notify_while_waiting_does_not_block_the_loop(self):
        """A waiter notified before its async wait, then notified again from
        the same loop, never blocks the loop thread."""

        async def main():
            waiter = Waiter()
            t = threading.Thread(target=waiter.notify)
            t.start()
            t.join()

            async def again():
                waiter.notify()
                return "returned"

            other = asyncio.get_running_loop().create_task(again())
            assert await waiter.wait_async(MonotonicClock(), None) is True
            return await other

        runner = threading.Thread(
            target=lambda: results.append(asyncio.run(main())), daemon=True
        )
        results = []
        runner.start()
        runner.join(WATCHDOG)

        assert ["returned"] == results


class TestWaitsPastTimeoutMax:
    """A wait longer than threading.TIMEOUT_MAX (or infinite) just waits."""

    @pytest.mark.parametrize(
        "delay",
        [math.inf, threading.TIMEOUT_MAX * 2, 1e300],
        ids=["inf", "twice-timeout-max", "1e300"],
    )
    def test_real_waiter_waits_for_notify(self, delay):
        """A thread waiting for an endless deadline is woken by notify,
        never failed with OverflowError."""
        clock = MonotonicClock()
        waiter = Waiter()
        result = []
        t = start(
            lambda: result.append(waiter.wait(clock, clock.now() + delay))
        )
        # Until it blocks (or, before the fix, fails at once).
        wait_for(lambda: waiter._event is not None or not t.is_alive())
        waiter.notify()
        t.join(WATCHDOG)

        assert [True] == result

    @pytest.mark.asyncio
    @pytest.mark.parametrize("delay", [math.inf, 1e300], ids=["inf", "1e300"])
    async def test_real_async_waiter_waits_for_notify(self, delay):
        """The async twin waits for the notify too."""
        clock = MonotonicClock()
        waiter = Waiter()
        asyncio.get_running_loop().call_later(0.002, waiter.notify)

        notified = await waiter.wait_async(clock, clock.now() + delay)

        assert notified is True

    def test_mock_autojump_never_jumps_to_infinity(self):
        """Under autojump, an infinite deadline waits for the notify: it
        must not move virtual time to inf."""
        clock = MockClock(start=5.0)
        waiter = Waiter()
        result = []
        t = start(lambda: result.append(waiter.wait(clock, math.inf)))
        wait_for(lambda: waiter._event is not None or not t.is_alive())
        waiter.notify()
        t.join(WATCHDOG)

        assert [True] == result
        assert 5.0 == clock.now()

    def test_monotonic_sleep_past_timeout_max_is_chunked(self, monkeypatch):
        """MonotonicClock.sleep(inf) sleeps in bounded slices, each one a
        value time.sleep accepts, instead of raising OverflowError."""
        slices = []

        class Stop(Exception):
            pass

        def fake_sleep(seconds):
            if seconds > threading.TIMEOUT_MAX:
                raise OverflowError("timestamp out of range")
            slices.append(seconds)
            if len(slices) == 3:
                raise Stop

        monkeypatch.setattr(time, "sleep", fake_sleep)

        with pytest.raises(Stop):
            MonotonicClock().sleep(math.inf)

        assert 3 == len(slices)
        assert all(0 < s <= threading.TIMEOUT_MAX for s in slices)
