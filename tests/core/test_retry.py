"""
Tests for `RetryPolicy`: validation, back-off, jitter and classification.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormwall import (
    AttemptTimeoutError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    RateLimitedError,
    RetryBudget,
    RetryPolicy,
)
from tests.support.bad_inputs_retry import BAD_INPUTS


class Fixed:
    """A random source that always returns the same value."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


class Recorder:
    """A predicate that records what it was asked and answers ``answer``."""

    def __init__(self, answer):
        self.answer = answer
        self.seen = []

    def __call__(self, value):
        self.seen.append(value)
        return self.answer


def table_policy(jitter, r):
    """base 1, cap 100, multiplier 2: attempt 3's un-jittered step is 4."""
    return RetryPolicy(
        base_delay=1.0, max_delay=100.0, jitter=jitter, rng=Fixed(r)
    )


class TestValidation:
    @pytest.mark.parametrize(("build", "parameter"), BAD_INPUTS)
    def test_bad_input_names_the_parameter(self, build, parameter):
        """Every out-of-domain argument raises ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            build()

        assert parameter == info.value.parameter

    def test_config_error_is_a_value_error(self):
        """ConfigError doubles as ValueError for generic handlers."""
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=0)

    def test_defaults(self):
        """The defaults are the documented ones."""
        policy = RetryPolicy()

        assert (3, 0.1, 10.0, 2.0, "full", (Exception,)) == (
            policy.max_attempts,
            policy.base_delay,
            policy.max_delay,
            policy.multiplier,
            policy.jitter,
            policy.retry_on,
        )
        assert (None, None, None, None) == (
            policy.retry_on_result,
            policy.deadline,
            policy.retry_after,
            policy.budget,
        )

    def test_timedeltas_become_seconds(self):
        """Durations given as timedelta are stored as float seconds."""
        policy = RetryPolicy(
            base_delay=timedelta(milliseconds=250),
            max_delay=timedelta(minutes=1),
            deadline=timedelta(seconds=30),
        )

        assert (0.25, 60.0, 30.0) == (
            policy.base_delay,
            policy.max_delay,
            policy.deadline,
        )

    def test_ints_become_floats(self):
        """Integer durations and multipliers are stored as floats."""
        policy = RetryPolicy(base_delay=1, max_delay=5, multiplier=3)

        assert (1.0, 5.0, 3.0) == (
            policy.base_delay,
            policy.max_delay,
            policy.multiplier,
        )
        assert all(
            isinstance(v, float)
            for v in (policy.base_delay, policy.max_delay, policy.multiplier)
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"base_delay": 0}, id="base_delay-zero"),
            pytest.param({"max_attempts": 1}, id="max_attempts-one"),
            pytest.param({"multiplier": 1}, id="multiplier-one"),
            pytest.param(
                {"base_delay": 5.0, "max_delay": 5.0}, id="base-equals-max"
            ),
            pytest.param({"jitter": None}, id="jitter-none"),
            pytest.param({"jitter": 1}, id="jitter-int-one"),
            pytest.param({"jitter": 0.25}, id="jitter-fraction"),
            pytest.param({"jitter": "equal"}, id="jitter-equal"),
            pytest.param({"jitter": "decorrelated"}, id="jitter-decorr"),
            pytest.param({"retry_on": ValueError}, id="retry_on-class"),
            pytest.param({"retry_on": ()}, id="retry_on-empty-tuple"),
            pytest.param({"retry_on": callable}, id="retry_on-predicate"),
            pytest.param({"rng": random}, id="rng-module"),
            pytest.param({"budget": RetryBudget()}, id="budget"),
        ],
    )
    def test_edge_values_are_legal(self, kwargs):
        """Values at the edge of each domain are accepted."""
        RetryPolicy(**kwargs)

    @pytest.mark.parametrize(
        ("base_delay", "max_delay"),
        [
            pytest.param(30, 30.0, id="base-30"),
            pytest.param(timedelta(minutes=1), 60.0, id="base-timedelta"),
            pytest.param(10.5, 10.5, id="base-just-above-default-cap"),
            pytest.param(10, 10.0, id="base-at-default-cap"),
            pytest.param(5, 10.0, id="base-below-default-cap"),
            pytest.param(0, 10.0, id="base-zero"),
        ],
    )
    def test_unset_max_delay_never_refuses_a_valid_base_delay(
        self, base_delay, max_delay
    ):
        """RetryPolicy(base_delay=30) used to fail with
        ConfigError('max_delay'), a parameter the user never set: an unset
        max_delay is 10 s, or base_delay when that is larger."""
        policy = RetryPolicy(base_delay=base_delay, jitter=None)

        assert max_delay == policy.max_delay
        assert min(policy.base_delay * 2**4, max_delay) == policy.delay(5)

    def test_explicit_max_delay_below_base_delay_is_still_refused(self):
        """Only an unset max_delay follows base_delay; a given one that is
        below it is a ConfigError naming max_delay, even when it equals
        the default."""
        with pytest.raises(ConfigError) as info:
            RetryPolicy(base_delay=30, max_delay=10.0)

        assert "max_delay" == info.value.parameter

    def test_default_max_delay_reads_as_ten_seconds(self):
        """The signature and the attribute show the documented default."""
        default = inspect.signature(RetryPolicy).parameters["max_delay"]

        assert "10.0" == repr(default.default)
        assert 10.0 == RetryPolicy().max_delay
        assert type(RetryPolicy().max_delay) is float

    def test_jitter_fraction_is_stored_as_float(self):
        """A jitter fraction given as int 1 is stored as 1.0."""
        assert 1.0 == RetryPolicy(jitter=1).jitter

    def test_jitter_error_suggests_none(self):
        """A zero jitter fraction points the user at None."""
        with pytest.raises(ConfigError, match="use None for no jitter"):
            RetryPolicy(jitter=0.0)


class TestImmutability:
    def test_attributes_cannot_be_set(self):
        """Setting any attribute raises AttributeError."""
        policy = RetryPolicy()

        with pytest.raises(AttributeError, match="immutable"):
            policy.max_attempts = 5

    def test_new_attributes_cannot_be_added(self):
        """The policy has no instance dict to add attributes to."""
        policy = RetryPolicy()

        with pytest.raises(AttributeError):
            policy.color = "blue"
        assert not hasattr(policy, "__dict__")

    def test_attributes_cannot_be_deleted(self):
        """Deleting an attribute raises AttributeError."""
        policy = RetryPolicy()

        with pytest.raises(AttributeError, match="immutable"):
            del policy.base_delay

    def test_repr_shows_the_configuration(self):
        """The repr names the settings."""
        policy = RetryPolicy(max_attempts=5, jitter=None)

        assert repr(policy).startswith(
            "RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=10.0, "
            "multiplier=2.0, jitter=None,"
        )

    def test_default_rng_is_private(self):
        """Each policy gets its own random.Random, not the global one."""
        first, second = RetryPolicy(), RetryPolicy()

        assert isinstance(first.rng, random.Random)
        assert first.rng is not second.rng


class TestBackoffTable:
    @pytest.mark.parametrize(
        ("jitter", "r", "expected"),
        [
            pytest.param(None, 0.0, 4.0, id="none"),
            pytest.param("full", 0.0, 0.0, id="full-r0"),
            pytest.param("full", 0.5, 2.0, id="full-r05"),
            pytest.param("full", 1.0, 4.0, id="full-r1"),
            pytest.param("equal", 0.0, 2.0, id="equal-r0"),
            pytest.param("equal", 0.5, 3.0, id="equal-r05"),
            pytest.param("equal", 1.0, 4.0, id="equal-r1"),
            # No history: "previous" is the un-jittered step of attempt 2.
            pytest.param("decorrelated", 0.0, 1.0, id="decorrelated-r0"),
            pytest.param("decorrelated", 0.5, 3.5, id="decorrelated-r05"),
            pytest.param("decorrelated", 1.0, 6.0, id="decorrelated-r1"),
            pytest.param(0.5, 0.0, 2.0, id="fraction-r0"),
            pytest.param(0.5, 0.5, 4.0, id="fraction-r05"),
            pytest.param(0.5, 1.0, 6.0, id="fraction-r1"),
        ],
    )
    def test_attempt_three_with_fixed_random(self, jitter, r, expected):
        """Each jitter mode maps r in {0, 0.5, 1} to its exact delay."""
        assert expected == table_policy(jitter, r).delay(3)

    @pytest.mark.parametrize(
        ("jitter", "r", "expected"),
        [
            pytest.param(None, 0.5, 100.0, id="none"),
            pytest.param("full", 0.5, 50.0, id="full"),
            pytest.param("equal", 0.0, 50.0, id="equal"),
            pytest.param("decorrelated", 0.0, 1.0, id="decorrelated-r0"),
            pytest.param("decorrelated", 0.5, 100.0, id="decorrelated-r05"),
            pytest.param(0.5, 1.0, 100.0, id="fraction-clamped"),
            pytest.param(0.5, 0.0, 50.0, id="fraction-low"),
        ],
    )
    def test_capped_at_max_delay(self, jitter, r, expected):
        """Past the cap, jitter applies to max_delay and never exceeds it."""
        assert expected == table_policy(jitter, r).delay(20)

    @pytest.mark.parametrize(
        ("jitter", "expected"),
        [
            pytest.param(
                "full",
                [0.032383276483316237, 0.030169834784900384, 0.2603737892],
                id="full",
            ),
            pytest.param(
                "equal",
                [0.06619163824165812, 0.11508491739245019, 0.3301868946],
                id="equal",
            ),
            pytest.param(
                "decorrelated",
                [0.16476655296663250, 0.13016983478490038, 0.4254672365],
                id="decorrelated",
            ),
            pytest.param(
                0.5,
                [0.08238327648331624, 0.13016983478490038, 0.4603737892],
                id="fraction",
            ),
        ],
    )
    def test_seeded_random(self, jitter, expected):
        """With random.Random(7) the first three delays are reproducible."""
        policy = RetryPolicy(jitter=jitter, rng=random.Random(7))

        actual = [policy.delay(n) for n in (1, 2, 3)]

        assert expected == pytest.approx(actual, rel=1e-9)

    @pytest.mark.parametrize(
        "jitter", [None, "full", "equal", "decorrelated", 0.3]
    )
    def test_seeded_random_within_bounds(self, jitter):
        """Seeded delays stay within each mode's bounds over many attempts."""
        policy = RetryPolicy(
            base_delay=0.5, max_delay=30.0, jitter=jitter, rng=random.Random(7)
        )

        for attempt in range(1, 200):
            step = min(0.5 * 2.0 ** min(attempt - 1, 100), 30.0)
            low, high = {
                None: (step, step),
                "full": (0.0, step),
                "equal": (step / 2, step),
                "decorrelated": (0.5, 30.0),
                0.3: (step * 0.7, min(step * 1.3, 30.0)),
            }[jitter]

            assert low <= policy.delay(attempt) <= high

    def test_attempt_10000_is_finite_and_capped(self):
        """Without jitter a very late attempt is exactly max_delay."""
        policy = RetryPolicy(jitter=None)

        assert 10.0 == policy.delay(10_000)

    def test_multiplier_one_is_constant(self):
        """Multiplier 1 gives the same delay for every attempt."""
        policy = RetryPolicy(base_delay=0.3, multiplier=1, jitter=None)

        assert [0.3] * 5 == [policy.delay(n) for n in (1, 2, 3, 50, 10_000)]

    @pytest.mark.parametrize(
        "jitter", [None, "full", "equal", "decorrelated", 1.0]
    )
    def test_zero_base_delay_is_zero(self, jitter):
        """base_delay 0 retries at once in every jitter mode."""
        policy = RetryPolicy(base_delay=0, jitter=jitter, rng=Fixed(0.9))

        assert [0.0] * 3 == [policy.delay(n) for n in (1, 2, 10_000)]

    def test_broken_rng_cannot_escape_the_bounds(self):
        """A random source outside [0, 1) still yields a delay in range."""
        high = RetryPolicy(jitter="full", rng=Fixed(7.0))
        low = RetryPolicy(jitter="equal", rng=Fixed(-9.0))
        nan = RetryPolicy(jitter="decorrelated", rng=Fixed(math.nan))

        assert (10.0, 0.0, 0.0) == (
            high.delay(20),
            low.delay(1),
            nan.delay(1),
        )


class TestHugeAttempt:
    @pytest.mark.parametrize("jitter", [None, "decorrelated"])
    def test_attempt_past_float_range_is_capped(self, jitter):
        """delay(10**400) is max_delay, not an OverflowError."""
        policy = RetryPolicy(jitter=jitter, rng=Fixed(0.999999))

        assert 0 < policy.delay(10**400) <= 10.0
        assert 10.0 == RetryPolicy(jitter=None).delay(10**400)


class TestDecorrelatedHistory:
    def test_first_retry_uses_base_as_previous(self):
        """Before any retry, "previous" is base_delay."""
        policy = RetryPolicy(
            base_delay=1.0, max_delay=100.0, jitter="decorrelated",
            rng=Fixed(1.0),
        )  # fmt: skip

        assert 3.0 == policy._backoff(1, ValueError(), None)

    def test_previous_delay_drives_the_next(self):
        """Each delay is drawn from [base, 3 * previous], capped."""
        policy = RetryPolicy(
            base_delay=1.0, max_delay=100.0, jitter="decorrelated",
            rng=Fixed(1.0),
        )  # fmt: skip
        delays = []
        previous = None
        for attempt in range(1, 7):
            previous = policy._backoff(attempt, ValueError(), previous)
            delays.append(previous)

        assert [3.0, 9.0, 27.0, 81.0, 100.0, 100.0] == delays

    def test_previous_ignored_by_other_modes(self):
        """Only decorrelated jitter reads previous_delay."""
        policy = RetryPolicy(jitter=None)

        assert 0.4 == policy._backoff(3, ValueError(), 1234.0)

    @given(
        base=st.floats(0, 100),
        extra=st.floats(0, 1e6),
        previous=st.floats(0, 1e7),
        attempt=st.integers(1, 10**6),
        r=st.floats(0, 1, exclude_max=True),
    )
    def test_within_base_and_three_times_previous(
        self, base, extra, previous, attempt, r
    ):
        """Decorrelated delays lie in [base, 3 * previous] ∩ [0, max]."""
        cap = max(base + extra, 1e-6)
        policy = RetryPolicy(
            base_delay=base, max_delay=cap, jitter="decorrelated", rng=Fixed(r)
        )

        actual = policy._backoff(attempt, None, previous)

        assert min(base, cap) <= actual <= min(max(base, 3 * previous), cap)


class TestProperties:
    @given(
        attempt=st.integers(1, 10**12),
        base=st.floats(0, 1e6),
        extra=st.floats(0, 1e300),
        multiplier=st.floats(1, 1e6),
        jitter=st.one_of(
            st.sampled_from([None, "full", "equal", "decorrelated"]),
            st.floats(0, 1, exclude_min=True),
        ),
        seed=st.integers(0, 2**32),
    )
    def test_delay_always_within_zero_and_max(
        self, attempt, base, extra, multiplier, jitter, seed
    ):
        """For any valid configuration and attempt, 0 <= delay <= max."""
        cap = max(base + extra, 1e-9)
        policy = RetryPolicy(
            base_delay=base,
            max_delay=cap,
            multiplier=multiplier,
            jitter=jitter,
            rng=random.Random(seed),
        )

        actual = policy.delay(attempt)

        assert 0.0 <= actual <= cap
        assert math.isfinite(actual)

    @given(
        hint=st.floats(allow_nan=False),
        cap=st.floats(1e-6, 1e6),
    )
    def test_hint_always_within_zero_and_max(self, hint, cap):
        """Any server hint is clamped to [0, max_delay]."""
        policy = RetryPolicy(
            base_delay=0, max_delay=cap, retry_after=lambda _: hint
        )

        assert 0.0 <= policy.delay(1, ValueError()) <= cap


class TestRetries:
    @pytest.mark.parametrize(
        ("retry_on", "error", "expected"),
        [
            pytest.param((Exception,), ValueError(), True, id="default"),
            pytest.param(ValueError, ValueError(), True, id="class"),
            pytest.param(ValueError, KeyError(), False, id="class-miss"),
            pytest.param(
                (KeyError, ValueError), ValueError(), True, id="tuple"
            ),
            pytest.param(OSError, ConnectionError(), True, id="subclass"),
            pytest.param((), ValueError(), False, id="empty-tuple"),
            pytest.param(
                (Exception,),
                AttemptTimeoutError(1.0),
                True,
                id="attempt-timeout",
            ),
        ],
    )
    def test_types(self, retry_on, error, expected):
        """Exception types retry instances of themselves and subclasses."""
        assert expected == RetryPolicy(retry_on=retry_on)._retries(error)

    def test_predicate_gets_the_exception(self):
        """A predicate receives the exception and decides."""
        predicate = Recorder(answer=1)
        policy = RetryPolicy(retry_on=predicate)
        error = ValueError("boom")

        assert policy._retries(error) is True
        assert [error] == predicate.seen

    def test_predicate_falsy_answer(self):
        """A falsy predicate answer means no retry."""
        assert RetryPolicy(retry_on=Recorder(answer=0))._retries(
            ValueError()
        ) is False  # fmt: skip

    @pytest.mark.parametrize(
        "error",
        [
            pytest.param(CircuitOpenError("b", 1.0), id="circuit-open"),
            pytest.param(RateLimitedError("l", "k", 1.0), id="rate-limited"),
            pytest.param(BulkheadFullError("b", 3), id="bulkhead-full"),
            pytest.param(asyncio.CancelledError(), id="cancelled"),
            pytest.param(KeyboardInterrupt(), id="keyboard-interrupt"),
            pytest.param(SystemExit(1), id="system-exit"),
            pytest.param(GeneratorExit(), id="generator-exit"),
        ],
    )
    @pytest.mark.parametrize(
        "retry_on",
        [
            pytest.param((Exception,), id="default"),
            pytest.param(BaseException, id="base-exception"),
            pytest.param(lambda _: True, id="always-predicate"),
        ],
    )
    def test_never_retried(self, error, retry_on):
        """Local rejections and non-Exception BaseExceptions never retry."""
        assert RetryPolicy(retry_on=retry_on)._retries(error) is False

    def test_predicate_not_consulted_for_rejections(self):
        """A rejection is refused before the user predicate runs."""
        predicate = Recorder(answer=True)
        policy = RetryPolicy(retry_on=predicate)

        policy._retries(CircuitOpenError("b", None))
        policy._retries(asyncio.CancelledError())

        assert [] == predicate.seen


class TestRetriesResult:
    def test_no_predicate_never_retries(self):
        """Without retry_on_result no result is retried."""
        assert RetryPolicy()._retries_result(None) is False

    @pytest.mark.parametrize(
        ("result", "expected"),
        [
            pytest.param(503, True, id="match"),
            pytest.param(200, False, id="miss"),
        ],
    )
    def test_predicate(self, result, expected):
        """The predicate's truthiness decides whether a result retries."""
        policy = RetryPolicy(retry_on_result=lambda r: r >= 500)

        assert expected is policy._retries_result(result)

    def test_truthy_non_bool_answer(self):
        """A truthy non-bool answer is normalised to True."""
        policy = RetryPolicy(retry_on_result=lambda r: r)

        assert (True, False) == (
            policy._retries_result("again"),
            policy._retries_result(""),
        )


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("hint", "expected"),
        [
            pytest.param(3.5, 3.5, id="number"),
            pytest.param(2, 2.0, id="int"),
            pytest.param(timedelta(seconds=4), 4.0, id="timedelta"),
            pytest.param(0, 0.0, id="zero"),
            pytest.param(120.0, 10.0, id="clamped-to-max"),
            pytest.param(math.inf, 10.0, id="inf-clamped"),
            pytest.param(-5.0, 0.0, id="negative-clamped"),
            pytest.param(10**400, 10.0, id="int-past-float-clamped"),
            pytest.param(-(10**400), 0.0, id="negative-int-past-float"),
        ],
    )
    def test_hint_is_the_delay(self, hint, expected):
        """A numeric hint replaces the back-off, clamped to [0, max]."""
        policy = RetryPolicy(retry_after=lambda _: hint)

        assert expected == policy._backoff(1, ValueError(), None)

    @pytest.mark.parametrize("hint", [None, math.nan])
    def test_no_hint_falls_back_to_backoff(self, hint):
        """None (or NaN) from the hook means the normal back-off."""
        policy = RetryPolicy(jitter=None, retry_after=lambda _: hint)

        assert 0.4 == policy._backoff(3, ValueError(), None)

    def test_hook_receives_error_or_result(self):
        """The hook is called with the exception or the retried result."""
        hook = Recorder(answer=None)
        policy = RetryPolicy(retry_after=hook)
        error = ValueError()

        policy._backoff(1, error, None)
        policy._backoff(2, {"status": 503}, None)

        assert [error, {"status": 503}] == hook.seen

    def test_delay_without_error_skips_the_hook(self):
        """delay(attempt) with no error consults no hint."""
        hook = Recorder(answer=1.0)
        policy = RetryPolicy(jitter=None, retry_after=hook)

        assert 0.1 == policy.delay(1)
        assert [] == hook.seen

    def test_delay_with_error_uses_the_hook(self):
        """delay(attempt, error) honours the hint for that error."""
        policy = RetryPolicy(
            retry_after=lambda e: getattr(e, "retry_after", None)
        )

        assert 7.0 == policy.delay(1, CircuitOpenError("b", 7.0))

    @pytest.mark.parametrize("hint", ["5", True, [1]])
    def test_non_numeric_hint_is_a_type_error(self, hint):
        """A hook returning a non-number is a bug, reported as TypeError."""
        policy = RetryPolicy(retry_after=lambda _: hint)

        with pytest.raises(TypeError, match="retry_after hook"):
            policy.delay(1, ValueError())


class TestExecutorAttributes:
    def test_attributes_read_by_executors(self):
        """max_attempts, deadline and budget are plain attributes."""
        budget = RetryBudget()
        policy = RetryPolicy(max_attempts=4, deadline=2.5, budget=budget)

        assert (4, 2.5) == (policy.max_attempts, policy.deadline)
        assert budget is policy.budget
