"""
The async executor's per-attempt timeout, kept on the pipeline's clock.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._clock import MonotonicClock, call_at
from ._errors import AttemptTimeoutError


if TYPE_CHECKING:
    from types import TracebackType

    from ._clock import Clock


class Timeout:
    """
    Cancel the current task at a deadline on the pipeline's clock.

    Like `asyncio.timeout`, but the deadline is kept by the clock, so under
    `MockClock` it fires in virtual time; with the real clock it is
    `asyncio.timeout` itself.

    The cancellation is only ever requested on the task's own loop and only
    while the attempt is still inside the block, and a cancellation that was
    requested but not delivered before the block ended is consumed here, so
    no stray `CancelledError` reaches the caller's next ``await``.
    """

    __slots__ = (
        "_cancel",
        "_clock",
        "_exited",
        "_expired",
        "_loop",
        "_seconds",
        "_task",
    )

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._expired = False
        self._exited = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: Any = None

    async def __aenter__(self) -> None:
        if isinstance(self._clock, MonotonicClock):
            self._cancel = asyncio.timeout(self._seconds)
            await self._cancel.__aenter__()
            return
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._cancel = call_at(
            self._clock, self._clock.now() + self._seconds, self._expire
        )

    def _expire(self) -> None:
        """The deadline passed (called from whoever moved the clock)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        """On the task's loop: cancel the attempt, unless it is over."""
        task = self._task
        if self._exited or task is None or task.done():
            return
        self._expired = True
        task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(self._clock, MonotonicClock):
            try:
                await self._cancel.__aexit__(exc_type, exc, tb)
            except TimeoutError as timeout:
                raise AttemptTimeoutError(self._seconds) from timeout
            return
        self._exited = True
        self._cancel()
        task = self._task
        if not self._expired or task is None:
            return
        others = task.uncancel()
        if exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError
        ):
            if others == 0:
                raise AttemptTimeoutError(self._seconds) from exc
            return  # cancelled from outside as well: let it propagate
        # The attempt ended without seeing our cancellation (it finished
        # first, or swallowed it): consume a still-pending one here.
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            # Someone else cancelled too (before or meanwhile): theirs wins.
            if others > 0 or task.cancelling() > others:
                raise


__all__ = ["Timeout"]
