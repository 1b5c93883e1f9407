"""
The circuit breaker: a thread-safe shell around the sans-I/O core.

The rules and the transition table live in ``stormwall._core._breaker``; this
module validates the configuration, classifies exceptions, reads the clock,
holds the lock and reports events. The lock is held only for the core's few
lines of arithmetic: never while user code (a ``record_on`` predicate) runs
and never while an event is emitted, so a listener may call back into the
breaker.

A breaker given ``store=`` (a `BreakerStore`) is built as a
`_SharedCircuitBreaker` instead: the same public API and executor methods,
each decided by the store's `SharedCore` (one round trip) rather than a local
`BreakerCore`, plus ``*_async`` twins for a store with an asyncio client.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from . import _tally, _validate
from ._component import CallContext, Component
from ._core._breaker import (
    BreakerConfig,
    BreakerCore,
    BreakerRecord,
    CircuitState,
    Transition,
)
from ._core._health import MAX_WINDOW_SIZE
from ._errors import CircuitOpenError, ConfigError
from ._events import BreakerRejected, BreakerStateChanged
from ._store import Admission, BreakerStore, SharedCore, Snapshot


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus
    from ._clock import Clock


__all__ = [
    "Admission",
    "BreakerStatistics",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitState",
    "SharedCore",
    "Snapshot",
]

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """
    A snapshot of a circuit breaker.

    Attributes:
        state: The state now (a due OPEN -> HALF_OPEN move is made first).
        failure_rate: Failed calls / calls in the window, or ``None`` when
            the breaker keeps no window or the window holds fewer than
            ``minimum_calls`` calls (no rate is computed then).
        slow_call_rate: Slow calls / calls in the window, or ``None`` on the
            same terms (and when ``slow_call_duration`` is not set).
        calls_in_window: Calls the window holds now (0 without a window).
        failures_in_window: Recorded failures among them.
        slow_calls_in_window: Slow calls among them (successes and failures).
        consecutive_failures: Recorded failures in a row since the last
            success, close or reset.
        rejected: Calls rejected since the breaker was created (not cleared
            by `CircuitBreaker.reset`).
        opened_at: Clock time the breaker last opened or was forced open,
            while it is open, half-open or forced open; else ``None``.
        open_until: Clock time the current open period ends (half-open from
            then on), while open; else ``None``.
        open_period: Length of the current (or, while half-open, the last)
            open period in seconds; it grows with ``max_recovery_timeout``.
            ``None`` when closed, forced open or disabled.
        half_open_in_flight: Probe calls running now.
        half_open_successes: Successful probes in this half-open period.
        retry_after: `CircuitBreaker.retry_after` at the same moment.
    """

    state: CircuitState
    failure_rate: float | None
    slow_call_rate: float | None
    calls_in_window: int
    failures_in_window: int
    slow_calls_in_window: int
    consecutive_failures: int
    rejected: int
    opened_at: float | None
    open_until: float | None
    open_period: float | None
    half_open_in_flight: int
    half_open_successes: int
    retry_after: float | None


def _always(_: BaseException) -> bool:
    return True


class CircuitBreaker(Component):
    """
    Fail fast while a dependency is failing, and probe it until it recovers.

    The breaker is CLOSED (calls pass, outcomes are recorded) until a rule
    trips it: ``failure_threshold`` recorded failures in a row, or, when
    configured, a failure rate or slow-call rate over a sliding window. It
    then stays OPEN (calls fail at once with `CircuitOpenError`) for
    ``recovery_timeout`` seconds, then turns HALF_OPEN and lets
    ``half_open_max_calls`` probes through at a time: ``success_threshold``
    successful probes close it, the first failed probe opens it again.

    Every transition is reported as `BreakerStateChanged` and every
    rejection as `BreakerRejected`. One breaker serves the sync and async
    executors alike, and is thread-safe.

    Args:
        name: The name in events, errors and metric labels (default
            ``"circuit_breaker"``); give each breaker its own.
        failure_threshold: Recorded failures in a row that trip the breaker;
            ``None`` turns the rule off. Low values (3-5) react fast to a
            hard-down dependency; a flaky one that fails now and then needs a
            rate rule instead, or it will trip on bad luck.
        recovery_timeout: Seconds (or a `timedelta`) the breaker stays open
            before probing. Choose about how long the dependency takes to
            come back (a restart, a failover): too short and the probes hit
            it while it is still down, too long and you fail calls that
            would have worked.
        half_open_max_calls: Probes allowed in flight at once while
            half-open. 1 is the gentlest on a recovering dependency; raise it
            when one slow probe would stall a busy caller.
        success_threshold: Successful probes needed to close. 1 closes on
            the first success; 2-3 avoid closing on a lucky call.
        failure_rate_threshold: Trip when failed / calls in the window is at
            least this fraction in (0, 1], e.g. ``0.5``; ``None`` (default)
            turns the rule off. Set it for dependencies that fail partially.
        window_size: How many of the latest calls the rate rules look at
            (a count-based window). Larger is steadier but slower to react;
            pick roughly the calls of 10-60 s of normal traffic. At most
            1,000,000: the window keeps one byte per call, allocated when
            the breaker is built; for a longer horizon use
            ``window_duration``. Ignored when ``window_duration`` is set.
        window_duration: Seconds (or a `timedelta`) of calls the rate rules
            look at instead (a time-based window, exact to 1/20 of its
            length, at least 1 ms); better than a count for bursty traffic,
            and its memory is fixed whatever the length.
        minimum_calls: No rate is computed while the window holds fewer
            calls, so two failures out of three calls at night do not trip
            it. Capped at ``window_size`` for a count window.
        slow_call_duration: Seconds (or a `timedelta`) from which a call
            counts as slow, whether it succeeded or failed; ``None`` means
            no call is slow. Pick a little above the latency you promise.
        slow_call_rate_threshold: Trip when slow / calls in the window is at
            least this fraction in (0, 1]; needs ``slow_call_duration``.
            While it is set, a slow probe in half-open counts as failed.
        max_recovery_timeout: When set, each re-trip from half-open doubles
            the open period, up to this many seconds (at least
            ``recovery_timeout``); the growth resets once the breaker closes.
            Use it to stop probing a dependency that stays down long.
        record_on: Exception types, or a predicate taking the exception,
            that count as failures (default: every `Exception`). An exception
            neither recorded nor ignored counts as a success: the dependency
            answered, the answer was just an error of the caller's making
            (a 404, a validation error).
        ignore_on: Exception types, or a predicate, that count for nothing;
            wins over ``record_on``. A probe that raises one frees its slot.
        clock: The clock to keep time with (default: the executor's, or the
            real one standalone).
        bus: The bus to report on (default: the executor's, or
            `stormwall.default_bus` standalone).
        store: A store that shares this breaker's state between
            processes (``stormwall.backends.redis.RedisBreakerStore``),
            under the breaker's name: every process whose breaker has the
            same name and store prefix sees one breaker. ``None`` (default)
            keeps the state in this process. A store-backed breaker keeps
            time with the store's clock, not ``clock=`` (a `MockClock`
            cannot drive it); see the store's documentation for how stale
            its view may be and what happens when the store is unreachable.

    Raises:
        ConfigError: A parameter is outside its domain, naming it. Refused
            combinations: ``max_recovery_timeout < recovery_timeout``;
            ``slow_call_rate_threshold`` without ``slow_call_duration``; and
            no rule at all (``failure_threshold``,
            ``failure_rate_threshold`` and ``slow_call_rate_threshold`` all
            ``None``), since such a breaker could never trip: use
            ``disable()`` or `force_open` for a manual switch instead.

    ``BaseException``s that are not ``Exception``s (cancellation,
    ``KeyboardInterrupt``) are never recorded: they only free the call's
    probe slot.
    """

    __slots__ = (
        "_async_only",
        "_config",
        "_core",
        "_ignore",
        "_lock",
        "_plain",
        "_record",
        "_record_on",
        "_shared",
        "_timed",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_threshold: int | None = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_rate_threshold: float | None = None,
        window_size: int = 100,
        window_duration: float | None = None,
        minimum_calls: int = 10,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float | None = None,
        max_recovery_timeout: float | None = None,
        record_on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], object] = (Exception,),
        ignore_on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], object] = (),
        clock: Clock | None = None,
        bus: EventBus | None = None,
        store: object = None,
    ) -> None:
        Component.__init__(self, "circuit_breaker", name, clock, bus)
        self._config = _config(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            failure_rate_threshold=failure_rate_threshold,
            window_size=window_size,
            window_duration=window_duration,
            minimum_calls=minimum_calls,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            max_recovery_timeout=max_recovery_timeout,
        )
        self._record_on: Callable[[BaseException], bool] = (
            _always
            if record_on == (Exception,)
            else _validate.exception_matcher("record_on", record_on)
        )
        self._ignore: Callable[[BaseException], bool] | None = (
            None
            if ignore_on == ()
            else _validate.exception_matcher("ignore_on", ignore_on)
        )
        self._lock = threading.Lock()
        # Whether the executors must await the _*_async methods (an asyncio
        # store client); False for a local breaker.
        self._async_only = False
        if store is not None:
            self._share(store)  # sets _timed: the store says what it reads
            return
        # Whether outcomes need the call's duration (only the slow-call rule
        # reads it): the executors skip two clock reads per attempt if not.
        self._timed = self._config.slow_call_duration is not None
        self._core = BreakerCore(self._config)
        self._record = self._core.record
        # Without a window a closed success only resets the consecutive
        # count, which the shell does inline (the hot path).
        self._plain = self._core.window is None

    _timed_state: ClassVar[tuple[str, ...]] = ("_core", "_record")

    def _fresh_state(self) -> None:
        self._core = BreakerCore(self._config)
        self._record = self._core.record

    def _share(self, store: object) -> None:
        """Become a `_SharedCircuitBreaker` over ``store``."""
        if not isinstance(store, BreakerStore):
            raise ConfigError(
                "store",
                "expected a breaker store such as "
                "stormwall.backends.redis.RedisBreakerStore, got "
                f"{type(store).__name__}",
            )
        if type(self) is not CircuitBreaker:
            raise ConfigError(
                "store",
                f"{type(self).__name__} subclasses CircuitBreaker; only "
                "CircuitBreaker itself takes a store",
            )
        # The class decides which implementation runs, so the local hot
        # path never tests "is there a store?".
        self.__class__ = _SharedCircuitBreaker
        shared = store._bind(self, self._config)
        self._shared = shared
        self._async_only = shared.is_async
        self._timed = shared.timed

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self._name!r} state={self._record.state.value}>"
        )

    # -- public API -----------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """
        The state now.

        An open breaker whose open period has ended turns half-open here
        (and reports it), so the answer is never stale.
        """
        state = self._record.state
        if state is not _OPEN:
            return state
        with self._lock:
            change = self._core.poll(self._clock.now())
            state = self._record.state
        if change is not None:
            self._announce(change, None)
        return state

    @property
    def retry_after(self) -> float | None:
        """
        Seconds until a call would be admitted, as far as that is known.

        ``0.0`` when closed, disabled or half-open with a free probe slot;
        the rest of the open period when open; ``None`` when forced open
        (until somebody resets it) or when every half-open probe slot is
        busy (until a probe finishes).
        """
        with self._lock:
            now = self._clock.now()
            change = self._core.poll(now)
            retry_after = self._core.retry_after(now)
        if change is not None:
            self._announce(change, None)
        return retry_after

    def force_open(self) -> None:
        """
        Reject every call until `reset` (or `disable`) is called.

        Reports ``BreakerStateChanged(reason="forced_open")``; a no-op when
        already forced open. `CircuitOpenError.retry_after` is ``None``
        meanwhile.
        """
        with self._lock:
            change = self._core.force_open(self._clock.now())
        if change is not None:
            self._announce(change, None)

    def disable(self) -> None:
        """
        Let every call through and record nothing until `reset`.

        Reports ``BreakerStateChanged(reason="disabled")``; a no-op when
        already disabled.
        """
        with self._lock:
            change = self._core.disable(self._clock.now())
        if change is not None:
            self._announce(change, None)

    def reset(self) -> None:
        """
        Return to a fresh CLOSED state, forgetting every recorded outcome.

        Reports ``BreakerStateChanged(reason="reset")`` unless the breaker
        was already closed (then it only clears the window and counters).
        Outcomes of calls admitted before the reset are not recorded.
        """
        with self._lock:
            change = self._core.reset(self._clock.now())
        if change is not None:
            self._announce(change, None)

    def statistics(self) -> BreakerStatistics:
        """
        Return a snapshot of the breaker (see `BreakerStatistics`).

        A due OPEN -> HALF_OPEN move is made (and reported) first.
        """
        core = self._core
        with self._lock:
            now = self._clock.now()
            change = core.poll(now)
            stats = _statistics(
                self._config,
                self._record,
                core.totals(now),
                core.retry_after(now),
            )
        if change is not None:
            self._announce(change, None)
        return stats

    async def force_open_async(self) -> None:
        """
        `force_open`, for a breaker whose store has an asyncio client.

        Works on every breaker; on a local one it is `force_open`.
        """
        self.force_open()

    async def disable_async(self) -> None:
        """`disable`, for a breaker whose store has an asyncio client."""
        self.disable()

    async def reset_async(self) -> None:
        """`reset`, for a breaker whose store has an asyncio client."""
        self.reset()

    async def statistics_async(self) -> BreakerStatistics:
        """`statistics`, for a breaker whose store has an asyncio client."""
        return self.statistics()

    # -- what the executors call (docs/internals.md) --------------------------

    def _closed_record(self) -> BreakerRecord | None:
        """
        The record the pipeline may read for a quick, lock-free admission.

        While ``record.state`` is closed, ``record.generation`` (read first)
        is a permit, as `_admit` would return it, holding no probe slot and
        reporting nothing. None: every admission goes through `_admit`.
        """
        return self._record

    def _admit(self, ctx: CallContext | None) -> int:
        """
        Admit one call, or refuse it.

        Returns:
            An opaque permit to hand to exactly one of `_on_success`,
            `_on_failure` or `_release`.

        Raises:
            CircuitOpenError: The breaker is open, forced open, or half-open
                with every probe slot busy (reported as `BreakerRejected`).
        """
        rec = self._record
        # Lock-free fast path. Transitions write the state before bumping
        # the generation, so a CLOSED state read after the generation means
        # the permit is either current or stale, and a stale permit's
        # outcome is dropped: never a wrong admission to a newer state.
        permit = rec.generation
        if rec.state is _CLOSED:
            return permit
        with self._lock:
            now = self._clock.now()
            granted, change = self._core.admit(now)
            if granted is None:
                state = rec.state
                retry_after = self._core.retry_after(now)
        if change is not None:
            try:
                self._announce(change, ctx)
            except BaseException:
                # An interrupt inside a handler: the caller never gets the
                # permit, so free its probe slot here.
                if granted is not None:
                    self._release(granted)
                raise
        if granted is not None:
            return granted
        self._report(
            ctx,
            BreakerRejected,
            breaker=self._name,
            state=state.value,
            retry_after=retry_after,
        )
        raise CircuitOpenError(self._name, retry_after, state.value)

    def _on_success(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> None:
        """Record a successful call that ran ``duration`` seconds."""
        rec = self._record
        # Lock-free fast path: with no window, a current closed success only
        # zeroes the consecutive count, a no-op when it is zero already. Any
        # transition racing these reads bumps the generation, so the success
        # then counts as landing after it (a stale permit: dropped, as the
        # locked path would); a failure racing them counts as after it too.
        if (
            self._plain
            and not rec.consecutive_failures
            and rec.state is _CLOSED
            and permit == rec.generation
        ):
            return
        with self._lock:
            if (
                self._plain
                and permit == rec.generation
                and rec.state is _CLOSED
            ):
                rec.consecutive_failures = 0
                return
            change = self._core.on_success(permit, duration, self._clock.now())
        if change is not None:
            self._announce(change, ctx)

    def _on_failure(
        self,
        permit: object,
        error: BaseException | None,
        duration: float,
        ctx: CallContext | None,
    ) -> None:
        """
        Record a call that raised ``error`` (``None``: a rejected result).

        ``error`` is classified first, outside the lock: not an `Exception`
        or ignored -> released; not recorded -> a success. If a user
        predicate raises, the permit is released and the error propagates.
        """
        if error is not None:
            try:
                if not isinstance(error, Exception) or (
                    self._ignore is not None and self._ignore(error)
                ):
                    self._release(permit)
                    return
                recorded = self._record_on(error)
            except BaseException:
                self._release(permit)
                raise
            if not recorded:
                self._on_success(permit, duration, ctx)
                return
        with self._lock:
            change = self._core.on_failure(permit, duration, self._clock.now())
        if change is not None:
            self._announce(change, ctx)

    def _release(self, permit: object) -> None:
        """Free the call's probe slot, if it holds one; record nothing."""
        with self._lock:
            self._core.release(permit)

    # The executors await these when ``_async_only`` is true (a store with
    # an asyncio client); on a local breaker they are the sync methods.

    async def _admit_async(self, ctx: CallContext | None) -> int:
        """`_admit`, awaitable."""
        return self._admit(ctx)

    async def _on_success_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> None:
        """`_on_success`, awaitable."""
        self._on_success(permit, duration, ctx)

    async def _on_failure_async(
        self,
        permit: object,
        error: BaseException | None,
        duration: float,
        ctx: CallContext | None,
    ) -> None:
        """`_on_failure`, awaitable."""
        self._on_failure(permit, error, duration, ctx)

    async def _release_async(self, permit: object) -> None:
        """`_release`, awaitable."""
        self._release(permit)

    def _rejecting(self) -> bool:
        """Whether the breaker is open or forced open right now."""
        state = self._record.state
        if state is _FORCED_OPEN:
            return True
        if state is not _OPEN:
            return False
        return self.state is _OPEN

    # -- helpers --------------------------------------------------------------

    def _announce(self, change: Transition, ctx: CallContext | None) -> None:
        """Report one transition (never under the lock)."""
        _tally.count_transition(
            self, change.from_state.value, change.to_state.value
        )
        self._report(
            ctx,
            BreakerStateChanged,
            breaker=self._name,
            from_state=change.from_state.value,
            to_state=change.to_state.value,
            reason=change.reason,
            sequence=change.sequence,
        )


_RELEASE: Final = "release"
_SUCCESS: Final = "success"
_FAILURE: Final = "failure"


class _SharedCircuitBreaker(CircuitBreaker):
    """
    A `CircuitBreaker` whose state lives in a store (see `BreakerStore`).

    `CircuitBreaker.__init__` turns a breaker given ``store=`` into one of
    these. Each decision is one call to its `SharedCore`, made without the
    breaker's lock (the store is atomic; a lock held across a round trip
    would serialise every thread's calls). A transition the core returns
    was made by this process's request, so each is announced exactly once
    across all processes.

    With an asyncio store client nothing here may block: the sync public
    API raises `TypeError` pointing at its ``*_async`` twin, except
    `state` and `_rejecting`, which answer from the store's last reply.
    """

    __slots__ = ()

    # Its time is the store's (Redis server time), not a clock's.
    _rebindable: ClassVar[bool] = False

    def __repr__(self) -> str:
        state = self._shared.cached_state().value
        return f"<CircuitBreaker {self._name!r} state={state} (shared)>"

    def _closed_record(self) -> None:
        """Every decision is the store's: never a quick admission."""
        return

    def _blocking(self, method: str) -> SharedCore:
        """The core, or `TypeError` when its client is asyncio."""
        shared = self._shared
        if shared.is_async:
            msg = (
                f"circuit breaker {self._name!r} keeps its state through an "
                f"asyncio client: use 'await breaker.{method}_async()'"
            )
            raise TypeError(msg)
        return shared

    def _noted(self, snap: Snapshot) -> Snapshot:
        """Announce the move ``snap`` made, if any."""
        if snap.change is not None:
            self._announce(snap.change, None)
        return snap

    # -- public API -----------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """
        The state now, as the store sees it (one round trip).

        With an asyncio store client: the state as of the store's last
        reply to this process (no I/O), which may be up to the store's
        ``sync_interval`` old while calls flow, or older when idle.
        """
        shared = self._shared
        if shared.is_async:
            return shared.cached_state()
        return self._noted(shared.snapshot(None)).record.state

    @property
    def retry_after(self) -> float | None:
        """Seconds until a call would be admitted (one round trip)."""
        shared = self._blocking("statistics")
        return self._noted(shared.snapshot(None)).retry_after

    def force_open(self) -> None:
        """Force the shared breaker open (see `CircuitBreaker.force_open`)."""
        self._apply(self._blocking("force_open").operate("force_open", None))

    def disable(self) -> None:
        """Disable the shared breaker (see `CircuitBreaker.disable`)."""
        self._apply(self._blocking("disable").operate("disable", None))

    def reset(self) -> None:
        """Reset the shared breaker (see `CircuitBreaker.reset`)."""
        self._apply(self._blocking("reset").operate("reset", None))

    def statistics(self) -> BreakerStatistics:
        """
        Return a snapshot of the shared breaker (one round trip).

        ``opened_at`` and ``open_until`` are in the store's clock (Redis:
        Unix seconds of the server), not the breaker's.
        """
        snap = self._noted(self._blocking("statistics").snapshot(None))
        return _statistics(
            self._config, snap.record, snap.totals, snap.retry_after
        )

    async def _operate_async(
        self, operation: str, blocking: Callable[[], None]
    ) -> None:
        """An operator action, awaited on an asyncio store."""
        shared = self._shared
        if not shared.is_async:
            blocking()
            return
        self._apply(await shared.operate_async(operation, None))

    async def force_open_async(self) -> None:
        """`force_open`, awaiting the store."""
        await self._operate_async("force_open", self.force_open)

    async def disable_async(self) -> None:
        """`disable`, awaiting the store."""
        await self._operate_async("disable", self.disable)

    async def reset_async(self) -> None:
        """`reset`, awaiting the store."""
        await self._operate_async("reset", self.reset)

    async def statistics_async(self) -> BreakerStatistics:
        """`statistics`, awaiting the store."""
        shared = self._shared
        if not shared.is_async:
            return self.statistics()
        snap = self._noted(await shared.snapshot_async(None))
        return _statistics(
            self._config, snap.record, snap.totals, snap.retry_after
        )

    # -- what the executors call ----------------------------------------------

    def _admit(self, ctx: CallContext | None) -> int:
        """`CircuitBreaker._admit`, decided by the store."""
        decision = self._blocking("_admit").admit(ctx)
        if decision.change is not None:
            try:
                self._announce(decision.change, ctx)
            except BaseException:
                if decision.permit is not None:
                    self._release(decision.permit)
                raise
        return self._permit(decision, ctx)

    def _on_success(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> None:
        """`CircuitBreaker._on_success`, recorded in the store."""
        shared = self._blocking("_on_success")
        self._apply(shared.on_success(permit, duration, ctx), ctx)

    def _on_failure(
        self,
        permit: object,
        error: BaseException | None,
        duration: float,
        ctx: CallContext | None,
    ) -> None:
        """`CircuitBreaker._on_failure`, recorded in the store."""
        shared = self._blocking("_on_failure")
        try:
            verdict = self._verdict(error)
        except BaseException:
            self._release(permit)
            raise
        if verdict is _RELEASE:
            self._release(permit)
        elif verdict is _SUCCESS:
            self._on_success(permit, duration, ctx)
        else:
            self._apply(shared.on_failure(permit, duration, ctx), ctx)

    def _release(self, permit: object) -> None:
        """`CircuitBreaker._release`, in the store."""
        self._blocking("_release").release(permit, None)

    async def _admit_async(self, ctx: CallContext | None) -> int:
        """`_admit`, awaiting the store."""
        shared = self._shared
        if not shared.is_async:
            return self._admit(ctx)
        decision = await shared.admit_async(ctx)
        if decision.change is not None:
            try:
                self._announce(decision.change, ctx)
            except BaseException:
                if decision.permit is not None:
                    await self._release_async(decision.permit)
                raise
        return self._permit(decision, ctx)

    async def _on_success_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> None:
        """`_on_success`, awaiting the store."""
        shared = self._shared
        if not shared.is_async:
            self._on_success(permit, duration, ctx)
            return
        self._apply(await shared.on_success_async(permit, duration, ctx), ctx)

    async def _on_failure_async(
        self,
        permit: object,
        error: BaseException | None,
        duration: float,
        ctx: CallContext | None,
    ) -> None:
        """`_on_failure`, awaiting the store."""
        shared = self._shared
        if not shared.is_async:
            self._on_failure(permit, error, duration, ctx)
            return
        try:
            verdict = self._verdict(error)
        except BaseException:
            await self._release_async(permit)
            raise
        if verdict is _RELEASE:
            await self._release_async(permit)
        elif verdict is _SUCCESS:
            await self._on_success_async(permit, duration, ctx)
        else:
            change = await shared.on_failure_async(permit, duration, ctx)
            self._apply(change, ctx)

    async def _release_async(self, permit: object) -> None:
        """`_release`, awaiting the store."""
        shared = self._shared
        if not shared.is_async:
            self._release(permit)
            return
        await shared.release_async(permit, None)

    def _rejecting(self) -> bool:
        """
        Whether the breaker is open or forced open, as last seen.

        No I/O: it answers from the store's last reply, so an open period
        that ended since then still counts as open (the next `_admit`
        asks the store).
        """
        state = self._shared.cached_state()
        return state is _OPEN or state is _FORCED_OPEN

    # -- helpers --------------------------------------------------------------

    def _verdict(self, error: BaseException | None) -> str:
        """How an outcome counts (a user predicate may raise)."""
        if error is None:
            return _FAILURE
        if not isinstance(error, Exception) or (
            self._ignore is not None and self._ignore(error)
        ):
            return _RELEASE
        return _FAILURE if self._record_on(error) else _SUCCESS

    def _permit(self, decision: Admission, ctx: CallContext | None) -> int:
        """The decision's permit, or report the rejection and raise."""
        if decision.permit is not None:
            return decision.permit
        _tally.count_rejection(self)
        state = decision.state.value
        self._report(
            ctx,
            BreakerRejected,
            breaker=self._name,
            state=state,
            retry_after=decision.retry_after,
        )
        raise CircuitOpenError(self._name, decision.retry_after, state)

    def _apply(
        self, change: Transition | None, ctx: CallContext | None = None
    ) -> None:
        """Announce ``change``, if any."""
        if change is not None:
            self._announce(change, ctx)


def _statistics(
    cfg: BreakerConfig,
    rec: BreakerRecord,
    totals: tuple[int, int, int],
    retry_after: float | None,
) -> BreakerStatistics:
    """Build `BreakerStatistics` from a record and its window's totals."""
    calls, failures, slow = totals
    state = rec.state
    open_state = state in {_OPEN, CircuitState.HALF_OPEN}
    rated = cfg.keeps_window and calls >= cfg.effective_minimum_calls
    return BreakerStatistics(
        state=state,
        failure_rate=failures / calls if rated else None,
        slow_call_rate=(
            slow / calls
            if rated and cfg.slow_call_duration is not None
            else None
        ),
        calls_in_window=calls,
        failures_in_window=failures,
        slow_calls_in_window=slow,
        consecutive_failures=rec.consecutive_failures,
        rejected=rec.rejected,
        opened_at=(
            rec.opened_at if open_state or state is _FORCED_OPEN else None
        ),
        open_until=(
            rec.opened_at + rec.open_period if state is _OPEN else None
        ),
        open_period=rec.open_period if open_state else None,
        half_open_in_flight=rec.half_open_in_flight,
        half_open_successes=rec.half_open_successes,
        retry_after=retry_after,
    )


def _window_size(value: object) -> int:
    """A count window's size: an int in [1, `MAX_WINDOW_SIZE`]."""
    size = _validate.positive_int("window_size", value)
    if size > MAX_WINDOW_SIZE:
        # The ring is allocated whole (a byte per call): bounded memory,
        # known at construction.
        raise ConfigError(
            "window_size",
            f"must be <= {MAX_WINDOW_SIZE:_}, got {_validate.shown(size)}; "
            "for a longer horizon use window_duration (a time window, fixed "
            "memory)",
        )
    return size


def _window_duration(value: object) -> float | None:
    """A time window's length: ``None`` or finite seconds >= 1 ms."""
    return (
        None if value is None else _validate.window("window_duration", value)
    )


def _config(
    *,
    failure_threshold: object,
    recovery_timeout: object,
    half_open_max_calls: object,
    success_threshold: object,
    failure_rate_threshold: object,
    window_size: object,
    window_duration: object,
    minimum_calls: object,
    slow_call_duration: object,
    slow_call_rate_threshold: object,
    max_recovery_timeout: object,
) -> BreakerConfig:
    """Validate the tunables; raise `ConfigError` naming the first bad one."""
    threshold = _validate.optional_positive_int(
        "failure_threshold", failure_threshold
    )
    recovery = _validate.positive(
        "recovery_timeout", recovery_timeout, seconds=True
    )
    failure_rate = (
        None
        if failure_rate_threshold is None
        else _validate.fraction(
            "failure_rate_threshold", failure_rate_threshold
        )
    )
    slow_rate = (
        None
        if slow_call_rate_threshold is None
        else _validate.fraction(
            "slow_call_rate_threshold", slow_call_rate_threshold
        )
    )
    slow_duration = _validate.optional_positive(
        "slow_call_duration", slow_call_duration, seconds=True
    )
    max_recovery = _validate.optional_positive(
        "max_recovery_timeout", max_recovery_timeout, seconds=True
    )
    config = BreakerConfig(
        failure_threshold=threshold,
        recovery_timeout=recovery,
        half_open_max_calls=_validate.positive_int(
            "half_open_max_calls", half_open_max_calls
        ),
        success_threshold=_validate.positive_int(
            "success_threshold", success_threshold
        ),
        failure_rate_threshold=failure_rate,
        window_size=_window_size(window_size),
        window_duration=_window_duration(window_duration),
        minimum_calls=_validate.positive_int("minimum_calls", minimum_calls),
        slow_call_duration=slow_duration,
        slow_call_rate_threshold=slow_rate,
        max_recovery_timeout=max_recovery,
    )
    if max_recovery is not None and max_recovery < recovery:
        raise ConfigError(
            "max_recovery_timeout",
            f"must be >= recovery_timeout ({recovery:g}), "
            f"got {max_recovery:g}",
        )
    if slow_rate is not None and slow_duration is None:
        raise ConfigError(
            "slow_call_rate_threshold",
            "needs slow_call_duration, which says what a slow call is",
        )
    if threshold is None and failure_rate is None and slow_rate is None:
        raise ConfigError(
            "failure_threshold",
            "with failure_threshold, failure_rate_threshold and "
            "slow_call_rate_threshold all None the breaker could never trip;"
            " use force_open()/disable() on a breaker for a manual switch",
        )
    return config
