"""
What the Redis limiters and the Redis breaker store share.
"""

from __future__ import annotations

from typing import Final

from .._errors import ConfigError


try:
    import redis
    import redis.asyncio
    import redis.exceptions
except ImportError:  # pragma: no cover - exercised without the extra
    msg = (
        "stormwall.backends.redis needs redis-py: "
        "pip install 'stormwall[redis]'"
    )
    raise ImportError(msg) from None


BACKEND: Final = "redis"

# What counts as "the backend failed" (the on_backend_error policy applies),
# as opposed to a bug: connection trouble, timeouts, a server busy loading,
# read-only replicas, cluster redirections that could not be followed.
BACKEND_ERRORS: Final = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterError,
    OSError,
)


def check_client(param: str, client: object) -> bool:
    """
    A redis-py client, sync or asyncio (clusters included).

    Returns:
        Whether the client is an asyncio one.

    Raises:
        ConfigError: anything else (naming ``param``).
    """
    if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
        return True
    if isinstance(client, redis.Redis | redis.RedisCluster):
        return False
    raise ConfigError(
        param,
        "expected a redis.Redis or redis.asyncio.Redis client, got "
        f"{type(client).__name__}",
    )


def hash_tagged(prefix: str, *parts: str) -> str:
    """
    ``{prefix:part:...}``: a Redis Cluster hash tag.

    Everything a component keeps for one key lands in one hash slot, so a
    script touching several of those keys is legal on a cluster.
    """
    return "{" + ":".join((prefix, *parts)) + "}"
