"""
A worker process for the multi-process Redis limiter test.

Each worker runs threads that hammer one `RedisSlidingWindow` and one
`RedisTokenBucket` shared with the other workers through Redis, and records
the server time (us since the limiters' epoch) of every admission Redis
granted, as Redis decided it. Every admitted "call" also increments a
counter in Redis: the downstream's own count.
"""

from __future__ import annotations

import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stormwall import RateLimitedError
from stormwall.backends.redis import RedisSlidingWindow, RedisTokenBucket


def _recording(cls):
    """A subclass of ``cls`` that records the time of every admission."""

    class Recording(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.times = []
            self.times_lock = threading.Lock()

        def _decided(self, ctx, key, cost, reply):
            status, wait, at = super()._decided(ctx, key, cost, reply)
            with self.times_lock:
                self.times.append(at)
            return status, wait, at

    return Recording


def hammer(port, params, seconds, threads, barrier, results):
    """Run ``threads`` threads against both limiters for ``seconds``."""
    client = redis.Redis(
        port=port,
        retry=Retry(NoBackoff(), 0),
        max_connections=threads * 2 + 2,
    )
    try:
        sw = _recording(RedisSlidingWindow)(
            client, params["limit"], params["window"], name="mp-sw"
        )
        tb = _recording(RedisTokenBucket)(
            client, params["capacity"], params["rate"], name="mp-tb"
        )
        counts = {"sw": 0, "tb": 0}
        errors = []
        lock = threading.Lock()
        barrier.wait(30)
        deadline = time.monotonic() + seconds

        def run(index):
            limiter, counter = (sw, "sw") if index % 2 else (tb, "tb")
            n = 0
            while time.monotonic() < deadline:
                try:
                    if n % 3 == 0:
                        limiter.acquire("shared", timeout=0.02)
                    elif not limiter.try_acquire("shared"):
                        n += 1
                        continue
                except RateLimitedError:
                    n += 1
                    continue
                except Exception as exc:
                    errors.append(repr(exc))
                    return
                n += 1
                client.incr(f"admitted:{counter}")
                with lock:
                    counts[counter] += 1

        workers = [
            threading.Thread(target=run, args=(i,)) for i in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        sw_stats = sw.statistics()
        tb_stats = tb.statistics()
        results.put(
            {
                "counts": counts,
                "errors": errors,
                "sw_times": sw.times,
                "tb_times": tb.times,
                "sw_stats": (sw_stats.allowed, sw_stats.waited),
                "tb_stats": (tb_stats.allowed, tb_stats.waited),
            }
        )
    finally:
        client.close()
