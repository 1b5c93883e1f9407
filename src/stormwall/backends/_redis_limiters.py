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
- **Keys** are ``{prefix:name:key}:tb`` (token bucket) and
  ``{prefix:name:key}:sw`` + ``...:sw:n`` (sliding window); the braces are
  a Redis Cluster hash tag, so one key's state sits in one slot. A shared
  (``per_key=False``) limiter uses ``{prefix:name}:...``. Every write sets
  an expiry at the moment the state would be back to full, so idle keys
  vanish by themselves. Limiters sharing a ``prefix`` need distinct names,
  and no name should be another's followed by ``":"`` (``reset()`` of every
  key scans ``{prefix:name:*``).
- **Redis unreachable** (an exception in ``BACKEND_ERRORS``): a
  `stormwall.events.BackendError` is reported, then ``on_backend_error``
  decides: ``"fail_open"`` admits (no ``LimiterAllowed`` event: Redis did
  not decide), ``"fail_closed"`` refuses with `RateLimitedError` whose
  ``retry_after`` is `BACKEND_RETRY_AFTER` (no ``LimiterRejected`` event),
  ``"raise"`` raises `BackendUnavailableError`. The next call tries Redis
  again; redis-py reconnects by itself.

Keep redis-py's own retries short for a limiter client: its default retries
a refused connection ten times with back-off before giving up, and every
decision pays that while Redis is down. For example
``redis.Redis(..., retry=Retry(NoBackoff(), 1), socket_timeout=0.5)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

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
from ._common import check_key, check_policy, check_prefix, report_failure
from ._redis_common import BACKEND, BACKEND_ERRORS, check_client, hash_tagged


if TYPE_CHECKING:
    from collections.abc import Sequence

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
# KEYS: tat. ARGV: interval (us per permit), burst (capacity * interval),
# cost, max_wait (us; -1 = unbounded).
_TOKEN_BUCKET = (
    _PRELUDE
    + """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local at = new_tat - burst
local wait = at - now
-- Sub-microsecond leeway: float rounding must not turn "exactly full
-- capacity used" into a wait of a few nanoseconds.
if wait <= 0.001 then
  wait = 0
  at = now
elseif max_wait >= 0 and wait > max_wait then
  return {2, num(wait), num(at)}
end
redis.call('SET', KEYS[1], num(new_tat), 'PX', ms(new_tat - now))
if wait == 0 then return {0, '0', num(at)} end
return {1, num(wait), num(at)}
"""
)

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


class _RedisLimiter(Limiter):
    """What both Redis limiters share: the shells around their scripts."""

    __slots__ = (
        "_allowed",
        "_async_only",
        "_backend_errors",
        "_cancelled",
        "_client",
        "_counters",
        "_decide",
        "_max_cost",
        "_on_backend_error",
        "_prefix",
        "_refund",
        "_rejected",
        "_shared",
        "_suffixes",
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
        if not isinstance(per_key, bool):
            raise ConfigError(
                "per_key", f"expected a bool, got {type(per_key).__name__}"
            )
        self._shared = not per_key
        self._client = client
        # register_script computes the SHA1 here and loads nothing: the first
        # decision pays EVALSHA -> NOSCRIPT -> SCRIPT LOAD -> EVALSHA, every
        # later one a single EVALSHA.
        self._decide = client.register_script(scripts[0])
        self._refund = client.register_script(scripts[1])
        self._suffixes = suffixes
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
        """What happens when Redis is unreachable (see the module doc)."""
        return self._on_backend_error

    def _keys(self, key: str) -> list[str]:
        """The Redis keys holding ``key``'s state (one hash slot)."""
        if self._shared:
            tag = hash_tagged(self._prefix, self._name)
        else:
            tag = hash_tagged(self._prefix, self._name, key)
        return [tag + suffix for suffix in self._suffixes]

    def _pattern(self) -> str:
        """A SCAN pattern matching every per-key state of this limiter."""
        head = _glob_escape("{" + f"{self._prefix}:{self._name}:")
        return head + "*"

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
        max_wait = -1.0 if timeout is None else timeout * 1e6
        return self._keys(key), self._args(cost, max_wait, member), member

    def _count(self, field: str, delta: int = 1) -> None:
        with self._counters:
            setattr(self, field, getattr(self, field) + delta)

    def _decided(
        self,
        ctx: CallContext | None,
        key: str,
        cost: float,
        reply: Sequence[Any],
    ) -> tuple[int, float, float]:
        """
        Count and report Redis's decision.

        Returns:
            ``(status, wait in seconds, booked time in us)``.

        Raises:
            RateLimitedError: Redis refused (nothing was consumed).
        """
        status = int(reply[0])
        wait = float(reply[1]) / 1e6
        at = float(reply[2])
        if status == _ADMITTED:
            self._count("_allowed")
            self._emit(ctx, key, LimiterAllowed, cost=cost)
        elif status == _REJECTED:
            self._count("_rejected")
            self._emit(ctx, key, LimiterRejected, retry_after=wait, cost=cost)
            raise RateLimitedError(self._name, key, wait)
        else:
            self._count("_waiting")
        return status, wait, at

    def _failed(
        self,
        ctx: CallContext | None,
        key: str,
        error: BaseException,
        operation: str = "acquire",
    ) -> float:
        """
        Apply ``on_backend_error`` to a decision Redis could not take.

        Returns:
            ``0.0`` (admitted) under ``"fail_open"``.

        Raises:
            RateLimitedError: under ``"fail_closed"``.
            BackendUnavailableError: under ``"raise"``.
        """
        self._count("_backend_errors")
        report_failure(
            self, ctx, BACKEND, operation, self._on_backend_error, error
        )
        if self._on_backend_error == "fail_open":
            return 0.0
        raise RateLimitedError(self._name, key, BACKEND_RETRY_AFTER) from error

    def _refund_failed(
        self, ctx: CallContext | None, error: BaseException
    ) -> None:
        """Report a lost refund; never raise over the interruption."""
        self._count("_backend_errors")
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

    # -- sync -----------------------------------------------------------------

    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """
        Take ``cost`` permits for ``key`` if that needs no waiting.

        One round trip to Redis.

        Args:
            key: Whose budget to charge (at most 512 UTF-8 bytes).
            cost: How many permits (a finite number > 0).

        Returns:
            Whether the permits were taken; under
            ``on_backend_error="fail_open"`` / ``"fail_closed"`` with Redis
            unreachable, ``True`` / ``False``.

        Raises:
            ConfigError: A parameter is out of its domain.
            BackendUnavailableError: Redis is unreachable and
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
        self._need_sync()
        key, cost, timeout = self._prepare(key, cost, timeout)
        keys, args, member = self._request(key, cost, timeout)
        try:
            reply = self._decide(keys=keys, args=args)
        except BACKEND_ERRORS as error:
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
            try:
                self._refund(
                    keys=keys, args=self._refund_args(cost, member, at)
                )
            except BACKEND_ERRORS as error:
                self._refund_failed(ctx, error)
            raise
        return self._served(ctx, key, cost, clock.now() - start)

    def reset(self, key: str | None = None) -> None:
        """
        Delete the state of ``key`` in Redis (every key when ``None``).

        A shared (``per_key=False``) limiter has one state, deleted whatever
        the key. Every key is found with ``SCAN MATCH`` (never ``KEYS``), so
        resetting a large keyspace takes several round trips. Callers in
        other processes already sleeping for a booking keep sleeping.

        Raises:
            ConfigError: ``key`` is neither ``None`` nor a valid key.
            BackendUnavailableError: Redis is unreachable (whatever the
                ``on_backend_error`` policy: a reset cannot fail open).
            TypeError: The limiter has an asyncio client.
        """
        self._need_sync()
        if key is not None:
            key = check_key(key)
        try:
            if key is not None or self._shared:
                self._client.delete(*self._keys(key or ""))
                return
            batch: list[Any] = []
            for found in self._client.scan_iter(
                match=self._pattern(), count=1000
            ):
                batch.append(found)
                if len(batch) >= 1000:
                    self._client.delete(*batch)
                    batch = []
            if batch:
                self._client.delete(*batch)
        except BACKEND_ERRORS as error:
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
            BackendUnavailableError: Redis is unreachable and
                ``on_backend_error="raise"``.
        """
        try:
            await self._acquire_async(key, cost, 0.0, None)
        except RateLimitedError:
            return False
        return True

    async def _call(
        self, script: Any, keys: list[str], args: list[Any]
    ) -> Any:
        """Run a script from a coroutine, whatever the client."""
        if self._async_only:
            return await script(keys=keys, args=args)
        # A sync client blocks: run it on a worker thread, not on the loop.
        return await asyncio.to_thread(script, keys=keys, args=args)

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
        keys, args, member = self._request(key, cost, timeout)
        try:
            reply = await self._call(self._decide, keys, args)
        except BACKEND_ERRORS as error:
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
            try:
                await self._call(
                    self._refund, keys, self._refund_args(cost, member, at)
                )
            except BACKEND_ERRORS as error:
                self._refund_failed(ctx, error)
            raise
        return self._served(ctx, key, cost, clock.now() - start)

    async def reset_async(self, key: str | None = None) -> None:
        """
        `reset` for asyncio (any client).

        Raises:
            ConfigError: ``key`` is neither ``None`` nor a valid key.
            BackendUnavailableError: Redis is unreachable.
        """
        if not self._async_only:
            await asyncio.to_thread(self.reset, key)
            return
        if key is not None:
            key = check_key(key)
        client = self._client
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
        except BACKEND_ERRORS as error:
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


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so SCAN MATCH takes them literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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

    __slots__ = ("_capacity", "_interval", "_refill_rate")

    _logged: ClassVar[bool] = False

    def __init__(
        self,
        client: Any,
        capacity: float,
        refill_rate: float,
        *,
        prefix: str = "stormwall",
        on_backend_error: str = "fail_closed",
        name: str | None = None,
        per_key: bool = True,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._capacity = positive("capacity", capacity)
        self._refill_rate = positive("refill_rate", refill_rate)
        self._interval = 1e6 / self._refill_rate
        if not math.isfinite(self._interval * self._capacity):
            raise ConfigError(
                "refill_rate", "too small for this capacity (overflow)"
            )
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
            repr(self._interval),
            repr(self._interval * self._capacity),
            repr(cost),
            repr(max_wait),
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
        window: The window length in seconds (Redis resolves microseconds).
        prefix: The namespace of the Redis keys.
        on_backend_error: ``"fail_closed"``, ``"fail_open"`` or ``"raise"``
            (see `RedisTokenBucket`).
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
        name: str | None = None,
        per_key: bool = True,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._limit = positive("limit", limit)
        self._window = positive("window", window, seconds=True)
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
