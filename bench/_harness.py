"""
A small, careful timing harness: warm-up, repeats, median and spread.

Numbers are reported, never asserted (speed targets are ratios against peers
measured in the same run; see issue 8 and docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import timeit
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def measure(
    fn: Callable[[], object], *, number: int = 20_000, repeat: int = 7
) -> tuple[float, float]:
    """Median and spread (max - min) of ns per call of ``fn``."""
    fn()  # warm-up
    timer = timeit.Timer(fn)
    gc.collect()
    runs = [
        t / number * 1e9 for t in timer.repeat(repeat=repeat, number=number)
    ]
    return statistics.median(runs), max(runs) - min(runs)


def measure_async(
    make: Callable[[], Awaitable[object]],
    *,
    number: int = 20_000,
    repeat: int = 7,
) -> tuple[float, float]:
    """Median and spread of ns per awaited call, inside one event loop."""

    async def batch() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(number):
            await make()
        return loop.time() - start

    async def main() -> list[float]:
        await batch()  # warm-up
        gc.collect()
        return [await batch() / number * 1e9 for _ in range(repeat)]

    runs = asyncio.run(main())
    return statistics.median(runs), max(runs) - min(runs)


def row(label: str, result: tuple[float, float]) -> str:
    median, spread = result
    return f"| {label} | {median:,.0f} | ±{spread / 2:,.0f} |"


HEADER = "| case | median ns/op | spread |\n|---|---:|---:|"


# --- The interleaved runner used by bench/run.py ---------------------------
#
# Every case is calibrated once (so one repeat takes about ``target``
# seconds), then the repeats are interleaved: case A rep 1, case B rep 1, ...,
# case A rep 2, ... so that drift (thermal, frequency scaling, a noisy
# neighbour) hits every case alike and ratios within a run stay honest.


class Case:
    """One timed operation: a sync callable or a coroutine factory."""

    def __init__(
        self,
        group: str,
        name: str,
        fn: Callable[[], object] | None = None,
        *,
        afn: Callable[[], Awaitable[object]] | None = None,
        peer: str = "stormwall",
        unit: str = "ns",
    ) -> None:
        if (fn is None) == (afn is None):
            msg = "a case needs exactly one of fn and afn"
            raise ValueError(msg)
        self.group = group
        self.name = name
        self.fn = fn
        self.afn = afn
        self.peer = peer
        self.unit = unit
        self.number = 0
        self.runs: list[float] = []  # ns per op, one per repeat
        self.error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    def time(self, loop: asyncio.AbstractEventLoop, number: int) -> float:
        """Seconds for ``number`` calls (gc off, as timeit does)."""
        if self.fn is not None:
            return timeit.Timer(self.fn).timeit(number)
        make = self.afn
        assert make is not None

        async def batch() -> float:
            clock = timeit.default_timer
            start = clock()
            for _ in range(number):
                await make()
            return clock() - start

        enabled = gc.isenabled()
        gc.disable()
        try:
            return loop.run_until_complete(batch())
        finally:
            if enabled:
                gc.enable()

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def iqr(self) -> tuple[float, float]:
        if len(self.runs) < 4:
            return min(self.runs), max(self.runs)
        q = statistics.quantiles(self.runs, n=4, method="inclusive")
        return q[0], q[2]


def calibrate(
    case: Case, loop: asyncio.AbstractEventLoop, target: float
) -> int:
    """The number of calls that takes about ``target`` seconds."""
    number = 1
    while True:
        took = case.time(loop, number)
        if took >= target / 10 or number >= 10_000_000:
            return max(1, int(number * target / max(took, 1e-9)))
        number *= 10


def run_interleaved(
    cases: list[Case],
    *,
    repeat: int,
    target: float | None,
    number: int,
    warmup: int,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Fill ``case.runs`` (ns/op) for every case, repeats interleaved."""
    loop = asyncio.new_event_loop()
    try:
        live = []
        for case in cases:
            try:
                case.time(loop, warmup)
                case.number = (
                    calibrate(case, loop, target) if target else number
                )
                live.append(case)
            except Exception as exc:  # a broken case is reported, not fatal
                case.error = f"{type(exc).__name__}: {exc}"
                progress(f"  ! {case.key}: {case.error}")
        for rep in range(repeat):
            progress(f"  repeat {rep + 1}/{repeat}")
            for case in live:
                gc.collect()
                try:
                    took = case.time(loop, case.number)
                except Exception as exc:
                    case.error = f"{type(exc).__name__}: {exc}"
                    progress(f"  ! {case.key}: {case.error}")
                    continue
                case.runs.append(took / case.number * 1e9)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
