"""
Log lines for stormwall's events through the standard library's `logging`.

One line at startup::

    LoggingExporter().attach()

Each event that matters becomes one record named like the event, with its
fields both rendered in the message (so a plain ``%(message)s`` formatter
shows them) and attached as ``record.stormwall`` (a dict, for JSON
formatters)::

    stormwall.retry.scheduled executor=svc key=k attempt=1 delay=0.5 \
error_type=TimeoutError

Records go to the ``stormwall.events`` logger by default: the bare
``stormwall`` logger carries the bus's own error reports, and a child logger
lets you set the events' level apart (``logging.getLogger("stormwall.events")
.setLevel(...)``) while ``stormwall`` still governs both. The exporter never
adds handlers or sets levels; without any logging configuration Python's
last-resort handler prints WARNING and above, as for any library.

Never logged: call arguments, exception messages (they may carry personal
data) and tracebacks; an error appears as its type only.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from stormwall import ConfigError

from ._attach import Attachments, logged_types
from ._logs import (
    fixed_levels,
    level_of,
    log_fields,
    passing_outcomes,
    resolve_levels,
    trace_ids,
)


if TYPE_CHECKING:
    from collections.abc import Mapping

    from stormwall import EventBus, Subscription
    from stormwall.events import Event


__all__ = ["LoggingExporter"]

# A marker: the event's level depends on its outcome or state.
_QUALIFIED: Any = object()


def _render(value: object) -> str:
    """A field value, readable and unambiguous in a ``k=v`` message."""
    if isinstance(value, float):
        return format(value, ".6g")
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return repr(text)
    return text


class LoggingExporter:
    """
    Log stormwall's events through the standard library's `logging`.

    Args:
        logger: Where records go (default: ``logging.getLogger(
            "stormwall.events")``); a `logging.Logger` or a
            `logging.LoggerAdapter`.
        levels: Overrides of the default levels, by event name or
            ``"event name:outcome or state"``, e.g. ``{"stormwall.retry
            .scheduled": "info", "stormwall.attempt.ended:success": None}``
            (``None`` silences a line). Defaults: retry scheduled, limiter or
            bulkhead rejection WARNING; breaker opened ERROR, half-open
            WARNING, closed INFO; a successful attempt DEBUG.

    Raises:
        ConfigError: ``levels`` is not a mapping of stormwall event names to
            levels, or ``logger`` is not a logger.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        *,
        levels: Mapping[str, int | str | None] | None = None,
    ) -> None:
        if logger is None:
            logger = logging.getLogger("stormwall.events")
        elif not isinstance(logger, logging.Logger | logging.LoggerAdapter):
            raise ConfigError(
                "logger",
                "expected a logging.Logger or LoggerAdapter, got "
                f"{type(logger).__name__}",
            )
        self._logger = logger
        self._levels = resolve_levels(levels)
        self._types = logged_types(self._levels)
        self._fixed = fixed_levels(self._levels)
        self._attachments = Attachments()

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        """The logger records go to."""
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
        # Outcomes silenced by ``levels`` (None) are not even built; the
        # logger's own level may change at run time, so it is not asked.
        return self._attachments.attach(
            bus,
            self._handle,
            self._types,
            passing_outcomes(self._types, self._levels),
        )

    def _handle(self, event: Event) -> None:
        level = self._fixed.get(type(event), _QUALIFIED)
        if level is _QUALIFIED:
            level = level_of(event, self._levels)
        # isEnabledFor is cached by `logging`: a disabled line costs a dict
        # look-up, not a record.
        if level is None or not self._logger.isEnabledFor(level):
            return
        fields = log_fields(event)
        fields.update(trace_ids(event))
        message = " ".join(
            [event.name, *(f"{k}={_render(v)}" for k, v in fields.items())]
        )
        fields["event"] = event.name
        logger = self._logger
        if isinstance(logger, logging.LoggerAdapter):
            # An adapter's process() replaces `extra` with its own (before
            # Python 3.13's merge_extra): let it run, then add ours.
            message, kwargs = logger.process(message, {})
            extra = dict(kwargs.get("extra") or {})
            extra["stormwall"] = fields
            kwargs["extra"] = extra
            logger.logger.log(level, message, **kwargs)
            return
        # No %-args: the message is final (and may contain "%").
        logger.log(level, message, extra={"stormwall": fields})

    def __repr__(self) -> str:
        name = getattr(self._logger, "name", None) or getattr(
            getattr(self._logger, "logger", None), "name", "?"
        )
        return f"<LoggingExporter logger={name!r}>"
