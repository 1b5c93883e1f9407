"""
Tests for the pure back-off arithmetic in ``stormwall._core._backoff``.
"""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormwall._core import _backoff


class Fixed:
    """A random source that always returns the same value."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


class TestExponential:
    @pytest.mark.parametrize(
        ("attempt", "base", "multiplier", "cap", "expected"),
        [
            pytest.param(1, 0.1, 2.0, 10.0, 0.1, id="first"),
            pytest.param(2, 0.1, 2.0, 10.0, 0.2, id="second"),
            pytest.param(4, 0.1, 2.0, 10.0, 0.8, id="fourth"),
            pytest.param(8, 0.1, 2.0, 10.0, 10.0, id="capped"),
            pytest.param(3, 1.0, 3.0, 100.0, 9.0, id="multiplier-3"),
            pytest.param(50, 0.5, 1.0, 10.0, 0.5, id="constant"),
            pytest.param(7, 0.0, 2.0, 10.0, 0.0, id="zero-base"),
            pytest.param(1, 5.0, 2.0, 5.0, 5.0, id="base-equals-cap"),
            pytest.param(10_000, 0.1, 2.0, 10.0, 10.0, id="attempt-10000"),
            pytest.param(10**18, 1e-300, 1.5, 1e300, 1e300, id="huge-attempt"),
        ],
    )
    def test_table(self, attempt, base, multiplier, cap, expected):
        """The step is base * multiplier ** (attempt - 1), capped."""
        assert expected == _backoff.exponential(attempt, base, multiplier, cap)

    def test_tiny_base_huge_cap_does_not_overflow(self):
        """A power beyond the float range is computed in log space."""
        # 1.01 ** 80_000 overflows a float; 5e-324 * 1.01 ** 80_000 does not.
        actual = _backoff.exponential(80_001, 5e-324, 1.01, 1e300)

        assert math.isfinite(actual)
        assert 1e300 > actual > 1e-30

    def test_precomputed_span_gives_the_same_result(self):
        """Passing log_span yields the same delay as computing it inline."""
        span = _backoff.log_span(0.1, 10.0)

        assert _backoff.exponential(5, 0.1, 2.0, 10.0) == (
            _backoff.exponential(5, 0.1, 2.0, 10.0, span)
        )

    def test_log_span_of_zero_base(self):
        """A zero base has no finite span."""
        assert -math.inf == _backoff.log_span(0.0, 10.0)

    @given(
        attempt=st.integers(1, 10**9),
        base=st.floats(0, 1e6),
        multiplier=st.floats(1, 1e6),
        extra=st.floats(0, 1e300),
    )
    def test_always_within_cap(self, attempt, base, multiplier, extra):
        """For any input the step is finite and within [0, cap]."""
        cap = max(base + extra, 1e-9)

        actual = _backoff.exponential(attempt, base, multiplier, cap)

        assert 0.0 <= actual <= cap


class TestJitter:
    @pytest.mark.parametrize(
        ("r", "expected"),
        [
            pytest.param(0.0, 0.0, id="r0"),
            pytest.param(0.5, 2.0, id="r05"),
            pytest.param(1.0, 4.0, id="r1"),
        ],
    )
    def test_full(self, r, expected):
        """Full jitter is uniform in [0, d]."""
        assert expected == _backoff.full_jitter(4.0, Fixed(r))

    @pytest.mark.parametrize(
        ("r", "expected"),
        [
            pytest.param(0.0, 2.0, id="r0"),
            pytest.param(0.5, 3.0, id="r05"),
            pytest.param(1.0, 4.0, id="r1"),
        ],
    )
    def test_equal(self, r, expected):
        """Equal jitter is d/2 plus uniform in [0, d/2]."""
        assert expected == _backoff.equal_jitter(4.0, Fixed(r))

    @pytest.mark.parametrize(
        ("previous", "r", "expected"),
        [
            pytest.param(2.0, 0.0, 1.0, id="low-end-is-base"),
            pytest.param(2.0, 0.5, 3.5, id="middle"),
            pytest.param(2.0, 1.0, 6.0, id="high-end-is-3x-previous"),
            pytest.param(50.0, 1.0, 100.0, id="capped"),
            pytest.param(0.0, 0.7, 1.0, id="previous-below-base"),
        ],
    )
    def test_decorrelated(self, previous, r, expected):
        """Decorrelated jitter is min(cap, uniform(base, 3 * previous))."""
        assert expected == _backoff.decorrelated_jitter(
            previous, 1.0, 100.0, Fixed(r)
        )

    def test_decorrelated_near_float_max_is_not_nan(self):
        """Three times a huge previous delay does not overflow into NaN."""
        cap = sys.float_info.max

        assert 1.0 == _backoff.decorrelated_jitter(cap, 1.0, cap, Fixed(0.0))
        assert cap == _backoff.decorrelated_jitter(cap, 1.0, cap, Fixed(1.0))

    @pytest.mark.parametrize(
        ("r", "expected"),
        [
            pytest.param(0.0, 2.0, id="minus-fraction"),
            pytest.param(0.5, 4.0, id="unchanged"),
            pytest.param(1.0, 5.0, id="plus-fraction-capped"),
        ],
    )
    def test_proportional(self, r, expected):
        """A fraction f gives d * (1 ± f), clamped to the cap."""
        assert expected == _backoff.proportional_jitter(
            4.0, 0.5, 5.0, Fixed(r)
        )

    def test_proportional_full_fraction_reaches_zero(self):
        """With f = 1 the low end is exactly 0."""
        assert 0.0 == _backoff.proportional_jitter(4.0, 1.0, 10.0, Fixed(0.0))


class TestClamp:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(-1.0, 0.0, id="negative"),
            pytest.param(0.0, 0.0, id="zero"),
            pytest.param(3.0, 3.0, id="inside"),
            pytest.param(11.0, 10.0, id="above"),
            pytest.param(math.inf, 10.0, id="inf"),
            pytest.param(-math.inf, 0.0, id="minus-inf"),
            pytest.param(math.nan, 0.0, id="nan"),
        ],
    )
    def test_table(self, value, expected):
        """Values are clamped to [0, cap] and NaN becomes 0."""
        assert expected == _backoff.clamp(value, 10.0)
