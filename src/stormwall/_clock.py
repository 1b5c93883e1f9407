"""
Clocks: the only module that reads real time.

Every time-keeping component takes a ``clock=``. Production code uses
`MonotonicClock`; tests use `MockClock`, whose time is a value the test
controls, so minutes of back-off run in microseconds.

Besides the public `Clock` protocol, this module holds the two waiting
primitives the shells build on:

- `Waiter` with `wait` / `wait_async`: block until a deadline on a given clock
  *or* until another thread or task calls `Waiter.notify`, whichever comes
  first. Limiters use it to wake a queued caller early when a reservation in
  front of it is refunded; the bulkhead uses it to hand a freed slot to the
  next caller in line. It is an event with a timeout, never a polling loop.
- `call_at`: run a callback when a clock reaches a deadline; the async
  executor's per-attempt timeout uses it, so under `MockClock` a timeout fires
  in virtual time.

Clocks that users write themselves only need the three `Clock` methods: the
helpers fall back to plain sleeps (no early wake-up) for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from . import _validate
from ._errors import ConfigError


if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = ["Clock", "MockClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """
    A source of monotonic time in seconds, and a way to wait for it.

    ``sleep`` and ``sleep_async`` return at once for ``seconds <= 0``.
    A deadline is reached when ``now() >= deadline``.
    """

    def now(self) -> float:
        """Return the current time in seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class MonotonicClock:
    """
    Real time from `time.monotonic`, real sleeps.

    Stateless: every instance behaves the same, and executors share one by
    default.
    """

    __slots__ = ()

    #: Return `time.monotonic` (that function itself: no Python frame on
    #: the hot paths, which read the clock several times per call).
    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        """
        Block the thread with `time.sleep`; ``math.inf`` sleeps forever.
        """
        if seconds <= _LONGEST_WAIT:
            if seconds > 0:
                time.sleep(seconds)
            return
        # time.sleep refuses what the platform's time_t cannot hold (inf,
        # 1e300, even threading.TIMEOUT_MAX): sleep in slices instead.
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, _LONGEST_WAIT))

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the task with `asyncio.sleep`."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "MonotonicClock()"


DEFAULT_CLOCK = MonotonicClock()


class LoopClock:
    """
    Base of clocks whose time is an asyncio event loop's own `loop.time`.

    Async waits on such a clock use the loop's timers (`loop.call_later`)
    with early wake-up, as under `MonotonicClock`. The simulator's virtual
    clock is one (``stormwall.sim``): its loop's time jumps, so every timer
    fires in virtual time.
    """

    __slots__ = ()


class _Timer:
    """A callback due at a virtual deadline; ordered by (deadline, seq)."""

    __slots__ = ("callback", "cancelled", "deadline", "seq")

    def __init__(
        self, deadline: float, seq: int, callback: Callable[[], None]
    ) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class MockClock:
    """
    Virtual time for tests.

    Args:
        start: The initial value of `now`.
        autojump: With ``True`` (the default) a sleep or a timed wait moves
            virtual time forward to its deadline at once (firing, in order,
            any timers due on the way) and returns; a test of a call with
            five 30 s back-offs takes microseconds. With ``False`` sleepers,
            threads and asyncio tasks alike, block until `advance` moves time
            past their deadline, and they wake in deadline order; use it to
            interleave concurrent callers deterministically.

    `sleeps` records every positive sleep asked for, in order.

    With ``autojump=False``, an asyncio test that calls `advance` must then
    yield (``await asyncio.sleep(0)``) for woken tasks to run, or use
    `advance_async`.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = _validate.non_negative("start", start, seconds=True)
        if not isinstance(autojump, bool):
            raise ConfigError(
                "autojump",
                f"expected a bool, got {type(autojump).__name__}",
            )
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._lock = threading.RLock()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"MockClock(now={self._now!r}, autojump={self.autojump!r})"

    # -- the Clock protocol ---------------------------------------------------

    def now(self) -> float:
        """Return the virtual time."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Sleep in virtual time (see the class docstring for the modes)."""
        if seconds <= 0:
            return
        self.sleeps.append(seconds)
        Waiter().wait(self, self._now + seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Sleep in virtual time; always yields to the event loop once."""
        if seconds <= 0:
            return
        self.sleeps.append(seconds)
        await Waiter().wait_async(self, self._now + seconds)

    # -- driving time ---------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """
        Move virtual time forward, waking every sleeper whose deadline passes.

        Sleepers wake in deadline order; a woken thread has resumed before the
        next one is woken.

        Raises:
            ConfigError: ``seconds`` is negative (time can't go backwards),
                NaN, infinite or not a number.
        """
        seconds = _validate.non_negative(
            "seconds", seconds, finite=True, seconds=True
        )
        with self._lock:
            target = self._now + seconds
        self._run_until(target)

    async def advance_async(self, seconds: float) -> None:
        """
        `advance` for asyncio tests: wake sleepers one deadline at a time.

        After each deadline the woken tasks run (the loop is yielded to)
        before time moves on, so a task whose work finishes at 0.5 s beats a
        timeout due at 1 s. The sync `advance` cannot yield to a loop: from
        a coroutine, prefer this.
        """
        seconds = _validate.non_negative("seconds", seconds, seconds=True)
        target = self._now + seconds
        while True:
            with self._lock:
                nxt = self._next_deadline()
            if nxt is None or nxt > target:
                break
            self._run_until(nxt)
            for _ in range(_YIELDS):
                await asyncio.sleep(0)
        self._run_until(target)
        for _ in range(_YIELDS):
            await asyncio.sleep(0)

    def _next_deadline(self) -> float | None:
        """The earliest live timer's deadline (call with the lock held)."""
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0].deadline if timers else None

    def jump_to(self, when: float) -> None:
        """
        Advance to the absolute virtual time ``when`` (not backwards).

        Raises:
            ConfigError: ``when`` is not a finite number, or is before `now`.
        """
        # NaN compares false with every deadline, so it would fire them all.
        when = _validate.non_negative("when", when)
        if when < self._now:
            raise ConfigError(
                "when", f"time can't go backwards ({when} < {self._now})"
            )
        self._run_until(when)

    # -- internals shared with Waiter and call_at ----------------------------

    def _schedule(
        self, deadline: float, callback: Callable[[], None]
    ) -> _Timer:
        with self._lock:
            timers = self._timers
            if len(timers) > _COMPACT_AT:
                # Cancelled timers stay in the heap until they surface; drop
                # them in bulk now and then so long tests keep flat memory.
                live = [t for t in timers if not t.cancelled]
                if len(live) < len(timers) // 2:
                    heapq.heapify(live)
                    self._timers = timers = live
            timer = _Timer(deadline, next(self._seq), callback)
            heapq.heappush(timers, timer)
            return timer

    def _run_until(
        self, target: float, stop: Callable[[], bool] | None = None
    ) -> None:
        """
        Fire due timers in order, then move `now` to ``target``.

        `now` moves to each timer's deadline as it fires; as soon as
        ``stop()`` is true the run returns early, time left at the last
        deadline fired.
        """
        while True:
            if stop is not None and stop():
                return
            with self._lock:
                while self._timers and self._timers[0].cancelled:
                    heapq.heappop(self._timers)
                if not self._timers or self._timers[0].deadline > target:
                    self._now = max(self._now, target)
                    return
                timer = heapq.heappop(self._timers)
                self._now = max(self._now, timer.deadline)
            timer.callback()


class Waiter:
    """
    One blocked caller, woken by a deadline or by `notify`, whichever first.

    `notify` may be called from any thread, before or during the wait; a
    notification that arrives before the wait makes the wait return at once.
    A `Waiter` is used for one wait only.
    """

    __slots__ = ("_event", "_fut", "_lock", "_loop", "notified")

    def __init__(self) -> None:
        self.notified = False
        self._lock = threading.Lock()
        self._event: threading.Event | None = None
        self._fut: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Wake the waiter (idempotent, thread-safe)."""
        with self._lock:
            if self.notified:
                return
            self.notified = True
            event, fut, loop = self._event, self._fut, self._loop
        self._wake(event, fut, loop)

    def _fire(self) -> None:
        """Wake the waiter because its deadline passed (not a notify)."""
        with self._lock:
            event, fut, loop = self._event, self._fut, self._loop
        self._wake(event, fut, loop)

    @staticmethod
    def _wake(
        event: threading.Event | None,
        fut: asyncio.Future[None] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        if event is not None:
            event.set()
        if fut is not None and loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                _resolve(fut)
            else:
                # A closed loop has nobody left to wake.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, fut)

    # -- sync -----------------------------------------------------------------

    def wait(self, clock: Clock, deadline: float | None) -> bool:
        """
        Block until ``deadline`` on ``clock``, or until notified.

        ``deadline=None`` (or ``math.inf``) waits for the notification alone.

        Returns:
            ``True`` when notified, ``False`` when the deadline passed first.
        """
        if self.notified:
            return True
        if deadline == math.inf:
            # Never a deadline a clock can reach: an autojump MockClock
            # would jump to inf, and threading refuses the timeout.
            deadline = None
        if isinstance(clock, MockClock):
            return self._wait_mock(clock, deadline)
        if isinstance(clock, MonotonicClock):
            return self._wait_event(clock, deadline)
        if deadline is None:
            return self._wait_event(clock, None)
        # A user's clock: no early wake-up, just its own sleep.
        clock.sleep(deadline - clock.now())
        return self.notified

    def _wait_event(self, clock: Clock, deadline: float | None) -> bool:
        event = threading.Event()
        with self._lock:
            if self.notified:
                return True
            self._event = event
        while True:
            if deadline is None:
                event.wait()
            else:
                remaining = deadline - clock.now()
                if remaining <= 0:
                    return self.notified
                # Past threading.TIMEOUT_MAX, Event.wait raises
                # OverflowError: wait in slices, the loop re-arms.
                event.wait(min(remaining, _LONGEST_WAIT))
            if event.is_set():
                return True

    def _wait_mock(self, clock: MockClock, deadline: float | None) -> bool:
        if deadline is not None and clock.autojump:
            # Jump: fire every timer due until our deadline (one of them may
            # notify us, or cancel our task), stopping early if one did. Only
            # a cancellation requested during this jump counts: an old one
            # that the task swallowed must not freeze virtual time.
            task = _current_task()
            before = 0 if task is None else task.cancelling()
            clock._run_until(
                deadline,
                lambda: (
                    self.notified
                    or (task is not None and task.cancelling() > before)
                ),
            )
            return self.notified
        event = threading.Event()
        resumed = threading.Event()
        with self._lock:
            if self.notified:
                return True
            self._event = event
        timer = None
        if deadline is not None:
            with clock._lock:
                if clock.now() >= deadline:
                    return self.notified

                def fire() -> None:
                    # Runs in the thread that advances time: wake this
                    # sleeper and let it resume before waking the next one,
                    # so threads wake in deadline order.
                    self._fire()
                    resumed.wait(_RESUME_GRACE)

                timer = clock._schedule(deadline, fire)
        try:
            event.wait()
        finally:
            resumed.set()
            if timer is not None:
                timer.cancel()
        return self.notified

    # -- async ----------------------------------------------------------------

    async def wait_async(self, clock: Clock, deadline: float | None) -> bool:
        """
        Suspend until ``deadline`` on ``clock`` or a notification.

        Always yields to the event loop at least once. On cancellation the
        wait is abandoned cleanly (the caller refunds what it held).

        Returns:
            ``True`` when notified, ``False`` when the deadline passed first.
        """
        if deadline == math.inf:
            deadline = None  # as in `wait`
        if isinstance(clock, MockClock) and (
            deadline is None or not clock.autojump
        ):
            return await self._wait_future(clock, deadline)
        if isinstance(clock, MockClock):
            self._wait_mock(clock, deadline)
            await asyncio.sleep(0)
            return self.notified
        if isinstance(clock, MonotonicClock | LoopClock) or deadline is None:
            return await self._wait_future(clock, deadline)
        await clock.sleep_async(deadline - clock.now())
        return self.notified

    async def _wait_future(self, clock: Clock, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            already = self.notified
            if not already:
                self._fut, self._loop = fut, loop
        if already:
            # Never hold the lock across an await: a notify() from this very
            # loop would block the loop thread for good.
            await asyncio.sleep(0)
            return True
        cancel = None
        if deadline is not None:
            cancel = call_at(clock, deadline, self._fire, loop)
        try:
            while not fut.done():
                await fut
        finally:
            if cancel is not None:
                cancel()
            with self._lock:
                self._fut = self._loop = None
        return self.notified


# The longest single real wait or sleep, in seconds. time.sleep and
# threading's timed waits raise OverflowError (or OSError) past what the
# platform's time_t holds, a bound below threading.TIMEOUT_MAX on Linux; a
# longer wait is made of slices this long, re-armed in a loop (once a day
# costs nothing).
_LONGEST_WAIT = 86400.0

# Loop iterations `advance_async` yields after waking tasks: enough for a
# woken task to resume and reach its next await through a few layers.
_YIELDS = 5

# Heap size above which `_schedule` considers dropping cancelled timers.
_COMPACT_AT = 64

# How long `MockClock.advance` waits, in real seconds, for a woken thread to
# resume before it wakes the next one. Resuming takes microseconds; the bound
# only keeps a wedged thread from hanging the test that advances time.
_RESUME_GRACE = 1.0


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def call_at(
    clock: Clock,
    deadline: float,
    callback: Callable[[], None],
    loop: asyncio.AbstractEventLoop | None = None,
) -> Callable[[], None]:
    """
    Run ``callback`` once ``clock`` reaches ``deadline``.

    Under `MockClock` the callback runs from whichever thread moves time past
    the deadline; under a real clock it runs on ``loop`` (the running loop by
    default).

    Returns:
        A function that cancels the callback if it has not run yet.
    """
    if isinstance(clock, MockClock):
        with clock._lock:
            if clock.now() >= deadline:
                callback()
                return _noop
            return clock._schedule(deadline, callback).cancel
    if loop is None:
        loop = asyncio.get_running_loop()
    delay = deadline - clock.now()
    handle = loop.call_later(max(delay, 0.0), callback)
    return handle.cancel


def _noop() -> None:
    return None


def one_clock(
    *given: tuple[str, Clock | None], hint: str = "one pipeline, one clock"
) -> Clock | None:
    """
    The one-clock rule: every clock given is the same object.

    Executors, composite limiters and components wired into an executor
    all check it here, so a pipeline never keeps time on two clocks (a test
    with a `MockClock` that silently sleeps for real on another one).

    Args:
        given: ``(parameter, clock)`` pairs; ``None`` means no clock was
            given (the component adopts the pipeline's). A pair that can
            never differ (it comes first and is never ``None``) may name a
            description instead (``"the executor"``): it only appears in
            the message.
        hint: Appended to the error message: what to do about it.

    Returns:
        The clock given, or ``None`` when none was.

    Raises:
        ConfigError: naming the parameter of the first clock that differs
            from the first one given.
    """
    first: tuple[str, Clock] | None = None
    for param, clock in given:
        if clock is None:
            continue
        if first is None:
            first = (param, clock)
        elif clock is not first[1]:
            raise ConfigError(
                param,
                f"keeps time with {clock!r} but {first[0]} uses "
                f"{first[1]!r}; {hint}",
            )
    return None if first is None else first[1]
