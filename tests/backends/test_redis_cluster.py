"""
Redis limiters and the shared breaker on a real 3-node Redis Cluster
(tests/support/redis_cluster.py).

Keys spread over every node, one limiter's keys for one call key share a
slot (its script touches them together), ``SCAN MATCH prefix:*`` on every
primary finds them all, and a slot moved to another node mid-run (``MOVED``)
costs no decision. Breakers sharing a `RedisBreakerStore` over the Cluster
trip and recover together, whichever node holds each one, and a breaker
whose slot moves keeps its state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest


pytest.importorskip("redis")

import redis
import redis.asyncio
from redis.cluster import ClusterNode

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventBus,
    RateLimitedError,
    ResilientExecutor,
)
from stormwall.backends._redis_common import bounded_client
from stormwall.backends.redis import (
    RedisBreakerStore,
    RedisSlidingWindow,
    RedisTokenBucket,
)
from stormwall.events import BackendError, BreakerStateChanged
from stormwall.testing import EventRecorder
from tests.support.redis_cluster import redis_cluster  # noqa: F401 - a fixture


pytestmark = pytest.mark.integration

KINDS = ["token_bucket", "sliding_window"]


def make(kind, client, **kwargs):
    """A token bucket of 3 at 1/s, or a window of 3 per 10 s."""
    if kind == "token_bucket":
        return RedisTokenBucket(client, 3, 1, **kwargs)
    return RedisSlidingWindow(client, 3, 10.0, **kwargs)


@pytest.fixture
def cluster_client(redis_cluster):  # noqa: F811 - the fixture above
    """A sync cluster client (flushed before the test)."""
    nodes = [ClusterNode(h, p) for h, p in redis_cluster.startup_nodes]
    c = redis.RedisCluster(startup_nodes=nodes)
    c.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def other_client(redis_cluster):  # noqa: F811 - the fixture above
    """A second sync cluster client: another process's connections."""
    nodes = [ClusterNode(h, p) for h, p in redis_cluster.startup_nodes]
    c = redis.RedisCluster(startup_nodes=nodes)
    try:
        yield c
    finally:
        c.close()


def every_key(client):
    """Every key of the cluster, SCANned on each primary."""
    return sorted(
        k.decode()
        for node in client.get_primaries()
        for k in client.scan_iter(match="*", target_nodes=node)
    )


@pytest.mark.parametrize("kind", KINDS)
class TestAcrossNodes:
    def test_limits_hold_on_every_node(self, kind, cluster_client):
        """Sixty keys over the three nodes: each gets its burst, no more."""
        limiter = make(kind, cluster_client, prefix="myapp")
        keys = [f"user:{i}" for i in range(60)]

        granted = {k: [limiter.try_acquire(k) for _ in range(4)] for k in keys}

        assert {k: [True, True, True, False] for k in keys} == granted
        owners = {
            cluster_client.get_node_from_key(k).port
            for k in every_key(cluster_client)
        }
        assert 3 == len(owners)

    def test_one_call_keys_share_a_slot(self, kind, cluster_client):
        """PREFIX:{NAME:KEY}:KIND: a limiter's keys for a key, one slot."""
        limiter = make(kind, cluster_client, prefix="myapp", name="api")
        limiter.try_acquire("user:7")

        keys = every_key(cluster_client)
        expected = {
            "token_bucket": ["myapp:{api:user:7}:tb"],
            "sliding_window": [
                "myapp:{api:user:7}:sw",
                "myapp:{api:user:7}:sw:n",
            ],
        }[kind]
        assert expected == keys
        assert 1 == len({cluster_client.keyslot(k) for k in keys})

    def test_scan_match_prefix_on_every_primary(self, kind, cluster_client):
        """SCAN MATCH myapp:* over the primaries returns every key."""
        limiter = make(kind, cluster_client, prefix="myapp")
        other = make(kind, cluster_client, prefix="otherapp")
        for i in range(30):
            limiter.try_acquire(f"k{i}")
            other.try_acquire(f"k{i}")

        scanned = sorted(
            k.decode()
            for node in cluster_client.get_primaries()
            for k in cluster_client.scan_iter(
                match="myapp:*", target_nodes=node
            )
        )
        ours = [k for k in every_key(cluster_client) if k.startswith("myapp")]
        assert ours == scanned
        assert len(scanned) >= 30
        limiter.reset()
        assert [] == [
            k for k in every_key(cluster_client) if k.startswith("myapp")
        ]

    def test_a_moved_slot_costs_no_decision(
        self,
        kind,
        cluster_client,
        redis_cluster,  # noqa: F811 - the fixture
    ):
        """Resharding a key's slot mid-run: MOVED is followed, the state
        moved with the slot, and no decision fell to the policy."""
        bus = EventBus()
        with EventRecorder(bus) as recorder:
            limiter = make(
                kind, cluster_client, on_backend_error="raise", bus=bus
            )
            assert [True, True] == [
                limiter.try_acquire("mover") for _ in range(2)
            ]
            (key, *_) = every_key(cluster_client)
            slot = cluster_client.keyslot(key)
            source = redis_cluster.owner(slot)
            target = next(p for p in redis_cluster.ports if p != source)

            redis_cluster.migrate_slot(slot, target)

            # The client still routes the slot to the old owner: MOVED.
            assert [True, False] == [
                limiter.try_acquire("mover") for _ in range(2)
            ]
            with pytest.raises(RateLimitedError) as info:
                limiter.acquire("mover", timeout=0)
            assert "exceeded" in str(info.value)
            # Our client followed MOVED and now routes the slot to its owner.
            assert target == limiter._redis.get_node_from_key(key).port
            assert [] == recorder.of_type(BackendError)


@pytest.mark.asyncio
async def test_asyncio_cluster_client(redis_cluster):  # noqa: F811
    """redis.asyncio.RedisCluster works the same way."""
    nodes = [
        redis.asyncio.cluster.ClusterNode(h, p)
        for h, p in redis_cluster.startup_nodes
    ]
    client = redis.asyncio.RedisCluster(startup_nodes=nodes)
    try:
        await client.flushall(target_nodes=client.PRIMARIES)
        bucket = RedisTokenBucket(client, 2, 1, prefix="async")
        window = RedisSlidingWindow(client, 2, 10.0, prefix="async")
        for limiter in (bucket, window):
            assert [True, True, False] == [
                await limiter.try_acquire_async(f"user:{i // 3}")
                for i in range(3)
            ]
        await bucket.reset_async()
    finally:
        await client.aclose()


# -- the shared breaker -------------------------------------------------------

SYNC = 0.01  # sync_interval: a trip reaches the other breaker this fast
RECOVERY = 0.3  # recovery_timeout (Redis time)


def shared_breaker(client, name, bus, **kwargs):
    """A breaker named ``name`` over the Cluster, in a fresh store."""
    store = RedisBreakerStore(
        client, prefix="myapp", on_backend_error="raise", sync_interval=SYNC
    )
    return CircuitBreaker(
        name,
        store=store,
        failure_threshold=kwargs.pop("failure_threshold", 2),
        recovery_timeout=RECOVERY,
        bus=bus,
        **kwargs,
    )


def boom():
    raise RuntimeError("boom")


def outcome(executor):
    """One call through ``executor``: "ok" or "rejected"."""
    try:
        executor.run("k", lambda: "ok")
    except CircuitOpenError:
        return "rejected"
    return "ok"


def fail(executor):
    with pytest.raises(RuntimeError, match="boom"):
        executor.run("k", boom)


def names_on_every_node(client, redis_cluster):  # noqa: F811
    """Three breaker names whose keys live on three different nodes."""
    by_owner = {}
    for i in range(200):
        name = f"dep{i}"
        slot = client.keyslot(f"myapp:{{{name}}}:cb")
        by_owner.setdefault(redis_cluster.owner(slot), name)
        if len(by_owner) == 3:
            return sorted(by_owner.values())
    msg = "no name on some node"  # pragma: no cover - 200 names suffice
    raise AssertionError(msg)


class TestSharedBreaker:
    def test_trips_and_recovers_across_two_breakers(
        self,
        cluster_client,
        other_client,
        redis_cluster,  # noqa: F811 - the fixture
    ):
        """
        Two breakers (two clients, as two processes) share each of three
        breakers, one per node: a trip in one rejects in the other within
        sync_interval; after recovery_timeout the other's probe closes it
        for both. Each breaker's keys share a slot; nothing fell to the
        policy.
        """
        bus = EventBus()
        names = names_on_every_node(cluster_client, redis_cluster)
        with EventRecorder(bus) as recorder:
            pairs = [
                (
                    ResilientExecutor(
                        n,
                        circuit_breaker=shared_breaker(cluster_client, n, bus),
                    ),
                    ResilientExecutor(
                        n, circuit_breaker=shared_breaker(other_client, n, bus)
                    ),
                )
                for n in names
            ]
            for here, there in pairs:
                assert "ok" == outcome(there)
                fail(here)
                fail(here)
                assert "rejected" == outcome(here)
            time.sleep(2 * SYNC)
            tripped = [outcome(there) for _, there in pairs]
            time.sleep(RECOVERY + 0.05)
            probed = [outcome(there) for _, there in pairs]
            time.sleep(2 * SYNC)
            closed = [outcome(here) for here, _ in pairs]

        assert ["rejected"] * 3 == tripped
        assert ["ok"] * 3 == probed
        assert ["ok"] * 3 == closed
        # Each transition reported once, by the breaker that caused it.
        assert {
            ("closed", "open"): 3,
            ("open", "half_open"): 3,
            ("half_open", "closed"): 3,
        } == Counter(
            (e.from_state, e.to_state)
            for e in recorder.of_type(BreakerStateChanged)
        )
        assert [] == recorder.of_type(BackendError)
        keys = every_key(cluster_client)
        for name in names:
            mine = [k for k in keys if k.startswith(f"myapp:{{{name}}}:")]
            assert {f"myapp:{{{name}}}:cb"} <= set(mine)
            assert 1 == len({cluster_client.keyslot(k) for k in mine})
        owners = {cluster_client.get_node_from_key(k).port for k in keys}
        assert 3 == len(owners)

    def test_a_moved_slot_keeps_the_breaker(
        self,
        cluster_client,
        redis_cluster,  # noqa: F811 - the fixture
    ):
        """
        Resharding a breaker's slot between two failures: MOVED is
        followed, its consecutive failures moved with the slot (the next
        failure trips it), its probe slot works on the new node, and
        nothing fell to the policy.
        """
        bus = EventBus()
        with EventRecorder(bus) as recorder:
            breaker = shared_breaker(
                cluster_client, "mover", bus, failure_threshold=3
            )
            executor = ResilientExecutor("mover", circuit_breaker=breaker)
            fail(executor)
            fail(executor)
            key = "myapp:{mover}:cb"
            slot = cluster_client.keyslot(key)
            source = redis_cluster.owner(slot)
            target = next(p for p in redis_cluster.ports if p != source)
            # The store talks through the bounded client it shares.
            runner = bounded_client(cluster_client, 0.1)
            assert source == runner.get_node_from_key(key).port

            redis_cluster.migrate_slot(slot, target)

            # That client still routes the slot to the old owner: MOVED.
            fail(executor)
            rejected = outcome(executor)
            time.sleep(RECOVERY + 0.05)
            probed = outcome(executor)
            state = breaker.state

        assert "rejected" == rejected
        assert "ok" == probed
        assert CircuitState.CLOSED == state
        # It followed MOVED and now routes the slot to its owner.
        assert target == runner.get_node_from_key(key).port
        assert {
            ("closed", "open"): 1,
            ("open", "half_open"): 1,
            ("half_open", "closed"): 1,
        } == Counter(
            (e.from_state, e.to_state)
            for e in recorder.of_type(BreakerStateChanged)
        )
        assert [] == recorder.of_type(BackendError)


@pytest.mark.asyncio
async def test_asyncio_cluster_client_shares_a_breaker(redis_cluster):  # noqa: F811
    """A breaker over redis.asyncio.RedisCluster trips for everyone."""
    nodes = [
        redis.asyncio.cluster.ClusterNode(h, p)
        for h, p in redis_cluster.startup_nodes
    ]
    client = redis.asyncio.RedisCluster(startup_nodes=nodes)

    async def aboom():
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    async def aok():
        await asyncio.sleep(0)
        return "ok"

    bus = EventBus()
    try:
        await client.flushall(target_nodes=client.PRIMARIES)
        with EventRecorder(bus) as recorder:
            here, there = (
                AsyncResilientExecutor(
                    "async-dep",
                    circuit_breaker=shared_breaker(client, "async-dep", bus),
                )
                for _ in range(2)
            )
            assert "ok" == await there.run("k", aok)
            for _ in range(2):
                with pytest.raises(RuntimeError, match="boom"):
                    await here.run("k", aboom)
            await asyncio.sleep(2 * SYNC)
            with pytest.raises(CircuitOpenError):
                await there.run("k", aok)
    finally:
        await client.aclose()

    assert [] == recorder.of_type(BackendError)
