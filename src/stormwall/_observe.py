"""
observe(): attach several exporters in one line at startup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ._component import check_bus
from ._errors import ConfigError


if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from ._bus import EventBus, Subscription


class Exporter(Protocol):
    """Anything that turns events into signals: it subscribes to a bus."""

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Subscribe to ``bus`` (`stormwall.default_bus` when ``None``)."""
        ...


class Observation:
    """
    The subscriptions `observe` made; `close` detaches every exporter.

    Attributes:
        subscriptions: One per exporter, in the order given.
    """

    __slots__ = ("subscriptions",)

    def __init__(self, subscriptions: tuple[Subscription, ...]) -> None:
        self.subscriptions = subscriptions

    def close(self) -> None:
        """Detach every exporter (idempotent)."""
        for sub in self.subscriptions:
            sub.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def observe(*exporters: Exporter, bus: EventBus | None = None) -> Observation:
    """
    Attach exporters to a bus; every executor on it is then observed.

    ::

        from stormwall.exporters.prometheus import PrometheusExporter
        from stormwall.exporters.structlog import StructlogExporter

        stormwall.observe(PrometheusExporter(), StructlogExporter())

    Args:
        exporters: Objects with ``attach(bus)``.
        bus: The bus (`stormwall.default_bus` by default).

    Returns:
        An `Observation`; close it to detach them all.

    Raises:
        ConfigError: an exporter has no ``attach``.

    .. versionadded:: 0.1.0
    """
    target = check_bus("bus", bus)
    for exporter in exporters:
        if not callable(getattr(exporter, "attach", None)):
            raise ConfigError(
                "exporters",
                f"{exporter!r} is not an exporter (it has no attach())",
            )
    subs: list[Subscription] = []
    try:
        # extend() keeps what was appended before a failing attach, so a
        # half-done observe() is undone below.
        subs.extend(exporter.attach(target) for exporter in exporters)
    except BaseException:
        for sub in subs:
            sub.close()
        raise
    return Observation(tuple(subs))


__all__ = ["Exporter", "Observation", "observe"]
