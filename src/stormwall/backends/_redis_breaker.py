"""
The Redis breaker store: one circuit breaker shared by many processes.

Layout (``P = prefix:{name}``, one Redis Cluster hash slot per breaker):

- ``P:cb`` is a hash holding the breaker's record (state, generation,
  opened-at, open period, consecutive failures, half-open successes,
  rejections) and its window's running totals;
- ``P:cbw`` is the window: a string of one byte per call for a count window
  (a ring, like `CountWindow`), or a hash of per-bucket counters for a time
  window (like `TimeWindow`);
- ``P:cbp`` holds the half-open probe slots, one field per probe in flight
  (its token and lease), plus short-lived tombstones of given-up tokens.

The prefix comes first, so ``SCAN MATCH prefix:*`` and an ACL scoped to
``~prefix:*`` cover every key; the hash tag after it keeps one breaker's
keys on one Cluster slot.

Each round trip is one run of ``breaker_ops.lua``: the whole state machine
of the local `BreakerCore` in one atomic script, timed by Redis ``TIME``,
loaded once and run with ``EVALSHA`` (redis-py reloads it after
``NOSCRIPT``, e.g. on a restarted server). The keys expire after ``ttl``
seconds without use, except while forced open or disabled (an operator's
decision does not expire).

Round trips. A closed breaker decides locally, from the view the last reply
brought, and refreshes that view when it is older than ``sync_interval``:
the admission that finds it stale makes the round trip (no thread, no task).
Outcomes that cannot trip the breaker (a success while the shared
consecutive-failure count is 0 and, under a slow-call rule, not slow) are
counted in the process and travel with that refresh, so the success path
makes no round trip. An outcome that can trip it (a failure, a slow call
under a slow-call rule, the first success after failures) is sent at once,
with the batch before it. While open the view rejects until the open period
ends; half-open, every admission asks Redis (the probe slots are shared).

Probe slots survive cancellation. Each admission sent to Redis carries a
fresh token; a probe slot is held under it. A round trip that fails or is
cancelled gives its token up: at once when it was cancelled (a shielded
release the store owns), otherwise with the next round trip; giving up is
idempotent and leaves a tombstone, so an admit still on its way takes
nothing when it arrives. A slot whose process died is freed after
``probe_timeout``.

Redis trouble is handled exactly as for the Redis limiters, with the same
plumbing (``_redis_common``, ``_common``). Every failure (connection,
timeout, error replies such as OOM, NOPERM, READONLY, LOADING, CLUSTERDOWN,
MASTERDOWN, BUSY: `is_backend_failure`) follows ``on_backend_error``. No
round trip waits longer than ``backend_timeout`` (`bounded_client` for a
blocking client, shared with the limiters on the same client; a deadline
for an asyncio one). After a failure each breaker leaves Redis alone for
``retry_interval`` on its clock (`Cooldown`): meanwhile the policy decides
at once (``BackendError(cooldown=True)``), and then one call tries Redis
again. Every duration a script receives is at most `MAX_SCRIPT_DURATION`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import secrets
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import redis.exceptions

from .. import _tally, _validate
from .._clock import DEFAULT_CLOCK
from .._errors import BackendUnavailableError, CircuitOpenError
from .._events import BreakerRejected
from .._store import (
    Admission,
    BreakerCore,
    BreakerRecord,
    BreakerStore,
    CircuitState,
    Snapshot,
    Transition,
)
from ._common import (
    Cooldown,
    check_backend_timeout,
    check_duration,
    check_policy,
    check_prefix,
    check_retry_interval,
    report_failure,
    unavailable,
)
from ._redis_common import (
    BACKEND,
    bounded_client,
    check_client,
    is_backend_failure,
    redis_key,
)


if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._breaker import CircuitBreaker
    from .._component import CallContext
    from .._store import BreakerConfig


__all__ = ["RedisBreakerStore"]

_SCRIPT: Final = (
    resources.files(__package__).joinpath("breaker_ops.lua").read_text()
)

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_DISABLED: Final = CircuitState.DISABLED
_US: Final = 1_000_000
_NEVER: Final = -math.inf
# What the script replies (see breaker_ops.lua): the indexes.
_STATE, _GEN, _PERMIT, _FROM, _REASON, _RETRY = range(6)
_CF: Final = 8

# A probe permit carries its slot's token above the generation's bits.
_GEN_BITS: Final = 64
_GEN_MASK: Final = (1 << _GEN_BITS) - 1
# Tokens of failed round trips kept to give up with the next one, at most.
_MAX_ORPHANS: Final = 64

# How old the cached view is, in real time: it never takes a breaker
# decision (Redis TIME does). How long Redis has been failing is measured on
# the breaker's clock, as for any component (its `Cooldown`).
_real_now: Final = DEFAULT_CLOCK.now


def _text(value: object) -> str:
    """A reply string, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(param: str, value: object) -> float:
    """A positive number of seconds a script receives (bounded)."""
    return check_duration(
        param, _validate.positive(param, value, seconds=True)
    )


class RedisBreakerStore(BreakerStore):
    """
    Share circuit breakers between processes through Redis.

    Give the same store (or stores with the same ``prefix`` on the same
    Redis) to ``CircuitBreaker(name, store=...)`` in every process: breakers
    with the same name are then one breaker. Every process must configure
    it the same way (thresholds, windows, timeouts are sent with each
    operation, and the last writer's rules apply).

    ::

        store = RedisBreakerStore(redis.Redis.from_url(url))
        breaker = CircuitBreaker("users-api", store=store)

    Distributed semantics:

    - Decisions are atomic in Redis and timed by the Redis server's clock
      (hosts may disagree about the time; ``clock=`` and `MockClock` do not
      drive a shared breaker).
    - A closed breaker decides from this process's view of the shared
      state, refreshed every ``sync_interval`` by the call that finds it
      older: a trip in another process rejects calls here within
      ``sync_interval``. Its successes are counted here and sent with that
      refresh; failures (and slow calls under a slow-call rule) are sent at
      once, so the process that sees the dependency fail trips the breaker
      for everyone without delay.
    - A transition is reported (``BreakerStateChanged``, ``sequence`` = the
      shared generation) by the process whose round trip caused it, so
      exactly once across processes; ``BreakerRejected`` by the process
      rejected.
    - Half-open probe slots are counted in Redis: at most
      ``half_open_max_calls`` probes run at once across all processes. A
      slot is freed when its call ends, fails, or its admission is
      cancelled in flight; one held by a process that died is freed
      ``probe_timeout`` seconds after it was taken.

    When Redis fails (connection refused, timeout, an error reply such as
    OOM, NOPERM, READONLY, LOADING, MASTERDOWN or BUSY), a
    `stormwall.events.BackendError` is reported and ``on_backend_error``
    decides each admission:

    - ``"fail_open"`` (default): decide locally with an in-process breaker
      of the same configuration, fresh (closed) when the outage starts, on
      the breaker's own clock. The service keeps running through a Redis
      outage and is still protected from a dependency failing at the same
      time (its transitions are reported with ``sequence=0``).
    - ``"fail_closed"``: reject with a `CircuitOpenError` that says the
      backend is unavailable (the Redis error is its ``__cause__``,
      ``retry_after`` the time until Redis is tried again), reported as
      ``BreakerRejected`` too.
    - ``"raise"``: raise `BackendUnavailableError`.

    No decision waits on Redis longer than ``backend_timeout``, whatever
    the client's own timeouts and retries; after a failure, Redis is tried
    again by one call of that breaker per ``retry_interval`` (on the
    breaker's clock, as a limiter's cooldown) and the policy answers the
    others at once, reported as ``BackendError(cooldown=True)``. Recovery
    needs no restart.

    Recording an outcome never raises: if Redis fails then, the outcome is
    lost and a ``BackendError`` is reported. ``force_open``, ``disable``
    and ``reset`` try Redis even while it is failing and raise
    `BackendUnavailableError` whatever the policy (an operator's command
    must not be dropped silently); ``state``, ``retry_after`` and
    ``statistics`` answer from the local view (``"fail_open"``: the
    in-process breaker, ``"fail_closed"``: open) unless the policy is
    ``"raise"``.

    Args:
        client: A ``redis.Redis`` (for `ResilientExecutor`) or
            ``redis.asyncio.Redis`` (for `AsyncResilientExecutor`), or their
            cluster twins.
        prefix: The namespace the keys start with
            (``prefix:{name}:cb``...).
        on_backend_error: ``"fail_open"``, ``"fail_closed"`` or ``"raise"``.
        sync_interval: Seconds a closed breaker's view of the shared state
            is trusted. It bounds how long a breaker opened elsewhere keeps
            admitting calls here and how late successes reach the shared
            window, and costs each busy process one round trip per
            interval. 1 s (default) suits most services; lower it when a
            trip must reach every process faster.
        probe_timeout: Seconds after which a probe slot whose call never
            reported back is presumed lost with a dead process and given
            back. Choose above your slowest call.
        ttl: Seconds of disuse after which a breaker's keys expire (it then
            starts over, closed); never less than twice its longest open
            period or time window.
        backend_timeout: Seconds a round trip may take before Redis counts
            as failing (connecting and each reply), at most 60. A few times
            your Redis latency: 0.1 s (default) is generous on a LAN.
        retry_interval: Seconds Redis is left alone after a failure, while
            the policy decides at once, at most 3600. Short enough to
            notice recovery soon, long enough not to pile up timeouts: 1 s
            (default).

    Raises:
        ConfigError: A parameter is outside its domain, naming it.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_client",
        "_is_async",
        "_policy",
        "_prefix",
        "_probe_timeout",
        "_retry_interval",
        "_runner",
        "_script",
        "_sync_interval",
        "_tasks",
        "_timeout",
        "_ttl",
    )

    def __init__(
        self,
        client: object,
        *,
        prefix: str = "stormwall",
        on_backend_error: str = "fail_open",
        sync_interval: float = 1.0,
        probe_timeout: float = 60.0,
        ttl: float = 86400.0,
        backend_timeout: float = 0.1,
        retry_interval: float = 1.0,
    ) -> None:
        self._is_async = check_client("client", client)
        self._prefix = check_prefix(prefix)
        self._policy = check_policy(on_backend_error)
        self._sync_interval = _seconds("sync_interval", sync_interval)
        self._probe_timeout = _seconds("probe_timeout", probe_timeout)
        self._ttl = _seconds("ttl", ttl)
        self._timeout = check_backend_timeout(backend_timeout)
        self._retry_interval = check_retry_interval(retry_interval)
        redis_client: Any = client
        self._client = redis_client
        # The client round trips go through: a bounded twin of a blocking
        # one (shared with the limiters on the same client); an asyncio one
        # as is (each round trip gets a deadline).
        self._runner: Any = bounded_client(redis_client, self._timeout)
        # One Script for every breaker of this store: loaded once per
        # server, run by SHA (redis-py handles NOSCRIPT).
        self._script: Any = redis_client.register_script(_SCRIPT)
        # The compensating releases in flight (asyncio): owned here, so
        # none is garbage-collected half-way or left unobserved.
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (
            f"<RedisBreakerStore prefix={self._prefix!r} "
            f"on_backend_error={self._policy!r}>"
        )

    def _bind(
        self, breaker: CircuitBreaker, config: BreakerConfig
    ) -> _RedisBreakerCore:
        """The shared core of ``breaker``, keyed by its name."""
        for param in (
            "recovery_timeout",
            "max_recovery_timeout",
            "window_duration",
            "slow_call_duration",
        ):
            value = getattr(config, param)
            if value is not None:
                check_duration(param, value)
        return _RedisBreakerCore(self, breaker, config)


def _config_args(
    config: BreakerConfig, ttl: float, probe_timeout: float
) -> tuple[str | int | float, ...]:
    """The configuration as breaker_ops.lua reads it (ARGV[9:23])."""
    longest = max(
        config.max_recovery_timeout or config.recovery_timeout,
        config.window_duration or 0.0,
    )
    if not config.keeps_window:
        kind, size, width = "none", 0, 0.0
    elif config.window_duration is None:
        kind, size, width = "count", config.window_size, 0.0
    else:
        size = 20  # as TimeWindow: exact to 1/20 of its length
        kind, width = "time", config.window_duration * _US / size
    return (
        config.failure_threshold or 0,
        round(config.recovery_timeout * _US),
        round((config.max_recovery_timeout or 0.0) * _US),
        config.half_open_max_calls,
        config.success_threshold,
        _or_off(config.failure_rate_threshold),
        _or_off(config.slow_call_rate_threshold),
        _or_off(config.slow_call_duration),
        kind,
        size,
        width,
        config.effective_minimum_calls,
        math.ceil(max(ttl, 2 * longest) * 1000),
        round(probe_timeout * _US),
    )


def _or_off(value: float | None) -> float:
    """``value``, or -1 for a rule that is off."""
    return -1.0 if value is None else value


def _token() -> str:
    """A fresh probe-slot token, unique across processes."""
    return secrets.token_hex(8)


def _probe_permit(gen: int, token: str) -> int:
    """A probe's permit: its generation and its slot's token, in one int."""
    return gen | (int(token, 16) << _GEN_BITS)


def _split(permit: int) -> tuple[int, str]:
    """A permit's generation and token (``""`` for none)."""
    token = permit >> _GEN_BITS
    return permit & _GEN_MASK, (f"{token:016x}" if token else "")


class _RedisBreakerCore:
    """
    One breaker's `stormwall._breaker.SharedCore` over Redis.

    Thread-safe: the view is a few attributes replaced together by each
    reply (a reply older than the view is ignored, by generation), the
    batch is counted with atomic counters, and the local fallback breaker
    has its own lock.
    """

    __slots__ = (
        "_args",
        "_batch_gen",
        "_breaker",
        "_cf",
        "_config",
        "_cooldown",
        "_fallback",
        "_fresh_until",
        "_gen",
        "_interval",
        "_keys",
        "_lock",
        "_ok",
        "_open",
        "_open_until",
        "_orphans",
        "_policy",
        "_quiet",
        "_rejected",
        "_runner",
        "_script",
        "_slow_mark",
        "_slow_ok",
        "_slow_trips",
        "_state",
        "_store",
        "_synced",
        "_syncing",
        "_timeout",
        "_view",
        "_windowed",
        "is_async",
        "timed",
    )

    def __init__(
        self,
        store: RedisBreakerStore,
        breaker: CircuitBreaker,
        config: BreakerConfig,
    ) -> None:
        self.is_async = store._is_async
        # The script reads a call's duration only for the slow-call rule.
        self.timed = config.slow_call_duration is not None
        self._store = store
        self._breaker = breaker
        self._config = config
        self._policy = store._policy
        self._script = store._script
        self._runner = store._runner
        self._timeout = store._timeout
        # Per breaker, on its clock, like a limiter's: after a failure this
        # breaker asks Redis again once per retry_interval.
        self._cooldown = Cooldown(store._retry_interval)
        self._interval = store._sync_interval
        head = redis_key(store._prefix, breaker.name)
        self._keys = (head + ":cb", head + ":cbw", head + ":cbp")
        self._args = _config_args(config, store._ttl, store._probe_timeout)
        # Which successes may wait in the batch: those that cannot trip
        # the breaker (not slow under a slow-call rule).
        slow = config.slow_call_duration
        self._windowed = config.keeps_window
        self._slow_mark = math.inf if slow is None else slow
        self._slow_trips = (
            math.inf
            if slow is None or config.slow_call_rate_threshold is None
            else slow
        )
        # The view from the last reply; _synced is when it came (real
        # monotonic seconds), _NEVER when it must not be trusted.
        self._state = _CLOSED
        self._gen = -1
        self._cf = 0
        self._quiet = False  # closed with no consecutive failure
        self._open_until = _NEVER
        self._synced = _NEVER
        self._fresh_until = _NEVER  # _synced + sync_interval
        self._open = False  # closed or disabled: the view admits
        self._syncing = False
        self._view = Admission(-1, None, _CLOSED, 0.0)
        # The batch: successes (and the slow ones among them) of the
        # generation _batch_gen, and rejections answered from the view.
        self._batch_gen = -1
        self._ok = itertools.count()
        self._slow_ok = itertools.count()
        self._rejected = itertools.count()
        # Tokens of round trips that failed: given up with the next one.
        self._orphans: dict[str, None] = {}
        # The in-process breaker that decides while Redis is unreachable
        # under "fail_open"; its permits are negative (-1 - generation).
        self._fallback: BreakerCore | None = None
        self._lock = threading.Lock()

    def cached_state(self) -> CircuitState:
        """The state as of the last reply (or the fallback's, meanwhile)."""
        fallback = self._fallback
        if fallback is not None:
            return fallback.record.state
        return self._state

    # -- round trips ----------------------------------------------------------

    def _argv(
        self, op: str, permit: int, duration: float, token: str, *, batch: bool
    ) -> tuple[tuple[object, ...], tuple[str, ...]]:
        """The script's arguments, taking the batch; and the orphans sent."""
        if batch:
            ok, self._ok = self._ok, itertools.count()
            slow, self._slow_ok = self._slow_ok, itertools.count()
            rejected, self._rejected = self._rejected, itertools.count()
            counts = (self._batch_gen, next(ok), next(slow), next(rejected))
        else:
            counts = (-1, 0, 0, 0)
        orphans = tuple(self._orphans)
        argv = (op, permit, duration, token, *counts, *self._args, *orphans)
        return argv, orphans

    def _sent(self, orphans: tuple[str, ...]) -> None:
        """A round trip succeeded: its orphans are given up, Redis is up."""
        if orphans:
            with self._lock:
                for token in orphans:
                    self._orphans.pop(token, None)
        if self._cooldown.retry_at is not None:  # no lock while healthy
            self._cooldown.recovered()

    def _run(
        self,
        op: str,
        permit: int = 0,
        duration: float = 0.0,
        token: str = "",
        *,
        batch: bool = True,
    ) -> Any:
        """Run the script (blocking client), returning its raw reply."""
        argv, orphans = self._argv(op, permit, duration, token, batch=batch)
        reply = self._script(keys=self._keys, args=argv, client=self._runner)
        self._sent(orphans)
        return reply

    async def _run_async(
        self,
        op: str,
        permit: int = 0,
        duration: float = 0.0,
        token: str = "",
        *,
        batch: bool = True,
    ) -> Any:
        """Run the script (asyncio client), within backend_timeout."""
        argv, orphans = self._argv(op, permit, duration, token, batch=batch)
        async with asyncio.timeout(self._timeout):
            reply = await self._script(keys=self._keys, args=argv)
        self._sent(orphans)
        return reply

    def _orphan(self, token: str) -> None:
        """Remember to give ``token`` up (its round trip did not answer)."""
        if token:
            with self._lock:
                orphans = self._orphans
                orphans[token] = None
                if len(orphans) > _MAX_ORPHANS:  # probe_timeout frees it
                    del orphans[next(iter(orphans))]

    async def _give_back(self) -> None:
        """
        Give the orphans up now, even while being cancelled.

        The release runs in a task the store owns, awaited through a
        shield: a second cancellation of the caller does not stop it.
        """
        store = self._store
        task = asyncio.ensure_future(self._release_orphans())
        store._tasks.add(task)
        task.add_done_callback(store._tasks.discard)
        await asyncio.shield(task)

    async def _release_orphans(self) -> None:
        # A failure here leaves the orphans for the next round trip.
        with contextlib.suppress(Exception):
            await self._run_async("release", batch=False)

    # -- the view -------------------------------------------------------------

    def _absorb(self, reply: Sequence[Any]) -> Transition | None:
        """Refresh the view from a reply; return the transition it made."""
        state = CircuitState(_text(reply[_STATE]))
        gen = int(reply[_GEN])
        now = _real_now()
        # Replies of concurrent calls may arrive out of order: keep the
        # newest state (every change bumps the generation).
        if gen >= self._gen:
            if gen != self._batch_gen:
                # The batch's permits are stale now: start a new one.
                self._ok = itertools.count()
                self._slow_ok = itertools.count()
                self._batch_gen = gen
            cf = int(reply[_CF])
            retry = int(reply[_RETRY])
            admits = state is _CLOSED or state is _DISABLED
            # The hot path reads _open, _fresh_until, then _view: close the
            # gate before changing what is behind it, open it after.
            self._open = False
            self._state = state
            self._gen = gen
            self._cf = cf
            self._quiet = state is _CLOSED and not cf
            self._open_until = (
                now + retry / _US if state is _OPEN and retry >= 0 else _NEVER
            )
            self._view = Admission(gen, None, state, 0.0)
            self._synced = now
            self._fresh_until = now + self._interval
            self._open = admits
        self._fallback = None  # Redis answers again: back to shared state
        from_state = _text(reply[_FROM])
        if not from_state:
            return None
        return Transition(
            CircuitState(from_state), state, _text(reply[_REASON]), gen
        )

    def _from_view(self, now: float) -> Admission | None:
        """Decide from a fresh view, when it can (not half-open)."""
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return self._view
        if state is _OPEN and now < self._open_until:
            next(self._rejected)
            return Admission(None, None, _OPEN, self._open_until - now)
        if state is _FORCED_OPEN:
            next(self._rejected)
            return Admission(None, None, _FORCED_OPEN, None)
        return None

    @staticmethod
    def _retry_after(reply: Sequence[Any]) -> float | None:
        us = int(reply[_RETRY])
        return None if us < 0 else us / _US

    def _admission(self, reply: Sequence[Any], token: str) -> Admission:
        change = self._absorb(reply)
        permit = int(reply[_PERMIT])
        state = CircuitState(_text(reply[_STATE]))
        if permit >= 0 and state is _HALF_OPEN:
            permit = _probe_permit(permit, token)
        return Admission(
            None if permit < 0 else permit,
            change,
            state,
            self._retry_after(reply),
        )

    def _snapshot(self, reply: Sequence[Any]) -> Snapshot:
        change = self._absorb(reply)
        (_, gen, _, _, _, _, oa, op, cf, hf, hs, rj, wc, wf, ws) = reply
        record = BreakerRecord(
            state=CircuitState(_text(reply[_STATE])),
            generation=int(gen),
            opened_at=int(oa) / _US,
            open_period=int(op) / _US,
            consecutive_failures=int(cf),
            half_open_in_flight=int(hf),
            half_open_successes=int(hs),
            rejected=int(rj),
        )
        totals = (int(wc), int(wf), int(ws))
        return Snapshot(record, totals, self._retry_after(reply), change)

    # -- when Redis fails -----------------------------------------------------

    def _down(self, error: BaseException) -> None:
        """Redis failed: distrust the view, leave Redis alone a while."""
        self._synced = self._fresh_until = _NEVER
        self._cooldown.failed(self._breaker.clock.now(), error)

    def _cooling(self) -> bool:
        """Whether Redis failed less than ``retry_interval`` ago."""
        cooldown = self._cooldown
        return cooldown.retry_at is not None and cooldown.blocked(
            self._breaker.clock.now()
        )

    def _last_error(self) -> BaseException:
        error = self._cooldown.last_error
        if error is None:  # pragma: no cover - set with the cooldown
            error = redis.exceptions.ConnectionError("redis is failing")
        return error

    def _failed(
        self,
        ctx: CallContext | None,
        operation: str,
        error: BaseException,
        *,
        cooldown: bool,
    ) -> None:
        """Report a failure (raising under "raise")."""
        report_failure(
            self._breaker,
            ctx,
            BACKEND,
            operation,
            self._policy,
            error,
            cooldown=cooldown,
        )

    def _admit_locally(
        self, ctx: CallContext | None, error: BaseException, *, cooldown: bool
    ) -> Admission:
        """Apply the policy to an admission Redis could not decide."""
        self._failed(ctx, "admit", error, cooldown=cooldown)
        if self._policy != "fail_open":
            raise self._backend_rejection(ctx, error)
        with self._lock:
            fallback = self._local()
            now = self._breaker.clock.now()
            granted, change = fallback.admit(now)
            state = fallback.record.state
            retry_after = fallback.retry_after(now)
        return Admission(
            None if granted is None else -1 - granted,
            _unsequenced(change),
            state,
            retry_after,
        )

    def _backend_rejection(
        self, ctx: CallContext | None, error: BaseException
    ) -> CircuitOpenError:
        """The "fail_closed" rejection: it says Redis is the problem."""
        name = self._breaker.name
        retry_at = self._cooldown.retry_at
        now = self._breaker.clock.now()
        retry_after = 0.0 if retry_at is None else max(0.0, retry_at - now)
        _tally.count_rejection(self._breaker)
        self._breaker._report(
            ctx,
            BreakerRejected,
            breaker=name,
            state=_OPEN.value,
            retry_after=retry_after,
        )
        rejection = unavailable(
            CircuitOpenError(name, retry_after, _OPEN.value), name, BACKEND
        )
        rejection.__cause__ = error
        return rejection

    def _local(self) -> BreakerCore:
        """The fallback breaker, created when an outage starts."""
        fallback = self._fallback
        if fallback is None:
            fallback = self._fallback = BreakerCore(self._config)
        return fallback

    def _record_locally(
        self,
        ctx: CallContext | None,
        operation: str,
        error: BaseException,
        *,
        cooldown: bool,
    ) -> None:
        """Report a lost outcome; recording never raises."""
        with contextlib.suppress(BackendUnavailableError):
            self._failed(ctx, operation, error, cooldown=cooldown)

    def _fallback_outcome(
        self, op: str, permit: int, duration: float
    ) -> Transition | None:
        """Record the outcome of a call the fallback admitted."""
        with self._lock:
            fallback = self._fallback
            if fallback is None:  # Redis came back: the outcome is moot
                return None
            permit = -1 - permit
            now = self._breaker.clock.now()
            if op == "success":
                change = fallback.on_success(permit, duration, now)
            elif op == "failure":
                change = fallback.on_failure(permit, duration, now)
            else:
                fallback.release(permit)
                change = None
        return _unsequenced(change)

    def _local_snapshot(
        self, ctx: CallContext | None, error: BaseException, *, cooldown: bool
    ) -> Snapshot:
        """The view to show when Redis cannot be asked."""
        self._failed(ctx, "poll", error, cooldown=cooldown)
        if self._policy != "fail_open":
            return Snapshot(BreakerRecord(_OPEN), (0, 0, 0), None, None)
        with self._lock:
            fallback = self._local()
            now = self._breaker.clock.now()
            change = fallback.poll(now)
            record = dataclasses.replace(fallback.record)
            totals = fallback.totals(now)
            retry_after = fallback.retry_after(now)
        return Snapshot(record, totals, retry_after, _unsequenced(change))

    def _operate_failed(
        self, ctx: CallContext | None, op: str, error: BaseException
    ) -> None:
        """An operator's command that did not reach Redis: always raise."""
        self._down(error)
        report_failure(self._breaker, ctx, BACKEND, op, "raise", error)

    # -- the decisions, before any I/O ---------------------------------------

    def _decide_here(self, now: float) -> Admission | None:
        """The admission the view (or a concurrent sync) allows, if any."""
        if now - self._synced < self._interval:
            return self._from_view(now)
        if (
            self._syncing
            and self._synced != _NEVER
            and (self._state is _CLOSED or self._state is _DISABLED)
        ):
            return self._view  # another call refreshes the view right now
        return None

    def _batched(self, permit: object, duration: float) -> bool:
        """Count a success in the batch when it cannot trip anything."""
        if permit != self._gen:
            return False
        if self._quiet and duration < self._slow_trips:
            if self._windowed:
                next(self._ok)
                if duration >= self._slow_mark:
                    next(self._slow_ok)
            return True
        return self._state is _DISABLED  # recorded nowhere

    # -- the SharedCore operations (sync) -------------------------------------

    def admit(self, ctx: CallContext | None) -> Admission:
        """Decide whether a call may run (see the module documentation)."""
        now = _real_now()
        if self._open and now < self._fresh_until:  # the hot path
            return self._view
        decision = self._decide_here(now)
        if decision is not None:
            return decision
        if self._cooling():
            return self._admit_locally(ctx, self._last_error(), cooldown=True)
        token = _token()
        self._syncing = True
        try:
            reply = self._run("admit", token=token)
        except BaseException as exc:
            self._orphan(token)  # it may have taken a probe slot
            if not is_backend_failure(exc):
                raise
            self._down(exc)
            return self._admit_locally(ctx, exc, cooldown=False)
        finally:
            self._syncing = False
        return self._admission(reply, token)

    def on_success(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a success (batched when it cannot trip the breaker)."""
        if permit == self._gen and self._quiet and duration < self._slow_trips:
            if self._windowed:  # the hot path: no window, nothing to count
                next(self._ok)
                if duration >= self._slow_mark:
                    next(self._slow_ok)
            return None
        if self._batched(permit, duration):
            return None
        return self._outcome("success", permit, duration, ctx)

    def on_failure(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a failure (sent at once, with the batch before it)."""
        if permit == self._gen and self._state is _DISABLED:
            return None
        return self._outcome("failure", permit, duration, ctx)

    def release(self, permit: object, ctx: CallContext | None) -> None:
        """Free a probe slot (a closed permit holds none: no I/O)."""
        self._outcome("release", permit, 0.0, ctx)

    def _outcome(
        self,
        op: str,
        permit: object,
        duration: float,
        ctx: CallContext | None,
    ) -> Transition | None:
        if not isinstance(permit, int):  # not one of ours: nothing to do
            return None
        if permit < 0:
            return self._fallback_outcome(op, permit, duration)
        gen, token = _split(permit)
        if op == "release" and not token:
            return None
        if self._cooling():
            self._orphan(token)
            self._record_locally(ctx, op, self._last_error(), cooldown=True)
            return None
        try:
            reply = self._run(op, gen, duration, token)
        except BaseException as exc:
            self._orphan(token)
            if not is_backend_failure(exc):
                raise
            self._down(exc)
            self._record_locally(ctx, op, exc, cooldown=False)
            return None
        return self._absorb(reply)

    def operate(self, op: str, ctx: CallContext | None) -> Transition | None:
        """Force open, disable or reset the shared breaker."""
        try:
            reply = self._run(op)
        except Exception as exc:
            if not is_backend_failure(exc):
                raise
            self._operate_failed(ctx, op, exc)
            raise  # pragma: no cover - _operate_failed raised
        return self._absorb(reply)

    def snapshot(self, ctx: CallContext | None) -> Snapshot:
        """Everything, as Redis has it now."""
        if self._cooling():
            return self._local_snapshot(ctx, self._last_error(), cooldown=True)
        try:
            reply = self._run("poll")
        except Exception as exc:
            if not is_backend_failure(exc):
                raise
            self._down(exc)
            return self._local_snapshot(ctx, exc, cooldown=False)
        return self._snapshot(reply)

    # -- the SharedCore operations (asyncio) ----------------------------------

    async def admit_async(self, ctx: CallContext | None) -> Admission:
        """`admit`, with an asyncio client."""
        now = _real_now()
        if self._open and now < self._fresh_until:  # the hot path
            return self._view
        decision = self._decide_here(now)
        if decision is not None:
            return decision
        if self._cooling():
            return self._admit_locally(ctx, self._last_error(), cooldown=True)
        token = _token()
        self._syncing = True
        try:
            reply = await self._run_async("admit", token=token)
        except BaseException as exc:
            self._orphan(token)  # it may have taken a probe slot
            if not is_backend_failure(exc):
                if isinstance(exc, asyncio.CancelledError):
                    await self._give_back()
                raise
            self._down(exc)
            return self._admit_locally(ctx, exc, cooldown=False)
        finally:
            self._syncing = False
        return self._admission(reply, token)

    async def on_success_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_success`, with an asyncio client."""
        if self._batched(permit, duration):
            return None
        return await self._outcome_async("success", permit, duration, ctx)

    async def on_failure_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_failure`, with an asyncio client."""
        if permit == self._gen and self._state is _DISABLED:
            return None
        return await self._outcome_async("failure", permit, duration, ctx)

    async def release_async(
        self, permit: object, ctx: CallContext | None
    ) -> None:
        """`release`, with an asyncio client."""
        await self._outcome_async("release", permit, 0.0, ctx)

    async def _outcome_async(
        self,
        op: str,
        permit: object,
        duration: float,
        ctx: CallContext | None,
    ) -> Transition | None:
        if not isinstance(permit, int):
            return None
        if permit < 0:
            return self._fallback_outcome(op, permit, duration)
        gen, token = _split(permit)
        if op == "release" and not token:
            return None
        if self._cooling():
            self._orphan(token)
            self._record_locally(ctx, op, self._last_error(), cooldown=True)
            return None
        try:
            reply = await self._run_async(op, gen, duration, token)
        except BaseException as exc:
            self._orphan(token)
            if not is_backend_failure(exc):
                if token and isinstance(exc, asyncio.CancelledError):
                    await self._give_back()
                raise
            self._down(exc)
            self._record_locally(ctx, op, exc, cooldown=False)
            return None
        return self._absorb(reply)

    async def operate_async(
        self, op: str, ctx: CallContext | None
    ) -> Transition | None:
        """`operate`, with an asyncio client."""
        try:
            reply = await self._run_async(op)
        except Exception as exc:
            if not is_backend_failure(exc):
                raise
            self._operate_failed(ctx, op, exc)
            raise  # pragma: no cover - _operate_failed raised
        return self._absorb(reply)

    async def snapshot_async(self, ctx: CallContext | None) -> Snapshot:
        """`snapshot`, with an asyncio client."""
        if self._cooling():
            return self._local_snapshot(ctx, self._last_error(), cooldown=True)
        try:
            reply = await self._run_async("poll")
        except Exception as exc:
            if not is_backend_failure(exc):
                raise
            self._down(exc)
            return self._local_snapshot(ctx, exc, cooldown=False)
        return self._snapshot(reply)


def _unsequenced(change: Transition | None) -> Transition | None:
    """
    A fallback transition, with sequence 0 ("unknown").

    Its generation counts local changes, not the shared ones, so it must
    not compete with them in the exporters' newest-state ordering.
    """
    return None if change is None else change._replace(sequence=0)
