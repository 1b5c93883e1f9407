"""
Virtual time for asyncio: a loop whose clock jumps when every task waits.

`VirtualEventLoop` is an ordinary selector event loop with two changes: its
`time` is a number it keeps itself, starting at ``0.0``, and its selector
never sleeps. When the loop has nothing ready to run it asks the selector to
wait until the next timer; the selector instead polls the OS without waiting
(so sockets and other threads still get through) and, if nothing is there,
moves virtual time forward to that timer at once. A run that sleeps for an
hour of back-offs, timeouts and breaker recovery periods takes the real time
its code takes to execute, and the same inputs give the same run.

trio's ``MockClock(autojump_threshold=0)`` is the model: time jumps as soon
as every task is blocked. With no timer at all, the loop waits like any
other for the OS (a socket, a thread calling ``call_soon_threadsafe``):
there is nothing virtual to jump to.

`VirtualClock` is the stormwall `Clock` that reads such a loop, so limiters,
breakers, budgets and back-off keep virtual time too; ``run_virtual`` runs a
coroutine function on a fresh virtual loop and, for the duration, has the
executors it is given keep time on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import selectors
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .. import _validate
from .._clock import LoopClock
from .._errors import ConfigError


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from .._executor import ExecutorBase


__all__ = [
    "VirtualClock",
    "VirtualEventLoop",
    "current_clock",
    "keeping_time",
    "run_virtual",
]

P = ParamSpec("P")
T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """
    A selector that polls the OS and jumps virtual time instead of waiting.

    Delegates registration to the platform's default selector. `now` is the
    loop's virtual time.
    """

    def __init__(self, start: float) -> None:
        self._real = selectors.DefaultSelector()
        self.now = start
        self.jumps = 0
        # Waits handed to the OS with no timeout (no timer was left); with a
        # positive timeout there are none by construction.
        self.os_waits = 0

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Nothing scheduled: only the OS or another thread can wake us.
            self.os_waits += 1
            return self._real.select(None)
        if timeout <= 0:
            # Callbacks are ready: run them first. The OS is polled before
            # time jumps, so I/O and other threads are still seen before
            # virtual time moves on (and a run pays no syscall per step).
            return []
        ready = self._real.select(0)
        if not ready:
            self.now += timeout
            self.jumps += 1
        return ready

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """
    An asyncio event loop in virtual time (see the module docstring).

    Args:
        start: The virtual time the loop starts at: finite seconds >= 0
            (or a `timedelta`, or a duration string), as `MockClock`'s.

    Raises:
        ConfigError: ``start`` is outside its domain.

    `time` is virtual: ``asyncio.sleep``, ``call_later``, ``asyncio.timeout``
    and everything built on them run in virtual seconds, and the loop never
    waits on the OS while a timer is pending. ``jumps`` counts the times
    virtual time moved forward; ``os_waits`` the times the loop blocked on
    the OS because no timer was left (a run that only sleeps has none).

    .. versionadded:: 0.2.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self._jumping = _JumpingSelector(0.0)
        super().__init__(self._jumping)
        try:
            self._jumping.now = _validate.non_negative(
                "start", start, seconds=True
            )
        except ConfigError:
            self.close()  # a loop half built still owns its selector
            raise
        self.virtual_clock = VirtualClock(self)

    def time(self) -> float:
        """The virtual time, in seconds."""
        return self._jumping.now

    @property
    def jumps(self) -> int:
        """How many times virtual time jumped forward."""
        return self._jumping.jumps

    @property
    def os_waits(self) -> int:
        """How many times the loop waited on the OS (no timer pending)."""
        return self._jumping.os_waits

    def _advance(self, seconds: float) -> None:
        """Move time forward in place (a blocking sleep inside the loop)."""
        if seconds > 0:
            self._jumping.now += seconds


class VirtualClock(LoopClock):
    """
    The stormwall `Clock` of one `VirtualEventLoop`: virtual seconds.

    ``now()`` is the loop's time, ``sleep_async`` is ``asyncio.sleep`` on it;
    a blocking ``sleep`` (a sync executor run from a task) blocks the whole
    loop, as on a real loop, so time simply moves on by that much.
    Limiter, bulkhead and timeout waits use the loop's timers with early
    wake-up, exactly as they do under the real clock.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("_loop",)

    def __init__(self, loop: VirtualEventLoop) -> None:
        self._loop = loop

    @property
    def loop(self) -> VirtualEventLoop:
        """The loop whose time this is."""
        return self._loop

    def now(self) -> float:
        """The loop's virtual time."""
        return self._loop._jumping.now

    def sleep(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (the loop is blocked)."""
        self._loop._advance(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """``asyncio.sleep`` on the virtual loop."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r})"


def current_clock() -> VirtualClock:
    """
    The `VirtualClock` of the running virtual loop.

    Raises:
        RuntimeError: not called from a task on a `VirtualEventLoop`.

    .. versionadded:: 0.2.0
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualEventLoop):
        msg = (
            "no virtual loop is running: call this inside "
            "stormwall.sim.run_virtual()"
        )
        raise RuntimeError(msg)  # noqa: TRY004 - no type was passed in
    return loop.virtual_clock


@contextlib.contextmanager
def keeping_time(
    executors: Iterable[ExecutorBase],
    clock: VirtualClock,
    seed: int | None = None,
) -> Iterator[None]:
    """
    Have ``executors`` keep time on ``clock`` inside the block.

    Each executor, its breaker, limiter, bulkhead and retry budget switch to
    ``clock`` with fresh time-keeping state, and get their own clock and
    state back when the block ends; with ``seed`` their retry policies draw
    jitter from a generator seeded with it.

    Raises:
        ConfigError: an executor was built with an explicit clock (or a
            component with one), or holds a component that keeps time
            elsewhere (a Redis backend).
    """
    with contextlib.ExitStack() as stack:
        for n, executor in enumerate(executors):
            rng = None if seed is None else random.Random(f"{seed}:{n}")
            stack.enter_context(executor._keeping_time(clock, rng))
        yield


def run_virtual(
    fn: Callable[P, Awaitable[T]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """
    Run ``await fn(*args, **kwargs)`` on a fresh `VirtualEventLoop`.

    Every sleep, timer and timeout of the run passes in virtual time, which
    starts at ``0.0``: ``asyncio.sleep(3600)`` returns at once with
    ``loop.time() == 3600``. Inside, `current_clock` is the matching
    stormwall clock; to run an executor built with the default clock on it,
    wrap its calls in ``with keeping_time([executor], current_clock()):``,
    or let `stormwall.sim.run` do it.

    Like `asyncio.run`: tasks still pending at the end are cancelled, the
    loop is closed.

    Returns:
        What ``fn`` returned.

    .. versionadded:: 0.2.0
    """
    if not callable(fn):
        raise ConfigError(
            "fn", f"expected a coroutine function, got {type(fn).__name__}"
        )

    async def main() -> T:
        return await fn(*args, **kwargs)

    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        return runner.run(main())
