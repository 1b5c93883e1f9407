"""
A bulkhead whose limit moves (``Bulkhead._set_limit``) under waiting callers.

Threads and asyncio tasks queued for a slot: a raised limit lets them in at
once, in arrival order; a lowered one takes no slot back and lets nobody in
until fewer calls than the new limit are in flight; a task cancelled right
after a raised limit granted it passes its slot on. Every path keeps
``acquired - released == in_flight``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stormwall import Bulkhead, ConfigError


def wait_until(predicate, timeout=5.0):
    """Poll (real time) until ``predicate()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.0005)


def _balanced(bulkhead):
    stats = bulkhead.statistics()
    assert stats.acquired - stats.released == stats.in_flight, stats


async def _settle():
    """Let every ready task run a few steps."""
    for _ in range(5):
        await asyncio.sleep(0)


class TestSetLimit:
    def test_bad_limit(self):
        """A limit that is not a positive integer is a ConfigError."""
        bulkhead = Bulkhead(2)

        for bad in (0, -1, 1.5, True):
            with pytest.raises(ConfigError) as info:
                bulkhead._set_limit(bad)

            assert "limit" == info.value.parameter
        assert 2 == bulkhead.max_concurrent

    def test_without_waiters(self):
        """The limit moves; try_acquire follows it."""
        bulkhead = Bulkhead(1)
        bulkhead.try_acquire()
        bulkhead._set_limit(2)

        assert bulkhead.try_acquire()
        assert 2 == bulkhead.statistics().max_concurrent

        bulkhead._set_limit(1)
        bulkhead.release()

        assert not bulkhead.try_acquire()
        assert 1 == bulkhead.max_concurrent

    def test_threads(self):
        """Raised: queued threads enter in order. Lowered: none enters
        until fewer than the new limit are in flight."""
        bulkhead = Bulkhead(1, max_wait=None)
        bulkhead.try_acquire()
        entered = []
        leave = {name: threading.Event() for name in "abc"}

        def worker(name):
            with bulkhead:
                entered.append(name)
                leave[name].wait(5)

        threads = []
        for n, name in enumerate("abc", start=1):
            thread = threading.Thread(target=worker, args=(name,))
            thread.start()
            threads.append(thread)
            wait_until(lambda n=n: bulkhead.statistics().waiting == n)

        bulkhead._set_limit(3)
        wait_until(lambda: len(entered) == 2)
        # The two oldest were granted; which thread runs first is up to the
        # scheduler.
        first_two = sorted(entered)
        grown = bulkhead.statistics()

        bulkhead._set_limit(1)
        bulkhead.release()
        leave["a"].set()
        wait_until(lambda: bulkhead.statistics().in_flight == 1)
        shrunk = (sorted(entered), bulkhead.statistics().waiting)
        leave["b"].set()
        wait_until(lambda: len(entered) == 3)
        leave["c"].set()
        for thread in threads:
            thread.join(5)

        assert ["a", "b"] == first_two
        assert (3, 1) == (grown.in_flight, grown.waiting)
        assert (["a", "b"], 1) == shrunk
        assert "c" == entered[2]
        assert 0 == bulkhead.statistics().in_flight
        _balanced(bulkhead)

    @pytest.mark.asyncio
    async def test_tasks(self):
        """The same with asyncio tasks."""
        bulkhead = Bulkhead(1, max_wait=None)
        bulkhead.try_acquire()
        entered = []
        leave = {name: asyncio.Event() for name in "abc"}

        async def worker(name):
            async with bulkhead:
                entered.append(name)
                await leave[name].wait()

        tasks = []
        for name in "abc":
            tasks.append(asyncio.create_task(worker(name)))
            await _settle()

        bulkhead._set_limit(3)
        await _settle()
        grown = (list(entered), bulkhead.statistics())

        bulkhead._set_limit(1)
        bulkhead.release()
        leave["a"].set()
        await _settle()
        shrunk = (list(entered), bulkhead.statistics())
        leave["b"].set()
        await _settle()
        after = list(entered)
        leave["c"].set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

        assert ["a", "b"] == grown[0]
        assert (3, 1) == (grown[1].in_flight, grown[1].waiting)
        assert ["a", "b"] == shrunk[0]
        assert (1, 1) == (shrunk[1].in_flight, shrunk[1].waiting)
        assert ["a", "b", "c"] == after
        assert 0 == bulkhead.statistics().in_flight
        _balanced(bulkhead)

    @pytest.mark.asyncio
    async def test_task_cancelled_after_a_raised_limit_granted_it(self):
        """A task granted by a raised limit and cancelled before it runs
        passes its slot on: no slot leaks."""
        bulkhead = Bulkhead(1, max_wait=None)
        bulkhead.try_acquire()
        entered = []

        async def worker(name):
            async with bulkhead:
                entered.append(name)

        first = asyncio.create_task(worker("first"))
        await _settle()
        second = asyncio.create_task(worker("second"))
        await _settle()

        bulkhead._set_limit(2)  # grants "first" ...
        first.cancel()  # ... which never gets to run
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 5)
        bulkhead.release()

        assert ["second"] == entered
        assert (0, 0) == (
            bulkhead.statistics().in_flight,
            bulkhead.statistics().waiting,
        )
        _balanced(bulkhead)
