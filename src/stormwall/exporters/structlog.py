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

import logging
from typing import TYPE_CHECKING, Any, Final

from ._attach import Attachments, logged_types
from ._vocabulary import level_of, log_fields, resolve_levels, trace_ids


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
            levels.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        levels: Mapping[str, int | str | None] | None = None,
    ) -> None:
        self._logger: Any = (
            structlog.get_logger("stormwall") if logger is None else logger
        )
        self._levels = resolve_levels(levels)
        self._types = logged_types(self._levels)
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
        return self._attachments.attach(bus, self._handle, self._types)

    def _handle(self, event: Event) -> None:
        level = level_of(event, self._levels)
        if level is None:
            return
        fields = log_fields(event)
        fields.update(trace_ids())
        method = _METHODS.get(level)
        if method is None:
            self._logger.log(level, event.name, **fields)
        else:
            getattr(self._logger, method)(event.name, **fields)

    def __repr__(self) -> str:
        return f"<StructlogExporter logger={self._logger!r}>"
