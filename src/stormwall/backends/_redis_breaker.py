"""
The Redis breaker store: one circuit breaker shared by many processes.

Layout (``K = {prefix:breaker:name}``, one Redis Cluster hash slot):

- ``K`` is a hash holding the breaker's record (state, generation,
  opened-at, open period, consecutive failures, half-open probes in flight
  and successes, rejections, the probe-slot lease) and its window's
  running totals;
- ``K:w`` is the window: a string of one byte per call for a count window
  (a ring, like `CountWindow`), or a hash of per-bucket counters for a time
  window (like `TimeWindow`).

Each operation (admit, success, failure, release, force_open, disable,
reset, poll) is one run of ``breaker_ops.lua``: the whole state machine of
``stormwall._core._breaker`` in one atomic script, timed by Redis ``TIME``,
loaded once and run with ``EVALSHA`` (redis-py reloads it after
``NOSCRIPT``, e.g. on a restarted server). Both keys expire after ``ttl``
seconds without use, except while forced open or disabled (an operator's
decision does not expire).

Round trips. While the breaker is closed (or disabled), ``_admit`` answers
from this process's cached view, which every script reply refreshes, and
fetches it again when it is older than ``sync_interval``; the success (or
failure) is one script. So a closed success costs one round trip, and an
idle process at most one more per ``sync_interval``. While open or
half-open every admission asks Redis (the probe slots are shared): one round
trip per decision, and one more per outcome.

Staleness bound: a breaker opened by another process rejects calls here
from ``sync_interval`` seconds later at the latest, sooner if a call
finishes here meanwhile (its reply carries the state). Calls admitted in
between run, as calls admitted a moment before a local trip do; their
outcomes are dropped (their permit is stale).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from .. import _validate
from .._breaker import Admission, BreakerStore, Snapshot
from .._clock import DEFAULT_CLOCK
from .._core._breaker import (
    BreakerCore,
    BreakerRecord,
    CircuitState,
    Transition,
)
from .._errors import BackendUnavailableError
from ._common import check_policy, check_prefix, report_failure
from ._redis_common import BACKEND, BACKEND_ERRORS, check_client, hash_tagged


if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from .._breaker import CircuitBreaker
    from .._component import CallContext
    from .._core._breaker import BreakerConfig


__all__ = ["RedisBreakerStore"]

_SCRIPT: Final = (
    resources.files(__package__).joinpath("breaker_ops.lua").read_text()
)

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_DISABLED: Final = CircuitState.DISABLED
_US: Final = 1_000_000
_NEVER: Final = -math.inf
# What the script replies (see breaker_ops.lua): the indexes.
_STATE, _GEN, _PERMIT, _FROM, _REASON, _RETRY = range(6)

# The local clock only measures how old the cached view is; it never takes
# a breaker decision (Redis TIME does), so it is always the real one.
_real_now: Final = DEFAULT_CLOCK.now


def _text(value: object) -> str:
    """A reply string, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


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
    - A transition is reported (``BreakerStateChanged``, ``sequence`` = the
      shared generation) by the process whose call caused it, so exactly
      once across processes; ``BreakerRejected`` by the process rejected.
    - Half-open probe slots are counted in Redis: at most
      ``half_open_max_calls`` probes run at once across all processes. A
      slot held by a process that died is given back ``probe_timeout``
      seconds after the last probe was admitted.
    - While closed, admission answers from a view at most ``sync_interval``
      old (see the module documentation): the staleness bound.

    When Redis fails (connection refused, timeout, ...), a
    `stormwall.events.BackendError` is reported and ``on_backend_error``
    decides each admission:

    - ``"fail_open"`` (default): decide locally with an in-process breaker
      of the same configuration, fresh (closed) when the outage starts, on
      the breaker's own clock. The service keeps running through a Redis
      outage and is still protected from a dependency failing at the same
      time (its transitions are reported with ``sequence=0``).
    - ``"fail_closed"``: reject (`CircuitOpenError` with state ``"open"``
      and ``retry_after=None``, reported as ``BreakerRejected`` too).
    - ``"raise"``: raise `BackendUnavailableError`.

    Recording an outcome never raises: if Redis fails then, the outcome is
    lost and a ``BackendError`` is reported. ``force_open``, ``disable``
    and ``reset`` raise `BackendUnavailableError` whatever the policy (an
    operator's command must not be dropped silently); ``state``,
    ``retry_after`` and ``statistics`` answer from the local view
    (``"fail_open"``: the in-process breaker, ``"fail_closed"``: open)
    unless the policy is ``"raise"``. Every operation tries Redis again, so
    recovery needs no restart. Give the client a short retry policy and
    socket timeout (e.g. ``retry=Retry(NoBackoff(), 1)``,
    ``socket_timeout=0.1``): while Redis is down, each call waits for them.

    Args:
        client: A ``redis.Redis`` (for `ResilientExecutor`) or
            ``redis.asyncio.Redis`` (for `AsyncResilientExecutor`), or their
            cluster twins.
        prefix: The namespace of the keys (``{prefix:breaker:name}``).
        on_backend_error: ``"fail_open"``, ``"fail_closed"`` or ``"raise"``.
        sync_interval: Seconds a closed breaker's cached view is trusted.
            It bounds how long a breaker opened elsewhere keeps admitting
            calls here, and costs an idle process one round trip per
            interval. 0.05-0.25 s suits most services: well below a human's
            notice, and a busy process refreshes on every call anyway.
        probe_timeout: Seconds after the last probe admission after which
            probe slots still taken are presumed lost with a dead process
            and given back. Choose above your slowest call.
        ttl: Seconds of disuse after which a breaker's keys expire (it then
            starts over, closed); never less than twice its longest open
            period or time window.

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
        "_script",
        "_sync_interval",
        "_ttl",
    )

    def __init__(
        self,
        client: object,
        *,
        prefix: str = "stormwall",
        on_backend_error: str = "fail_open",
        sync_interval: float = 0.1,
        probe_timeout: float = 60.0,
        ttl: float = 86400.0,
    ) -> None:
        self._is_async = check_client("client", client)
        self._prefix = check_prefix(prefix)
        self._policy = check_policy(on_backend_error)
        self._sync_interval = _validate.positive(
            "sync_interval", sync_interval, seconds=True
        )
        self._probe_timeout = _validate.positive(
            "probe_timeout", probe_timeout, seconds=True
        )
        self._ttl = _validate.positive("ttl", ttl, seconds=True)
        redis_client: Any = client
        self._client = redis_client
        # One Script for every breaker of this store: loaded once per
        # server, run by SHA (redis-py handles NOSCRIPT).
        self._script: Any = redis_client.register_script(_SCRIPT)

    def __repr__(self) -> str:
        return (
            f"<RedisBreakerStore prefix={self._prefix!r} "
            f"on_backend_error={self._policy!r}>"
        )

    def _bind(
        self, breaker: CircuitBreaker, config: BreakerConfig
    ) -> _RedisBreakerCore:
        """The shared core of ``breaker``, keyed by its name."""
        return _RedisBreakerCore(self, breaker, config)


def _config_args(
    config: BreakerConfig, ttl: float, probe_timeout: float
) -> tuple[str | int | float, ...]:
    """The configuration as breaker_ops.lua reads it (ARGV[4:])."""
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


class _RedisBreakerCore:
    """
    One breaker's `stormwall._breaker.SharedCore` over Redis.

    Thread-safe: the cached view is a few attributes replaced together by
    each reply (a reply older than the view is ignored, by generation), and
    the local fallback breaker has its own lock.
    """

    __slots__ = (
        "_args",
        "_breaker",
        "_config",
        "_fallback",
        "_gen",
        "_interval",
        "_keys",
        "_lock",
        "_policy",
        "_script",
        "_state",
        "_synced",
        "is_async",
    )

    def __init__(
        self,
        store: RedisBreakerStore,
        breaker: CircuitBreaker,
        config: BreakerConfig,
    ) -> None:
        self.is_async = store._is_async
        self._breaker = breaker
        self._config = config
        self._policy = store._policy
        self._script = store._script
        self._interval = store._sync_interval
        base = hash_tagged(store._prefix, "breaker", breaker.name)
        self._keys = (base, base + ":w")
        self._args = _config_args(config, store._ttl, store._probe_timeout)
        # The view from the last reply; _synced is when it came (real
        # monotonic seconds), _NEVER when it must not be trusted.
        self._state = _CLOSED
        self._gen = -1
        self._synced = _NEVER
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

    # -- replies --------------------------------------------------------------

    def _call(self, op: str, permit: object = 0, duration: float = 0.0) -> Any:
        """Run the script (sync client), returning its raw reply."""
        return self._script(
            keys=self._keys, args=(op, permit, duration, *self._args)
        )

    def _call_async(
        self, op: str, permit: object = 0, duration: float = 0.0
    ) -> Awaitable[Any]:
        """Run the script (asyncio client)."""
        return self._script(  # type: ignore[no-any-return]
            keys=self._keys, args=(op, permit, duration, *self._args)
        )

    def _absorb(self, reply: Sequence[Any]) -> Transition | None:
        """Refresh the view from a reply; return the transition it made."""
        state = CircuitState(_text(reply[_STATE]))
        gen = int(reply[_GEN])
        # Replies of concurrent calls may arrive out of order: keep the
        # newest state (every change bumps the generation).
        if gen >= self._gen:
            self._state = state
            self._gen = gen
        self._synced = _real_now()
        self._fallback = None  # Redis answers again: back to shared state
        from_state = _text(reply[_FROM])
        if not from_state:
            return None
        return Transition(
            CircuitState(from_state), state, _text(reply[_REASON]), gen
        )

    @staticmethod
    def _retry_after(reply: Sequence[Any]) -> float | None:
        us = int(reply[_RETRY])
        return None if us < 0 else us / _US

    def _admission(self, reply: Sequence[Any]) -> Admission:
        change = self._absorb(reply)
        permit = int(reply[_PERMIT])
        return Admission(
            None if permit < 0 else permit,
            change,
            CircuitState(_text(reply[_STATE])),
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

    def _failed(
        self, ctx: CallContext | None, operation: str, error: BaseException
    ) -> None:
        """Report a failure (raising under "raise"); distrust the view."""
        self._synced = _NEVER
        report_failure(
            self._breaker, ctx, BACKEND, operation, self._policy, error
        )

    def _admit_locally(
        self, ctx: CallContext | None, error: BaseException
    ) -> Admission:
        """Apply the policy to an admission Redis could not decide."""
        self._failed(ctx, "admit", error)
        if self._policy != "fail_open":
            return Admission(None, None, _OPEN, None)
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

    def _local(self) -> BreakerCore:
        """The fallback breaker, created when an outage starts."""
        fallback = self._fallback
        if fallback is None:
            fallback = self._fallback = BreakerCore(self._config)
        return fallback

    def _record_locally(
        self, ctx: CallContext | None, operation: str, error: BaseException
    ) -> None:
        """Report a lost outcome; recording never raises."""
        with contextlib.suppress(BackendUnavailableError):
            self._failed(ctx, operation, error)

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
        self, ctx: CallContext | None, error: BaseException
    ) -> Snapshot:
        """The view to show when Redis cannot be asked."""
        self._failed(ctx, "poll", error)
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
        self._synced = _NEVER
        report_failure(self._breaker, ctx, BACKEND, op, "raise", error)

    # -- the SharedCore operations (sync) -------------------------------------

    def _fresh(self) -> Admission | None:
        """Admit from the cached view when it is closed and recent enough."""
        state = self._state
        if (state is _CLOSED or state is _DISABLED) and (
            _real_now() - self._synced < self._interval
        ):
            return Admission(self._gen, None, state, 0.0)
        return None

    def admit(self, ctx: CallContext | None) -> Admission:
        """Decide whether a call may run (see the module documentation)."""
        decision = self._fresh()
        if decision is not None:
            return decision
        try:
            reply = self._call("admit")
        except BACKEND_ERRORS as exc:
            return self._admit_locally(ctx, exc)
        return self._admission(reply)

    def on_success(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a success."""
        return self._outcome("success", permit, duration, ctx)

    def on_failure(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a failure."""
        return self._outcome("failure", permit, duration, ctx)

    def release(self, permit: object, ctx: CallContext | None) -> None:
        """Free a probe slot."""
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
        try:
            reply = self._call(op, permit, duration)
        except BACKEND_ERRORS as exc:
            self._record_locally(ctx, op, exc)
            return None
        return self._absorb(reply)

    def operate(self, op: str, ctx: CallContext | None) -> Transition | None:
        """Force open, disable or reset the shared breaker."""
        try:
            reply = self._call(op)
        except BACKEND_ERRORS as exc:
            self._operate_failed(ctx, op, exc)
            raise  # pragma: no cover - _operate_failed raised
        return self._absorb(reply)

    def snapshot(self, ctx: CallContext | None) -> Snapshot:
        """Everything, as Redis has it now."""
        try:
            reply = self._call("poll")
        except BACKEND_ERRORS as exc:
            return self._local_snapshot(ctx, exc)
        return self._snapshot(reply)

    # -- the SharedCore operations (asyncio) ----------------------------------

    async def admit_async(self, ctx: CallContext | None) -> Admission:
        """`admit`, with an asyncio client."""
        decision = self._fresh()
        if decision is not None:
            return decision
        try:
            reply = await self._call_async("admit")
        except BACKEND_ERRORS as exc:
            return self._admit_locally(ctx, exc)
        return self._admission(reply)

    async def on_success_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_success`, with an asyncio client."""
        return await self._outcome_async("success", permit, duration, ctx)

    async def on_failure_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_failure`, with an asyncio client."""
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
        try:
            reply = await self._call_async(op, permit, duration)
        except BACKEND_ERRORS as exc:
            self._record_locally(ctx, op, exc)
            return None
        return self._absorb(reply)

    async def operate_async(
        self, op: str, ctx: CallContext | None
    ) -> Transition | None:
        """`operate`, with an asyncio client."""
        try:
            reply = await self._call_async(op)
        except BACKEND_ERRORS as exc:
            self._operate_failed(ctx, op, exc)
            raise  # pragma: no cover - _operate_failed raised
        return self._absorb(reply)

    async def snapshot_async(self, ctx: CallContext | None) -> Snapshot:
        """`snapshot`, with an asyncio client."""
        try:
            reply = await self._call_async("poll")
        except BACKEND_ERRORS as exc:
            return self._local_snapshot(ctx, exc)
        return self._snapshot(reply)


def _unsequenced(change: Transition | None) -> Transition | None:
    """
    A fallback transition, with sequence 0 ("unknown").

    Its generation counts local changes, not the shared ones, so it must
    not compete with them in the exporters' newest-state ordering.
    """
    return None if change is None else change._replace(sequence=0)
