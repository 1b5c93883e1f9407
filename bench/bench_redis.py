"""
Decisions per second of the Redis limiters against peers, in one run.

Run: ``python bench/bench_redis.py``. Starts its own ``redis-server`` on a
free loopback port and measures, on that same server and in the same run:

- stormwall `RedisTokenBucket` / `RedisSlidingWindow` (sync client, and the
  asyncio client from one task);
- ``limits``: ``RedisStorage`` + ``MovingWindowRateLimiter`` (its exact
  window, the closest peer of `RedisSlidingWindow`);
- ``pyrate-limiter``: ``RedisBucket`` behind a ``Limiter`` (non-blocking).

Every case decides on one key with a limit too large to be reached, so the
admit path is measured: one client, one thread, round trips on loopback.
Peers that are not installed are skipped. Numbers are reported, never
asserted; compare ratios within one run.

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live
in ``bench/cases/``; results in docs/performance.md). Run this one
with ``python bench/bench_redis.py`` in any venv that has
stormwall[all] and the peers.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata


N = 3000
REPEAT = 5
HUGE = 10**9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("redis-server did not start")


def rate(fn) -> tuple[float, float]:
    """Median decisions/s of ``fn`` over REPEAT runs of N, and the spread."""
    for _ in range(200):  # warm-up: connect, load the script
        fn()
    runs = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        for _ in range(N):
            fn()
        runs.append(N / (time.perf_counter() - start))
    return statistics.median(runs), max(runs) - min(runs)


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def stormwall_cases(url: str, rows: list[tuple[str, tuple[float, float]]]):
    import redis
    import redis.asyncio

    from stormwall.backends.redis import RedisSlidingWindow, RedisTokenBucket

    with redis.Redis.from_url(url) as client:
        tb = RedisTokenBucket(client, HUGE, HUGE, name="bench-tb")
        sw = RedisSlidingWindow(client, HUGE, 60, name="bench-sw")
        rows.append(
            (
                "stormwall RedisTokenBucket.try_acquire",
                rate(lambda: tb.try_acquire("k")),
            )
        )
        rows.append(
            (
                "stormwall RedisSlidingWindow.try_acquire",
                rate(lambda: sw.try_acquire("k")),
            )
        )
        sw.reset()

    async def with_async_client() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            tb = RedisTokenBucket(client, HUGE, HUGE, name="bench-atb")

            async def one() -> None:
                await tb.try_acquire_async("k")

            # rate_async runs its own loop; measure inline here instead.
            for _ in range(200):
                await one()
            runs = []
            for _ in range(REPEAT):
                start = time.perf_counter()
                for _ in range(N):
                    await one()
                runs.append(N / (time.perf_counter() - start))
            rows.append(
                (
                    "stormwall RedisTokenBucket.try_acquire_async (asyncio)",
                    (statistics.median(runs), max(runs) - min(runs)),
                )
            )
        finally:
            await client.aclose()

    asyncio.run(with_async_client())


def limits_cases(url: str, rows: list[tuple[str, tuple[float, float]]]):
    try:
        from limits import RateLimitItemPerMinute
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter
    except ImportError:
        print("limits is not installed: skipped", file=sys.stderr)
        return
    storage = RedisStorage(url)
    limiter = MovingWindowRateLimiter(storage)
    # The moving window keeps every hit in a list: a huge limit would grow
    # it without bound, so pick one the run never reaches.
    item = RateLimitItemPerMinute(10 * (REPEAT + 1) * N)
    rows.append(
        (
            "limits MovingWindowRateLimiter.hit (RedisStorage)",
            rate(lambda: limiter.hit(item, "k")),
        )
    )
    storage.reset()


def pyrate_cases(url: str, rows: list[tuple[str, tuple[float, float]]]):
    try:
        from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
    except ImportError:
        print("pyrate-limiter is not installed: skipped", file=sys.stderr)
        return
    import redis

    with redis.Redis.from_url(url) as client:
        bucket = RedisBucket.init(
            [Rate(10 * (REPEAT + 1) * N, Duration.MINUTE)], client, "bench"
        )
        limiter = Limiter(bucket)
        try:
            rows.append(
                (
                    "pyrate-limiter Limiter.try_acquire (RedisBucket)",
                    rate(lambda: limiter.try_acquire("k", blocking=False)),
                )
            )
        finally:
            limiter.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_redis(workdir)
        url = f"redis://127.0.0.1:{port}/0"
        rows: list[tuple[str, tuple[float, float]]] = []
        try:
            stormwall_cases(url, rows)
            limits_cases(url, rows)
            pyrate_cases(url, rows)
        finally:
            proc.kill()
            proc.wait()
    print(
        f"redis-py {version('redis')}, limits {version('limits')}, "
        f"pyrate-limiter {version('pyrate-limiter')}; one client, one "
        f"thread, loopback; median of {REPEAT} x {N} decisions\n"
    )
    print("| case | decisions/s | spread |\n|---|---:|---:|")
    for label, (median, spread) in rows:
        print(f"| {label} | {median:,.0f} | ±{spread / 2:,.0f} |")


if __name__ == "__main__":
    main()
