"""
Redis backends: limits that hold across processes, breakers they share.

::

    import redis
    from stormwall import CircuitBreaker, ResilientExecutor
    from stormwall.backends.redis import RedisBreakerStore, RedisTokenBucket

    client = redis.Redis.from_url("redis://localhost:6379/0")
    executor = ResilientExecutor(
        "users-api",
        limiter=RedisTokenBucket(client, capacity=10, refill_rate=5),
        circuit_breaker=CircuitBreaker(
            "users-api", store=RedisBreakerStore(client)
        ),
    )

Every decision is one round trip (a Lua script, loaded once and run with
``EVALSHA``), timed by the Redis server's clock so hosts may disagree about
the time. Keys are ``PREFIX:{NAME:KEY}:KIND``: the prefix first (``SCAN
MATCH prefix:*`` and an ACL ``~prefix:*`` cover them), then a Redis Cluster
hash tag; they expire when idle. ``client`` is a ``redis.Redis`` or a
``redis.asyncio.Redis`` (use the asyncio one with `AsyncResilientExecutor`;
clusters too). When Redis fails (unreachable, too slow, or an error reply
such as ``OOM`` or ``NOPERM``), ``on_backend_error`` decides
(``"fail_open"``, ``"fail_closed"`` or ``"raise"``) and a
`stormwall.events.BackendError` is reported. Every component (limiter or
breaker store) waits at most ``backend_timeout`` (0.1 s) on Redis whatever
the client's options, and after a failure probes it again at most every
``retry_interval`` (1 s), deciding by the policy at once meanwhile; the
first answer ends the outage.

Needs ``pip install 'stormwall[redis]'``.
"""

from __future__ import annotations

from ._redis_breaker import RedisBreakerStore
from ._redis_limiters import (
    BACKEND_RETRY_AFTER,
    RedisLimiterStatistics,
    RedisSlidingWindow,
    RedisTokenBucket,
)


__all__ = [
    "BACKEND_RETRY_AFTER",
    "RedisBreakerStore",
    "RedisLimiterStatistics",
    "RedisSlidingWindow",
    "RedisTokenBucket",
]
