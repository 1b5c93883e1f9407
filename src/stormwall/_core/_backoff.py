"""
Back-off arithmetic: exponential growth, a cap, and jitter.

Pure functions on plain floats. The random source is a parameter (anything
with ``random() -> float`` in ``[0, 1)``), so a test passes a seeded
``random.Random`` or a fake returning fixed values and gets exact delays.
Nothing here reads a clock or sleeps: `stormwall.RetryPolicy` decides, the
executors wait.

Rules:

- The exponential step for the *n*-th failure (1-based) is
  ``base * multiplier ** (n - 1)``, capped at ``cap``. The cap is decided in
  log space first, so attempt 10 000 neither overflows nor loses the cap.
- Every jitter result is clamped to ``[0, cap]``; a NaN (only a broken random
  source can produce one) becomes ``0``.
- The jitter formulas are those of Marc Brooker, "Exponential Backoff And
  Jitter", AWS Architecture Blog, 2015
  (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
  "full", "equal" and "decorrelated". The proportional (``±f``) jitter is the
  "randomization factor" of Google's HTTP client libraries
  (``com.google.api.client.util.ExponentialBackOff``).
"""

from __future__ import annotations

import math
import sys
from typing import Protocol


__all__ = [
    "RandomSource",
    "clamp",
    "decorrelated_jitter",
    "equal_jitter",
    "exponential",
    "full_jitter",
    "log_span",
    "proportional_jitter",
]


class RandomSource(Protocol):
    """
    Anything with ``random() -> float`` in ``[0, 1)``, like `random.Random`.
    """

    def random(self) -> float:
        """Return the next float in ``[0, 1)``."""
        ...


# ``math.exp(709.0)`` is about 8.2e307, the largest power of e that is still a
# finite float. Below it ``multiplier ** k`` is computed exactly as a power;
# above it only log-space arithmetic is safe.
_MAX_FINITE_LOG = 709.0


def log_span(base: float, cap: float) -> float:
    """
    ``log(cap / base)`` without overflow, or ``-inf`` when ``base`` is 0.

    `stormwall.RetryPolicy` precomputes it once; `exponential` compares the
    growth ``(n - 1) * log(multiplier)`` against it.
    """
    if base <= 0.0:
        return -math.inf
    # log(cap) - log(base), not log(cap / base): the quotient of a huge cap
    # and a subnormal base overflows to inf.
    return math.log(cap) - math.log(base)


def exponential(
    attempt: int,
    base: float,
    multiplier: float,
    cap: float,
    span: float | None = None,
) -> float:
    """
    The un-jittered delay after the ``attempt``-th failure (1-based).

    ``span`` is `log_span` of ``(base, cap)``, computed here when omitted.
    """
    if base <= 0.0:
        return 0.0
    if attempt <= 1 or multiplier == 1.0:
        return min(base, cap)
    if span is None:
        span = log_span(base, cap)
    try:
        growth = (attempt - 1) * math.log(multiplier)
    except OverflowError:
        # An attempt number past float range (10**400): far past the cap.
        return cap
    if growth >= span:
        return cap
    if growth < _MAX_FINITE_LOG:
        # Exact for the usual small cases (0.1 * 2 ** 3 == 0.8).
        return min(base * multiplier ** (attempt - 1), cap)
    # A tiny base with a huge cap: the power alone would overflow, the
    # product would not.
    return min(math.exp(math.log(base) + growth), cap)


def clamp(value: float, cap: float) -> float:
    """``value`` clamped to ``[0, cap]``; NaN becomes 0."""
    if value > cap:
        return cap
    if value >= 0.0:
        return value
    return 0.0  # negative, or NaN (every comparison with NaN is false)


def full_jitter(delay: float, rng: RandomSource) -> float:
    """
    Uniform in ``[0, delay]`` (AWS "Full Jitter").

    Spreads retries the most, so clients that failed together do not retry
    together; the mean delay halves.
    """
    return delay * rng.random()


def equal_jitter(delay: float, rng: RandomSource) -> float:
    """
    ``delay / 2`` plus uniform in ``[0, delay / 2]`` (AWS "Equal Jitter").

    Keeps at least half of the back-off, at the cost of less spreading.
    """
    half = delay / 2.0
    return half + half * rng.random()


def decorrelated_jitter(
    previous: float, base: float, cap: float, rng: RandomSource
) -> float:
    """
    ``min(cap, uniform(base, previous * 3))`` (AWS "Decorrelated Jitter").

    ``previous`` is the delay slept before the last attempt (``base`` before
    the first retry). When ``previous * 3`` is below ``base`` (a server hint
    of 0 was honoured last time), the range collapses to ``base``.
    """
    # 3 * a cap near the float maximum overflows, and inf * 0 would be NaN.
    high = min(max(base, previous * 3.0), sys.float_info.max)
    # Draw first: a NaN from a broken source stays NaN for `clamp` to zero.
    return min(base + (high - base) * rng.random(), cap)


def proportional_jitter(
    delay: float, fraction: float, cap: float, rng: RandomSource
) -> float:
    """
    ``delay * (1 ± fraction)``, uniform, clamped to ``[0, cap]``.

    ``fraction=0.1`` keeps the delay within 10 % of the exponential step:
    predictable waits, with enough spread to break lock-step retries.
    """
    return clamp(delay * (1.0 + fraction * (2.0 * rng.random() - 1.0)), cap)
