"""
EventRecorder: a bus subscriber that keeps what it hears, for assertions.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from .._bus import EventBus, Subscription, default_bus
from .._component import check_bus
from .._events import Event


if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self


E = TypeVar("E", bound=Event)


class EventRecorder:
    """
    Record every event a bus delivers, then assert on them.

    Use it as a context manager (it subscribes on entry and unsubscribes on
    exit), or call `start` and `close`::

        with EventRecorder() as events:
            executor.run("k", fn)
        events.assert_sequence(CallStarted, AttemptStarted, AttemptEnded,
                               CallEnded)

    Args:
        bus: The bus to listen on (`stormwall.default_bus` by default).

    Recording is thread-safe; read `events` once the code under test is done.

    .. versionadded:: 0.1.0
    """

    def __init__(self, bus: EventBus | None = None) -> None:
        self._bus = check_bus("bus", bus) or default_bus
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._sub: Subscription | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Self:
        """Subscribe to every event on the bus (idempotent)."""
        if self._sub is None:
            self._sub = self._bus.subscribe(self._record)
        return self

    def close(self) -> None:
        """Stop recording; what was recorded stays."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    # -- reading --------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """A copy of every event recorded so far, in emission order."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self._events.clear()

    def of_type(self, event_type: type[E]) -> list[E]:
        """The recorded events of ``event_type`` (subclasses included)."""
        return [e for e in self.events if isinstance(e, event_type)]

    def names(self) -> list[str]:
        """The dotted names of the recorded events, in order."""
        return [e.name for e in self.events]

    # -- asserting ------------------------------------------------------------

    def assert_emitted(self, event_type: type[E], **fields: Any) -> E:
        """
        Assert that an event of ``event_type`` with these field values exists.

        Returns:
            The first matching event.

        Raises:
            AssertionError: none matched; the message lists what was seen.
        """
        candidates = self.of_type(event_type)
        for event in candidates:
            if all(
                getattr(event, f, _MISSING) == v for f, v in fields.items()
            ):
                return event
        wanted = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        seen = "\n".join(f"  {e!r}" for e in candidates) or "  (none)"
        msg = (
            f"no {event_type.__name__}({wanted}) was emitted; "
            f"{event_type.__name__} events seen:\n{seen}"
        )
        raise AssertionError(msg)

    def assert_not_emitted(self, event_type: type[Event]) -> None:
        """Assert that no event of ``event_type`` was recorded."""
        found = self.of_type(event_type)
        if found:
            msg = f"expected no {event_type.__name__}, got:\n" + "\n".join(
                f"  {e!r}" for e in found
            )
            raise AssertionError(msg)

    def assert_sequence(
        self, *event_types: type[Event], exact: bool = False
    ) -> None:
        """
        Assert that events of these types were emitted in this order.

        Args:
            event_types: The expected types, in order.
            exact: With ``False`` (the default) other events may come in
                between (the types form a subsequence); with ``True`` the
                recorded events must be exactly these, no more.

        Raises:
            AssertionError: with both sequences side by side.
        """
        seen = [type(e) for e in self.events]
        if exact:
            ok = len(seen) == len(event_types) and all(
                issubclass(s, t)
                for s, t in zip(seen, event_types, strict=True)
            )
        else:
            it = iter(seen)
            ok = all(any(issubclass(s, t) for s in it) for t in event_types)
        if not ok:
            expected = ", ".join(t.__name__ for t in event_types)
            actual = ", ".join(t.__name__ for t in seen) or "(none)"
            kind = "exactly" if exact else "in order"
            msg = (
                f"expected events {kind}:\n  {expected}\nrecorded:\n  {actual}"
            )
            raise AssertionError(msg)

    def __repr__(self) -> str:
        return f"<EventRecorder {len(self._events)} events on {self._bus!r}>"


_MISSING = object()
