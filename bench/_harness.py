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
