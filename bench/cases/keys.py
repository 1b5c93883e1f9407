"""
Per-key cost and memory: N distinct keys inserted into one limiter.

For each N (10k, 100k, 1M; the smoke run does 10k) and each limiter, a fresh
limiter decides once for each of N distinct, pre-built key strings:

- insertion cost: wall time / N with the garbage collector off (as timeit
  does), median of the repeats, which are interleaved across the limiters;
  one more run with the collector on (as in production: its passes over a
  growing heap add a cost of their own) is reported alongside;
- memory: bytes traced by ``tracemalloc`` between before and after the N
  decisions, / N (the key strings are built beforehand and not counted).

stormwall's three keyed limiters, each unbounded (``max_keys=None``) and
bounded (``max_keys=N``), with keys that still *owe* an hour after their one
request (a token or leaky bucket of one per hour, a window of an hour), so
every key is still live at the end: that is the cost of a live key. A
sliding-window key holds one request. One more row, keys back at full
capacity at once (``TokenBucket(10**12, 10**12)``): stormwall forgets them
as it goes, losslessly. limitpal's ``TokenBucket`` and limits' fixed window
on ``MemoryStorage`` for comparison (at 10k and 100k keys only: at 1M they
would take most of the run's time budget).
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import TYPE_CHECKING

from cases.common import HUGE
from stormwall import LeakyBucket, SlidingWindow, TokenBucket


if TYPE_CHECKING:
    from collections.abc import Callable


def variants(
    n: int,
) -> dict[str, tuple[str, Callable[[], Callable[[str], object]]]]:
    """label -> (peer, factory of a fresh ``decide(key)``)."""
    hour = 3600.0
    kinds: dict[str, Callable[[int | None], Callable[[str], object]]] = {
        "TokenBucket(1, 1/3600{})": lambda m: (
            TokenBucket(1, 1 / hour, max_keys=m).try_acquire
        ),
        "LeakyBucket(1/3600{})": lambda m: (
            LeakyBucket(1 / hour, max_keys=m).try_acquire
        ),
        "SlidingWindow(1, 3600{})": lambda m: (
            SlidingWindow(1, hour, max_keys=m).try_acquire
        ),
    }
    out: dict[str, tuple[str, Callable[[], Callable[[str], object]]]] = {}
    for kind, make in kinds.items():
        for bound, m in (("", None), (", max_keys=N", n)):
            out[f"stormwall {kind.format(bound)}, owing"] = (
                "stormwall",
                lambda make=make, m=m: make(m),
            )
    out["stormwall TokenBucket(10**12, 10**12), back to full at once"] = (
        "stormwall",
        lambda: TokenBucket(HUGE, HUGE).try_acquire,
    )
    try:
        import limitpal as lp

        out["limitpal TokenBucket.allow"] = (
            "limitpal",
            lambda: lp.TokenBucket(HUGE, HUGE).allow,
        )
    except ImportError:
        pass
    try:
        from limits import RateLimitItemPerHour
        from limits.storage import MemoryStorage
        from limits.strategies import FixedWindowRateLimiter

        item = RateLimitItemPerHour(HUGE)

        def limits_decide() -> Callable[[str], object]:
            limiter = FixedWindowRateLimiter(MemoryStorage())
            return lambda key: limiter.hit(item, key)

        out["limits FixedWindowRateLimiter.hit (MemoryStorage)"] = (
            "limits",
            limits_decide,
        )
    except ImportError:
        pass
    return out


def insert(
    decide: Callable[[str], object], keys: list[str], *, collect: bool = False
) -> float:
    enabled = gc.isenabled()
    gc.enable() if collect else gc.disable()
    try:
        start = time.perf_counter()
        for key in keys:
            decide(key)
        return time.perf_counter() - start
    finally:
        gc.enable() if enabled else gc.disable()


def traced_bytes(
    factory: Callable[[], Callable[[str], object]], keys: list[str]
) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decide = factory()
        for key in keys:
            decide(key)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del decide
    return (after - before) / len(keys)


def measure(
    *, smoke: bool, progress: Callable[[str], None]
) -> list[dict[str, object]]:
    """One row per (limiter, N): ns/key (median, min, max) and bytes/key."""
    sizes = (10_000,) if smoke else (10_000, 100_000, 1_000_000)
    rows = []
    for n in sizes:
        repeat = 1 if smoke else (5 if n < 1_000_000 else 3)
        keys = [f"user-{i:07d}" for i in range(n)]
        found = variants(n)
        if n > 100_000:  # the peers would take minutes at 1M keys
            found = {k: v for k, v in found.items() if v[0] == "stormwall"}
        runs: dict[str, list[float]] = {label: [] for label in found}
        progress(f"  {n:,} keys: {repeat} repeats x {len(found)} limiters")
        for _ in range(repeat):
            for label, (_peer, factory) in found.items():
                decide = factory()
                gc.collect()
                runs[label].append(insert(decide, keys) / n * 1e9)
                del decide
        for label, (peer, factory) in found.items():
            decide = factory()
            gc.collect()
            with_gc = insert(decide, keys, collect=True) / n * 1e9
            del decide
            rows.append(
                {
                    "label": label,
                    "peer": peer,
                    "n": n,
                    "median": statistics.median(runs[label]),
                    "min": min(runs[label]),
                    "max": max(runs[label]),
                    "with_gc": with_gc,
                    "bytes": traced_bytes(factory, keys),
                }
            )
        del keys
        gc.collect()
    return rows
