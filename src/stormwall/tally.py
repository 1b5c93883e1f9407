"""
Pull metrics: counted in process, read when a scrape or collection asks.

For exporter authors. `attach` switches counting on for a bus (the
executors on it then bump plain numbers at attempt and call end: no event
is built for it) and returns a `Subscription`; `read` returns everything a
collection exposes for that bus, the live components' state included. The
numbers a scrape shows and those of ``statistics()`` are the same numbers.

``stormwall.exporters.prometheus`` and ``stormwall.exporters.otel`` are
built on it; so can your own exporter be::

    from stormwall import EventBus
    from stormwall import tally

    bus = EventBus()
    sub = tally.attach(bus)
    reading = tally.read(bus)   # at scrape time
    sub.close()

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._bus import EventBus, Subscription, default_bus
from ._component import check_bus
from ._tally import (
    BUCKETS,
    BreakerReading,
    BulkheadReading,
    LimiterReading,
    Reading,
    TallySnapshot,
    cell_parts,
    start,
    stop,
)
from ._tally import (
    read as _read,
)


if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .events import Event


__all__ = [
    "BUCKETS",
    "BreakerReading",
    "BulkheadReading",
    "LimiterReading",
    "Reading",
    "TallySnapshot",
    "attach",
    "cell_parts",
    "read",
]


def _bus(bus: object) -> EventBus:
    """``bus``, or `stormwall.default_bus` for ``None`` (the core's check)."""
    return check_bus("bus", bus) or default_bus


class _Counting(Subscription):
    """A subscription that also keeps counting on until it is closed."""

    __slots__ = ("_counted",)
    _counted: EventBus | None

    def close(self) -> None:
        """Unsubscribe and stop counting (idempotent)."""
        super().close()
        counted, self._counted = self._counted, None
        if counted is not None:
            stop(counted)


def attach(
    bus: EventBus | None = None,
    routes: Mapping[type[Event], Callable[[Event], object]] | None = None,
) -> Subscription:
    """
    Count the calls of the executors on ``bus`` until the result is closed.

    Args:
        bus: The bus (`stormwall.default_bus` when ``None``).
        routes: Handlers of rare events (e.g. `BackendError`) that the
            counts cannot give; they are *quiet*: they do not make the
            executors build call contexts, so their events carry the call's
            identity only when another subscriber asked for it.

    Returns:
        A `Subscription`; closing it stops counting once no other pull
        exporter counts on ``bus`` (the numbers are kept).

    Raises:
        ConfigError: ``bus`` is not an `EventBus`.
    """
    target = _bus(bus)
    sub = target._subscribe_quiet(dict(routes or {}), _Counting)
    assert isinstance(sub, _Counting)  # noqa: S101 - built as one
    sub._counted = target
    start(target)
    return sub


def read(bus: EventBus | None = None) -> Reading:
    """
    What a collection of ``bus`` exposes, read now.

    Raises:
        ConfigError: ``bus`` is not an `EventBus`.
    """
    return _read(_bus(bus))
