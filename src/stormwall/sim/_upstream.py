"""
The synthetic upstream: latency, failures over time, and a capacity.

`Upstream` is the description (validated, immutable); `_Server` is one run's
instance on a virtual loop. With a ``capacity`` the server is a
processor-sharing queue (every request in flight progresses at rate
``min(1, capacity / in_flight)``, as a CPU-bound server's threads share its
cores): past the capacity every request slows down, so an overload really
hurts, and a retry storm makes it worse for everybody.

Processor sharing is simulated exactly with a virtual "work clock" ``W``
that advances at the common rate: a request arriving when ``W = w`` with
``s`` seconds of service finishes when ``W = w + s``, so requests finish in
order of that tag and only the earliest needs a timer, recomputed whenever
the number in flight changes (O(log n) per arrival and departure).
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import TYPE_CHECKING

from .. import _validate
from .._errors import ConfigError


if TYPE_CHECKING:
    import asyncio
    import random
    from collections.abc import Callable, Sequence


__all__ = ["Upstream", "UpstreamError"]


class UpstreamError(Exception):
    """
    The simulated upstream failed this attempt (an error reply).

    Retryable and recorded by a breaker under the default settings, like
    any `Exception`.

    .. versionadded:: 0.2.0
    """


class Upstream:
    """
    A synthetic upstream for `stormwall.sim.run`.

    Args:
        latency: Seconds one request takes when the upstream is not
            overloaded: a number, or a function of a `random.Random` that
            draws one (e.g. ``lambda rng: rng.lognormvariate(-4.6, 0.5)``,
            about 10 ms with a tail). A negative draw counts as 0.
        failure_rate: The fraction in ``[0, 1]`` of requests that fail with
            `UpstreamError` (after their latency), or a schedule
            ``[(t, fraction), ...]`` of virtual seconds from the start of
            the run, sorted by ``t``: the fraction of the latest entry at or
            before the request's arrival applies (0 before the first), so
            ``[(30, 1.0), (60, 0.0)]`` is a total outage from 30 s to 60 s.
        capacity: Requests in flight beyond which every one slows down
            (processor sharing: each progresses at ``capacity / in_flight``
            of its normal speed); ``None``: no limit, latency never
            stretches.

    Raises:
        ConfigError: A parameter is outside its domain.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("_fractions", "_times", "capacity", "failure_rate", "latency")

    def __init__(
        self,
        latency: float | Callable[[random.Random], float] = 0.01,
        failure_rate: float | Sequence[tuple[float, float]] = 0.0,
        capacity: int | None = None,
    ) -> None:
        if not callable(latency):
            latency = _validate.non_negative(
                "latency", latency, finite=True, seconds=True
            )
        self.latency = latency
        if isinstance(failure_rate, int | float) and not isinstance(
            failure_rate, bool
        ):
            fraction = _fraction("failure_rate", failure_rate)
            self._times: tuple[float, ...] = (0.0,)
            self._fractions: tuple[float, ...] = (fraction,)
        else:
            self._times, self._fractions = _schedule(failure_rate)
        self.failure_rate = failure_rate
        self.capacity = _validate.optional_positive_int("capacity", capacity)

    def __repr__(self) -> str:
        return (
            f"Upstream(latency={self.latency!r}, "
            f"failure_rate={self.failure_rate!r}, capacity={self.capacity!r})"
        )

    def failure_at(self, t: float) -> float:
        """The fraction of requests arriving at ``t`` that fail."""
        i = bisect.bisect_right(self._times, t) - 1
        return self._fractions[i] if i >= 0 else 0.0

    def outages(self, end: float) -> list[tuple[float, float, float]]:
        """``(start, stop, fraction)`` spans before ``end`` that fail."""
        spans = []
        times = [*self._times, math.inf]
        for i, fraction in enumerate(self._fractions):
            start, stop = times[i], min(times[i + 1], end)
            if fraction > 0 and start < stop:
                spans.append((start, stop, fraction))
        return spans


def _fraction(param: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            param, f"expected a fraction in [0, 1], got {type(value).__name__}"
        )
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(
            param,
            f"expected a fraction in [0, 1], got {_validate.shown(value)}",
        )
    return float(value)


def _schedule(value: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A ``[(t, fraction), ...]`` schedule, checked: (times, fractions)."""
    param = "failure_rate"
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ConfigError(
            param,
            "expected a fraction or a schedule [(t, fraction), ...], got "
            f"{type(value).__name__}",
        )
    times: list[float] = []
    fractions: list[float] = []
    for entry in value:
        try:
            t, fraction = entry
        except (TypeError, ValueError):
            raise ConfigError(
                param,
                f"expected (t, fraction) pairs, got {_validate.shown(entry)}",
            ) from None
        t = _validate.non_negative(param, t, finite=True)
        if times and t < times[-1]:
            raise ConfigError(param, "the schedule must be sorted by time")
        times.append(t)
        fractions.append(_fraction(param, fraction))
    if not times:
        raise ConfigError(param, "the schedule is empty")
    return tuple(times), tuple(fractions)


class _Server:
    """One run's upstream on a virtual loop (see the module docstring)."""

    __slots__ = (
        "_at",
        "_capacity",
        "_heap",
        "_in_flight",
        "_loop",
        "_seq",
        "_timer",
        "_work",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._work = 0.0  # W: service delivered to each request in flight
        self._at = loop.time()  # when W was last brought up to date
        self._in_flight = 0
        self._heap: list[list[object]] = []  # [tag, seq, future]
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None

    def _rate(self) -> float:
        n = self._in_flight
        return 1.0 if n <= self._capacity else self._capacity / n

    def _catch_up(self) -> None:
        now = self._loop.time()
        if self._in_flight:
            self._work += (now - self._at) * self._rate()
        self._at = now

    async def serve(self, service: float) -> None:
        """Take ``service`` seconds of work, slowed down by overload."""
        self._catch_up()
        fut: asyncio.Future[None] = self._loop.create_future()
        self._seq += 1
        entry: list[object] = [self._work + service, self._seq, fut]
        heapq.heappush(self._heap, entry)
        self._in_flight += 1
        self._reschedule()
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                # Abandoned (a timeout cancelled the attempt): leave.
                self._catch_up()
                entry[2] = None
                self._in_flight -= 1
                self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        if heap:
            tag = heap[0][0]
            assert isinstance(tag, float)  # noqa: S101 - typing
            delay = max(0.0, (tag - self._work) / self._rate())
            self._timer = self._loop.call_later(delay, self._complete)

    def _complete(self) -> None:
        self._timer = None
        self._catch_up()
        heap = self._heap
        # Float rounding may leave W a hair below the tag it was timed for.
        done_by = self._work + 1e-9
        while heap:
            tag, _, fut = heap[0]
            if fut is not None and tag > done_by:  # type: ignore[operator]
                break
            heapq.heappop(heap)
            if fut is not None:
                self._in_flight -= 1
                fut.set_result(None)  # type: ignore[attr-defined]
        self._reschedule()
