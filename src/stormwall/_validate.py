"""
Parameter checks shared by every public constructor.

Each helper returns the normalised value or raises ``ConfigError`` naming the
parameter. ``bool`` is refused where a number is expected: ``True`` as a
capacity is always a mistake. Durations (``seconds=True``) also take a
`datetime.timedelta` or a string such as ``"250ms"`` (see `duration`),
normalised to float seconds once, here.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from ._core._window import MIN_DURATION
from ._errors import ConfigError


if TYPE_CHECKING:
    from collections.abc import Callable


T = TypeVar("T")

# The units a duration string may end with: seconds per unit, as a
# fraction (milliseconds divide, so "250ms" is exactly 0.25).
UNITS: dict[str, tuple[float, float]] = {
    "ms": (1.0, 1000.0),
    "s": (1.0, 1.0),
    "m": (60.0, 1.0),
    "h": (3600.0, 1.0),
}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(ms|s|m|h)")


def shown(value: object) -> str:
    """
    ``repr(value)`` for an error message, short for an int of many digits.

    ``repr`` of an int past ``sys.get_int_max_str_digits()`` (4300 digits)
    raises ValueError, which would escape in place of the ConfigError.
    """
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        digits = int(value.bit_length() * 0.30103) + 1  # log10(2)
        return f"{'-' if value < 0 else ''}an int of about {digits} digits"
    return repr(value)


def duration(name: str, text: str) -> float:
    """
    Parse a duration string into seconds.

    A decimal number (no sign, no exponent, no spaces) followed by one unit:
    ``ms`` (milliseconds), ``s`` (seconds), ``m`` (minutes) or ``h``
    (hours), e.g. ``"250ms"``, ``"30s"``, ``"1.5m"``, ``"2h"``. Anything
    else is a `ConfigError` naming ``name``.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ConfigError(
            name,
            "expected a number of seconds, a timedelta or a duration string "
            f"like '250ms', '30s', '1.5m' or '2h', got {text!r}",
        )
    times, per = UNITS[match[2]]
    seconds = float(match[1]) * times / per
    if math.isinf(seconds):
        raise ConfigError(name, f"out of range: {text!r}")
    return seconds


def parse_duration(
    value: float | timedelta | str, *, name: str = "duration"
) -> float:
    """
    Seconds from a duration, as every stormwall duration parameter reads it.

    A number of seconds, a `~datetime.timedelta`, or a string: a decimal
    number and one unit, ``ms``, ``s``, ``m`` or ``h`` (``"250ms"``,
    ``"30s"``, ``"1.5m"``, ``"2h"``). ``math.inf`` is returned as is (the
    parameters that mean "no bound" take it).

    Raises:
        ConfigError: naming ``name``, for anything else, NaN and negative
            durations included.
    """
    seconds = _number(name, value, seconds=True)
    if seconds < 0:
        raise ConfigError(name, f"must be >= 0, got {shown(value)}")
    return seconds


def _number(name: str, value: object, seconds: bool) -> float:
    if isinstance(value, timedelta):
        if not seconds:
            raise ConfigError(name, "expected a number, got timedelta")
        return value.total_seconds()
    if seconds and isinstance(value, str):
        return duration(name, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            name, f"expected a number, got {type(value).__name__}"
        )
    try:
        number = float(value)
    except OverflowError:
        # An int past float range (10**400): float() and math.isnan() raise
        # OverflowError on it, which a caller catching ConfigError misses.
        raise ConfigError(
            name, "out of range: an int too large for a float"
        ) from None
    if math.isnan(number):
        raise ConfigError(name, "must not be NaN")
    return number


def positive(
    name: str, value: object, *, finite: bool = True, seconds: bool = False
) -> float:
    """A number > 0 (finite unless told otherwise)."""
    v = _number(name, value, seconds)
    if v <= 0:
        raise ConfigError(name, f"must be > 0, got {shown(value)}")
    if finite and math.isinf(v):
        raise ConfigError(name, "must be finite")
    return v


def non_negative(
    name: str, value: object, *, finite: bool = True, seconds: bool = False
) -> float:
    """A number >= 0 (finite unless told otherwise)."""
    v = _number(name, value, seconds)
    if v < 0:
        raise ConfigError(name, f"must be >= 0, got {shown(value)}")
    if finite and math.isinf(v):
        raise ConfigError(name, "must be finite")
    return v


def optional_non_negative(
    name: str, value: object, *, seconds: bool = False
) -> float | None:
    """``None`` (no limit) or a finite number >= 0."""
    return (
        None if value is None else non_negative(name, value, seconds=seconds)
    )


def optional_positive(
    name: str, value: object, *, seconds: bool = False
) -> float | None:
    """``None`` or a finite number > 0."""
    return None if value is None else positive(name, value, seconds=seconds)


def window(name: str, value: object) -> float:
    """
    A time window's length: finite seconds (or a ``timedelta``) >= 1 ms.

    `BucketWindow`'s narrowest (`MIN_DURATION`): a bucket too narrow for a
    float breaks its arithmetic.
    """
    seconds = positive(name, value, seconds=True)
    if seconds < MIN_DURATION:
        raise ConfigError(
            name, f"must be >= {MIN_DURATION:g} s (1 ms), got {seconds!r}"
        )
    return seconds


def fraction(name: str, value: object) -> float:
    """A rate in (0, 1]."""
    v = _number(name, value, seconds=False)
    if not 0 < v <= 1:
        raise ConfigError(name, f"must be in (0, 1], got {shown(value)}")
    return v


def positive_int(name: str, value: object) -> int:
    """An ``int`` >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an int, got {type(value).__name__}")
    if value < 1:
        raise ConfigError(name, f"must be >= 1, got {shown(value)}")
    return value


def non_negative_int(name: str, value: object) -> int:
    """An ``int`` >= 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an int, got {type(value).__name__}")
    if value < 0:
        raise ConfigError(name, f"must be >= 0, got {shown(value)}")
    return value


def optional_positive_int(name: str, value: object) -> int | None:
    """``None`` or an ``int`` >= 1."""
    return None if value is None else positive_int(name, value)


def name(param: str, value: object, default: str) -> str:
    """A non-empty ``str`` name, or the default when ``None``."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(param, f"expected a str, got {type(value).__name__}")
    if not value or value != value.strip():
        raise ConfigError(
            param, "must be non-empty, without surrounding spaces"
        )
    return value


def key(value: object) -> str:
    """A call key: any ``str`` (the limiters, the executors, the backends)."""
    if not isinstance(value, str):
        raise ConfigError("key", f"expected a str, got {type(value).__name__}")
    return value


def key_function(
    value: object,
    what: str,
    *,
    default: Callable[..., str] | None = None,
    fixed: bool = False,
) -> Callable[..., str]:
    """
    A ``key=`` option: a function returning the call's key.

    ``None`` is ``default`` (when there is one); a callable is used as
    given; with ``fixed``, a ``str`` is the key of every call. Anything else
    is a `ConfigError` saying ``what`` was expected.
    """
    if value is None and default is not None:
        return default
    if fixed and isinstance(value, str):
        constant = value

        def fixed_key(*_args: object, **_kwargs: object) -> str:
            return constant

        return fixed_key
    if callable(value):
        return value
    raise ConfigError("key", f"expected {what}, got {type(value).__name__}")


def instance_of(
    param: str, value: object, cls: type[T] | tuple[type, ...], what: str
) -> T:
    """``value`` when it is an instance of ``cls``."""
    if not isinstance(value, cls):
        raise ConfigError(
            param, f"expected {what}, got {type(value).__name__}"
        )
    return value  # type: ignore[return-value]


def exception_matcher(
    param: str, value: object
) -> Callable[[BaseException], bool]:
    """
    Turn exception types or a predicate into one predicate.

    Accepts an exception class, a tuple of them, or a callable taking the
    exception and returning a truthy value.
    """
    if isinstance(value, type) and issubclass(value, BaseException):
        types: tuple[type[BaseException], ...] = (value,)
    elif isinstance(value, tuple):
        if not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in value
        ):
            raise ConfigError(
                param, "a tuple must hold exception classes only"
            )
        types = value
    elif isinstance(value, type):
        raise ConfigError(
            param,
            f"{value.__name__} is not an exception class; expected exception "
            "classes or a predicate",
        )
    elif callable(value):
        pred = value

        def matches(exc: BaseException) -> bool:
            return bool(pred(exc))

        return matches
    else:
        raise ConfigError(
            param,
            "expected an exception class, a tuple of them, or a predicate, "
            f"got {type(value).__name__}",
        )

    def is_instance(exc: BaseException) -> bool:
        return isinstance(exc, types)

    return is_instance
