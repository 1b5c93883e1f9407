"""
Rate limiters whose state lives in Redis: one limit shared by many processes.

`RedisTokenBucket` and `RedisSlidingWindow` are `Limiter` s like the local
ones (same methods, same events, usable by both executors), with these rules:

- **One round trip per decision.** Each decision is one Lua script, loaded
  once and run with ``EVALSHA`` (redis-py's ``register_script`` falls back
  to ``SCRIPT LOAD`` on ``NOSCRIPT``, e.g. after Redis restarted empty).
- **Redis keeps the time.** The scripts read ``redis.call('TIME')``, so the
  hosts' clocks may disagree; a caller only sleeps the *duration* Redis told
  it on its own clock. Times are microseconds since `_EPOCH`, which keeps
  them exact in Lua's doubles.
- **Reservations.** A caller that must wait books its permit in Redis at
  once (FIFO among everybody sharing the key, in booking order) and sleeps
  for it; no polling. A caller interrupted while it waits gets its booking
  refunded by a second script, *best effort*: other processes that booked
  behind it keep their (now pessimistic) wake-up times, since Redis cannot
  wake them early, and a refund that cannot reach Redis is lost (the
  capacity comes back when the booking's time passes).
- **Keys** are ``PREFIX:{NAME:KEY}:tb`` (token bucket) and
  ``PREFIX:{NAME:KEY}:sw`` + ``...:sw:n`` (sliding window): the prefix
  first, so ``SCAN MATCH PREFIX:*`` and an ACL ``~PREFIX:*`` cover them;
  the braces are a Redis Cluster hash tag, so one key's state sits in one
  slot. A shared (``per_key=False``) limiter uses ``PREFIX:{NAME}:...``.
  Every write sets an expiry at the moment the state would be back to full,
  so idle keys vanish by themselves. Limiters sharing a ``prefix`` need
  distinct names, and no name should be another's followed by ``":"``
  (``reset()`` of every key scans ``PREFIX:{NAME:*``).
- **Redis failing**: a connection refused or lost, no reply within
  ``backend_timeout`` (0.1 s by default, whatever options the client was
  built with: the limiter talks through a derived client with that socket
  timeout and no retries of its own), or an error reply saying the server
  cannot serve (``OOM``, ``NOPERM``, ``READONLY``, ``LOADING``, ``BUSY``,
  ``CLUSTERDOWN``, ``MASTERDOWN``...). A `stormwall.events.BackendError`
  is reported, then ``on_backend_error`` decides: ``"fail_open"`` admits
  (no ``LimiterAllowed`` event: Redis did not decide), ``"fail_closed"``
  refuses with a `RateLimitedError` saying the backend is unavailable
  (``retry_after`` is `BACKEND_RETRY_AFTER`, the Redis error chained, no
  ``LimiterRejected`` event), ``"raise"`` raises `BackendUnavailableError`.
  For ``retry_interval`` seconds (1 s by default) the policy then decides
  at once, without a round trip (``BackendError(cooldown=True)``); then one
  call probes Redis again, and the first answer ends the outage: no
  restart needed. Only a bug of ours (a script error, ``WRONGTYPE`` at one
  of our keys) raises the Redis exception itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import redis
import redis.exceptions

from .._component import Component
from .._errors import BackendUnavailableError, ConfigError, RateLimitedError
from .._events import LimiterAllowed, LimiterRejected, LimiterWaited
from .._limiters import (
    Limiter,
    LimiterStatistics,
    _check_cost,
    _check_timeout,
)
from .._validate import positive
from ._common import (
    MAX_SCRIPT_DURATION,
    Cooldown,
    check_backend_timeout,
    check_duration,
    check_key,
    check_policy,
    check_prefix,
    check_retry_interval,
    report_failure,
    unavailable,
)
from ._redis_common import (
    BACKEND,
    CATCH,
    bounded_client,
    check_client,
    is_backend_failure,
    redis_key,
    redis_key_pattern,
)


if TYPE_CHECKING:
    from .._bus import EventBus
    from .._clock import Clock
    from .._component import CallContext


__all__ = [
    "BACKEND_RETRY_AFTER",
    "RedisLimiterStatistics",
    "RedisSlidingWindow",
    "RedisTokenBucket",
]

BACKEND_RETRY_AFTER: Final = 1.0
"""
The ``retry_after`` of a refusal by ``on_backend_error="fail_closed"``.

Nobody knows when Redis comes back; one second is long enough not to turn a
client's retry loop into a storm against a dead server, short enough to
notice recovery quickly.
"""

# Scripts keep time as microseconds since this Unix time (2023-11-14): now is
# ~1e14 us, where a double still resolves 1/64 us, whereas microseconds since
# 1970 (~1.8e15) would only resolve 1/4 us.
_EPOCH: Final = 1_700_000_000

# Decisions the scripts return.
_ADMITTED: Final = 0
_BOOKED: Final = 1
_REJECTED: Final = 2

# Shared by both scripts: server time in microseconds since _EPOCH, and the
# number formatting that survives a round trip through a Redis string.
_PRELUDE = f"""
local t = redis.call('TIME')
local now = (tonumber(t[1]) - {_EPOCH}) * 1000000 + tonumber(t[2])
local function num(x) return string.format('%.17g', x) end
local function ms(us) return math.max(1, math.ceil(us / 1000)) end
"""

# GCRA (the generic cell rate algorithm) on one key holding the "theoretical
# arrival time" (tat): when the bucket will be full again. A request costing
# c moves tat by c * interval; it conforms once tat - burst <= now. Booking
# a wait simply stores the moved tat, so later requests queue behind it.
# The admit path is the hot one: TIME, GET, SET and an integer reply (the
# admission time, whole us); only a wait or a refusal builds an array.
# KEYS: tat. ARGV: cost * interval (us), burst (capacity * interval, us),
# max_wait (us; -1 = unbounded).
_TOKEN_BUCKET = f"""
local t = redis.call('TIME')
local now = (t[1] - {_EPOCH}) * 1000000 + t[2]
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + ARGV[1]
local at = new_tat - ARGV[2]
-- Sub-microsecond leeway: float rounding must not turn "exactly full
-- capacity used" into a wait of a few nanoseconds.
if at - now > 0.001 then
  local max_wait = tonumber(ARGV[3])
  if max_wait >= 0 and at - now > max_wait then
    return {{2, string.format('%.17g', at - now), string.format('%.17g', at)}}
  end
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX',
    math.max(1, math.ceil((new_tat - now) / 1000)))
  return {{1, string.format('%.17g', at - now), string.format('%.17g', at)}}
end
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX',
  math.max(1, math.ceil((new_tat - now) / 1000)))
return now
"""

# Refund a booking that has not come due: give its cost back to tat.
# KEYS: tat. ARGV: cost * interval, the booking's time.
_TOKEN_BUCKET_REFUND = (
    _PRELUDE
    + """
if now >= tonumber(ARGV[2]) then return 0 end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local new_tat = tat - tonumber(ARGV[1])
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], num(new_tat), 'PX', ms(new_tat - now))
end
return 1
"""
)

# An exact log: a sorted set of admissions (score = time in us, member =
# "cost:unique id") and their total cost in a second key. An entry at s is
# inside the window ending at t while s > t - window. A request is placed at
# the earliest t >= max(now, latest entry) where the window ending at t has
# room; as no entry lies after t, every window containing t then holds at
# most `limit` (bookings in the future included).
# KEYS: log, total. ARGV: window (us), limit, cost, max_wait (us; -1 =
# unbounded), member.
_SLIDING_WINDOW = (
    _PRELUDE
    + """
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local function cost_of(m) return tonumber(string.match(m, '^([^:]+):')) end
local total = tonumber(redis.call('GET', KEYS[2]) or 0)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #gone > 0 then
  for i = 1, #gone do total = total - cost_of(gone[i]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local at = now
if #last == 0 then
  total = 0
elseif tonumber(last[2]) > at then
  at = tonumber(last[2])
end
if total + cost > limit then
  local used = total
  local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    local s = tonumber(log[i + 1])
    if s + window > at then
      if used + cost <= limit then break end
      at = s + window
    end
    used = used - cost_of(log[i])
  end
end
local wait = at - now
local status = 0
if wait > 0 then
  status = 1
  if max_wait >= 0 and wait > max_wait then status = 2 end
end
if status ~= 2 then
  redis.call('ZADD', KEYS[1], at, ARGV[5])
  total = total + cost
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #newest == 0 then
  redis.call('DEL', KEYS[2])
else
  local ttl = ms(tonumber(newest[2]) + window - now)
  redis.call('SET', KEYS[2], num(total), 'PX', ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if status == 0 then return now end
return {status, num(wait), num(at)}
"""
)

# Refund a booking that has not come due: remove it from the log.
# KEYS: log, total. ARGV: member, cost.
_SLIDING_WINDOW_REFUND = (
    _PRELUDE
    + """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  local total = tonumber(redis.call('GET', KEYS[2]) or 0) - tonumber(ARGV[2])
  redis.call('SET', KEYS[2], num(math.max(total, 0)), 'KEEPTTL')
end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class RedisLimiterStatistics(LimiterStatistics):
    """
    A snapshot of a Redis limiter's client-side counters.

    They count what *this* limiter object saw, not what other processes
    did; Redis holds the shared state. ``keys`` is always 0 (counting the
    keys in Redis would cost a scan), and ``evicted`` / ``evicted_owing``
    are 0 (Redis expiry only forgets full keys: it never loses anything).
    ``allowed``, ``waited`` and ``rejected`` count Redis's decisions only;
    calls decided by ``on_backend_error`` count in ``backend_errors``.

    Attributes:
        backend_errors: Decisions (and refunds, resets) that could not reach
            Redis.
    """

    backend_errors: int


# redis-py before 5.3 needs a command name to hand out a connection; from
# 5.3 on, passing one is deprecated (a warning). Decided once, here.
_POOL_WANTS_COMMAND: Final = any(
    p.name == "command_name" and p.default is inspect.Parameter.empty
    for p in inspect.signature(
        redis.ConnectionPool.get_connection
    ).parameters.values()
)


class _Holder:
    """Lives as long as a thread's slot in a `threading.local`."""

    __slots__ = ("__weakref__",)


class _RedisLimiter(Limiter):
    """What both Redis limiters share: the shells around their scripts."""

    __slots__ = (
        "_allowed",
        "_async_only",
        "_backend_errors",
        "_backend_timeout",
        "_cancelled",
        "_client",
        "_cooldown",
        "_counters",
        "_head",
        "_local",
        "_max_cost",
        "_on_backend_error",
        "_pool",
        "_prefix",
        "_redis",
        "_rejected",
        "_scripts",
        "_shared",
        "_shas",
        "_suffixes",
        "_tail",
        "_waited",
        "_waiting",
        "_what",
    )

    def __init__(
        self,
        kind: str,
        client: Any,
        scripts: tuple[str, str],
        suffixes: tuple[str, ...],
        max_cost: float,
        what: str,
        prefix: object,
        on_backend_error: object,
        backend_timeout: object,
        retry_interval: object,
        name: str | None,
        per_key: object,
        clock: Clock | None,
        bus: EventBus | None,
    ) -> None:
        Component.__init__(self, kind, name, clock, bus)
        # True for an asyncio client: only the async methods work (the
        # executors read it to refuse such a limiter in a sync executor).
        self._async_only = check_client("client", client)
        self._prefix = check_prefix(prefix)
        self._on_backend_error = check_policy(on_backend_error)
        self._backend_timeout = check_backend_timeout(backend_timeout)
        self._cooldown = Cooldown(check_retry_interval(retry_interval))
        if not isinstance(per_key, bool):
            raise ConfigError(
                "per_key", f"expected a bool, got {type(per_key).__name__}"
            )
        self._shared = not per_key
        self._client = client
        # Our own client: same server and credentials, but every socket
        # operation bounded by backend_timeout and no retries of its own.
        self._redis = bounded_client(client, self._backend_timeout)
        # A plain sync client: each thread keeps one connection of the
        # bounded pool and talks to it directly (redis-py's per-command
        # machinery costs more than the round trip on loopback). Others go
        # through the client (clusters route by key).
        self._pool = (
            self._redis.connection_pool
            if type(self._redis) is redis.Redis
            else None
        )
        self._local = threading.local()
        self._scripts = scripts
        self._shas = tuple(
            hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest()
            for s in scripts
        )
        self._suffixes = suffixes
        # Keys are head + call key + tail (+ suffix): PREFIX:{NAME:KEY}:KIND.
        if self._shared:
            self._head = redis_key(self._prefix, self._name)
            self._tail = ""
        else:
            self._head = redis_key(self._prefix, self._name, "")[:-1]
            self._tail = "}"
        self._max_cost = max_cost
        self._what = what
        self._counters = threading.Lock()
        self._allowed = 0
        self._waited = 0
        self._rejected = 0
        self._cancelled = 0
        self._waiting = 0
        self._backend_errors = 0

    # Whether each request needs a unique log entry (a member).
    _logged: ClassVar[bool]

    # -- what the subclasses say ---------------------------------------------

    def _args(self, cost: float, max_wait: float, member: str) -> list[Any]:
        """The decision script's ARGV (``max_wait`` in us, -1: unbounded)."""
        raise NotImplementedError

    def _refund_args(self, cost: float, member: str, at: float) -> list[Any]:
        """The refund script's ARGV for a booking at ``at`` (us)."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The namespace of this limiter's Redis keys."""
        return self._prefix

    @property
    def on_backend_error(self) -> str:
        """What happens when Redis fails (see the module doc)."""
        return self._on_backend_error

    @property
    def backend_timeout(self) -> float:
        """The longest a decision waits on Redis, in seconds."""
        return self._backend_timeout

    @property
    def retry_interval(self) -> float:
        """Seconds between two probes of a failed Redis."""
        return self._cooldown.retry_interval

    def _keys(self, key: str) -> list[str]:
        """The Redis keys holding ``key``'s state (one hash slot)."""
        base = self._head if self._shared else self._head + key + self._tail
        return [base + suffix for suffix in self._suffixes]

    def _pattern(self) -> str:
        """A SCAN pattern matching every per-key state of this limiter."""
        return redis_key_pattern(self._prefix, self._name)

    def _need_sync(self) -> None:
        if self._async_only:
            msg = (
                f"{self._name!r} uses an asyncio Redis client: call the "
                "async methods (acquire_async, try_acquire_async, "
                "reset_async) or give it a redis.Redis client"
            )
            raise TypeError(msg)

    def _prepare(
        self, key: object, cost: object, timeout: object
    ) -> tuple[str, float, float | None]:
        key = check_key(key)
        cost = _check_cost(cost, self._max_cost, self._what)
        return key, cost, _check_timeout(timeout)

    def _request(
        self, key: str, cost: float, timeout: float | None
    ) -> tuple[list[str], list[Any], str]:
        """The script's KEYS and ARGV, and the booking's unique member."""
        # Unique across processes and hosts: 16 random bytes (only the
        # sliding window's log needs one).
        member = f"{cost!r}:{os.urandom(16).hex()}" if self._logged else ""
        max_wait = (
            -1.0 if timeout is None or math.isinf(timeout) else timeout * 1e6
        )
        return self._keys(key), self._args(cost, max_wait, member), member

    def _count(self, field: str, delta: int = 1) -> None:
        with self._counters:
            setattr(self, field, getattr(self, field) + delta)

    # -- round trips ----------------------------------------------------------

    def _run(self, which: int, keys: list[str], args: list[Any]) -> Any:
        """
        One ``EVALSHA`` of script ``which`` (0: decide, 1: refund).

        On ``NOSCRIPT`` (Redis restarted empty, a failover) the script is
        loaded and run again: that one time, three round trips.
        """
        try:
            return self._send(self._shas[which], keys, args)
        except redis.exceptions.NoScriptError:
            self._redis.script_load(self._scripts[which])
            return self._send(self._shas[which], keys, args)

    def _send(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        pool = self._pool
        if pool is None:
            return self._redis.execute_command(
                "EVALSHA", sha, len(keys), *keys, *args
            )
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._hold(pool)
        if conn.pid != os.getpid():  # a forked child makes its own
            conn = self._hold(pool)
        try:
            conn.send_command("EVALSHA", sha, len(keys), *keys, *args)
            return conn.read_response()
        except redis.exceptions.ResponseError:
            raise  # a whole reply was read: the connection is in sync
        except BaseException:
            # Timed out, broken or interrupted mid-reply: start afresh.
            conn.disconnect()
            raise

    def _hold(self, pool: Any) -> Any:
        """
        This thread's connection, taken from the bounded client's pool.

        Kept by the thread (no pool round trip per decision), given back
        when the thread ends; closed with the pool.
        """
        conn = (
            pool.get_connection("EVALSHA")
            if _POOL_WANTS_COMMAND
            else pool.get_connection()
        )
        holder = _Holder()
        weakref.finalize(holder, pool.release, conn)
        self._local.conn = conn
        self._local.holder = holder
        return conn

    async def _run_async(
        self, which: int, keys: list[str], args: list[Any]
    ) -> Any:
        """`_run` from a coroutine, whatever the client."""
        if not self._async_only:
            # A sync client blocks: run it on a worker thread.
            return await asyncio.to_thread(self._run, which, keys, args)
        client = self._client
        sha = self._shas[which]
        # The user's client, whatever its options, waits backend_timeout at
        # most; redis-py drops a connection cancelled mid-reply.
        async with asyncio.timeout(self._backend_timeout):
            try:
                return await client.execute_command(
                    "EVALSHA", sha, len(keys), *keys, *args
                )
            except redis.exceptions.NoScriptError:
                await client.script_load(self._scripts[which])
                return await client.execute_command(
                    "EVALSHA", sha, len(keys), *keys, *args
                )

    # -- decisions ------------------------------------------------------------

    def _decided(
        self,
        ctx: CallContext | None,
        key: str,
        cost: float,
        reply: Any,
    ) -> tuple[int, float, float]:
        """
        Count and report Redis's decision (an int: admitted at once, then).

        Returns:
            ``(status, wait in seconds, booked time in us)``.

        Raises:
            RateLimitedError: Redis refused (nothing was consumed).
        """
        if self._cooldown.retry_at is not None:
            self._cooldown.recovered()
        if reply.__class__ is int:
            with self._counters:
                self._allowed += 1
            self._emit(ctx, key, LimiterAllowed, cost=cost)
            return _ADMITTED, 0.0, float(reply)
        status = int(reply[0])
        wait = float(reply[1]) / 1e6
        at = float(reply[2])
        if status == _REJECTED:
            self._count("_rejected")
            self._emit(ctx, key, LimiterRejected, retry_after=wait, cost=cost)
            raise RateLimitedError(self._name, key, wait)
        self._count("_waiting")
        return status, wait, at

    def _skipped(self, ctx: CallContext | None, key: str) -> float:
        """Decide by the policy while Redis cools down (no round trip)."""
        error = self._cooldown.last_error or ConnectionError("redis")
        return self._by_policy(ctx, key, error, cooldown=True)

    def _failed(
        self, ctx: CallContext | None, key: str, error: BaseException
    ) -> float:
        """Redis failed this decision: close the gate, apply the policy."""
        self._cooldown.failed(self._clock.now(), error)
        return self._by_policy(ctx, key, error, cooldown=False)

    def _by_policy(
        self,
        ctx: CallContext | None,
        key: str,
        error: BaseException,
        *,
        cooldown: bool,
    ) -> float:
        """
        Apply ``on_backend_error`` to a decision Redis did not take.

        Returns:
            ``0.0`` (admitted) under ``"fail_open"``.

        Raises:
            RateLimitedError: under ``"fail_closed"``, saying the backend is
                unavailable, ``error`` chained.
            BackendUnavailableError: under ``"raise"``.
        """
        self._count("_backend_errors")
        policy = self._on_backend_error
        report_failure(
            self, ctx, BACKEND, "acquire", policy, error, cooldown=cooldown
        )
        if policy == "fail_open":
            return 0.0
        refusal = RateLimitedError(self._name, key, BACKEND_RETRY_AFTER)
        raise unavailable(refusal, self._name, BACKEND) from error

    def _refund_failed(
        self, ctx: CallContext | None, error: BaseException
    ) -> None:
        """Report a lost refund; never raise over the interruption."""
        self._count("_backend_errors")
        self._cooldown.failed(self._clock.now(), error)
        with contextlib.suppress(BackendUnavailableError):
            report_failure(
                self, ctx, BACKEND, "refund", self._on_backend_error, error
            )

    def _served(
        self, ctx: CallContext | None, key: str, cost: float, waited: float
    ) -> float:
        with self._counters:
            self._waiting -= 1
            self._waited += 1
        self._emit(ctx, key, LimiterWaited, waited=waited, cost=cost)
        return waited

    def _abandoned(self) -> None:
        with self._counters:
            self._waiting -= 1
            self._cancelled += 1

    def _cooling(self) -> bool:
        """Whether Redis failed less than ``retry_interval`` ago."""
        cooldown = self._cooldown
        return cooldown.retry_at is not None and cooldown.blocked(
            self._clock.now()
        )

    # -- sync -----------------------------------------------------------------

    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """
        Take ``cost`` permits for ``key`` if that needs no waiting.

        One round trip to Redis (none while Redis cools down after a
        failure: the policy decides at once).

        Args:
            key: Whose budget to charge (at most 512 UTF-8 bytes).
            cost: How many permits (a finite number > 0).

        Returns:
            Whether the permits were taken; with Redis failing, ``True``
            under ``on_backend_error="fail_open"`` and ``False`` under
            ``"fail_closed"``.

        Raises:
            ConfigError: A parameter is out of its domain.
            BackendUnavailableError: Redis failed and
                ``on_backend_error="raise"``.
            TypeError: The limiter has an asyncio client.
        """
        try:
            self._acquire(key, cost, 0.0, None)
        except RateLimitedError:
            return False
        return True

    def _acquire(
        self,
        key: str,
        cost: float,
        timeout: float | None,
        ctx: CallContext | None,
    ) -> float:
        if self._async_only:
            self._need_sync()
        key, cost, timeout = self._prepare(key, cost, timeout)
        if self._cooldown.retry_at is not None and self._cooling():
            return self._skipped(ctx, key)
        keys, args, member = self._request(key, cost, timeout)
        try:
            reply = self._run(0, keys, args)
        except CATCH as error:
            if not is_backend_failure(error):
                raise
            return self._failed(ctx, key, error)
        status, wait, at = self._decided(ctx, key, cost, reply)
        if status == _ADMITTED:
            return 0.0
        clock = self._clock
        start = clock.now()
        try:
            clock.sleep(wait)
        except BaseException:
            self._abandoned()
            if not self._cooling():
                try:
                    self._run(1, keys, self._refund_args(cost, member, at))
                except CATCH as error:
                    if not is_backend_failure(error):  # pragma: no cover
                        raise
                    self._refund_failed(ctx, error)
            raise
        return self._served(ctx, key, cost, clock.now() - start)

    def reset(self, key: str | None = None) -> None:
        """
        Delete the state of ``key`` in Redis (every key when ``None``).

        A shared (``per_key=False``) limiter has one state, deleted whatever
        the key. Every key is found with ``SCAN MATCH PREFIX:{NAME:*`` (never
        ``KEYS``), so resetting a large keyspace takes several round trips.
        Callers in other processes already sleeping for a booking keep
        sleeping.

        Raises:
            ConfigError: ``key`` is neither ``None`` nor a valid key.
            BackendUnavailableError: Redis failed (whatever the
                ``on_backend_error`` policy: a reset cannot fail open).
            TypeError: The limiter has an asyncio client.
        """
        self._need_sync()
        if key is not None:
            key = check_key(key)
        client = self._redis
        try:
            if key is not None or self._shared:
                client.delete(*self._keys(key or ""))
                return
            batch: list[Any] = []
            for found in client.scan_iter(match=self._pattern(), count=1000):
                batch.append(found)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        except CATCH as error:
            if not is_backend_failure(error):
                raise
            self._count("_backend_errors")
            report_failure(self, None, BACKEND, "reset", "raise", error)

    # -- async ----------------------------------------------------------------

    async def try_acquire_async(
        self, key: str = "default", cost: float = 1
    ) -> bool:
        """
        `try_acquire` for asyncio (any client; see `acquire_async`).

        Returns:
            Whether the permits were taken.

        Raises:
            ConfigError: A parameter is out of its domain.
            BackendUnavailableError: Redis failed and
                ``on_backend_error="raise"``.
        """
        try:
            await self._acquire_async(key, cost, 0.0, None)
        except RateLimitedError:
            return False
        return True

    async def _acquire_async(
        self,
        key: str,
        cost: float,
        timeout: float | None,  # noqa: ASYNC109 - the public name
        ctx: CallContext | None,
    ) -> float:
        """
        Decide, then wait for a booking on the task, not on a thread.

        With a sync client the script runs via `asyncio.to_thread`; a task
        cancelled during that round trip cannot tell whether Redis booked a
        permit, so that booking (if any) is not refunded.
        """
        key, cost, timeout = self._prepare(key, cost, timeout)
        if self._cooldown.retry_at is not None and self._cooling():
            return self._skipped(ctx, key)
        keys, args, member = self._request(key, cost, timeout)
        try:
            reply = await self._run_async(0, keys, args)
        except CATCH as error:
            if not is_backend_failure(error):
                raise
            return self._failed(ctx, key, error)
        status, wait, at = self._decided(ctx, key, cost, reply)
        if status == _ADMITTED:
            return 0.0
        clock = self._clock
        start = clock.now()
        try:
            await clock.sleep_async(wait)
        except BaseException:
            self._abandoned()
            if not self._cooling():
                try:
                    await self._run_async(
                        1, keys, self._refund_args(cost, member, at)
                    )
                except CATCH as error:
                    if not is_backend_failure(error):  # pragma: no cover
                        raise
                    self._refund_failed(ctx, error)
            raise
        return self._served(ctx, key, cost, clock.now() - start)

    async def reset_async(self, key: str | None = None) -> None:
        """
        `reset` for asyncio (any client).

        Raises:
            ConfigError: ``key`` is neither ``None`` nor a valid key.
            BackendUnavailableError: Redis failed.
        """
        if not self._async_only:
            await asyncio.to_thread(self.reset, key)
            return
        if key is not None:
            key = check_key(key)
        client = self._redis
        try:
            if key is not None or self._shared:
                await client.delete(*self._keys(key or ""))
                return
            batch: list[Any] = []
            async for found in client.scan_iter(
                match=self._pattern(), count=1000
            ):
                batch.append(found)
                if len(batch) >= 1000:
                    await client.delete(*batch)
                    batch = []
            if batch:
                await client.delete(*batch)
        except CATCH as error:
            if not is_backend_failure(error):
                raise
            self._count("_backend_errors")
            report_failure(self, None, BACKEND, "reset", "raise", error)

    # -- introspection --------------------------------------------------------

    def statistics(self) -> RedisLimiterStatistics:
        """This object's counters (see `RedisLimiterStatistics`)."""
        with self._counters:
            return RedisLimiterStatistics(
                limiter=self._name,
                keys=0,
                allowed=self._allowed,
                waited=self._waited,
                rejected=self._rejected,
                cancelled=self._cancelled,
                waiting=self._waiting,
                evicted=0,
                evicted_owing=0,
                backend_errors=self._backend_errors,
            )


class RedisTokenBucket(_RedisLimiter):
    """
    A `TokenBucket` shared through Redis by every process using the key.

    Bursts of up to ``capacity`` permits, refilled at ``refill_rate``/s:
    over any span of ``T`` seconds (as Redis's clock measures it) a key is
    granted at most ``capacity + refill_rate * T`` permits, whatever the
    number of processes. The state is one string per key (GCRA's
    theoretical arrival time), expiring when the bucket would be full again.

    Args:
        client: A ``redis.Redis`` (every method works; the async ones run
            the round trip with `asyncio.to_thread`) or a
            ``redis.asyncio.Redis`` (only the async methods work; the sync
            ones raise `TypeError`). Clusters work too.
        capacity: The burst size, and the most one request may cost.
        refill_rate: Permits added per second.
        prefix: The namespace of the Redis keys: 1 to 64 characters, no
            spaces or braces. Give each application its own.
        on_backend_error: ``"fail_closed"`` (the default: refuse while
            Redis is unreachable), ``"fail_open"`` (admit) or ``"raise"``
            (`BackendUnavailableError`). Choose ``"fail_open"`` when the
            limit protects a budget you may overrun briefly, and keep
            ``"fail_closed"`` when it protects a service that must not be
            flooded.
        backend_timeout: The longest a decision waits on Redis, in seconds
            (default 0.1, at most 60), whatever the client's own options.
        retry_interval: After a failure, seconds during which the policy
            decides without asking Redis (default 1.0, at most 3600); then
            one call probes Redis again.
        name: Part of every Redis key, and used in events, errors and
            metrics (default ``"token_bucket"``). Processes sharing a limit
            must use the same ``prefix``, ``name`` and numbers.
        per_key: ``False`` shares one bucket between every key (a global
            tier); events and errors still carry the caller's key.
        clock: The clock a caller sleeps on while it waits for a booking
            (default: the executor's, else real time). Redis's clock takes
            the decisions.
        bus: Where to report events.

    Raises:
        ConfigError: A parameter is out of its domain (``client`` not a
            redis-py client included).
    """

    __slots__ = ("_burst", "_capacity", "_interval", "_one", "_refill_rate")

    _logged: ClassVar[bool] = False

    def __init__(
        self,
        client: Any,
        capacity: float,
        refill_rate: float,
        *,
        prefix: str = "stormwall",
        on_backend_error: str = "fail_closed",
        backend_timeout: float = 0.1,
        retry_interval: float = 1.0,
        name: str | None = None,
        per_key: bool = True,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._capacity = positive("capacity", capacity)
        self._refill_rate = positive("refill_rate", refill_rate)
        # The scripts see one permit's interval and the full refill time,
        # in microseconds: bounded, so Redis's numbers never overflow.
        check_duration("refill_rate", 1 / self._refill_rate)
        if self._capacity / self._refill_rate > MAX_SCRIPT_DURATION:
            raise ConfigError(
                "refill_rate",
                f"too small for capacity {self._capacity:g}: a full refill "
                f"would take over {MAX_SCRIPT_DURATION:g} seconds",
            )
        self._interval = 1e6 / self._refill_rate
        self._one = repr(self._interval)
        self._burst = repr(self._interval * self._capacity)
        _RedisLimiter.__init__(
            self,
            "token_bucket",
            client,
            (_TOKEN_BUCKET, _TOKEN_BUCKET_REFUND),
            (":tb",),
            self._capacity,
            f"the capacity ({self._capacity:g})",
            prefix,
            on_backend_error,
            backend_timeout,
            retry_interval,
            name,
            per_key,
            clock,
            bus,
        )

    @property
    def capacity(self) -> float:
        """The burst size."""
        return self._capacity

    @property
    def refill_rate(self) -> float:
        """Permits added per second."""
        return self._refill_rate

    def _args(
        self,
        cost: float,
        max_wait: float,
        member: str,  # noqa: ARG002 - a sliding window's, unused here
    ) -> list[Any]:
        return [
            self._one if cost == 1 else repr(cost * self._interval),
            self._burst,
            "0" if max_wait == 0 else repr(max_wait),
        ]

    def _refund_args(
        self,
        cost: float,
        member: str,  # noqa: ARG002 - a sliding window's, unused here
        at: float,
    ) -> list[Any]:
        return [repr(self._interval * cost), repr(at)]

    def __repr__(self) -> str:
        return (
            f"RedisTokenBucket({self._capacity:g}, {self._refill_rate:g}, "
            f"prefix={self._prefix!r}, name={self._name!r})"
        )


class RedisSlidingWindow(_RedisLimiter):
    """
    A `SlidingWindow` shared through Redis: exact across every process.

    Never more than ``limit`` admitted within any ``window`` seconds (as
    Redis's clock measures it), whatever the number of processes. Each
    admission is an entry of a sorted set until it leaves the window, so
    Redis memory per key grows with ``limit`` and a refusal scans the
    entries: prefer `RedisTokenBucket` for limits in the thousands.

    A caller that must wait books the earliest moment the window has room
    for it (after every earlier booking: FIFO) and sleeps until then.

    Args:
        client: A ``redis.Redis`` or ``redis.asyncio.Redis`` (see
            `RedisTokenBucket`).
        limit: The most cost admitted within any ``window`` seconds, and the
            most one request may cost.
        window: The window length in seconds (Redis resolves microseconds;
            at most ten years).
        prefix: The namespace of the Redis keys.
        on_backend_error: ``"fail_closed"``, ``"fail_open"`` or ``"raise"``
            (see `RedisTokenBucket`).
        backend_timeout: The longest a decision waits on Redis (see
            `RedisTokenBucket`).
        retry_interval: Seconds between probes of a failed Redis.
        name: Part of every Redis key, and used in events, errors and
            metrics (default ``"sliding_window"``).
        per_key: ``False`` shares one window between every key.
        clock: The clock a caller sleeps on while it waits for a booking.
        bus: Where to report events.

    Raises:
        ConfigError: A parameter is out of its domain.
    """

    __slots__ = ("_limit", "_window")

    _logged: ClassVar[bool] = True

    def __init__(
        self,
        client: Any,
        limit: float,
        window: float,
        *,
        prefix: str = "stormwall",
        on_backend_error: str = "fail_closed",
        backend_timeout: float = 0.1,
        retry_interval: float = 1.0,
        name: str | None = None,
        per_key: bool = True,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._limit = positive("limit", limit)
        self._window = check_duration(
            "window", positive("window", window, seconds=True)
        )
        if self._window < 1e-6:
            raise ConfigError("window", "must be at least one microsecond")
        _RedisLimiter.__init__(
            self,
            "sliding_window",
            client,
            (_SLIDING_WINDOW, _SLIDING_WINDOW_REFUND),
            (":sw", ":sw:n"),
            self._limit,
            f"the limit ({self._limit:g})",
            prefix,
            on_backend_error,
            backend_timeout,
            retry_interval,
            name,
            per_key,
            clock,
            bus,
        )

    @property
    def limit(self) -> float:
        """The most cost admitted within any window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return self._window

    def _args(self, cost: float, max_wait: float, member: str) -> list[Any]:
        return [
            repr(round(self._window * 1e6)),
            repr(self._limit),
            repr(cost),
            repr(max_wait),
            member,
        ]

    def _refund_args(
        self,
        cost: float,
        member: str,
        at: float,  # noqa: ARG002 - the script reads the booking's time
    ) -> list[Any]:
        return [member, repr(cost)]

    def __repr__(self) -> str:
        return (
            f"RedisSlidingWindow({self._limit:g}, {self._window:g}, "
            f"prefix={self._prefix!r}, name={self._name!r})"
        )
