"""
Subprocess bodies for tests/test_redis_breaker.py (run with "spawn").

Each builds its own client, store and breaker on the Redis at ``port``, as
a separate service process would, and reports what happened on a queue.
"""

from __future__ import annotations

import time

import redis

from stormwall import CircuitBreaker, CircuitOpenError
from stormwall.backends.redis import RedisBreakerStore


def _breaker(client, name, **config):
    return CircuitBreaker(name, store=RedisBreakerStore(client), **config)


def trip(port, name, queue):
    """Fail one call on a breaker that trips on the first failure."""
    with redis.Redis(port=port) as client:
        breaker = _breaker(
            client, name, failure_threshold=1, recovery_timeout=30.0
        )
        permit = breaker._admit(None)
        breaker._on_failure(permit, RuntimeError("down"), 0.0, None)
        queue.put(breaker.state.value)


def probe(port, name, barrier, queue, hold):
    """Try one slow probe at the same moment as the other workers."""
    with redis.Redis(port=port) as client:
        breaker = _breaker(
            client,
            name,
            failure_threshold=1,
            recovery_timeout=0.2,
            half_open_max_calls=2,
            success_threshold=5,
        )
        barrier.wait(30)
        try:
            permit = breaker._admit(None)
        except CircuitOpenError as exc:
            queue.put(("rejected", exc.state))
            return
        time.sleep(hold)  # the slow probe: the others arrive meanwhile
        breaker._on_success(permit, hold, None)
        queue.put(("ran", "half_open"))
