"""
The circuit breaker as a sans-I/O state machine.

Rules (the table `TRANSITIONS` below is the whole of them):

- **CLOSED** lets every call through and records each outcome. It trips to
  OPEN on the first outcome after which
  ``failure_threshold`` recorded failures happened in a row
  (``"failure_threshold"``), or, once the window holds at least
  ``minimum_calls`` calls, the window's failure rate is
  ``>= failure_rate_threshold`` (``"failure_rate"``) or its slow-call rate is
  ``>= slow_call_rate_threshold`` (``"slow_call_rate"``); checked in that
  order. A success resets the consecutive count; so does closing.
  The window is judged after each failure and each slow call; after a
  success that is not slow only while the window is below
  ``minimum_calls`` or when outcomes aged out of it since the last
  judgement. Otherwise such a success can only lower both rates, so judging
  it would never trip: the decisions are exactly those of judging after
  every outcome, for less work on the path most calls take.
- **OPEN** rejects every call. From ``now >= opened_at + open_period`` on
  (exactly at the deadline) it is HALF_OPEN; the move is made lazily by
  whichever operation looks first (``"recovery_timeout"``). The open period is
  ``recovery_timeout`` after a trip from CLOSED, and doubles (up to
  ``max_recovery_timeout``, when set) on each re-trip from HALF_OPEN.
- **HALF_OPEN** admits at most ``half_open_max_calls`` probes at a time and
  rejects the rest. ``success_threshold`` successful probes close it
  (``"probe_succeeded"``: windows cleared, open-period growth reset); the first
  recorded failure re-opens it (``"probe_failed"``). When the slow-call rule
  is on (``slow_call_rate_threshold`` set) a slow probe counts as failed: a
  backend that answers, but too slowly, has not recovered. A probe that is
  released (cancelled, ignored error) frees its slot and counts for nothing.
- **FORCED_OPEN** rejects every call until `reset` or `disable`;
  **DISABLED** admits every call and records nothing until `reset` or
  `force_open`. Both are entered only on request (``"forced_open"``,
  ``"disabled"``); ``reset`` goes to CLOSED from anywhere (``"reset"``).

Every transition bumps ``generation``. A permit is the generation it was
granted in; an outcome whose permit is not the current generation belongs to
a state that no longer exists and is dropped, so a slow call admitted before
a trip cannot corrupt the state after it (and a late probe cannot free a
slot of a newer half-open period).

`BreakerCore` is not thread-safe: the shell (``stormwall._breaker``) holds
its lock around each operation, and emits the `Transition` an operation
returns after letting go of it. Every operation is one short, atomic
read-modify-write of `BreakerRecord` plus the window, which is the shape a
shared store (Redis, one Lua script per operation) can implement too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from ._arith import until
from ._health import CountWindow, TimeWindow


if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._health import HealthWindow


__all__ = [
    "TRANSITIONS",
    "BreakerConfig",
    "BreakerCore",
    "BreakerRecord",
    "CircuitState",
    "Transition",
    "Trigger",
]


class CircuitState(enum.StrEnum):
    """
    The state of a circuit breaker.

    Values are plain lowercase strings, so ``state == "open"`` works.
    """

    CLOSED = "closed"
    """Calls pass; outcomes are recorded."""
    OPEN = "open"
    """Calls are rejected until the open period ends."""
    HALF_OPEN = "half_open"
    """A few probe calls pass to test whether the backend recovered."""
    FORCED_OPEN = "forced_open"
    """Calls are rejected until `reset` (an operator's decision)."""
    DISABLED = "disabled"
    """Calls pass and nothing is recorded until `reset`."""


class Trigger(enum.StrEnum):
    """What makes a breaker change state; the value is the event's reason."""

    FAILURE_THRESHOLD = "failure_threshold"
    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    RECOVERY_TIMEOUT = "recovery_timeout"
    PROBE_SUCCEEDED = "probe_succeeded"
    PROBE_FAILED = "probe_failed"
    FORCE_OPEN = "forced_open"
    DISABLE = "disabled"
    RESET = "reset"


CLOSED: Final = CircuitState.CLOSED
OPEN: Final = CircuitState.OPEN
HALF_OPEN: Final = CircuitState.HALF_OPEN
FORCED_OPEN: Final = CircuitState.FORCED_OPEN
DISABLED: Final = CircuitState.DISABLED

_T = Trigger

# (state, trigger) -> next state. A pair that is not here cannot happen (a
# trigger that does not apply in a state is a no-op, decided before lookup:
# e.g. force_open() while already forced open).
# fmt: off
TRANSITIONS: Final[Mapping[tuple[CircuitState, Trigger], CircuitState]] = {
    # from         trigger                  to
    (CLOSED,      _T.FAILURE_THRESHOLD):   OPEN,
    (CLOSED,      _T.FAILURE_RATE):        OPEN,
    (CLOSED,      _T.SLOW_CALL_RATE):      OPEN,
    (OPEN,        _T.RECOVERY_TIMEOUT):    HALF_OPEN,
    (HALF_OPEN,   _T.PROBE_SUCCEEDED):     CLOSED,
    (HALF_OPEN,   _T.PROBE_FAILED):        OPEN,
    (CLOSED,      _T.FORCE_OPEN):          FORCED_OPEN,
    (OPEN,        _T.FORCE_OPEN):          FORCED_OPEN,
    (HALF_OPEN,   _T.FORCE_OPEN):          FORCED_OPEN,
    (DISABLED,    _T.FORCE_OPEN):          FORCED_OPEN,
    (CLOSED,      _T.DISABLE):             DISABLED,
    (OPEN,        _T.DISABLE):             DISABLED,
    (HALF_OPEN,   _T.DISABLE):             DISABLED,
    (FORCED_OPEN, _T.DISABLE):             DISABLED,
    (OPEN,        _T.RESET):               CLOSED,
    (HALF_OPEN,   _T.RESET):               CLOSED,
    (FORCED_OPEN, _T.RESET):               CLOSED,
    (DISABLED,    _T.RESET):               CLOSED,
}
# fmt: on


class Transition(NamedTuple):
    """One state change, to be reported as `BreakerStateChanged`."""

    from_state: CircuitState
    to_state: CircuitState
    reason: str
    sequence: int


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The validated tunables (see `CircuitBreaker` for their meaning)."""

    failure_threshold: int | None = 5
    recovery_timeout: float = 30.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    failure_rate_threshold: float | None = None
    window_size: int = 100
    window_duration: float | None = None
    minimum_calls: int = 10
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float | None = None
    max_recovery_timeout: float | None = None

    @property
    def keeps_window(self) -> bool:
        """Whether outcomes go into a sliding window at all."""
        return (
            self.failure_rate_threshold is not None
            or self.slow_call_duration is not None
        )

    @property
    def effective_minimum_calls(self) -> int:
        """
        ``minimum_calls``, capped at ``window_size`` for a count window.

        A count window never holds more than ``window_size`` calls, so a
        larger minimum would mean "never trip on rate" (resilience4j caps it
        the same way).
        """
        if self.window_duration is None:
            return min(self.minimum_calls, self.window_size)
        return self.minimum_calls

    def new_window(self) -> HealthWindow | None:
        """A fresh window for this configuration, or ``None``."""
        if not self.keeps_window:
            return None
        if self.window_duration is not None:
            return TimeWindow(self.window_duration)
        return CountWindow(self.window_size)


@dataclass(slots=True)
class BreakerRecord:
    """
    The breaker's persistent state, besides its window.

    Small and flat on purpose: it is what a shared store keeps per breaker.
    """

    state: CircuitState = CLOSED
    generation: int = 0
    opened_at: float = 0.0
    open_period: float = 0.0
    consecutive_failures: int = 0
    half_open_in_flight: int = 0
    half_open_successes: int = 0
    rejected: int = 0


@dataclass(slots=True)
class BreakerCore:
    """
    The decisions of one breaker, on plain values.

    Every operation takes ``now`` (clock seconds) where time matters and
    returns the `Transition` it made, if any (at most one each).
    """

    config: BreakerConfig
    record: BreakerRecord = field(default_factory=BreakerRecord)
    window: HealthWindow | None = None
    # Copies of config values the hot paths read.
    _slow_limit: float | None = field(init=False, default=None)
    _min_calls: int = field(init=False, default=0)
    # Whether the next plain success must judge the window: true until a
    # judgement finds at least minimum_calls in it, and again once cleared.
    _unjudged: bool = field(init=False, default=True)
    # The window's ``aged`` count at the last judgement.
    _judged_aged: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.window = self.config.new_window()
        self._slow_limit = self.config.slow_call_duration
        self._min_calls = self.config.effective_minimum_calls

    # -- transitions ----------------------------------------------------------

    def _move(self, trigger: Trigger, now: float) -> Transition:
        """Apply the table's transition and the new state's entry actions."""
        rec = self.record
        old = rec.state
        new = TRANSITIONS.get((old, trigger))
        if new is None:  # pragma: no cover - a bug in this module
            msg = f"no transition from {old} on {trigger}"
            raise AssertionError(msg)
        # State first, then generation: a lock-free reader that sees the
        # new generation also sees the new state (see the shell's _admit).
        rec.state = new
        rec.generation += 1
        rec.half_open_in_flight = 0
        rec.half_open_successes = 0
        cfg = self.config
        if new is OPEN:
            rec.opened_at = now
            if trigger is _T.PROBE_FAILED and cfg.max_recovery_timeout:
                rec.open_period = min(
                    rec.open_period * 2, cfg.max_recovery_timeout
                )
            else:
                rec.open_period = cfg.recovery_timeout
        elif new is FORCED_OPEN:
            rec.opened_at = now
        elif new is CLOSED:
            self._clear()
        return Transition(old, new, trigger.value, rec.generation)

    def _clear(self) -> None:
        """Forget every outcome and the open-period growth."""
        rec = self.record
        rec.consecutive_failures = 0
        rec.open_period = 0.0
        if self.window is not None:
            self.window.clear()
            self._unjudged = True

    def poll(self, now: float) -> Transition | None:
        """Make the OPEN -> HALF_OPEN move if it is due at ``now``."""
        rec = self.record
        if rec.state is OPEN and now >= rec.opened_at + rec.open_period:
            return self._move(_T.RECOVERY_TIMEOUT, now)
        return None

    # -- admission ------------------------------------------------------------

    def admit(self, now: float) -> tuple[int | None, Transition | None]:
        """
        Decide whether a call may run now.

        Returns:
            ``(permit, transition)``: the permit is the current generation,
            or ``None`` when the call is rejected (counted in ``rejected``).
        """
        rec = self.record
        state = rec.state
        if state is CLOSED or state is DISABLED:
            return rec.generation, None
        change = self.poll(now)
        if (
            rec.state is HALF_OPEN
            and rec.half_open_in_flight < self.config.half_open_max_calls
        ):
            rec.half_open_in_flight += 1
            return rec.generation, change
        rec.rejected += 1
        return None, change

    def retry_after(self, now: float) -> float | None:
        """
        Seconds until a call may be admitted, as far as that is known.

        ``0.0`` when one would be admitted now; the time left of the open
        period when open; ``None`` when nobody can tell (forced open, or
        every half-open probe slot busy until some probe finishes).
        """
        rec = self.record
        state = rec.state
        if state is OPEN:
            return until(now, rec.opened_at + rec.open_period)
        if state is FORCED_OPEN:
            return None
        if (
            state is HALF_OPEN
            and rec.half_open_in_flight >= self.config.half_open_max_calls
        ):
            return None
        return 0.0

    # -- outcomes -------------------------------------------------------------

    def _current(self, permit: object) -> CircuitState | None:
        """The state ``permit`` still counts in, or ``None`` if stale."""
        rec = self.record
        if permit != rec.generation:
            return None
        state = rec.state
        if state is CLOSED or state is HALF_OPEN:
            return state
        return None

    def is_slow(self, duration: float) -> bool:
        """Whether a call that took ``duration`` seconds was slow."""
        limit = self._slow_limit
        return limit is not None and duration >= limit

    def on_success(
        self, permit: object, duration: float, now: float
    ) -> Transition | None:
        """Record a successful call (or one whose error is not recorded)."""
        state = self._current(permit)
        if state is None:
            return None
        limit = self._slow_limit
        slow = limit is not None and duration >= limit
        if state is CLOSED:
            self.record.consecutive_failures = 0
            window = self.window
            if window is not None:
                window.record(False, slow, now)  # noqa: FBT003 - hot path
                # A plain success only lowers the rates of the window last
                # judged (see the module docstring): skip the judgement.
                if slow or self._unjudged or window.aged != self._judged_aged:
                    return self._check_rates(window, now)
            return None
        rec = self.record
        rec.half_open_in_flight -= 1
        if slow and self.config.slow_call_rate_threshold is not None:
            return self._move(_T.PROBE_FAILED, now)
        rec.half_open_successes += 1
        if rec.half_open_successes >= self.config.success_threshold:
            return self._move(_T.PROBE_SUCCEEDED, now)
        return None

    def on_failure(
        self, permit: object, duration: float, now: float
    ) -> Transition | None:
        """Record a failed call."""
        state = self._current(permit)
        if state is None:
            return None
        if state is HALF_OPEN:
            return self._move(_T.PROBE_FAILED, now)
        rec = self.record
        rec.consecutive_failures += 1
        window = self.window
        if window is not None:
            window.record(True, self.is_slow(duration), now)  # noqa: FBT003
        threshold = self.config.failure_threshold
        if threshold is not None and rec.consecutive_failures >= threshold:
            return self._move(_T.FAILURE_THRESHOLD, now)
        if window is None:
            return None
        return self._check_rates(window, now)

    def release(self, permit: object) -> None:
        """Free a probe slot without recording anything."""
        if self._current(permit) is HALF_OPEN:
            self.record.half_open_in_flight -= 1

    def _check_rates(
        self, window: HealthWindow, now: float
    ) -> Transition | None:
        """Trip when the window's failure or slow-call rate is too high."""
        calls, failures, slow_calls = window.totals(now)
        self._judged_aged = window.aged
        if calls < self._min_calls:
            self._unjudged = True
            return None
        self._unjudged = False
        threshold = self.config.failure_rate_threshold
        if threshold is not None and failures / calls >= threshold:
            return self._move(_T.FAILURE_RATE, now)
        threshold = self.config.slow_call_rate_threshold
        if threshold is not None and slow_calls / calls >= threshold:
            return self._move(_T.SLOW_CALL_RATE, now)
        return None

    # -- operator actions -----------------------------------------------------

    def force_open(self, now: float) -> Transition | None:
        """Reject everything until reset (no-op when already forced open)."""
        if self.record.state is FORCED_OPEN:
            return None
        return self._move(_T.FORCE_OPEN, now)

    def disable(self, now: float) -> Transition | None:
        """Admit everything, record nothing (no-op when already disabled)."""
        if self.record.state is DISABLED:
            return None
        return self._move(_T.DISABLE, now)

    def reset(self, now: float) -> Transition | None:
        """Go back to a fresh CLOSED; from CLOSED only clear what it knows."""
        rec = self.record
        if rec.state is not CLOSED:
            return self._move(_T.RESET, now)
        # No transition, but outcomes of calls admitted before the reset
        # belong to the forgotten window: make their permits stale.
        rec.generation += 1
        self._clear()
        return None

    # -- introspection --------------------------------------------------------

    def totals(self, now: float) -> tuple[int, int, int]:
        """Return ``(calls, failures, slow_calls)`` in the window."""
        if self.window is None:
            return 0, 0, 0
        return self.window.totals(now)
