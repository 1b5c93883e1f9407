"""
Redis limiters on a real 3-node Redis Cluster (tests/_redis_cluster.py).

Keys spread over every node, one limiter's keys for one call key share a
slot (its script touches them together), ``SCAN MATCH prefix:*`` on every
primary finds them all, and a slot moved to another node mid-run (``MOVED``)
costs no decision.
"""

from __future__ import annotations

import pytest


pytest.importorskip("redis")

import redis
import redis.asyncio
from redis.cluster import ClusterNode

from _redis_cluster import redis_cluster  # noqa: F401 - a fixture
from stormwall import EventBus, RateLimitedError
from stormwall.backends.redis import RedisSlidingWindow, RedisTokenBucket
from stormwall.events import BackendError
from stormwall.testing import EventRecorder


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
