"""
The executors over Redis backends: the same pipeline, state in Redis.

Sync clients drive `ResilientExecutor`; asyncio clients drive
`AsyncResilientExecutor`, which awaits the breaker store.
"""

from __future__ import annotations

import pytest


pytest.importorskip("redis")

import asyncio
import time

import redis
import redis.asyncio

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    EventBus,
    RateLimitedError,
    ResilientExecutor,
    RetryPolicy,
)
from stormwall.backends.redis import RedisBreakerStore, RedisTokenBucket
from stormwall.events import BreakerRejected, BreakerStateChanged


pytestmark = pytest.mark.integration


class Down(Exception):
    pass


def policy():
    return RetryPolicy(max_attempts=5, base_delay=0.001, jitter=None)


class TestSyncExecutorOverRedis:
    def test_limit_and_breaker_live_in_redis(self, redis_server):
        """Two executors (two 'processes') share one limit and one breaker
        through Redis."""
        clients = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, BreakerStateChanged, BreakerRejected)
        try:
            executors = [
                ResilientExecutor(
                    "svc",
                    limiter=RedisTokenBucket(client, 3, 0.001, name="rl"),
                    limiter_timeout=0,
                    circuit_breaker=CircuitBreaker(
                        "shared",
                        failure_threshold=2,
                        recovery_timeout=60,
                        store=RedisBreakerStore(client, sync_interval=0.001),
                    ),
                    retry_policy=policy(),
                    bus=bus,
                )
                for client in clients
            ]
            a, b = executors

            assert 1 == a.run("user:1", lambda: 1)
            assert 2 == b.run("user:1", lambda: 2)
            assert 3 == a.run("user:1", lambda: 3)
            with pytest.raises(RateLimitedError):
                b.run("user:1", lambda: 4)  # the shared bucket is empty

            def down():
                raise Down

            with pytest.raises(CircuitOpenError) as info:
                a.run("user:2", down)  # trips after 2 failures, mid-retry
            assert isinstance(info.value.__cause__, Down)
            time.sleep(0.005)  # past B's sync_interval
            with pytest.raises(CircuitOpenError):
                b.run("user:3", lambda: "never")  # B sees A's trip
        finally:
            for client in clients:
                client.close()

        assert [("closed", "open")] == [
            (e.from_state, e.to_state)
            for e in seen
            if isinstance(e, BreakerStateChanged)
        ]
        assert 2 == sum(isinstance(e, BreakerRejected) for e in seen)

    def test_sync_executor_refuses_asyncio_backends(self, redis_server):
        """An asyncio client cannot serve a synchronous executor: refused at
        construction, naming the component."""
        client = redis.asyncio.Redis.from_url(redis_server.url)

        with pytest.raises(ConfigError) as limiter_info:
            ResilientExecutor(limiter=RedisTokenBucket(client, 1, 1))
        with pytest.raises(ConfigError) as breaker_info:
            ResilientExecutor(
                circuit_breaker=CircuitBreaker(store=RedisBreakerStore(client))
            )

        assert "limiter" == limiter_info.value.parameter
        assert "circuit_breaker" == breaker_info.value.parameter


class TestAsyncExecutorOverRedis:
    @pytest.mark.asyncio
    async def test_async_only_trips_and_recovers(self, redis_server):
        """The async executor awaits the store: a trip mid-retry stops the
        retries, and after the open period a probe closes the breaker."""
        client = redis.asyncio.Redis.from_url(redis_server.url)
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, BreakerStateChanged)
        breaker = CircuitBreaker(
            "async-shared",
            failure_threshold=2,
            recovery_timeout=0.05,
            store=RedisBreakerStore(client, sync_interval=0.001),
        )
        ex = AsyncResilientExecutor(
            "svc",
            limiter=RedisTokenBucket(client, 100, 100, name="arl"),
            circuit_breaker=breaker,
            retry_policy=policy(),
            bus=bus,
        )
        calls = []

        async def down():
            calls.append(1)
            raise Down

        async def ok():
            return "ok"

        try:
            with pytest.raises(CircuitOpenError) as info:
                await ex.run("k", down)
            assert isinstance(info.value.__cause__, Down)
            assert 2 == len(calls)
            with pytest.raises(CircuitOpenError):
                await ex.run("k", ok)

            await asyncio.sleep(0.07)  # Redis keeps real time
            assert "ok" == await ex.run("k", ok)
        finally:
            await client.aclose()

        assert [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ] == [(e.from_state, e.to_state) for e in seen]

    @pytest.mark.asyncio
    async def test_cancelled_call_in_half_open_admit_frees_probe(
        self, redis_server
    ):
        """A call cancelled while its half-open admission is in flight
        leaves no probe slot taken: the next call is the probe."""
        import socket

        client = redis.asyncio.Redis.from_url(redis_server.url)
        breaker = CircuitBreaker(
            "probe",
            failure_threshold=1,
            recovery_timeout=0.05,
            store=RedisBreakerStore(client),
        )
        ex = AsyncResilientExecutor("svc", circuit_breaker=breaker)

        async def down():
            raise Down

        async def ok():
            return "ok"

        spin = (
            "local s = redis.call('TIME') local n = 0 repeat "
            "local x = redis.call('TIME') "
            "n = (x[1] - s[1]) * 1000000 + (x[2] - s[2]) until n > 60000"
        )
        command = (
            f"*3\r\n$4\r\nEVAL\r\n${len(spin)}\r\n{spin}\r\n$1\r\n0\r\n"
        ).encode()
        try:
            with pytest.raises(Down):
                await ex.run("k", down)
            await asyncio.sleep(0.07)  # half-open
            with socket.create_connection(
                (redis_server.host, redis_server.port), timeout=5
            ) as blocker:
                blocker.sendall(command)  # Redis is busy for 60 ms
                await asyncio.sleep(0.01)
                task = asyncio.ensure_future(ex.run("k", ok))
                await asyncio.sleep(0.02)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.sleep(0.1)
            result = await ex.run("k", ok)  # the probe: admitted
            stats = await breaker.statistics_async()
        finally:
            await client.aclose()

        assert "ok" == result
        assert (0, "closed") == (stats.half_open_in_flight, stats.state)
