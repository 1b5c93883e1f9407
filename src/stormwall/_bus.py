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
- A subscription may declare, for the event types that have an ``outcome``
  (`CallEnded`, `AttemptEnded`), which outcomes it takes: a log exporter
  whose logger filters out successes takes only failures. Its handler never
  sees the others, and `wants_outcome` tells the executors whether anybody
  takes an outcome at all, so a call that succeeds builds no event nobody
  takes (and, when nobody takes anything of a plain success, no per-call
  state either: see `_pipeline.Pipeline.enter`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigError
from ._events import Event


if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping
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


class _OutcomeFilter:
    """A handler that takes only the events whose ``outcome`` it wants."""

    __slots__ = ("handler", "outcomes")

    def __init__(self, handler: Handler, outcomes: frozenset[str]) -> None:
        self.handler = handler
        self.outcomes = outcomes

    def __call__(self, event: Any) -> object:
        if event.outcome in self.outcomes:
            return self.handler(event)
        return None

    def __repr__(self) -> str:
        return f"{self.handler!r} (outcomes {sorted(self.outcomes)})"


def _check_outcomes(
    outcomes: Mapping[type[Event], Collection[str]] | None,
    subscribed: tuple[type[Event], ...],
) -> dict[type[Event], frozenset[str]]:
    """``outcomes`` as frozensets, checked against the subscribed types."""
    if outcomes is None:
        return {}
    if not hasattr(outcomes, "items"):
        raise ConfigError(
            "outcomes", f"expected a mapping, got {type(outcomes).__name__}"
        )
    checked: dict[type[Event], frozenset[str]] = {}
    for t, wanted in outcomes.items():
        fields = (
            {f.name for f in dataclasses.fields(t)}
            if isinstance(t, type) and issubclass(t, Event)  # type: ignore[redundant-expr]
            else set()
        )
        if "outcome" not in fields:
            raise ConfigError(
                "outcomes",
                f"{t!r} is not an event type with an outcome (CallEnded, "
                "AttemptEnded)",
            )
        if t not in subscribed:
            raise ConfigError(
                "outcomes", f"{t.__name__} is not one of the subscribed types"
            )
        if isinstance(wanted, str) or not all(
            isinstance(o, str) for o in wanted
        ):
            raise ConfigError(
                "outcomes",
                f"the outcomes of {t.__name__} must be a collection of str, "
                f"got {wanted!r}",
            )
        checked[t] = frozenset(wanted)
    return checked


class Subscription:
    """
    A handle on one subscription; `close` (or leaving ``with``) ends it.
    """

    __slots__ = (
        "_bus",
        "event_types",
        "filters",
        "first",
        "handler",
        "last",
        "routes",
    )

    def __init__(
        self,
        bus: EventBus,
        handler: Handler,
        event_types: tuple[type[Event], ...],
        routes: Mapping[type[Event], Handler] | None = None,
        first: tuple[type[Event], ...] = (),
        last: tuple[type[Event], ...] = (),
        outcomes: Mapping[type[Event], frozenset[str]] | None = None,
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
        # Event type -> its handler wrapped to take only the declared
        # outcomes (see `EventBus.subscribe`).
        self.filters: dict[type[Event], _OutcomeFilter] = {
            t: _OutcomeFilter(handler if routes is None else routes[t], wanted)
            for t, wanted in (outcomes or {}).items()
        }

    def _handler_of(self, event_type: type[Event]) -> Handler | None:
        """What receives an event of ``event_type`` (None: nothing)."""
        routes = self.routes
        for base in event_type.__mro__:
            found = self.filters.get(base)
            if found is not None:
                return found
            if routes is not None:
                routed = routes.get(base)
                if routed is not None:
                    return routed
        if routes is not None:
            return None
        if not self.event_types or issubclass(event_type, self.event_types):
            return self.handler
        return None

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
        # Bumped by every change of the subscriptions (quiet ones too), so
        # an executor can cache what it builds until the next one.
        self._version = 0

    def subscribe(
        self,
        handler: Handler,
        *event_types: type[Event],
        outcomes: Mapping[type[Event], Collection[str]] | None = None,
    ) -> Subscription:
        """
        Call ``handler(event)`` for every event of the given types.

        Args:
            handler: A synchronous callable taking one event.
            event_types: Event classes (subclasses match too); none means
                every event.
            outcomes: For some of ``event_types`` with an ``outcome``
                (`CallEnded`, `AttemptEnded`), the outcomes to receive;
                the others are never delivered, and executors do not build
                an event of an outcome nobody takes (a log exporter whose
                logger drops successes makes a success cost nothing). E.g.
                ``{CallEnded: {"failure", "rejected"}}``.

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
        event_types = tuple(event_types)
        wanted = _check_outcomes(outcomes, event_types)
        return self._add(
            Subscription(self, handler, event_types, outcomes=wanted)
        )

    def _add(self, sub: Subscription) -> Subscription:
        """Start delivering to ``sub`` (a new listener: a new generation)."""
        with self._lock:
            self._own(sub)
            self._subs = (*self._subs, sub)
            self._changed()
            self.generation += 1
        return sub

    def _changed(self) -> None:
        """The subscriptions changed (under the lock): forget resolutions."""
        self._cache = {}
        self._version += 1

    def _own(self, sub: Subscription) -> None:
        """Report the errors of ``sub``'s route and filters as its own."""
        for handler in (
            *(sub.routes or {}).values(),
            *sub.filters.values(),
        ):
            self._owners[id(handler)] = id(sub.handler)

    def subscribe_routes(
        self,
        routes: Mapping[type[Event], Handler],
        *,
        first: Iterable[type[Event]] = (),
        last: Iterable[type[Event]] = (),
        outcomes: Mapping[type[Event], Collection[str]] | None = None,
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
            outcomes: As for `subscribe`: the outcomes some routed types
                with an ``outcome`` take.

        Returns:
            A `Subscription` ending every route at once.

        Raises:
            ConfigError: a key of ``routes``, ``first`` or ``last`` is not
                an `Event` subclass, a handler is not callable, or
                ``outcomes`` names a type not routed or without an outcome.

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

        wanted = _check_outcomes(outcomes, tuple(routes))

        def route(event: Any) -> object:
            handler = sub._handler_of(type(event))
            return None if handler is None else handler(event)

        sub = Subscription(
            self, route, tuple(routes), routes, first, last, wanted
        )
        return self._add(sub)

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
            self._own(sub)
            self._quiet = (*self._quiet, sub)
            self._changed()
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._quiet = tuple(s for s in self._quiet if s is not sub)
            self._changed()
            for handler in (
                *(sub.routes or {}).values(),
                *sub.filters.values(),
            ):
                self._owners.pop(id(handler), None)

    def wants(self, event_type: type[Event]) -> bool:
        """Whether any handler would receive an event of this type."""
        if not self._subs and not self._quiet:
            return False
        handlers = self._cache.get(event_type)
        if handlers is None:
            handlers = self._resolve(event_type)
        return bool(handlers)

    def wants_outcome(self, event_type: type[Event], outcome: str) -> bool:
        """
        Whether any handler would receive an event of this type and outcome.

        A subscription that declared the outcomes it takes for the type
        (``outcomes=`` of `subscribe`) counts only for those.
        """
        if not self._subs and not self._quiet:
            return False
        handlers = self._cache.get(event_type)
        if handlers is None:
            handlers = self._resolve(event_type)
        return any(
            not isinstance(h, _OutcomeFilter) or outcome in h.outcomes
            for h in handlers
        )

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
            handler = s._handler_of(event_type)
            if handler is None:
                continue
            if issubclass(event_type, s.first):
                first.append(handler)
            elif issubclass(event_type, s.last):
                last.append(handler)
            else:
                handlers.append(handler)
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
