"""
Counting in process, read at collection time: the pull metrics' one home.

A pull exporter (`stormwall.tally.attach`) switches counting on for a bus:
from then on the executors reporting on that bus bump a `Tally` at attempt
end and call end (plain numbers under one lock: no event is built, no
exporter code runs), and a scrape or an OpenTelemetry collection *reads*
the numbers. The components count for their own ``statistics()`` anyway
(limiter decisions, breaker rejections, bulkhead slots, retry budget); the
few counts they did not keep (breaker transitions, limiter waits, backend
failures) are kept here, beside them, on paths that are already slow.

The live executors and components are found through a weak index: a
component nobody holds any more leaves the scrape with it.

Standard library only (this is the core).
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Final


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._bus import EventBus


BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Duration bucket bounds in seconds (``le``; a last one is +Inf)."""

_FIRST: Final = BUCKETS[0]
_N: Final = len(BUCKETS) + 1
# A histogram cell: _N counts (one per bucket, +Inf last, not cumulative)
# followed by _N sums (the sum of the durations that fell in each bucket:
# a collector that can only record single values replays their means).
_WIDTH: Final = 2 * _N


def new_cell() -> list[float]:
    """An empty histogram cell."""
    return [0] * _WIDTH


def observe(cell: list[float], value: float) -> None:
    """Count ``value`` in ``cell`` (the caller holds the lock)."""
    i = bisect_left(BUCKETS, value)
    cell[i] += 1
    cell[_N + i] += value


class Tally:
    """
    One bus's counters and duration histograms, as plain numbers.

    Bumped by the executors (attempt end, call end, retry decisions) while
    counting is on; read by `snapshot`. Thread-safe: one lock, held for a
    few list operations. A cell, once made, stays in its dict, so a bump
    finds it without the lock and takes the lock only to add to it (and
    to make a missing one); the lock is acquired and released explicitly,
    as on the limiters' hot path (half the cost of ``with``). A duration
    under the first bound (most of them in process) needs no search.
    """

    __slots__ = ("_lock", "_won", "attempts", "calls", "exhausted", "retries")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (executor, outcome) -> histogram cell
        self.calls: dict[tuple[str, str], list[float]] = {}
        self.attempts: dict[tuple[str, str], list[float]] = {}
        # (executor, error_type) -> count; executor -> count
        self.retries: dict[tuple[str, str], int] = {}
        self.exhausted: dict[str, int] = {}
        # executor -> its (call, attempt) "success" cells, the same lists
        # as in ``calls`` and ``attempts``: `won` finds both with one
        # lookup and builds no key.
        self._won: dict[str, tuple[list[float], list[float]]] = {}

    def won(self, executor: str, duration: float) -> None:
        """
        Count a call its first attempt won, and that attempt, at once.

        The hot path of counting (`QuickCall`): both took ``duration`` (the
        attempt is timed from the call's start, one clock read apiece), so
        one bucket search and one lock serve both.
        """
        i = 0 if duration <= _FIRST else bisect_left(BUCKETS, duration)
        cells = self._won.get(executor)
        if cells is None:
            cells = self._won_cells(executor)
        call, attempt = cells
        j = _N + i
        lock = self._lock
        lock.acquire()
        try:
            call[i] += 1
            call[j] += duration
            attempt[i] += 1
            attempt[j] += duration
        finally:
            lock.release()

    def _won_cells(self, executor: str) -> tuple[list[float], list[float]]:
        key = (executor, "success")
        cells = (self._cell(self.calls, key), self._cell(self.attempts, key))
        with self._lock:
            return self._won.setdefault(executor, cells)

    def _cell(
        self, cells: dict[tuple[str, str], list[float]], key: tuple[str, str]
    ) -> list[float]:
        """The cell of ``key``, made (under the lock) if it is missing."""
        with self._lock:
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = [0] * _WIDTH
            return cell

    def call(self, executor: str, outcome: str, duration: float) -> None:
        """Count a logical call that ended with ``outcome``."""
        i = 0 if duration <= _FIRST else bisect_left(BUCKETS, duration)
        key = (executor, outcome)
        cell = self.calls.get(key)
        if cell is None:
            cell = self._cell(self.calls, key)
        lock = self._lock
        lock.acquire()
        try:
            cell[i] += 1
            cell[_N + i] += duration
        finally:
            lock.release()

    def attempt(self, executor: str, outcome: str, duration: float) -> None:
        """Count an attempt that ended with ``outcome``."""
        i = 0 if duration <= _FIRST else bisect_left(BUCKETS, duration)
        key = (executor, outcome)
        cell = self.attempts.get(key)
        if cell is None:
            cell = self._cell(self.attempts, key)
        lock = self._lock
        lock.acquire()
        try:
            cell[i] += 1
            cell[_N + i] += duration
        finally:
            lock.release()

    def retry(self, executor: str, error_type: str) -> None:
        """Count a scheduled retry."""
        key = (executor, error_type)
        with self._lock:
            self.retries[key] = self.retries.get(key, 0) + 1

    def budget_exhausted(self, executor: str) -> None:
        """Count a retry the budget denied."""
        with self._lock:
            self.exhausted[executor] = self.exhausted.get(executor, 0) + 1

    def snapshot(self) -> TallySnapshot:
        """A consistent copy of every number."""
        with self._lock:
            return TallySnapshot(
                {k: list(v) for k, v in self.calls.items()},
                {k: list(v) for k, v in self.attempts.items()},
                dict(self.retries),
                dict(self.exhausted),
            )


class TallySnapshot:
    """
    What a `Tally` held at one moment.

    Attributes:
        calls: ``(executor, outcome)`` -> histogram cell of call durations.
        attempts: ``(executor, outcome)`` -> histogram cell of attempts.
        retries: ``(executor, error_type)`` -> retries scheduled.
        exhausted: executor -> retries the budget denied.
    """

    __slots__ = ("attempts", "calls", "exhausted", "retries")

    def __init__(
        self,
        calls: dict[tuple[str, str], list[float]],
        attempts: dict[tuple[str, str], list[float]],
        retries: dict[tuple[str, str], int],
        exhausted: dict[str, int],
    ) -> None:
        self.calls = calls
        self.attempts = attempts
        self.retries = retries
        self.exhausted = exhausted


# -- counting switched on per bus --------------------------------------------

_switch_lock = threading.Lock()


def start(bus: EventBus) -> Tally:
    """Switch counting on for ``bus`` (once more); its `Tally`."""
    with _switch_lock:
        tally: Tally | None = bus._tally_kept
        if tally is None:
            tally = bus._tally_kept = Tally()
        bus._tally_users += 1
        bus._tally = tally
        return tally


def stop(bus: EventBus) -> None:
    """Undo one `start`; counting stops with the last (numbers are kept)."""
    with _switch_lock:
        bus._tally_users = max(0, bus._tally_users - 1)
        if not bus._tally_users:
            bus._tally = None


# -- the weak index of live executors and components -------------------------

_index_lock = threading.Lock()
_executors: weakref.WeakSet[Any] = weakref.WeakSet()
_components: weakref.WeakSet[Any] = weakref.WeakSet()


def register_executor(executor: object) -> None:
    """Index a new executor (weakly)."""
    with _index_lock:
        _executors.add(executor)


def register_component(component: object) -> None:
    """Index a new component (weakly)."""
    with _index_lock:
        _components.add(component)


def live_executors() -> list[Any]:
    """The executors still alive."""
    with _index_lock:
        return list(_executors)


def live_components() -> list[Any]:
    """The components still alive."""
    with _index_lock:
        return list(_components)


# -- counts the components did not keep --------------------------------------
#
# Kept beside them (weakly keyed), on paths that are slow anyway: a breaker
# transition, a limiter wait, a backend failure, a shared breaker's
# rejection.

_extra_lock = threading.RLock()  # reentrant: `retire` may run in a GC
_transitions: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)
_waits: weakref.WeakKeyDictionary[Any, list[float]] = (
    weakref.WeakKeyDictionary()
)
_rejections: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def count_transition(breaker: object, from_state: str, to_state: str) -> None:
    """Count one breaker transition."""
    with _extra_lock:
        counts = _transitions.get(breaker)
        if counts is None:
            counts = _transitions[breaker] = {}
        key = (from_state, to_state)
        counts[key] = counts.get(key, 0) + 1


def count_wait(limiter: object, waited: float) -> None:
    """Count one limiter wait of ``waited`` seconds."""
    with _extra_lock:
        cell = _waits.get(limiter)
        if cell is None:
            cell = _waits[limiter] = new_cell()
        observe(cell, waited)


def count_rejection(breaker: object) -> None:
    """Count one rejection of a breaker that keeps no local record."""
    with _extra_lock:
        _rejections[breaker] = _rejections.get(breaker, 0) + 1


def transitions(breaker: object) -> dict[tuple[str, str], int]:
    """``(from_state, to_state)`` -> transitions of ``breaker``."""
    with _extra_lock:
        return dict(_transitions.get(breaker) or {})


def waits(limiter: object) -> list[float] | None:
    """The histogram cell of ``limiter``'s waits, if it ever waited."""
    with _extra_lock:
        cell = _waits.get(limiter)
        return None if cell is None else list(cell)


def rejections(breaker: object) -> int:
    """Rejections counted by `count_rejection`."""
    with _extra_lock:
        return _rejections.get(breaker, 0)


def cell_parts(
    cell: list[float],
) -> Iterator[tuple[float, int, float]]:
    """``(upper bound, count, sum)`` per bucket (+Inf last)."""
    bounds = (*BUCKETS, float("inf"))
    for i, bound in enumerate(bounds):
        yield bound, int(cell[i]), cell[_N + i]


# -- reading: what a collection sees ------------------------------------------


class BreakerReading:
    """
    A breaker at collection time (no transition is made by reading).

    ``failure_rate_threshold`` and ``slow_call_rate_threshold`` are the
    breaker's rate rules (None: no such rule, or a retired breaker), so a
    rate can be read against the threshold at which the breaker trips.
    """

    __slots__ = (
        "failure_rate",
        "failure_rate_threshold",
        "name",
        "rejected",
        "slow_call_rate",
        "slow_call_rate_threshold",
        "state",
        "transitions",
    )

    def __init__(
        self,
        name: str,
        state: str | None,
        failure_rate: float | None,
        slow_call_rate: float | None,
        rejected: int,
        transitions: dict[tuple[str, str], int],
        failure_rate_threshold: float | None = None,
        slow_call_rate_threshold: float | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.failure_rate = failure_rate
        self.slow_call_rate = slow_call_rate
        self.rejected = rejected
        self.transitions = transitions
        self.failure_rate_threshold = failure_rate_threshold
        self.slow_call_rate_threshold = slow_call_rate_threshold


class LimiterReading:
    """A limiter (or a composite's tier) at collection time."""

    __slots__ = (
        "allowed",
        "available",
        "name",
        "per_key",
        "rejected",
        "waited",
        "waits",
    )

    def __init__(
        self,
        name: str,
        allowed: int,
        waited: int,
        rejected: int,
        waits: list[float] | None,
        available: float | None,
        per_key: Callable[[str], float | None] | None = None,
    ) -> None:
        self.name = name
        self.allowed = allowed
        self.waited = waited
        self.rejected = rejected
        self.waits = waits
        #: The global permits (None: per key, or not a local limiter).
        self.available = available
        #: A per-key limiter's permits for one key (read on demand: only
        #: the keys a key label names are asked).
        self.per_key = per_key


class BulkheadReading:
    """A bulkhead at collection time."""

    __slots__ = ("in_flight", "limit", "name", "rejected")

    def __init__(
        self,
        name: str,
        in_flight: int | None,
        limit: int | None,
        rejected: int,
    ) -> None:
        self.name = name
        self.in_flight = in_flight
        self.limit = limit
        self.rejected = rejected


class Reading:
    """
    Everything a pull exporter exposes for one bus, read at once.

    Attributes:
        tally: The bus's `TallySnapshot` (empty while counting never ran).
        executors: ``(name, retry budget available or None)`` of the live
            executors reporting on the bus.
        breakers: `BreakerReading` of each live breaker reporting there.
        limiters: `LimiterReading` of each live limiter (a composite's
            tiers, not the composite).
        bulkheads: `BulkheadReading` of each live bulkhead.
    """

    __slots__ = ("breakers", "bulkheads", "executors", "limiters", "tally")
    # A retired component (garbage collected) keeps its counters in the
    # readings (state None: no gauge), so a counter never goes backwards.

    def __init__(
        self,
        tally: TallySnapshot,
        executors: list[tuple[str, float | None]],
        breakers: list[BreakerReading],
        limiters: list[LimiterReading],
        bulkheads: list[BulkheadReading],
    ) -> None:
        self.tally = tally
        self.executors = executors
        self.breakers = breakers
        self.limiters = limiters
        self.bulkheads = bulkheads


_EMPTY = TallySnapshot({}, {}, {}, {})


def read(bus: EventBus) -> Reading:
    """Read the tally and the live components of ``bus``."""
    from ._breaker import CircuitBreaker
    from ._bulkhead import Bulkhead
    from ._limiters import Limiter

    kept = bus._tally_kept
    snapshot = _EMPTY if kept is None else kept.snapshot()
    executors: list[tuple[str, float | None]] = []
    seen: set[str] = set()
    for executor in live_executors():
        if executor._bus is bus:
            seen.add(executor._name)
            budget = executor._pipeline.budget
            executors.append(
                (
                    executor._name,
                    None
                    if budget is None
                    else float(budget.statistics().available),
                )
            )
    # Executors that counted and are gone still have their known series.
    gone = {
        *(k[0] for k in snapshot.calls),
        *(k[0] for k in snapshot.attempts),
    } - seen
    executors.extend((name, None) for name in sorted(gone))
    breakers: list[BreakerReading] = []
    limiters: list[LimiterReading] = []
    bulkheads: list[BulkheadReading] = []
    with _retired_lock:
        retired = _retired.get(bus)
        if retired is not None:
            breakers.extend(retired.breakers.values())
            limiters.extend(retired.limiters.values())
            bulkheads.extend(retired.bulkheads.values())
    for component in live_components():
        if component._bus_for(None) is not bus:
            continue
        if isinstance(component, CircuitBreaker):
            breakers.append(_read_breaker(component))
        elif isinstance(component, Limiter):
            if getattr(component, "_tiers", None) is None:
                limiters.append(_read_limiter(component))
        elif isinstance(component, Bulkhead):
            stats = component.statistics()
            bulkheads.append(
                BulkheadReading(
                    stats.bulkhead,
                    stats.in_flight,
                    stats.max_concurrent,
                    stats.rejected,
                )
            )
    return Reading(snapshot, executors, breakers, limiters, bulkheads)


class _Retired:
    """The counters of one bus's components that were garbage collected."""

    __slots__ = ("breakers", "bulkheads", "limiters")

    def __init__(self) -> None:
        self.breakers: dict[str, BreakerReading] = {}
        self.limiters: dict[str, LimiterReading] = {}
        self.bulkheads: dict[str, BulkheadReading] = {}


_retired_lock = threading.RLock()  # reentrant: `retire` runs in a GC
_retired: weakref.WeakKeyDictionary[EventBus, _Retired] = (
    weakref.WeakKeyDictionary()
)


def retire(component: Any) -> None:
    """
    Keep the counters of a component being garbage collected.

    Called from ``Component.__del__`` (the object is still whole), only for
    a bus a pull exporter ever counted on. Its gauges leave the scrape with
    it; its counters stay, so no counter goes backwards.
    """
    from ._breaker import CircuitBreaker
    from ._bulkhead import Bulkhead
    from ._limiters import Limiter

    bus = component._bus_for(None)
    if bus._tally_kept is None:
        return
    if isinstance(component, CircuitBreaker):
        reading: Any = _read_breaker(component)
        reading.state = None
        reading.failure_rate = reading.slow_call_rate = None
        reading.failure_rate_threshold = None
        reading.slow_call_rate_threshold = None
    elif isinstance(component, Limiter):
        if getattr(component, "_tiers", None) is not None:
            return
        reading = _read_limiter(component, live=False)
    elif isinstance(component, Bulkhead):
        stats = component.statistics()
        reading = BulkheadReading(stats.bulkhead, None, None, stats.rejected)
    else:
        return
    with _retired_lock:
        store = _retired.get(bus)
        if store is None:
            store = _retired[bus] = _Retired()
        if isinstance(reading, BreakerReading):
            old = store.breakers.get(reading.name)
            if old is not None:
                reading.rejected += old.rejected
                for pair, n in old.transitions.items():
                    reading.transitions[pair] = (
                        reading.transitions.get(pair, 0) + n
                    )
            store.breakers[reading.name] = reading
        elif isinstance(reading, LimiterReading):
            old_limiter = store.limiters.get(reading.name)
            if old_limiter is not None:
                reading.allowed += old_limiter.allowed
                reading.waited += old_limiter.waited
                reading.rejected += old_limiter.rejected
                if old_limiter.waits is not None:
                    if reading.waits is None:
                        reading.waits = list(old_limiter.waits)
                    else:
                        for i, v in enumerate(old_limiter.waits):
                            reading.waits[i] += v
            store.limiters[reading.name] = reading
        else:
            old_bulkhead = store.bulkheads.get(reading.name)
            if old_bulkhead is not None:
                reading.rejected += old_bulkhead.rejected
            store.bulkheads[reading.name] = reading


def _read_breaker(breaker: Any) -> BreakerReading:
    from ._breaker import _statistics

    config = breaker._config
    shared = getattr(breaker, "_shared", None)
    if shared is not None:
        # The store's last reply: a scrape makes no round trip.
        return BreakerReading(
            breaker.name,
            shared.cached_state().value,
            None,
            None,
            rejections(breaker),
            transitions(breaker),
            config.failure_rate_threshold,
            config.slow_call_rate_threshold,
        )
    with breaker._lock:
        rec = breaker._record
        stats = _statistics(
            breaker._config,
            rec,
            breaker._core.totals(breaker._clock.now()),
            None,
        )
    return BreakerReading(
        breaker.name,
        stats.state.value,
        stats.failure_rate,
        stats.slow_call_rate,
        stats.rejected,
        transitions(breaker),
        config.failure_rate_threshold,
        config.slow_call_rate_threshold,
    )


def _read_limiter(limiter: Any, *, live: bool = True) -> LimiterReading:
    from ._limiters import _KeyedLimiter

    stats = limiter.statistics()
    available: float | None = None
    per_key = None
    if live and isinstance(limiter, _KeyedLimiter):
        if limiter._shared is not None:
            # A global tier (per_key=False): one state, whatever the key; a
            # bucket still owing shows 0, not a negative number of permits.
            available = limiter._available(None)
        else:
            per_key = limiter._available
    return LimiterReading(
        stats.limiter,
        stats.allowed,
        stats.waited,
        stats.rejected,
        waits(limiter),
        available,
        per_key,
    )
