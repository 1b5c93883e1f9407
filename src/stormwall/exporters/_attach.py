"""
How every exporter subscribes: once per bus, to the types it handles.

Standard library only. Shared by the OpenTelemetry, Prometheus, structlog and
logging exporters so they agree on two rules:

- attaching an exporter twice to the same bus returns the first subscription
  (each event is counted or logged once);
- an exporter subscribes only to the event types it uses, so executors do not
  even build the others; and one that uses none subscribes quietly to
  nothing (never to "everything"), so executors build no call context.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

from stormwall import ConfigError, EventBus, default_bus, events, tally


if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from stormwall import Subscription


EVENT_TYPES: Final[tuple[type[events.Event], ...]] = tuple(
    cls
    for cls in (getattr(events, name) for name in events.__all__)
    if isinstance(cls, type) and cls is not events.Event
)
"""Every concrete event type of `stormwall.events`."""


def target_bus(bus: object) -> EventBus:
    """``bus``, or `stormwall.default_bus` for ``None``."""
    if bus is None:
        return default_bus
    if not isinstance(bus, EventBus):
        raise ConfigError(
            "bus", f"expected an EventBus, got {type(bus).__name__}"
        )
    return bus


def logged_types(
    levels: Mapping[str, int | None],
) -> tuple[type[events.Event], ...]:
    """
    The event types that may produce a log line at ``levels``.

    Subscribing to these only means the executors do not even build the
    events nobody logs (call and attempt starts, limiter grants, ...).
    """
    wanted = []
    for cls in EVENT_TYPES:
        prefix = cls.name + ":"
        if any(
            level is not None and (name == cls.name or name.startswith(prefix))
            for name, level in levels.items()
        ):
            wanted.append(cls)
    return tuple(wanted)


class Attachments:
    """An exporter's subscriptions: at most one per bus."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[tuple[EventBus, Subscription]] = []
        self._counts: list[tuple[EventBus, Subscription]] = []
        self._read: list[EventBus] = []  # what a pull exporter reads

    def _existing(self, bus: EventBus) -> Subscription | None:
        """The active subscription on ``bus``, forgetting closed ones."""
        self._subs = [(b, s) for b, s in self._subs if s.active]
        for b, sub in self._subs:
            if b is bus:
                return sub
        return None

    def attach(
        self,
        bus: object,
        handler: Callable[[events.Event], object],
        types: tuple[type[events.Event], ...],
        outcomes: Mapping[type[events.Event], frozenset[str]] | None = None,
    ) -> Subscription:
        """
        Subscribe ``handler`` to ``types`` on ``bus``, once per bus.

        ``outcomes``: for types with an outcome, the only outcomes to take
        (`EventBus.subscribe`).
        """
        target = target_bus(bus)
        with self._lock:
            sub = self._existing(target)
            if sub is None:
                if types:
                    sub = target.subscribe(handler, *types, outcomes=outcomes)
                else:
                    # Nothing to receive: a quiet subscription, which does
                    # not make executors build call contexts either.
                    sub = target._subscribe_quiet({})
                self._subs.append((target, sub))
            return sub

    def attach_routes(
        self,
        bus: object,
        routes: Mapping[type[events.Event], Callable[[events.Event], object]],
        *,
        first: tuple[type[events.Event], ...] = (),
        last: tuple[type[events.Event], ...] = (),
    ) -> Subscription:
        """
        Subscribe one handler per event type on ``bus``, once per bus.

        ``first`` and ``last``: event types whose handler runs before, or
        after, every other subscriber's (`EventBus.subscribe_routes`).
        """
        target = target_bus(bus)
        with self._lock:
            sub = self._existing(target)
            if sub is None:
                sub = target.subscribe_routes(routes, first=first, last=last)
                self._subs.append((target, sub))
            return sub

    def attach_pull(
        self,
        bus: object,
        routes: Mapping[type[events.Event], Callable[[events.Event], object]],
    ) -> Subscription:
        """
        Switch counting on for ``bus`` (`stormwall.tally`), once per bus.

        ``routes``: quiet handlers of rare events the counts cannot give.
        """
        target = target_bus(bus)
        with self._lock:
            sub = self._existing(target)
            if sub is None:
                sub = tally.attach(target, routes)
                self._subs.append((target, sub))
            if not any(b is target for b in self._read):
                self._read.append(target)
            return sub

    def count(self, bus: object) -> None:
        """Also count on ``bus`` (closed with the other subscriptions)."""
        target = target_bus(bus)
        with self._lock:
            if not any(b is target for b, _ in self._counts):
                self._counts.append((target, tally.attach(target)))
            if not any(b is target for b in self._read):
                self._read.append(target)

    def buses(self) -> list[EventBus]:
        """
        Every bus ever counted on, in order.

        A closed subscription stops the counting, not the reading: the
        numbers counted so far stay exposed (a counter never vanishes).
        """
        with self._lock:
            return list(self._read)

    def close(self) -> None:
        """End every subscription."""
        with self._lock:
            subs, self._subs = self._subs, []
            counts, self._counts = self._counts, []
        for _, sub in (*subs, *counts):
            sub.close()
