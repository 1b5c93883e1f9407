"""
The breaker store seam: what a backend implements to share a breaker.

A breaker given ``store=`` keeps no state of its own (see
``stormwall._breaker``). A backend subclasses `BreakerStore` and returns a
`SharedCore` per breaker, answering with `Admission` and `Snapshot`. This
module is the one place a backend takes breaker names from: the seam's own
classes and the sans-I/O core's (`BreakerConfig`, `BreakerCore`,
`BreakerRecord`, `CircuitState`, `Transition`), re-exported here so that
``stormwall.backends`` never reaches into ``stormwall._core``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from ._core._breaker import (
    BreakerConfig,
    BreakerCore,
    BreakerRecord,
    CircuitState,
    Transition,
)


if TYPE_CHECKING:
    from ._breaker import CircuitBreaker
    from ._component import CallContext


__all__ = [
    "Admission",
    "BreakerConfig",
    "BreakerCore",
    "BreakerRecord",
    "BreakerStore",
    "CircuitState",
    "SharedCore",
    "Snapshot",
    "Transition",
]


# A breaker given ``store=`` keeps no state of its own: it asks the store for
# a `SharedCore` bound to its name and configuration, and becomes a
# `_SharedCircuitBreaker`, whose methods run each decision through that core
# (one round trip to the backend) instead of the local `BreakerCore`. The
# local breaker's classes and hot path are untouched by this: the choice is
# made once, at construction, by the class of the object.


class Admission(NamedTuple):
    """A shared core's answer to "may this call run?"."""

    permit: int | None
    """The permit to hand back with the outcome, or ``None``: rejected."""
    change: Transition | None
    """The transition the decision made (to report), if any."""
    state: CircuitState
    """The state the decision was taken in (for a rejection's event)."""
    retry_after: float | None
    """`CircuitBreaker.retry_after` at that moment."""


class Snapshot(NamedTuple):
    """A shared core's full view of the breaker, for introspection."""

    record: BreakerRecord
    """The record; times are in the core's clock (Redis: Unix seconds)."""
    totals: tuple[int, int, int]
    """``(calls, failures, slow_calls)`` in the window."""
    retry_after: float | None
    """`CircuitBreaker.retry_after` at that moment."""
    change: Transition | None
    """A due OPEN -> HALF_OPEN move made while looking, if any."""


class SharedCore(Protocol):
    """
    What a store binds to one breaker: the `BreakerCore` surface, with I/O.

    Every method is one round trip to the store at most, applies the
    store's ``on_backend_error`` policy itself and reports its failures;
    ``permit`` values are the ones `admit` returned. The ``*_async`` twins
    are for a store whose client is asyncio (``is_async``); the others for
    a blocking client. ``timed``: whether ``on_success``/``on_failure``
    read the call's duration (else the executors skip two clock reads per
    attempt).
    """

    is_async: bool
    timed: bool

    def cached_state(self) -> CircuitState:
        """The state as of the store's last answer (no I/O)."""
        ...

    def admit(self, ctx: CallContext | None) -> Admission:
        """Decide whether a call may run."""
        ...

    def on_success(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a success (or an error that is not recorded)."""
        ...

    def on_failure(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """Record a failure."""
        ...

    def release(self, permit: object, ctx: CallContext | None) -> None:
        """Free a probe slot; record nothing."""
        ...

    def operate(self, op: str, ctx: CallContext | None) -> Transition | None:
        """Apply ``"force_open"``, ``"disable"`` or ``"reset"``."""
        ...

    def snapshot(self, ctx: CallContext | None) -> Snapshot:
        """Look at everything (making a due OPEN -> HALF_OPEN move)."""
        ...

    async def admit_async(self, ctx: CallContext | None) -> Admission:
        """`admit`, with an asyncio client."""
        ...

    async def on_success_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_success`, with an asyncio client."""
        ...

    async def on_failure_async(
        self, permit: object, duration: float, ctx: CallContext | None
    ) -> Transition | None:
        """`on_failure`, with an asyncio client."""
        ...

    async def release_async(
        self, permit: object, ctx: CallContext | None
    ) -> None:
        """`release`, with an asyncio client."""
        ...

    async def operate_async(
        self, op: str, ctx: CallContext | None
    ) -> Transition | None:
        """`operate`, with an asyncio client."""
        ...

    async def snapshot_async(self, ctx: CallContext | None) -> Snapshot:
        """`snapshot`, with an asyncio client."""
        ...


class BreakerStore:
    """
    Base of the objects ``CircuitBreaker(store=...)`` accepts.

    A store shares breaker state between processes
    (``stormwall.backends.redis.RedisBreakerStore``). It is never used
    directly: each breaker given the store calls `_bind` once.
    """

    __slots__ = ()

    def _bind(
        self, breaker: CircuitBreaker, config: BreakerConfig
    ) -> SharedCore:
        """Return the shared core for ``breaker`` (by its name)."""
        raise NotImplementedError
