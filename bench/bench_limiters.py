"""
Micro-benchmarks of the limiters' and bulkhead's success paths.

Run: ``python bench/bench_limiters.py``. Prints ns/op for the hot paths with
no subscriber and with one subscriber (a no-op handler) on an explicit bus.

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live in
``bench/cases/``; results in docs/performance.md). Run this one with
``python bench/bench_limiters.py`` in any venv that has stormwall[all].
"""

from __future__ import annotations

import gc
import timeit
import tracemalloc

from stormwall import (
    Bulkhead,
    CompositeLimiter,
    EventBus,
    LeakyBucket,
    SlidingWindow,
    TokenBucket,
)


N = 200_000
# Big enough never to run dry during a run: the success path is measured.
HUGE = 1e12


def ns_per_op(stmt, number=N, repeat=5):
    best = min(timeit.repeat(stmt, number=number, repeat=repeat))
    return best / number * 1e9


def report(label, stmt):
    print(f"{label:<52} {ns_per_op(stmt):8.0f} ns/op")


def bytes_per_key(n=1_000_000):
    """Memory a keyed TokenBucket holds per live key (keys not counted)."""
    keys = [f"user-{i}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        tb = TokenBucket(1e9, 1e9)
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            tb.try_acquire(key)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


def main():
    for subscribers in (0, 1):
        bus = EventBus()
        for _ in range(subscribers):
            bus.subscribe(lambda event: None)
        tb = TokenBucket(HUGE, HUGE, bus=bus)
        tb_bounded = TokenBucket(HUGE, HUGE, max_keys=1000, bus=bus)
        lb = LeakyBucket(HUGE, bus=bus)
        sw = SlidingWindow(HUGE, 1e-9, bus=bus)
        comp = CompositeLimiter(
            TokenBucket(HUGE, HUGE, bus=bus),
            TokenBucket(HUGE, HUGE, per_key=False, bus=bus),
        )
        bh = Bulkhead(10, bus=bus)

        def bulkhead_cycle(bh=bh):
            bh._acquire(None)
            bh._release(None)

        tag = f"[{subscribers} subscriber{'s' if subscribers != 1 else ''}]"
        report(f"TokenBucket.try_acquire {tag}", tb.try_acquire)
        report(
            f"TokenBucket._acquire {tag}",
            lambda tb=tb: tb._acquire("default", 1, None, None),
        )
        report(
            f"TokenBucket(max_keys)._acquire {tag}",
            lambda tb=tb_bounded: tb._acquire("default", 1, None, None),
        )
        report(
            f"LeakyBucket._acquire (no wait) {tag}",
            lambda lb=lb: lb._acquire("default", 1e-12, None, None),
        )
        report(
            f"SlidingWindow._acquire {tag}",
            lambda sw=sw: sw._acquire("default", 1, None, None),
        )
        report(
            f"CompositeLimiter._acquire {tag}",
            lambda comp=comp: comp._acquire("default", 1, None, None),
        )
        report(f"Bulkhead _acquire + _release {tag}", bulkhead_cycle)
    # The loop overhead of calling a lambda, to subtract by eye.
    report("(empty lambda call, for reference)", lambda: None)
    print(
        f"{'TokenBucket memory at 1M keys (key strings excluded)':<52} "
        f"{bytes_per_key():8.0f} bytes/key"
    )


if __name__ == "__main__":
    main()
