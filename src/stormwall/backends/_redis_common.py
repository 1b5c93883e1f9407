"""
What the Redis limiters and the Redis breaker store share.

- **Which errors follow the policy**: catch `CATCH`, then ask
  `is_backend_failure`; ``True`` (connection trouble, timeouts and every
  error reply that says the *server* cannot serve: ``OOM``, ``NOPERM``,
  ``READONLY``, ``LOADING``, ``BUSY``, ``CLUSTERDOWN``, ``MASTERDOWN``...)
  goes to ``on_backend_error``; ``False`` is a bug of ours (a script error,
  a bad argument) and is raised unchanged.
- **How long a decision may wait**: `bounded_client` derives, from the
  user's client, one whose every socket operation gives up after
  ``backend_timeout`` and which never retries by itself, whatever options
  the user's client was built with (it keeps host, credentials, TLS...).
  The gate in front of a failed backend is `Cooldown` (in ``_common``).
- **Where state lives**: `redis_key` / `redis_key_pattern` give
  ``PREFIX:{PART:PART...}`` (the prefix first, so ``SCAN MATCH PREFIX:*``
  and an ACL ``~PREFIX:*`` cover every key; the braces are the Redis
  Cluster hash tag, so a component's keys for one call key share a slot).
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from .._errors import ConfigError


try:
    import redis
    import redis.asyncio
    import redis.asyncio.retry
    import redis.backoff
    import redis.exceptions
    import redis.retry
except ImportError:  # pragma: no cover - exercised without the extra
    msg = (
        "stormwall.backends.redis needs redis-py: "
        "pip install 'stormwall[redis]'"
    )
    raise ImportError(msg) from None


BACKEND: Final = "redis"

CATCH: Final = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,  # builtins.TimeoutError (asyncio's too) is an OSError
)
"""What to catch around a round trip; then ask `is_backend_failure`."""

# Error reply codes saying the server (not our request) is the problem.
FAILURE_CODES: Final = frozenset(
    {
        "ASK",
        "BUSY",
        "CLUSTERDOWN",
        "LOADING",
        "MASTERDOWN",
        "MISCONF",
        "MOVED",
        "NOAUTH",
        "NOPERM",
        "NOREPLICAS",
        "NOSCRIPT",
        "OOM",
        "READONLY",
        "TRYAGAIN",
        "WRONGPASS",
    }
)


_SCRIPT_ACL: Final = (
    "executing the script can't",
    "no permissions",
)


# Errors that are ours to fix, never the backend's (the last two exist from
# redis-py 6.1 on; the oldest supported release raises DataError for both).
_OUR_MISTAKES: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (
        redis.exceptions.DataError,
        getattr(redis.exceptions, "CrossSlotTransactionError", None),
        getattr(redis.exceptions, "InvalidPipelineStack", None),
    )
    if cls is not None
)


def is_backend_failure(error: BaseException) -> bool:
    """
    Whether ``error`` (caught with `CATCH`) follows ``on_backend_error``.

    ``False`` for our own mistakes, which must surface: a Lua runtime error,
    a wrong argument (`redis.exceptions.DataError`), keys of one call in
    two slots (``CROSSSLOT``), a key of ours holding another type.
    """
    if isinstance(error, redis.exceptions.ResponseError):
        code = getattr(error, "status_code", None)
        text = str(error)
        if not code:
            code = text.split(" ", 1)[0]
        if code in FAILURE_CODES or any(s in text for s in _SCRIPT_ACL):
            # (an ACL refusal inside a script comes back as a plain ERR:
            # "The user executing the script can't run this command...")
            return True
        return isinstance(
            error,
            redis.exceptions.OutOfMemoryError
            | redis.exceptions.NoPermissionError
            | redis.exceptions.ReadOnlyError
            | redis.exceptions.ClusterDownError
            | redis.exceptions.TryAgainError
            | redis.exceptions.AskError,
        )
    if isinstance(error, _OUR_MISTAKES):
        return False
    return isinstance(error, CATCH)


def error_type(error: BaseException) -> str:
    """The ``error_type`` label of a backend failure: its class name."""
    return type(error).__name__


def redis_key(prefix: str, *parts: str) -> str:
    """
    ``PREFIX:{PART:...}``: where a component keeps one key's state.

    Append ``":KIND"`` for each key (``myapp:{api:user:1}:tb``). Everything
    sharing the braces lands in one hash slot, so one script may touch all
    of it on a Cluster. The prefix has no braces (`check_prefix`), so the
    tag is always the one stormwall placed.
    """
    return prefix + ":{" + ":".join(parts) + "}"


def redis_key_pattern(prefix: str, *parts: str) -> str:
    """
    A ``SCAN MATCH`` pattern for every `redis_key` ``(prefix, *parts, ...)``.

    ``redis_key_pattern("p", "api")`` matches ``p:{api:<anything>}...``.
    """
    return _glob_escape(prefix + ":{" + ":".join(parts) + ":") + "*"


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so SCAN MATCH takes them literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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


# user's client -> {backend_timeout: derived client}; a derived client dies
# with the user's.
_DERIVED: weakref.WeakKeyDictionary[Any, dict[float, Any]] = (
    weakref.WeakKeyDictionary()
)


def bounded_client(client: Any, backend_timeout: float) -> Any:
    """
    A client like ``client`` whose round trips wait ``backend_timeout``.

    For a sync client (``redis.Redis``, ``redis.RedisCluster``): a client
    on the same server(s), with the same credentials, TLS, database,
    protocol and decoding, but whose connecting and each read or write give
    up after ``backend_timeout`` seconds and which never retries by itself
    (no back-off sleeps while the backend is down: the caller's `Cooldown`
    decides when to try again). A Cluster client still follows ``MOVED`` /
    ``ASK`` redirections. Components sharing a client and a timeout share
    it (one connection pool); it is closed when ``client`` is collected.

    An asyncio client is returned as is: wrap each round trip in
    ``asyncio.timeout(backend_timeout)``, which bounds it whatever the
    client's options (redis-py drops a connection cancelled mid-reply).
    A client of a kind this cannot rebuild (e.g. a Sentinel-managed pool)
    is returned as is too: it then waits as its own options say.
    """
    if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
        return client
    try:
        per_timeout = _DERIVED.setdefault(client, {})
    except TypeError:  # pragma: no cover - not weak-referenceable
        return client
    derived = per_timeout.get(backend_timeout)
    if derived is None:
        derived = _derive(client, backend_timeout)
        per_timeout[backend_timeout] = derived
        if derived is not client:
            weakref.finalize(client, derived.close)
    return derived


_TIMEOUTS: Final = (
    "socket_timeout",
    "socket_connect_timeout",
    # what redis-py restores after a server maintenance notification
    "orig_socket_timeout",
    "orig_socket_connect_timeout",
)
_DROPPED: Final = ("retry", "retry_on_error", "retry_on_timeout")


def _bounded_kwargs(
    kwargs: dict[str, Any], backend_timeout: float, retry: Any
) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in _DROPPED}
    for name in _TIMEOUTS:
        if name in out or name == "socket_timeout":
            out[name] = backend_timeout
    out["retry"] = retry
    return out


def _derive(client: Any, backend_timeout: float) -> Any:
    retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    if isinstance(client, redis.RedisCluster):
        manager = client.nodes_manager
        nodes = list(manager.startup_nodes.values())
        startup = [type(n)(n.host, n.port) for n in nodes]
        kwargs = _bounded_kwargs(
            dict(manager.connection_kwargs), backend_timeout, retry
        )
        for name in ("host", "port", "connection_pool", "connection_class"):
            kwargs.pop(name, None)
        return redis.RedisCluster(startup_nodes=startup, **kwargs)
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return client
    kwargs = _bounded_kwargs(pool.connection_kwargs, backend_timeout, retry)
    new_pool = type(pool)(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **kwargs,
    )
    return redis.Redis.from_pool(new_pool)  # closing it closes the pool
