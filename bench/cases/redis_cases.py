"""
Redis decisions per second: stormwall against limits and pyrate-limiter on
the same ``redis-server`` (started here on a free loopback port), in the same
interleaved run.

One client, one thread, one key, a limit never reached: the admit path, one
round trip (a Lua script) per decision. stormwall's ``RedisTokenBucket`` and
``RedisSlidingWindow`` (sync client); limits' ``FixedWindowRateLimiter`` and
``MovingWindowRateLimiter`` on ``RedisStorage``; pyrate-limiter's
``RedisBucket`` behind a non-blocking ``Limiter``; nopanic-redis's
``redis_rate_limit`` (a token bucket in a Lua script, as a decorator around
a function doing nothing) when it is installed. Skipped, with a note in the
report, when ``redis-server`` is not on PATH.

Also the shared breaker's success path, in the sync success-path group next
to the local breaker: an executor holding only
``CircuitBreaker(store=RedisBreakerStore(client))`` (default
``sync_interval``: one round trip per second, successes batched), configured
as the local one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from _harness import Case

from cases.common import FAILURES, HUGE, RECOVERY, fn
from cases.executors import SYNC


GROUP = "Redis decision, sync client"
SHARED_BREAKER = "stormwall run(): breaker only, RedisBreakerStore"
# limits' moving window keeps every hit (up to the limit) in a Redis list:
# a limit the run can reach in a minute, not HUGE.
WINDOW_LIMIT = 10**7


class RedisServer:
    """A throwaway redis-server on loopback, or None when there is none."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = tempfile.TemporaryDirectory()
        self.url = ""

    def start(self) -> bool:
        binary = shutil.which("redis-server")
        if binary is None:
            return False
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
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
                self.workdir.name,
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
                        self.url = f"redis://127.0.0.1:{port}/0"
                        return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        self.workdir.cleanup()


def cases(url: str) -> tuple[list[Case], list[object]]:
    """The cases, and what to close once they have run."""
    import redis

    from stormwall import CircuitBreaker, EventBus, ResilientExecutor
    from stormwall.backends.redis import (
        RedisBreakerStore,
        RedisSlidingWindow,
        RedisTokenBucket,
    )

    client = redis.Redis.from_url(url)
    closers: list[object] = [client.close]
    tb = RedisTokenBucket(client, HUGE, HUGE, name="bench-tb")
    sw = RedisSlidingWindow(client, WINDOW_LIMIT, 60, name="bench-sw")
    shared = ResilientExecutor(
        "bench",
        circuit_breaker=CircuitBreaker(
            "bench-shared",
            failure_threshold=FAILURES,
            recovery_timeout=RECOVERY,
            store=RedisBreakerStore(client),
        ),
        bus=EventBus(),
    )
    out = [
        Case(SYNC, SHARED_BREAKER, lambda: shared.run("k", fn)),
        Case(
            GROUP,
            "stormwall RedisTokenBucket.try_acquire",
            lambda: tb.try_acquire("k"),
            unit="decisions/s",
        ),
        Case(
            GROUP,
            "stormwall RedisSlidingWindow.try_acquire",
            lambda: sw.try_acquire("k"),
            unit="decisions/s",
        ),
    ]
    try:
        from limits import RateLimitItemPerMinute
        from limits.storage import RedisStorage
        from limits.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
        )

        storage = RedisStorage(url)
        item = RateLimitItemPerMinute(WINDOW_LIMIT)
        fixed = FixedWindowRateLimiter(storage)
        moving = MovingWindowRateLimiter(storage)
        out += [
            Case(
                GROUP,
                "limits FixedWindowRateLimiter.hit (RedisStorage)",
                lambda: fixed.hit(item, "kf"),
                peer="limits",
                unit="decisions/s",
            ),
            Case(
                GROUP,
                "limits MovingWindowRateLimiter.hit (RedisStorage)",
                lambda: moving.hit(item, "km"),
                peer="limits",
                unit="decisions/s",
            ),
        ]
    except ImportError:
        pass
    try:
        from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

        bucket = RedisBucket.init(
            [Rate(WINDOW_LIMIT, Duration.MINUTE)], client, "bench-pyrate"
        )
        limiter = Limiter(bucket)
        closers.append(limiter.close)
        out.append(
            Case(
                GROUP,
                "pyrate-limiter Limiter.try_acquire (RedisBucket)",
                lambda: limiter.try_acquire("k", blocking=False),
                peer="pyrate-limiter",
                unit="decisions/s",
            )
        )
    except ImportError:
        pass
    try:
        from nopanic_redis import redis_rate_limit

        quota = redis_rate_limit(client, name="bench-nopanic", rate=HUGE)

        @quota
        def nothing() -> None:
            return None

        out.append(
            Case(
                GROUP,
                "nopanic-redis redis_rate_limit (decorated no-op)",
                nothing,
                peer="nopanic-redis",
                unit="decisions/s",
            )
        )
    except ImportError:
        pass
    return out, closers
