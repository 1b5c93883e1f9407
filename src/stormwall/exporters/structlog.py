"""
Structured log lines for stormwall's events through structlog.

One line at startup::

    StructlogExporter().attach()

Each event that matters becomes one log call whose ``event`` is the event's
name (``stormwall.retry.scheduled``) and whose keys are its fields:
``executor``, ``key``, ``attempt``, ``delay``, ``error_type``, ... and, when
an OpenTelemetry span is active, ``trace_id`` and ``span_id``.

The exporter never calls ``structlog.configure``: lines go through whatever
the application configured (level filtering included). The default logger is
``structlog.get_logger("stormwall")``, a lazy proxy, so configuring structlog
after building the exporter still applies.

Never logged: call arguments, exception messages (they may carry personal
data) and tracebacks; an error appears as its type only.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Final

from stormwall import ConfigError

from ._attach import Attachments, logged_types
from ._logs import (
    fixed_levels,
    highest_level,
    level_of,
    log_fields,
    passing_outcomes,
    resolve_levels,
    trace_ids,
)


try:
    import structlog
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stormwall.exporters.structlog needs structlog: "
        "pip install 'stormwall[structlog]'"
    ) from None


if TYPE_CHECKING:
    from collections.abc import Mapping

    from stormwall import EventBus, Subscription
    from stormwall.events import Event


__all__ = ["StructlogExporter"]

# Calling the level's own method (rather than ``log(level, ...)``) is what
# every structlog wrapper supports, and it is what processors see as the
# method name (``add_log_level``, ``capture_logs``).
_METHODS: Final = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def _has_method(logger: object, name: str) -> bool:
    """
    Whether ``logger`` has a ``name`` method, without calling a proxy.

    structlog's lazy proxy (``get_logger()``) builds its methods in
    ``__getattr__``: asking it would bind the logger at build time, so a
    class with ``__getattr__`` is trusted to have them.
    """
    try:
        inspect.getattr_static(logger, name)
    except AttributeError:
        return (
            inspect.getattr_static(type(logger), "__getattr__", None)
            is not None
        )
    return True


def _check_logger(logger: object, levels: Mapping[str, int | None]) -> None:
    """Refuse what cannot take ``logger.warning("event", key=value)``."""
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        raise ConfigError(
            "logger",
            "a stdlib logger takes no keyword fields: use "
            "stormwall.exporters.logging.LoggingExporter for it, or give a "
            "structlog logger (structlog.get_logger(), "
            "structlog.stdlib.get_logger())",
        )
    missing = [m for m in _METHODS.values() if not _has_method(logger, m)]
    if missing:
        raise ConfigError(
            "logger",
            f"expected a structlog logger, got {type(logger).__name__} "
            f"(no {', '.join(missing)} method)",
        )
    custom = sorted(
        {v for v in levels.values() if v is not None and v not in _METHODS}
    )
    if custom and not _has_method(logger, "log"):
        raise ConfigError(
            "levels",
            f"level {custom[0]} has no method of its own and "
            f"{type(logger).__name__} has no log(level, event) method; use "
            "a level name",
        )


# A marker: the event's level depends on its outcome or state.
_QUALIFIED: Final[Any] = object()


# structlog's level names and numbers (those of stdlib logging).
_NAMED_LEVELS: Final = (
    ("debug", 10),
    ("info", 20),
    ("warning", 30),
    ("error", 40),
    ("critical", 50),
)


def _effective_level(logger: object) -> int | None:
    """The level a concrete filtering logger lets through, if it says."""
    method = inspect.getattr_static(type(logger), "get_effective_level", None)
    if method is None:
        return _level_by_methods(type(logger))
    try:
        level = logger.get_effective_level()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a logger we cannot ask
        return None
    return level if isinstance(level, int) else None


def _level_by_methods(cls: type) -> int | None:
    """
    The level of a filtering logger from before ``get_effective_level``.

    structlog's ``make_filtering_bound_logger`` (up to 24.x) gives every
    level below the filter one shared no-op method named ``_nop``: the
    lowest level with a real method is the one it lets through.
    """
    if not cls.__name__.startswith("BoundLoggerFilteringAt"):
        return None
    for name, number in _NAMED_LEVELS:
        method = inspect.getattr_static(cls, name, None)
        if method is None:
            return None
        if getattr(method, "__name__", "") != "_nop":
            return number
    return _NAMED_LEVELS[-1][1] + 10  # all filtered


class StructlogExporter:
    """
    Log stormwall's events through structlog.

    Args:
        logger: A structlog logger (default:
            ``structlog.get_logger("stormwall")``).
        levels: Overrides of the default levels, by event name or
            ``"event name:outcome or state"``, e.g. ``{"stormwall.retry
            .scheduled": "info", "stormwall.attempt.ended:success": None}``
            (``None`` silences a line). Defaults: retry scheduled, limiter or
            bulkhead rejection WARNING; breaker opened ERROR, half-open
            WARNING, closed INFO; a successful attempt DEBUG.

    Raises:
        ConfigError: ``levels`` is not a mapping of stormwall event names to
            levels, or ``logger`` has no ``debug`` ... ``critical`` methods
            (``log`` too for a level without a method of its own), or is a
            stdlib `logging.Logger` (use `LoggingExporter` for those).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        levels: Mapping[str, int | str | None] | None = None,
    ) -> None:
        self._levels = resolve_levels(levels)
        if logger is None:
            logger = structlog.get_logger("stormwall")
        else:
            _check_logger(logger, self._levels)
        self._logger: Any = logger
        self._types = logged_types(self._levels)
        self._fixed = fixed_levels(self._levels)
        self._floor = 0  # lines below it are dropped before any work
        self._attachments = Attachments()

    @property
    def logger(self) -> Any:
        """The logger lines go to."""
        return self._logger

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """
        Start logging the events on ``bus``.

        Attaching to a bus this exporter is already attached to returns the
        same subscription (each line is logged once).

        Args:
            bus: The bus (`stormwall.default_bus` when ``None``).

        Returns:
            The `Subscription`; close it to stop.

        Raises:
            ConfigError: ``bus`` is not an `EventBus`.
        """
        types = self._passing()
        return self._attachments.attach(
            bus,
            self._handle,
            types,
            passing_outcomes(types, self._levels, self._floor),
        )

    def _passing(self) -> tuple[type[Event], ...]:
        """
        The event types whose lines can pass the logger's level.

        A logger that knows its level (structlog's filtering bound logger,
        ``get_effective_level()``) is asked once, here: an event type none of
        whose lines reaches that level is not subscribed to, so executors do
        not even build it (a line filtered out costs nothing); likewise for
        the outcomes of calls and attempts (`passing_outcomes`), so with
        successes below the level a success builds nothing. A lazy proxy
        (``structlog.get_logger()``) is not asked: it may be configured later,
        and structlog filters its lines itself.
        """
        floor = _effective_level(self._logger)
        if floor is None:
            return self._types
        # The one cheap check a filtered line of a subscribed type costs.
        self._floor = floor
        return tuple(
            cls
            for cls in self._types
            if highest_level(cls, self._levels) >= floor
        )

    def _handle(self, event: Event) -> None:
        level = self._fixed.get(type(event), _QUALIFIED)
        if level is _QUALIFIED:
            level = level_of(event, self._levels)
        if level is None or level < self._floor:
            return
        fields = log_fields(event)
        fields.update(trace_ids(event))
        method = _METHODS.get(level)
        if method is None:
            self._logger.log(level, event.name, **fields)
        else:
            getattr(self._logger, method)(event.name, **fields)

    def __repr__(self) -> str:
        return f"<StructlogExporter logger={self._logger!r}>"
