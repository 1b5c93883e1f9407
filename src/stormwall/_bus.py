"""
The hook bus: components emit events, exporters and recorders subscribe.

Handlers are plain synchronous callables run inline, in subscription order,
on the emitting thread; they must not block (batching belongs to the
exporter's own machinery, e.g. OpenTelemetry's span processors).

Design notes:

- The subscriber list is copy-on-write. `emit` never takes a lock: it reads
  an immutable tuple of handlers resolved once per concrete event type, so
  subscribing or unsubscribing during an emission is safe and takes effect
  from the next emission.
- Nobody listening costs about nothing: `wants` is one dict look-up, and the
  executors test it before they even build an event.
- A handler that raises is isolated: the other handlers and the emitter go
  on; the error is logged once per handler on the ``stormwall`` logger and
  counted in `statistics`. The handler stays subscribed (a transient
  exporter failure should not silence it for the rest of the process).
- Handlers run in subscription order, with one exception for the handlers
  that open and close a scope around other handlers' work (a tracing
  exporter making a span current for the call): a routed subscription may
  mark event types ``first`` (its handler runs before every other one, e.g.
  on CallStarted) or ``last`` (after every other one, in reverse
  subscription order, e.g. on CallEnded). So a log line of any event sees
  the span of its call or attempt current, whichever exporter was attached
  first, and two scope openers nest and unwind in LIFO order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigError
from ._events import Event


if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType
    from typing import Self


__all__ = [
    "BusStatistics",
    "EventBus",
    "Handler",
    "Subscription",
    "default_bus",
]

logger = logging.getLogger("stormwall")


class Handler(Protocol):
    """A callable that receives events."""

    def __call__(self, event: Any, /) -> object:
        """Handle one event (must not block)."""
        ...


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """
    A snapshot of a bus.

    Attributes:
        subscriptions: Active subscriptions.
        handler_errors: Exceptions raised by handlers so far (all isolated).
        generation: Bumped by every subscribe; executors use it to announce
            themselves once to new subscribers.
    """

    subscriptions: int
    handler_errors: int
    generation: int


class Subscription:
    """
    A handle on one subscription; `close` (or leaving ``with``) ends it.
    """

    __slots__ = ("_bus", "event_types", "first", "handler", "last", "routes")

    def __init__(
        self,
        bus: EventBus,
        handler: Handler,
        event_types: tuple[type[Event], ...],
        routes: Mapping[type[Event], Handler] | None = None,
        first: tuple[type[Event], ...] = (),
        last: tuple[type[Event], ...] = (),
    ) -> None:
        self._bus: EventBus | None = bus
        self.handler = handler
        self.event_types = event_types
        # One handler per event type (see EventBus.subscribe_routes); the
        # bus then calls the right one directly, no dispatch of our own.
        self.routes = routes
        # Types whose route runs before (first) or after (last) every
        # other handler: see the module docstring.
        self.first = first
        self.last = last

    @property
    def active(self) -> bool:
        """Whether the subscription still receives events."""
        return self._bus is not None

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        bus, self._bus = self._bus, None
        if bus is not None:
            bus._remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        types = ", ".join(t.__name__ for t in self.event_types) or "all"
        state = "active" if self.active else "closed"
        return f"<Subscription {self.handler!r} to {types} ({state})>"


class EventBus:
    """
    Delivers events to the handlers subscribed to their type.

    `stormwall.default_bus` is the process-wide instance every executor uses
    unless given ``bus=``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self._cache: dict[type[Event], tuple[Handler, ...]] = {}
        self._errors = 0
        self._reported: set[int] = set()
        # A routed subscription's handlers report their errors as one
        # handler: id(route handler) -> id(the subscription's handler).
        self._owners: dict[int, int] = {}
        self.generation = 0
        # Quiet subscriptions (`stormwall.tally.attach`): they receive the
        # events they route, but do not count as "somebody listens" for
        # the executors, which then build no call context for them (their
        # events arrive without the call's identity unless another
        # subscriber asked for it).
        self._quiet: tuple[Subscription, ...] = ()
        # Pull metrics (`stormwall._tally`): the `Tally` the executors on
        # this bus bump, or None while no pull exporter is attached.
        self._tally: Any = None
        self._tally_kept: Any = None
        self._tally_users = 0

    def subscribe(
        self, handler: Handler, *event_types: type[Event]
    ) -> Subscription:
        """
        Call ``handler(event)`` for every event of the given types.

        Args:
            handler: A synchronous callable taking one event.
            event_types: Event classes (subclasses match too); none means
                every event.

        Returns:
            A `Subscription`; close it, or use it as a context manager, to
            unsubscribe.

        Raises:
            ConfigError: ``handler`` is not callable or a type is not an
                `Event` subclass.
        """
        if not callable(handler):
            raise ConfigError(
                "handler", f"expected a callable, got {type(handler).__name__}"
            )
        for t in event_types:
            if not (isinstance(t, type) and issubclass(t, Event)):  # type: ignore[redundant-expr]
                raise ConfigError(
                    "event_types", f"{t!r} is not an Event subclass"
                )
        sub = Subscription(self, handler, tuple(event_types))
        with self._lock:
            self._subs = (*self._subs, sub)
            self._cache = {}
            self.generation += 1
        return sub

    def subscribe_routes(
        self,
        routes: Mapping[type[Event], Handler],
        *,
        first: Iterable[type[Event]] = (),
        last: Iterable[type[Event]] = (),
    ) -> Subscription:
        """
        Subscribe one handler per event type, in one subscription.

        The bus resolves each concrete event type to its route once (the
        most specific subscribed base wins), so an exporter handling many
        types pays no dispatch of its own per event, and a failing route
        is logged once per subscription, not once per handler.

        Args:
            routes: Event class -> synchronous callable taking the event.
            first: Event types whose route runs before every other
                subscription's handler of that event.
            last: Event types whose route runs after every other
                subscription's handler of that event (in reverse
                subscription order). With ``first``, what a handler that
                opens a scope on one event and closes it on another needs
                (a span made current from `CallStarted` to `CallEnded`):
                every other handler then runs inside the scope.

        Returns:
            A `Subscription` ending every route at once.

        Raises:
            ConfigError: a key of ``routes``, ``first`` or ``last`` is not
                an `Event` subclass, or a handler is not callable.

        Example::

            bus.subscribe_routes(
                {CallStarted: open_scope, CallEnded: close_scope},
                first=(CallStarted,),
                last=(CallEnded,),
            )
        """
        first = tuple(first)
        last = tuple(last)
        routes = dict(routes)
        for t in (*routes, *first, *last):
            if not (isinstance(t, type) and issubclass(t, Event)):  # type: ignore[redundant-expr]
                raise ConfigError(
                    "event_types", f"{t!r} is not an Event subclass"
                )
        for handler in routes.values():
            if not callable(handler):
                raise ConfigError(
                    "handler",
                    f"expected a callable, got {type(handler).__name__}",
                )

        def route(event: Any) -> object:
            for base in type(event).__mro__:
                handler = routes.get(base)
                if handler is not None:
                    return handler(event)
            return None

        sub = Subscription(self, route, tuple(routes), routes, first, last)
        with self._lock:
            for handler in routes.values():
                self._owners[id(handler)] = id(route)
            self._subs = (*self._subs, sub)
            self._cache = {}
            self.generation += 1
        return sub

    def _subscribe_quiet(
        self,
        routes: Mapping[type[Event], Handler],
        cls: type[Subscription] | None = None,
    ) -> Subscription:
        """
        Route events to ``routes`` without making executors build contexts.

        For rare events a pull exporter counts (a backend failure): the
        hot path keeps its "nobody listens" fast path.
        """
        routes = dict(routes)

        def route(event: Any) -> object:
            for base in type(event).__mro__:
                handler = routes.get(base)
                if handler is not None:
                    return handler(event)
            return None

        sub = (cls or Subscription)(self, route, tuple(routes), routes)
        with self._lock:
            for handler in routes.values():
                self._owners[id(handler)] = id(route)
            self._quiet = (*self._quiet, sub)
            self._cache = {}
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._quiet = tuple(s for s in self._quiet if s is not sub)
            self._cache = {}
            for handler in (sub.routes or {}).values():
                self._owners.pop(id(handler), None)

    def wants(self, event_type: type[Event]) -> bool:
        """Whether any handler would receive an event of this type."""
        if not self._subs and not self._quiet:
            return False
        handlers = self._cache.get(event_type)
        if handlers is None:
            handlers = self._resolve(event_type)
        return bool(handlers)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to its handlers, isolating any that raise."""
        handlers = self._cache.get(type(event))
        if handlers is None:
            handlers = self._resolve(type(event))
        for handler in handlers:
            try:
                handler(event)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                self._handler_failed(handler, event, exc)

    def _resolve(self, event_type: type[Event]) -> tuple[Handler, ...]:
        # Read the cache before the subscriptions: a concurrent subscribe
        # swaps the subscriptions first, so a stale result can only land in
        # a cache that is already being replaced.
        cache = self._cache
        first: list[Handler] = []
        handlers: list[Handler] = []
        last: list[Handler] = []
        for s in (*self._subs, *self._quiet):
            if s.routes is not None:
                for base in event_type.__mro__:
                    routed = s.routes.get(base)
                    if routed is not None:
                        if issubclass(event_type, s.first):
                            first.append(routed)
                        elif issubclass(event_type, s.last):
                            last.append(routed)
                        else:
                            handlers.append(routed)
                        break
            elif not s.event_types or issubclass(event_type, s.event_types):
                handlers.append(s.handler)
        # Scopes closed last unwind in the reverse order they were opened.
        resolved = (*first, *handlers, *reversed(last))
        cache[event_type] = resolved
        return resolved

    def _handler_failed(
        self, handler: Handler, event: Event, exc: Exception
    ) -> None:
        with self._lock:
            self._errors += 1
            reporter = self._owners.get(id(handler), id(handler))
            first = reporter not in self._reported
            self._reported.add(reporter)
        if first:
            # The report itself must not break the call either: a user's
            # logging handler may be the very thing that is broken.
            with contextlib.suppress(Exception):
                logger.error(
                    "stormwall event handler %r raised on %s; the call goes "
                    "on (further errors of this handler are counted, not "
                    "logged)",
                    handler,
                    event.name,
                    exc_info=exc,
                )

    def statistics(self) -> BusStatistics:
        """A snapshot of subscriptions and isolated handler errors."""
        return BusStatistics(
            subscriptions=len(self._subs),
            handler_errors=self._errors,
            generation=self.generation,
        )

    def __repr__(self) -> str:
        return f"<EventBus subscriptions={len(self._subs)}>"


default_bus = EventBus()
"""The process-wide bus used by every executor not given ``bus=``."""
