"""
What both log exporters share: levels, fields and trace ids.

A log line is named like its event and carries the same fields in structlog
and stdlib logging alike; its level comes from `DEFAULT_LEVELS` overridden by
the user's ``levels`` (by event name, or ``"name:outcome"`` /
``"name:state"``). Standard library only; OpenTelemetry is imported lazily,
for the trace ids, when installed.
"""

from __future__ import annotations

import difflib
import logging
from typing import TYPE_CHECKING, Any, Final

from stormwall import ConfigError

from ._attach import EVENT_TYPES
from ._vocabulary import (
    ATTEMPT_OUTCOMES,
    BREAKER_STATES,
    CALL_OUTCOMES,
    CALL_SPANS,
)


if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from stormwall.events import Event


# The level of each log line, by "event name" or "event name:qualifier", where
# the qualifier is the outcome (calls, attempts) or the state entered
# (breakers). A qualified entry wins over the bare name; None means "no line".
DEFAULT_LEVELS: Final[Mapping[str, int | None]] = {
    "stormwall.call.started": None,
    "stormwall.call.ended": logging.DEBUG,
    "stormwall.call.ended:failure": logging.WARNING,
    "stormwall.call.ended:rejected": logging.WARNING,
    "stormwall.call.ended:fallback": logging.WARNING,
    "stormwall.call.ended:cancelled": logging.INFO,
    "stormwall.attempt.started": None,
    "stormwall.attempt.ended": logging.INFO,
    "stormwall.attempt.ended:success": logging.DEBUG,
    "stormwall.retry.scheduled": logging.WARNING,
    "stormwall.retry_budget.exhausted": logging.WARNING,
    "stormwall.circuit_breaker.state_changed": logging.WARNING,
    "stormwall.circuit_breaker.state_changed:open": logging.ERROR,
    "stormwall.circuit_breaker.state_changed:forced_open": logging.ERROR,
    "stormwall.circuit_breaker.state_changed:half_open": logging.WARNING,
    "stormwall.circuit_breaker.state_changed:closed": logging.INFO,
    "stormwall.circuit_breaker.rejected": logging.INFO,
    "stormwall.rate_limiter.allowed": None,
    "stormwall.rate_limiter.waited": logging.DEBUG,
    "stormwall.rate_limiter.rejected": logging.WARNING,
    "stormwall.bulkhead.acquired": None,
    "stormwall.bulkhead.released": None,
    "stormwall.bulkhead.rejected": logging.WARNING,
    "stormwall.fallback.used": logging.WARNING,
    "stormwall.executor.observed": None,
    "stormwall.backend.error": logging.ERROR,
    # Decided without asking the backend (it failed < retry_interval ago):
    # one line per call would flood the logs during an outage.
    "stormwall.backend.error:cooldown": logging.DEBUG,
}

_LEVEL_NAMES: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# What may follow "event name:" in ``levels``: the outcomes or the states
# entered, as `qualifier` reads them from the event ("cooldown" for a backend
# decision taken without asking the backend).
QUALIFIERS: Final[Mapping[str, tuple[str, ...]]] = {
    "stormwall.call.ended": CALL_OUTCOMES,
    "stormwall.attempt.ended": ATTEMPT_OUTCOMES,
    "stormwall.circuit_breaker.state_changed": BREAKER_STATES,
    "stormwall.backend.error": ("cooldown",),
}


def _level_keys() -> frozenset[str]:
    """Every valid key of ``levels``: event names, qualified ones."""
    names = {cls.name for cls in EVENT_TYPES}
    return frozenset(
        names.union(
            f"{name}:{q}"
            for name, qualifiers in QUALIFIERS.items()
            for q in qualifiers
        )
    )


def _nearest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_key(name: object, valid: frozenset[str]) -> str:
    """``name`` if it is an event name (or a qualified one) of ``valid``."""
    if not isinstance(name, str):
        raise ConfigError(
            "levels",
            f"{name!r} is not a stormwall event name (keys are strings like "
            "'stormwall.retry.scheduled')",
        )
    if name in valid:
        return name
    event, colon, qualifier = name.partition(":")
    if colon and event in valid:
        allowed = QUALIFIERS.get(event)
        if allowed is None:
            raise ConfigError(
                "levels",
                f"{event!r} has no outcome or state to qualify it with "
                f"{qualifier!r}; only {', '.join(map(repr, QUALIFIERS))} do",
            )
        raise ConfigError(
            "levels",
            f"{qualifier!r} is not an outcome or state of {event!r} (one of "
            f"{', '.join(allowed)}){_nearest(name, valid)}",
        )
    raise ConfigError(
        "levels",
        f"{name!r} is not a stormwall event name{_nearest(name, valid)}",
    )


def _check_level(name: str, level: object) -> int | None:
    """``level`` as a number: ``None``, an int in 1..50 or a level name."""
    if level is None:
        return None
    if isinstance(level, int) and not isinstance(level, bool):
        if 1 <= level <= logging.CRITICAL:
            return level
        raise ConfigError(
            "levels",
            f"{level!r} (for {name!r}) is outside 1..{logging.CRITICAL} "
            "(DEBUG is 10, CRITICAL 50; None silences the line)",
        )
    if isinstance(level, str):
        number = _LEVEL_NAMES.get(level.lower())
        if number is not None:
            return number
        raise ConfigError(
            "levels",
            f"{level!r} (for {name!r}) is not a logging level name"
            f"{_nearest(level.lower(), _LEVEL_NAMES)}; use one of "
            f"{', '.join(_LEVEL_NAMES)}, an int or None",
        )
    raise ConfigError(
        "levels",
        f"{level!r} (for {name!r}) is not a logging level: expected a level "
        f"name, an int or None, got {type(level).__name__}",
    )


def resolve_levels(
    levels: Mapping[str, int | str | None] | None,
) -> dict[str, int | None]:
    """
    The defaults overridden by ``levels`` (ints or names like ``"info"``).

    Raises:
        ConfigError: ``levels`` is not a mapping, a key is not a stormwall
            event name (or ``"name:outcome"``/``"name:state"`` with a real
            outcome or state), or a level is not a level name, an int in
            1..50 or ``None``. Unknown names come with the nearest valid one.
    """
    merged: dict[str, int | None] = dict(DEFAULT_LEVELS)
    if levels is None:
        return merged
    if not hasattr(levels, "items"):
        raise ConfigError(
            "levels", f"expected a mapping, got {type(levels).__name__}"
        )
    valid = _level_keys()
    for name, level in levels.items():
        key = _check_key(name, valid)
        merged[key] = _check_level(key, level)
    return merged


def qualifier(event: Event) -> str | None:
    """
    What refines an event's level: its outcome or the state entered.

    ``"cooldown"`` for a backend decision taken without a round trip.
    """
    if getattr(event, "cooldown", False):
        return "cooldown"
    outcome = getattr(event, "outcome", None)
    if outcome is not None:
        return str(outcome)
    to_state = getattr(event, "to_state", None)
    return None if to_state is None else str(to_state)


_QUALIFIED_KEYS: dict[tuple[str, str], str] = {}


def _qualified(name: str, outcome: str) -> str:
    """``"name:outcome"``, built once per pair."""
    key = _QUALIFIED_KEYS.get((name, outcome))
    if key is None:
        key = f"{name}:{outcome}"
        if len(_QUALIFIED_KEYS) < 1024:  # outcomes are few; stay bounded
            _QUALIFIED_KEYS[name, outcome] = key
    return key


def level_of(event: Event, levels: Mapping[str, int | None]) -> int | None:
    """The level to log ``event`` at, or ``None`` for no line."""
    outcome = getattr(event, "outcome", None)
    if outcome is not None and not getattr(event, "cooldown", False):
        # The common case (calls, attempts), without building a string
        # for every lookup of the qualified key.
        qualified = _qualified(event.name, outcome)
        if qualified in levels:
            return levels[qualified]
        return levels.get(event.name)
    q = qualifier(event)
    if q is not None:
        qualified = f"{event.name}:{q}"
        if qualified in levels:
            return levels[qualified]
    return levels.get(event.name)


# Fields copied onto every log line, when present on the event.
_LOG_FIELDS: Final = (
    "executor",
    "key",
    "call_id",
    "attempt",
    "outcome",
    "attempts",
    "duration",
    "delay",
    "breaker",
    "from_state",
    "to_state",
    "reason",
    "state",
    "retry_after",
    "limiter",
    "waited",
    "bulkhead",
    "in_flight",
    "component",
    "backend",
    "operation",
    "policy",
    "cooldown",
)


def log_fields(event: Event) -> dict[str, object]:
    """
    The structured fields of ``event``'s log line.

    Never the call's arguments; the error as its type only (messages may
    carry personal data).
    """
    fields: dict[str, object] = {}
    for name in _LOG_FIELDS:
        value = getattr(event, name, None)
        if value is not None:
            fields[name] = value
    if hasattr(event, "error"):
        error = event.error
        if error is not None:
            fields["error_type"] = type(error).__name__
    return fields


# The events that belong to an attempt (their lines carry the attempt span);
# every other event of a call belongs to the call.
_ATTEMPT_EVENTS: Final = frozenset(
    {"stormwall.attempt.started", "stormwall.attempt.ended"}
)


def trace_ids(event: Event | None = None) -> dict[str, str]:
    """
    ``trace_id`` and ``span_id`` (hex) of ``event``'s span.

    That is the active OpenTelemetry span, except for a call's own events
    (not an attempt's) while one of its attempt spans is active: they carry
    the call span, which `TracingExporter` keeps in `CALL_SPANS`. The bus
    runs the tracing exporter's span openings first and closings last, so
    the right span is active whatever the exporters' order.

    Empty when OpenTelemetry is not installed or no span is active.
    """
    otel = _otel()
    if otel is None:
        return {}
    trace, _ = otel
    span = None
    if (
        event is not None
        and event.call_id is not None
        and event.name not in _ATTEMPT_EVENTS
    ):
        span = CALL_SPANS.get(event.call_id)
    if span is None:
        span = trace.get_current_span()
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return {}
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


_otel_modules: Any = None
_otel_checked = False


def _otel() -> Any:
    """``(opentelemetry.trace, opentelemetry.context)``, or ``None``."""
    global _otel_modules, _otel_checked  # noqa: PLW0603 - a lazy import cache
    if not _otel_checked:
        try:
            from opentelemetry import context, trace
        except ImportError:
            _otel_modules = None
        else:
            _otel_modules = (trace, context)
        _otel_checked = True
    return _otel_modules


def fixed_levels(
    levels: Mapping[str, int | None],
) -> dict[type[Event], int | None]:
    """
    Event type -> its level, for the types no qualifier can change.

    A type with an outcome or state (calls, attempts, breaker transitions,
    backend errors) is left out: `level_of` decides those per event.
    """
    return {
        cls: levels.get(cls.name)
        for cls in EVENT_TYPES
        if cls.name not in QUALIFIERS
    }


def highest_level(cls: type[Event], levels: Mapping[str, int | None]) -> int:
    """The highest level any event of ``cls`` can be logged at (0: none)."""
    prefix = cls.name + ":"
    found = [
        level
        for name, level in levels.items()
        if level is not None and (name == cls.name or name.startswith(prefix))
    ]
    return max(found, default=0)


def passing_outcomes(
    types: Iterable[type[Event]],
    levels: Mapping[str, int | None],
    floor: int = 0,
) -> dict[type[Event], frozenset[str]]:
    """
    For the types with an outcome, the outcomes whose line can be logged.

    A line passes when its level (the qualified one first) is set and at
    least ``floor``. A type all of whose outcomes pass is left out: it
    needs no filter. Subscribed with these (`EventBus.subscribe`), an
    exporter whose logger drops successes makes a success build nothing.
    """
    found: dict[type[Event], frozenset[str]] = {}
    for cls in types:
        if "outcome" not in getattr(cls, "__dataclass_fields__", {}):
            continue
        outcomes = QUALIFIERS.get(cls.name, ())
        passing = frozenset(
            outcome
            for outcome in outcomes
            if (level := _outcome_level(cls.name, outcome, levels)) is not None
            and level >= floor
        )
        if len(passing) < len(outcomes):
            found[cls] = passing
    return found


def _outcome_level(
    name: str, outcome: str, levels: Mapping[str, int | None]
) -> int | None:
    qualified = f"{name}:{outcome}"
    if qualified in levels:
        return levels[qualified]
    return levels.get(name)
