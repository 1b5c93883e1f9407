"""
What every time-keeping, event-reporting component shares.

Limiters, the bulkhead and the circuit breaker each have a name, a clock and a
bus. The rules (docs/internals.md, "Components"):

- **Bus.** A component reports on its own ``bus=`` if given; otherwise, inside
  a call, on the bus of the executor running the call; outside a call, on the
  bus of the first executor it was wired into; standalone, on
  `stormwall.default_bus`.
- **Clock.** A component given ``clock=`` keeps it. One given none adopts the
  clock of the executor it is wired into (standalone: the real clock). Two
  explicit clocks that disagree inside one executor are a `ConfigError` at
  construction, never a silent real sleep in a test.
- **Name.** A component given ``name=`` keeps it. One given none takes the
  name of the first executor it is wired into (the unnamed tiers of a
  composite: the composite's name, their kind, and a number when a kind
  repeats); standalone, it is named after its kind.

`CallContext` carries who is calling (executor, key, call id, attempt, the
executor's bus) into a component's decision methods, so the events a
component reports inside a call carry the call's identity. Executors only
build one when somebody listens.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

from . import _tally, _validate
from ._bus import EventBus, default_bus
from ._clock import DEFAULT_CLOCK, Clock, one_clock
from ._errors import ConfigError


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._events import Event


class CallContext:
    """Who is calling: the identity stamped on events inside a call."""

    __slots__ = (
        "attempt",
        "attempt_at",
        "bus",
        "call_id",
        "ended",
        "executor",
        "key",
    )

    def __init__(
        self,
        executor: str,
        key: str,
        call_id: int,
        bus: EventBus,
        attempt: int | None = None,
    ) -> None:
        self.executor = executor
        self.key = key
        self.call_id = call_id
        self.bus = bus
        self.attempt = attempt
        # When the open attempt started (None between attempts), and whether
        # CallEnded went out: what the executor must close if an exception
        # escapes.
        self.attempt_at: float | None = None
        self.ended = False


def check_clock(param: str, clock: object) -> Clock | None:
    """``None`` or an object with the `Clock` methods."""
    if clock is None:
        return None
    if not isinstance(clock, Clock):
        raise ConfigError(
            param,
            "expected a Clock (now(), sleep(), sleep_async()), "
            f"got {type(clock).__name__}",
        )
    return clock


def check_bus(param: str, bus: object) -> EventBus | None:
    """``None`` or an `EventBus`."""
    if bus is None:
        return None
    return _validate.instance_of(param, bus, EventBus, "an EventBus")


class Component:
    """
    Base of limiters, bulkheads and breakers: name, clock and bus binding.

    Subclasses call ``Component.__init__`` first, then use:

    - ``self._clock`` for time (never the real clock directly);
    - ``self._bus_for(ctx)`` for the bus to report on, then
      ``bus.wants(EventType)`` before building an event, and
      ``self._stamp(ctx)`` for the common event fields.
    """

    __slots__ = (
        "__weakref__",
        "_bound_bus",
        "_bound_executor",
        "_clock",
        "_explicit_bus",
        "_explicit_clock",
        "_name",
        "_named",
    )

    #: Whether the component's state lives behind an asyncio client, so
    #: only the async executor can drive it (its decisions are awaited).
    #: Decided when the component is built; the executors read it once.
    _async_only: bool = False

    def __init__(
        self,
        kind: str,
        name: str | None,
        clock: Clock | None,
        bus: EventBus | None,
    ) -> None:
        self._name = _validate.name("name", name, default=kind)
        # Left unnamed, it takes the name of the first executor it is wired
        # into (see `_adopt_name`).
        self._named = name is not None
        self._explicit_clock = check_clock("clock", clock)
        self._clock: Clock = self._explicit_clock or DEFAULT_CLOCK
        self._explicit_bus = check_bus("bus", bus)
        self._bound_bus: EventBus | None = None
        self._bound_executor: str | None = None
        _tally.register_component(self)

    def __del__(self) -> None:
        # Pull metrics: a component's counters outlive it (see _tally).
        # A half-built object, or interpreter shutdown: nothing to keep.
        with contextlib.suppress(Exception):
            _tally.retire(self)

    @property
    def name(self) -> str:
        """The name used in events, errors and metric labels."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock this component keeps time with."""
        return self._clock

    def _bind(
        self, executor: str, clock: Clock, bus: EventBus, param: str
    ) -> None:
        """
        Wire this component into an executor.

        Raises:
            ConfigError: naming ``param``, when the component's clock is not
                the executor's.
        """
        # Pinned: given explicitly, or adopted from an earlier executor.
        pinned = self._explicit_clock or (
            None if self._bound_executor is None else self._clock
        )
        one_clock(
            ("the executor", clock),
            (param, pinned),
            hint="give both the same clock"
            if self._bound_executor is None
            else f"{self._name!r} is already wired into executor "
            f"{self._bound_executor!r}",
        )
        self._clock = clock
        if self._bound_executor is None:
            self._bound_executor = executor
            self._bound_bus = bus
            self._adopt_name(executor)

    def _adopt_name(self, name: str) -> None:
        """
        Take ``name`` if the component was given none (once).

        Unnamed components would otherwise all report under their kind
        (``circuit_breaker``), so two executors' breakers would write one
        metric series.
        """
        if not self._named:
            self._name = name
            self._named = True

    def _bus_for(self, ctx: CallContext | None) -> EventBus:
        """The bus to report on (see the module docstring)."""
        if self._explicit_bus is not None:
            return self._explicit_bus
        if ctx is not None:
            return ctx.bus
        return self._bound_bus or default_bus

    def _buses(self) -> tuple[EventBus, ...]:
        """Buses other than the executor's this component reports on."""
        return () if self._explicit_bus is None else (self._explicit_bus,)

    def _stamp(self, ctx: CallContext | None) -> dict[str, Any]:
        """The common fields of an event reported now."""
        if ctx is None:
            return {
                "time": self._clock.now(),
                "executor": self._bound_executor,
            }
        return {
            "time": self._clock.now(),
            "executor": ctx.executor,
            "key": ctx.key,
            "call_id": ctx.call_id,
            "attempt": ctx.attempt,
        }

    def _report(
        self, ctx: CallContext | None, event_type: type[Event], **fields: Any
    ) -> None:
        """Build and emit ``event_type`` if anybody listens for it."""
        bus = self._bus_for(ctx)
        if (bus._subs or bus._quiet) and bus.wants(event_type):
            bus.emit(event_type(**self._stamp(ctx), **fields))

    # -- keeping time on another clock (the simulator's seam) ---------------

    # Attributes holding state measured on the clock (timestamps, windows)
    # or counted since construction: set aside while the component keeps
    # time on another clock, and put back afterwards.
    _timed_state: ClassVar[tuple[str, ...]] = ()
    # False for components whose time is kept elsewhere (a Redis backend's
    # server time): they cannot run on another clock.
    _rebindable: ClassVar[bool] = True

    def _rebind_clock(self, clock: Clock, param: str) -> Callable[[], None]:
        """
        Keep time on ``clock``, from fresh state, until restored.

        Timestamps taken on one clock mean nothing on another, so the state
        named by ``_timed_state`` is set aside and `_fresh_state` starts
        anew; the returned function puts back the old clock and state.

        Raises:
            ConfigError: naming ``param``, for a component whose time is
                kept elsewhere.
        """
        if not self._rebindable:
            raise ConfigError(
                param,
                f"{self._name!r} keeps time with its backend, not a clock "
                "of this process: it cannot run on another clock",
            )
        saved = [
            (attr, getattr(self, attr))
            for attr in ("_clock", *self._timed_state)
        ]
        self._clock = clock
        self._fresh_state()

        def restore() -> None:
            for attr, value in saved:
                setattr(self, attr, value)

        return restore

    def _fresh_state(self) -> None:
        """Reset what ``_timed_state`` names, as at construction."""
