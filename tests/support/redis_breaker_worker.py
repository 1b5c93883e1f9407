"""
Subprocess bodies for tests/backends/test_redis_breaker.py (run with "spawn").

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


def probe_once(port, name, queue):
    """Try one probe on a half-open breaker from a separate process."""
    with redis.Redis(port=port) as client:
        breaker = _breaker(
            client,
            name,
            failure_threshold=1,
            recovery_timeout=0.2,
            success_threshold=5,
        )
        try:
            permit = breaker._admit(None)
        except CircuitOpenError as exc:
            queue.put(("rejected", exc.state))
            return
        breaker._release(permit)
        queue.put(("ran", "half_open"))


def watch(port, name, sync_interval, ready, queue):
    """Run successful calls until the breaker rejects; report when."""
    with redis.Redis(port=port) as client:
        breaker = CircuitBreaker(
            name,
            store=RedisBreakerStore(client, sync_interval=sync_interval),
            failure_threshold=1,
            recovery_timeout=30.0,
        )
        deadline = time.time() + 30
        breaker._on_success(breaker._admit(None), 0.0, None)
        ready.set()
        while time.time() < deadline:
            try:
                permit = breaker._admit(None)
            except CircuitOpenError:
                queue.put(time.time())
                return
            breaker._on_success(permit, 0.0, None)
        queue.put(None)
