"""
`MetricsExporter`: the stormwall metrics through the OpenTelemetry API.

Re-exported by the public module `stormwall.exporters.otel`; the instruments
are those of the shared vocabulary (`_vocabulary`).

Pull, like the Prometheus path: attaching switches counting on for the bus
(`stormwall.tally`); counters and gauges are observable instruments read at
collection time through the shared table (`_vocabulary.families`), so a
call costs what the count costs, not an OTel measurement. OpenTelemetry has
no asynchronous histogram, so the duration histograms stay synchronous
instruments, fed at collection time: each bucket's new observations are
recorded with the mean of their durations (exact bucket counts, counts and
sums; min and max are per-bucket means and no exemplar is attached). The
recording work moves from the caller's path to the collecting thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from stormwall import ConfigError, EventBus, __version__, tally
from stormwall.events import BackendError

from . import _vocabulary as vocab
from ._attach import Attachments
from ._otel_guard import metrics


if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from opentelemetry.metrics import CallbackOptions, Observation

    from stormwall import Subscription


__all__ = ["MetricsExporter"]


class MetricsExporter:
    """
    Record the stormwall metrics through the OpenTelemetry metrics API.

    Every instrument of the shared vocabulary, with its name, unit,
    description and attributes, so one dashboard serves this path and the
    ``prometheus_client`` one, and the state gauges (breaker failure and
    slow-call rates, global permits, bulkhead limit, retry budget).
    Counters and gauges are observable instruments read at collection
    time from the in-process counts (`stormwall.tally`): a call costs a
    few additions, not an OTel measurement. Histograms advise
    `DURATION_BUCKETS` (seconds; OTel's defaults are millisecond-shaped)
    and are fed at collection time (see the module docstring).

    Counter series whose label values are known in advance (calls and
    attempts by outcome, a breaker's transitions and rejections, a limiter's
    results, bulkhead rejections, retry-budget denials) are created at 0
    when their executor, breaker, limiter or bulkhead is first seen:
    Prometheus's ``rate()``/``increase()`` ignore a series' first sample,
    so a series born at 1 would hide the first breaker trip.

    Args:
        meter_provider: Where metrics go (default: the global provider,
            resolved lazily).

    Raises:
        ConfigError: ``meter_provider`` has no ``get_meter``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        if meter_provider is not None and not callable(
            getattr(meter_provider, "get_meter", None)
        ):
            raise ConfigError(
                "meter_provider",
                "expected an OpenTelemetry MeterProvider, got "
                f"{type(meter_provider).__name__}",
            )
        meter = metrics.get_meter(vocab.SCOPE, __version__, meter_provider)
        self._lock = threading.Lock()
        self._attachments = Attachments()
        self._backend = vocab.Backend()
        # One reading per collection: the first callback of a collection
        # reads every bus (and feeds the histograms); the others use it.
        self._families: dict[str, vocab.Family] = {}
        # What the histograms were fed so far: (name, labels) -> cell.
        self._fed: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self._histograms: dict[str, metrics.Histogram] = {}
        first = True
        for spec in vocab.ALL_METRICS:
            if spec.kind == "histogram":
                self._histograms[spec.otel_name] = meter.create_histogram(
                    spec.otel_name,
                    unit=spec.unit,
                    description=spec.description,
                    explicit_bucket_boundaries_advisory=vocab.DURATION_BUCKETS,
                )
                continue
            create: Callable[..., Any] = (
                meter.create_observable_counter
                if spec.kind == "counter"
                else meter.create_observable_gauge
            )
            create(
                spec.otel_name,
                callbacks=[self._callback(spec, read=first)],
                unit=spec.unit,
                description=spec.description,
            )
            first = False

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """
        Start recording the metrics of every executor reporting on ``bus``.

        Attaching to a bus this exporter is already attached to returns the
        same subscription: counting every event twice would be wrong.

        Args:
            bus: The bus (`stormwall.default_bus` when ``None``).

        Returns:
            The subscription; close it to stop recording.

        Raises:
            ConfigError: ``bus`` is not an `EventBus`.
        """
        return self._attachments.attach_pull(
            bus, {BackendError: self._backend.handle}
        )

    # -- collection -----------------------------------------------------------

    def _callback(
        self, spec: vocab.MetricSpec, *, read: bool
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        name = spec.otel_name
        labels = spec.labels

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if read:
                self._read()
            family = self._families.get(name)
            if family is None:
                return []
            return [
                metrics.Observation(value, dict(zip(labels, key, strict=True)))
                for key, value in family.values.items()
            ]

        return observe

    def _read(self) -> None:
        """Read every bus; feed the histograms what is new since last time."""
        readings = [tally.read(bus) for bus in self._attachments.buses()]
        found = vocab.families(readings, self._backend)
        with self._lock:
            self._families = {f.spec.otel_name: f for f in found}
            for family in found:
                histogram = self._histograms.get(family.spec.otel_name)
                if histogram is not None:
                    self._feed(histogram, family)

    def _feed(
        self, histogram: metrics.Histogram, family: vocab.Family
    ) -> None:
        labels = family.spec.labels
        for key, cell in family.cells.items():
            fed = self._fed.get((family.spec.otel_name, key))
            attributes = dict(zip(labels, key, strict=True))
            for i, (_, count, total) in enumerate(tally.cell_parts(cell)):
                new, new_sum = count, total
                if fed is not None:
                    _, done, done_sum = _part(fed, i)
                    new, new_sum = count - done, total - done_sum
                if new > 0:
                    mean = new_sum / new
                    for _ in range(new):
                        histogram.record(mean, attributes)
            self._fed[(family.spec.otel_name, key)] = list(cell)


def _part(cell: list[float], i: int) -> tuple[float, int, float]:
    width = len(cell) // 2
    return 0.0, int(cell[i]), cell[width + i]
