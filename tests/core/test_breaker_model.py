"""
A stateful property test: the breaker against a reference model.

The model is written for obviousness, not speed: it keeps every outcome in a
plain list and recomputes the window by filtering that list, and it has no
ring buffers, no running totals, no lock and no fast path. Hypothesis drives
both with the same random calls, errors, durations, clock moves and operator
actions, and checks after every step that they agree on the state, on every
admission and on the statistics.
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stormwall import CircuitBreaker, CircuitOpenError, EventBus, MockClock
from stormwall._core._health import TIME_BUCKETS
from stormwall.events import BreakerStateChanged


class Model:
    """The documented breaker rules, spelled out as directly as possible."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.state = "closed"
        self.epoch = 0
        self.opened_at = 0.0
        self.period = 0.0
        self.consecutive = 0
        self.outcomes = []  # (time, failed, slow), oldest first
        self.probes = 0
        self.probe_successes = 0
        self.rejected = 0
        self.transitions = []

    # -- the window, recomputed from scratch --------------------------------

    def window(self, now):
        duration = self.cfg["window_duration"]
        if duration is None:
            return self.outcomes[-self.cfg["window_size"] :]
        width = duration / TIME_BUCKETS
        newest = math.floor(now / width)
        return [
            o
            for o in self.outcomes
            if math.floor(o[0] / width) > newest - TIME_BUCKETS
        ]

    def keeps_window(self):
        return (
            self.cfg["failure_rate_threshold"] is not None
            or self.cfg["slow_call_duration"] is not None
        )

    def totals(self, now):
        if not self.keeps_window():
            return 0, 0, 0
        window = self.window(now)
        return (
            len(window),
            sum(1 for o in window if o[1]),
            sum(1 for o in window if o[2]),
        )

    def minimum(self):
        if self.cfg["window_duration"] is None:
            return min(self.cfg["minimum_calls"], self.cfg["window_size"])
        return self.cfg["minimum_calls"]

    # -- states --------------------------------------------------------------

    def go(self, state, reason, now):
        self.transitions.append((self.state, state, reason))
        if state == "open":
            cap = self.cfg["max_recovery_timeout"]
            if reason == "probe_failed" and cap is not None:
                self.period = min(self.period * 2, cap)
            else:
                self.period = self.cfg["recovery_timeout"]
            self.opened_at = now
        if state == "closed":
            self.outcomes = []
            self.consecutive = 0
        self.state = state
        self.epoch += 1
        self.probes = 0
        self.probe_successes = 0

    def poll(self, now):
        if self.state == "open" and now >= self.opened_at + self.period:
            self.go("half_open", "recovery_timeout", now)

    def admit(self, now):
        self.poll(now)
        if self.state in {"closed", "disabled"}:
            return self.epoch
        if (
            self.state == "half_open"
            and self.probes < self.cfg["half_open_max_calls"]
        ):
            self.probes += 1
            return self.epoch
        self.rejected += 1
        return None

    def retry_after(self, now):
        self.poll(now)
        if self.state == "open":
            return self.opened_at + self.period - now
        if self.state == "forced_open":
            return None
        if (
            self.state == "half_open"
            and self.probes == self.cfg["half_open_max_calls"]
        ):
            return None
        return 0.0

    def is_slow(self, duration):
        limit = self.cfg["slow_call_duration"]
        return limit is not None and duration >= limit

    def finish(self, permit, outcome, duration, now):
        """outcome: "success", "failure" or "release"."""
        if permit != self.epoch or self.state not in {"closed", "half_open"}:
            return
        if self.state == "half_open":
            self.probes -= 1
            slow_fails = self.cfg[
                "slow_call_rate_threshold"
            ] is not None and self.is_slow(duration)
            if outcome == "failure" or (outcome == "success" and slow_fails):
                self.go("open", "probe_failed", now)
            elif outcome == "success":
                self.probe_successes += 1
                if self.probe_successes >= self.cfg["success_threshold"]:
                    self.go("closed", "probe_succeeded", now)
            return
        if outcome == "release":
            return
        failed = outcome == "failure"
        self.consecutive = self.consecutive + 1 if failed else 0
        if self.keeps_window():
            self.outcomes.append((now, failed, self.is_slow(duration)))
        threshold = self.cfg["failure_threshold"]
        if failed and threshold is not None and self.consecutive >= threshold:
            self.go("open", "failure_threshold", now)
            return
        calls, failures, slow = self.totals(now)
        if not self.keeps_window() or calls < self.minimum():
            return
        rate = self.cfg["failure_rate_threshold"]
        if rate is not None and failures / calls >= rate:
            self.go("open", "failure_rate", now)
            return
        rate = self.cfg["slow_call_rate_threshold"]
        if rate is not None and slow / calls >= rate:
            self.go("open", "slow_call_rate", now)

    def force_open(self, now):
        if self.state != "forced_open":
            self.go("forced_open", "forced_open", now)
            self.opened_at = now

    def disable(self, now):
        if self.state != "disabled":
            self.go("disabled", "disabled", now)

    def reset(self, now):
        if self.state != "closed":
            self.go("closed", "reset", now)
        else:
            self.outcomes = []
            self.consecutive = 0
            self.epoch += 1


@st.composite
def configs(draw):
    failure_threshold = draw(st.sampled_from([None, 1, 2, 3, 4]))
    failure_rate = draw(st.sampled_from([None, 0.3, 0.5, 2 / 3, 1.0]))
    slow_duration = draw(st.sampled_from([None, 1.0]))
    slow_rate = (
        None
        if slow_duration is None
        else draw(st.sampled_from([None, 0.5, 1.0]))
    )
    if failure_threshold is failure_rate is slow_rate is None:
        failure_threshold = 2
    recovery = draw(st.sampled_from([1.0, 2.5]))
    return {
        "failure_threshold": failure_threshold,
        "failure_rate_threshold": failure_rate,
        "slow_call_duration": slow_duration,
        "slow_call_rate_threshold": slow_rate,
        "window_size": draw(st.integers(1, 6)),
        "window_duration": draw(st.sampled_from([None, 2.0, 5.0])),
        "minimum_calls": draw(st.integers(1, 5)),
        "recovery_timeout": recovery,
        "max_recovery_timeout": draw(
            st.sampled_from([None, recovery, recovery * 3])
        ),
        "half_open_max_calls": draw(st.integers(1, 3)),
        "success_threshold": draw(st.integers(1, 3)),
    }


# What a call ends with: (error given to _on_failure or a marker, outcome).
ENDINGS = {
    "success": "success",
    "failure": "failure",
    "rejected_result": "failure",
    "not_recorded": "success",
    "ignored": "release",
    "cancelled": "release",
    "keyboard_interrupt": "release",
}


class BreakerMachine(RuleBasedStateMachine):
    """Random traffic through the breaker and the model side by side."""

    def __init__(self):
        super().__init__()
        self.held = []  # (breaker permit, model permit)

    @initialize(cfg=configs())
    def build(self, cfg):
        self.clock = MockClock()
        bus = EventBus()
        self.events = []
        bus.subscribe(self.events.append, BreakerStateChanged)
        self.breaker = CircuitBreaker(
            "model",
            clock=self.clock,
            bus=bus,
            record_on=lambda e: not isinstance(e, ValueError),
            ignore_on=KeyError,
            **cfg,
        )
        self.model = Model(cfg)

    @rule()
    def start_call(self):
        now = self.clock.now()
        expected = self.model.admit(now)
        try:
            permit = self.breaker._admit(None)
        except CircuitOpenError as exc:
            rejected = exc
        else:
            rejected = None
            self.held.append((permit, expected))

        if rejected is None:
            assert expected is not None
        else:
            assert expected is None
            assert self.model.retry_after(now) == rejected.retry_after

    @precondition(lambda self: self.held)
    @rule(
        data=st.data(),
        ending=st.sampled_from(sorted(ENDINGS)),
        duration=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    )
    def end_call(self, data, ending, duration):
        index = data.draw(st.integers(0, len(self.held) - 1))
        self.finish(index, ending, duration)

    def finish(self, index, ending, duration):
        permit, model_permit = self.held.pop(index)
        b = self.breaker
        if ending == "success":
            b._on_success(permit, duration, None)
        elif ending == "cancelled":
            b._release(permit)
        else:
            error = {
                "failure": RuntimeError("boom"),
                "rejected_result": None,
                "not_recorded": ValueError("bad input"),
                "ignored": KeyError("k"),
                "keyboard_interrupt": KeyboardInterrupt(),
            }[ending]
            b._on_failure(permit, error, duration, None)
        self.model.finish(
            model_permit, ENDINGS[ending], duration, self.clock.now()
        )

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 3.0, 10.0]))
    def advance(self, dt):
        self.clock.advance(dt)

    @rule(
        ending=st.sampled_from(sorted(ENDINGS)),
        duration=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    )
    def whole_call(self, ending, duration):
        # Sequential traffic, the common case, in one step: it reaches
        # full windows and re-trips in fewer steps than start + end.
        before = len(self.held)
        self.start_call()
        if len(self.held) > before:
            self.finish(before, ending, duration)

    @rule(action=st.sampled_from(["force_open", "disable", "reset"]))
    def operator(self, action):
        getattr(self.breaker, action)()
        getattr(self.model, action)(self.clock.now())

    @invariant()
    def agree(self):
        if not hasattr(self, "model"):
            return
        now = self.clock.now()
        stats = self.breaker.statistics()
        model = self.model
        retry_after = model.retry_after(now)
        expected = (
            model.state,
            model.consecutive,
            model.totals(now),
            model.probes,
            model.probe_successes,
            model.rejected,
            retry_after,
        )
        actual = (
            stats.state,
            stats.consecutive_failures,
            (
                stats.calls_in_window,
                stats.failures_in_window,
                stats.slow_calls_in_window,
            ),
            stats.half_open_in_flight,
            stats.half_open_successes,
            stats.rejected,
            stats.retry_after,
        )
        assert expected == actual
        assert model.transitions == [
            (e.from_state, e.to_state, e.reason) for e in self.events
        ]
        assert (
            0
            <= stats.half_open_in_flight
            <= (model.cfg["half_open_max_calls"])
        )


BreakerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestBreakerModel = BreakerMachine.TestCase
TestBreakerModel.__doc__ = "The breaker behaves exactly like the model."
