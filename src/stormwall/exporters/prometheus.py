"""
Prometheus metrics for stormwall, through ``prometheus_client``.

One line at startup, then every executor on the default bus is measured::

    PrometheusExporter().attach()

Every metric of the shared vocabulary (``stormwall_calls_total``,
``stormwall_circuit_breaker_state``, ...) is exposed under exactly the name the
OpenTelemetry path uses, so one dashboard serves both. `serve_metrics` serves
``/metrics`` on a port of your choice when nothing else in the process does.

The model is **one exporter per registry**: the exporter registers its metrics
when it is built; attaching it to several buses shares them. A second exporter
on the same registry is a `ConfigError` (build it once, or `close` the first).

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, e.g. under gunicorn)
works: no ``Enum`` or ``Info`` metrics are used, and each gauge aggregates
across the live workers in a way that keeps its meaning:

- ``stormwall_circuit_breaker_state`` uses ``livemax``: every worker has its
  own breaker, so the value of ``state="open"`` is 1 when *any* live worker's
  breaker is open. The values stay 0 or 1 (dashboards and alerts comparing
  ``== 1`` keep working); only when workers disagree are two states 1 at once,
  which is the truth. ``livesum`` would count workers per state instead and
  break the 0/1 contract; ``mostrecent`` would show whichever worker wrote
  last and hide an open breaker behind a closed one.
- ``stormwall_bulkhead_in_flight`` uses ``livesum``: calls in flight across
  the workers add up.

The ``live`` modes drop a worker's values once
``prometheus_client.multiprocess.mark_process_dead(pid)`` is called for it
(gunicorn's ``child_exit`` hook), so a dead worker's open breaker does not
linger.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Final, cast

from stormwall import ConfigError, tally
from stormwall.events import (
    AttemptEnded,
    BackendError,
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    Event,
    ExecutorObserved,
    LimiterAllowed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)

from . import _vocabulary as vocab
from ._attach import Attachments


try:
    import prometheus_client
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
    )
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stormwall.exporters.prometheus needs prometheus_client: "
        "pip install 'stormwall[prometheus]'"
    ) from None


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType
    from typing import Self
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics import MetricWrapperBase

    from stormwall import EventBus, Subscription


__all__ = ["MetricsServer", "PrometheusExporter", "serve_metrics"]

# How each gauge aggregates across processes in multiprocess mode (see the
# module docstring for why).
_GAUGE_MODES: Final = {
    vocab.BREAKER_STATE.prometheus_name: "livemax",
    vocab.BULKHEAD_IN_FLIGHT.prometheus_name: "livesum",
}

# The metrics that get the opt-in ``key`` label. Calls (and their duration)
# answer "whose calls fail", limiter requests "who is being throttled", which
# is what a per-key limiter is about. Attempts, retries and the wait
# histogram stay per executor: the key adds little there and a histogram per
# key costs 17 series each.
_KEYED: Final = frozenset(
    {
        vocab.CALLS.prometheus_name,
        vocab.CALL_DURATION.prometheus_name,
        vocab.LIMITER_REQUESTS.prometheus_name,
    }
)

# A cache of labelled children: `metric.labels()` takes a lock and
# normalises every value; a dict look-up on a tuple does not.
_Children = dict[tuple[str, ...], Any]


def _taken(exc: ValueError) -> ConfigError:
    """A registry that has stormwall's metrics already (prometheus' clash)."""
    return ConfigError(
        "registry",
        f"it already has stormwall metrics ({exc}); build one "
        "PrometheusExporter per registry and attach it to every bus, or "
        "close() the previous exporter first",
    )


def _build(
    spec: vocab.MetricSpec, registry: CollectorRegistry | None, keyed: bool
) -> MetricWrapperBase:
    """Create (and register) the ``prometheus_client`` metric of ``spec``."""
    labels = spec.labels
    if keyed and spec.prometheus_name in _KEYED:
        labels = (*labels, "key")
    if spec.kind == "counter":
        return Counter(
            spec.prometheus_base, spec.description, labels, registry=registry
        )
    if spec.kind == "histogram":
        return Histogram(
            spec.prometheus_name,
            spec.description,
            labels,
            registry=registry,
            buckets=vocab.DURATION_BUCKETS,
        )
    if spec.kind == "gauge":
        return Gauge(
            spec.prometheus_name,
            spec.description,
            labels,
            registry=registry,
            multiprocess_mode=_GAUGE_MODES[spec.prometheus_name],  # type: ignore[arg-type]
        )
    raise AssertionError("unreachable")  # pragma: no cover


class PrometheusExporter:
    """
    Count and time every call, attempt, retry and rejection in Prometheus.

    Series whose label values are known in advance (calls by outcome, a
    breaker's transitions, a limiter's results, ...) are created at 0 when
    their executor, breaker, limiter or bulkhead is first seen, because
    ``rate()`` and ``increase()`` ignore a series' first sample: a series
    born at 1 would hide the very first breaker trip. A breaker's state gauge
    exists from its first use.

    By default the exporter is a ``prometheus_client`` custom collector:
    the executors count in process while it is attached (`stormwall.tally`)
    and a scrape reads the counts and the live components' state, the
    state gauges included (breaker failure and slow-call rates, global
    permits, bulkhead limit, retry budget). With ``key_label_limit`` or in
    multiprocess mode it follows the events instead (push), since the
    counts are per executor, not per key, and multiprocess values must go
    through ``prometheus_client``'s files; the state gauges are still read
    at scrape time, and with ``key_label_limit`` the permits gauge has a
    ``key`` label too: each per-key limiter's permits for every key the
    label names (``""`` for a global limiter).

    Args:
        registry: Where the metrics are registered (default:
            ``prometheus_client.REGISTRY``). One exporter per registry.
        key_label_limit: ``0`` (the default) never makes the call key a
            label: user ids as labels would explode the series count. ``N >
            0`` adds a ``key`` label to ``stormwall_calls_total``,
            ``stormwall_call_duration_seconds``,
            ``stormwall_rate_limiter_requests_total`` and
            ``stormwall_rate_limiter_available_permits``, with the first ``N``
            distinct keys as themselves and every later one as
            ``"__other__"``. Choose ``N`` from the handful of keys you want
            to tell apart (tenants, endpoints), not from the number of users:
            each key costs about 5 series per executor, plus 17 per outcome
            in the duration histogram.

    Raises:
        ConfigError: ``key_label_limit`` is not an int >= 0, ``registry`` is
            not a ``CollectorRegistry``, or the registry already holds
            stormwall metrics (another exporter registered them).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        key_label_limit: int = 0,
    ) -> None:
        if registry is None:
            registry = REGISTRY
        elif not isinstance(registry, CollectorRegistry):
            raise ConfigError(
                "registry",
                "expected a prometheus_client CollectorRegistry, got "
                f"{type(registry).__name__}",
            )
        keys = vocab.KeyLabels(key_label_limit)
        self._registry = registry
        self._keys: vocab.KeyLabels | None = keys if keys.enabled else None
        self._lock = threading.Lock()
        self._attachments = Attachments()
        self._newest = vocab.Newest()
        self._backend = vocab.Backend()
        # Pull (the default): a custom collector reads the buses' tallies
        # and the live components at scrape time; nothing runs per call
        # but the executors' counting. Push (the event handlers below)
        # where a pull cannot serve: multiprocess mode (the values must go
        # through prometheus_client's files) and key labels (the tally
        # counts per executor, not per key).
        self._pull = not keys.enabled and not os.environ.get(
            "PROMETHEUS_MULTIPROC_DIR"
        )
        self._collector: _Collector | None = None
        self._dispatch: dict[type[Event], Callable[[Any], None]]
        if self._pull:
            self._collector = self._register_collector(
                registry, _Collector(self, vocab.ALL_METRICS)
            )
            # How each gauge would aggregate in multiprocess mode (where
            # the push path serves): definitions only, never registered.
            self._breaker_state = cast(
                "Gauge", _build(vocab.BREAKER_STATE, None, keyed=False)
            )
            self._in_flight = _build(
                vocab.BULKHEAD_IN_FLIGHT, None, keyed=False
            )
            self._metrics: dict[str, MetricWrapperBase] = {}
            self._dispatch = {}
            return
        self._metrics = self._register(registry, keys.enabled)
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Key labels: the state gauges are still read at scrape time.
            try:
                self._collector = self._register_collector(
                    registry, _Collector(self, vocab.GAUGES)
                )
            except ConfigError:
                for metric in self._metrics.values():
                    registry.unregister(metric)
                raise

        m = self._metrics
        self._calls = m[vocab.CALLS.prometheus_name]
        self._call_duration = m[vocab.CALL_DURATION.prometheus_name]
        self._attempts = m[vocab.ATTEMPTS.prometheus_name]
        self._attempt_duration = m[vocab.ATTEMPT_DURATION.prometheus_name]
        self._retries = m[vocab.RETRIES.prometheus_name]
        self._breaker_state = cast(
            "Gauge", m[vocab.BREAKER_STATE.prometheus_name]
        )
        self._transitions = m[vocab.BREAKER_TRANSITIONS.prometheus_name]
        self._breaker_rejections = m[vocab.BREAKER_REJECTIONS.prometheus_name]
        self._limiter_requests = m[vocab.LIMITER_REQUESTS.prometheus_name]
        self._limiter_wait = m[vocab.LIMITER_WAIT.prometheus_name]
        self._in_flight = m[vocab.BULKHEAD_IN_FLIGHT.prometheus_name]
        self._bulkhead_rejections = m[
            vocab.BULKHEAD_REJECTIONS.prometheus_name
        ]
        self._budget_exhausted = m[
            vocab.RETRY_BUDGET_EXHAUSTED.prometheus_name
        ]
        self._backend_errors = m[vocab.BACKEND_ERRORS.prometheus_name]
        self._backend_decisions = m[vocab.BACKEND_DECISIONS.prometheus_name]

        # One cache per metric; see `_Children`.
        self._children: dict[MetricWrapperBase, _Children] = {
            metric: {} for metric in m.values()
        }
        # What was seen already, i.e. whose zeroed series exist.
        self._executors: set[str] = set()
        self._call_groups: set[tuple[str, str]] = set()
        self._limiter_groups: set[tuple[str, str]] = set()
        self._breakers: dict[str, dict[str, Any]] = {}
        self._limiters: set[str] = set()
        self._bulkheads: set[str] = set()

        # One route per event the exporter needs (subscribed to these only,
        # executors never build the others: CallStarted, AttemptStarted...).
        self._dispatch = {
            ExecutorObserved: self._on_observed,
            CallEnded: self._on_call_ended,
            AttemptEnded: self._on_attempt_ended,
            RetryScheduled: self._on_retry,
            RetryBudgetExhausted: self._on_budget_exhausted,
            BreakerStateChanged: self._on_state_changed,
            BreakerRejected: self._on_breaker_rejected,
            LimiterAllowed: self._on_limiter_allowed,
            LimiterWaited: self._on_limiter_waited,
            LimiterRejected: self._on_limiter_rejected,
            BulkheadAcquired: self._on_bulkhead_in_flight,
            BulkheadReleased: self._on_bulkhead_in_flight,
            BulkheadRejected: self._on_bulkhead_rejected,
            BackendError: self._on_backend_error,
        }

    @staticmethod
    def _register_collector(
        registry: CollectorRegistry, collector: _Collector
    ) -> _Collector:
        try:
            registry.register(collector)
        except ValueError as exc:
            raise _taken(exc) from None
        return collector

    @staticmethod
    def _register(
        registry: CollectorRegistry, keyed: bool
    ) -> dict[str, MetricWrapperBase]:
        """Create every metric, or none: a clash unregisters what was made."""
        made: dict[str, MetricWrapperBase] = {}
        try:
            for spec in vocab.METRICS:
                made[spec.prometheus_name] = _build(spec, registry, keyed)
        except ValueError as exc:
            for metric in made.values():
                registry.unregister(metric)
            raise _taken(exc) from None
        return made

    # -- public ---------------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the metrics are registered on."""
        return self._registry

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """
        Start measuring the executors on ``bus``.

        Attaching to a bus this exporter is already attached to returns the
        same subscription: counting every event twice would be wrong.

        Args:
            bus: The bus (`stormwall.default_bus` when ``None``).

        Returns:
            The `Subscription`; close it to stop measuring that bus.

        Raises:
            ConfigError: ``bus`` is not an `EventBus`.
        """
        if self._pull:
            return self._attachments.attach_pull(
                bus, {BackendError: self._backend.handle}
            )
        if self._collector is not None:  # the gauges, read at scrape time
            self._attachments.count(bus)
        return self._attachments.attach_routes(bus, self._dispatch)

    def close(self) -> None:
        """
        Detach from every bus and unregister the metrics from the registry.

        Afterwards another exporter may register on the same registry (e.g.
        in tests, or to change ``key_label_limit``).
        """
        self._attachments.close()
        with self._lock:
            metrics, self._metrics = self._metrics, {}
            collector, self._collector = self._collector, None
        for metric in metrics.values():
            self._registry.unregister(metric)
        if collector is not None:
            self._registry.unregister(collector)

    def __repr__(self) -> str:
        limit = 0 if self._keys is None else self._keys.limit
        return f"<PrometheusExporter key_label_limit={limit}>"

    # -- event handling -------------------------------------------------------

    def _child(
        self, metric: MetricWrapperBase, labels: tuple[str, ...]
    ) -> Any:
        cache = self._children[metric]
        child = cache.get(labels)
        if child is None:
            child = cache[labels] = metric.labels(*labels)
        return child

    def _key(self, key: str | None) -> str | None:
        keys = self._keys
        return None if keys is None else keys(key)

    # Zeroed series, created once per executor / breaker / limiter / bulkhead
    # (and per key label value when keys are labels).

    def _see_executor(self, executor: str) -> None:
        for outcome in vocab.ATTEMPT_OUTCOMES:
            self._child(self._attempts, (executor, outcome))
        self._child(self._budget_exhausted, (executor,))
        self._executors.add(executor)

    def _see_calls(self, executor: str, key: str | None) -> None:
        for outcome in vocab.CALL_OUTCOMES:
            labels = (
                (executor, outcome)
                if key is None
                else (executor, outcome, key)
            )
            self._child(self._calls, labels)
        self._call_groups.add((executor, key or ""))

    def _see_limiter(self, limiter: str, key: str | None) -> None:
        for result in vocab.LIMITER_RESULTS:
            labels = (
                (limiter, result) if key is None else (limiter, result, key)
            )
            self._child(self._limiter_requests, labels)
        self._limiter_groups.add((limiter, key or ""))

    def _see_breaker(self, breaker: str, state: str) -> None:
        with self._lock:
            if breaker in self._breakers:
                return
            gauges: dict[str, Any] = {
                s: self._breaker_state.labels(breaker, s)
                for s in vocab.BREAKER_STATES
            }
            for s, gauge in gauges.items():
                gauge.set(1 if s == state else 0)
            for from_state, to_state in vocab.BREAKER_TRANSITION_PAIRS:
                self._child(self._transitions, (breaker, from_state, to_state))
            self._child(self._breaker_rejections, (breaker,))
            self._breakers[breaker] = gauges

    def _see_bulkhead(self, bulkhead: str) -> None:
        self._child(self._in_flight, (bulkhead,))
        self._child(self._bulkhead_rejections, (bulkhead,))
        self._bulkheads.add(bulkhead)

    def _on_observed(self, event: ExecutorObserved) -> None:
        executor = event.executor or ""
        if executor not in self._executors:
            self._see_executor(executor)
        if self._keys is None and (executor, "") not in self._call_groups:
            # With keys as labels the key series are zeroed as keys appear.
            self._see_calls(executor, None)
        if event.breaker is not None and event.breaker not in self._breakers:
            self._see_breaker(event.breaker, event.breaker_state or "closed")
        if self._keys is None:
            for limiter in event.limiters:
                if (limiter, "") not in self._limiter_groups:
                    self._see_limiter(limiter, None)
        if (
            event.bulkhead is not None
            and event.bulkhead not in self._bulkheads
        ):
            self._see_bulkhead(event.bulkhead)

    def _on_call_ended(self, event: CallEnded) -> None:
        executor = event.executor or ""
        key = self._key(event.key)
        if (executor, key or "") not in self._call_groups:
            self._see_calls(executor, key)
        if key is None:
            labels: tuple[str, ...] = (executor, event.outcome)
        else:
            labels = (executor, event.outcome, key)
        self._child(self._calls, labels).inc()
        self._child(self._call_duration, labels).observe(event.duration)

    def _on_attempt_ended(self, event: AttemptEnded) -> None:
        executor = event.executor or ""
        if executor not in self._executors:
            self._see_executor(executor)
        labels = (executor, event.outcome)
        self._child(self._attempts, labels).inc()
        self._child(self._attempt_duration, labels).observe(event.duration)

    def _on_retry(self, event: RetryScheduled) -> None:
        labels = (event.executor or "", vocab.error_type(event.error))
        self._child(self._retries, labels).inc()

    def _on_budget_exhausted(self, event: RetryBudgetExhausted) -> None:
        executor = event.executor or ""
        if executor not in self._executors:
            self._see_executor(executor)
        self._child(self._budget_exhausted, (executor,)).inc()

    def _on_state_changed(self, event: BreakerStateChanged) -> None:
        breaker = event.breaker
        if not self._newest.accept("breaker:" + breaker, event.sequence):
            pass  # a stale snapshot: count the transition, keep the state
        elif breaker not in self._breakers:
            self._see_breaker(breaker, event.to_state)
        else:
            # Under the lock: two racing transitions must not leave two
            # states at 1.
            with self._lock:
                gauges = self._breakers[breaker]
                if event.to_state not in gauges:  # a state we do not know
                    gauges[event.to_state] = self._breaker_state.labels(
                        breaker, event.to_state
                    )
                for state, gauge in gauges.items():
                    gauge.set(1 if state == event.to_state else 0)
        labels = (breaker, event.from_state, event.to_state)
        self._child(self._transitions, labels).inc()

    def _on_breaker_rejected(self, event: BreakerRejected) -> None:
        if event.breaker not in self._breakers:
            self._see_breaker(event.breaker, event.state)
        self._child(self._breaker_rejections, (event.breaker,)).inc()

    def _limiter_labels(
        self, limiter: str, result: str, key: str | None
    ) -> tuple[str, ...]:
        label = self._key(key)
        if (limiter, label or "") not in self._limiter_groups:
            self._see_limiter(limiter, label)
        return (limiter, result) if label is None else (limiter, result, label)

    def _on_limiter_allowed(self, event: LimiterAllowed) -> None:
        labels = self._limiter_labels(event.limiter, "allowed", event.key)
        self._child(self._limiter_requests, labels).inc()

    def _on_limiter_waited(self, event: LimiterWaited) -> None:
        labels = self._limiter_labels(event.limiter, "waited", event.key)
        self._child(self._limiter_requests, labels).inc()
        wait = self._child(self._limiter_wait, (event.limiter,))
        wait.observe(event.waited)

    def _on_limiter_rejected(self, event: LimiterRejected) -> None:
        labels = self._limiter_labels(event.limiter, "rejected", event.key)
        self._child(self._limiter_requests, labels).inc()

    def _on_bulkhead_in_flight(
        self, event: BulkheadAcquired | BulkheadReleased
    ) -> None:
        if event.bulkhead not in self._bulkheads:
            self._see_bulkhead(event.bulkhead)
        if self._newest.accept("bulkhead:" + event.bulkhead, event.sequence):
            gauge = self._child(self._in_flight, (event.bulkhead,))
            gauge.set(event.in_flight)

    def _on_bulkhead_rejected(self, event: BulkheadRejected) -> None:
        if event.bulkhead not in self._bulkheads:
            self._see_bulkhead(event.bulkhead)
        self._child(self._bulkhead_rejections, (event.bulkhead,)).inc()

    def _on_backend_error(self, event: BackendError) -> None:
        component = event.component
        if not event.cooldown:  # a round trip failed (not a skipped one)
            labels = (component, vocab.error_type(event.error))
            self._child(self._backend_errors, labels).inc()
        self._child(self._backend_decisions, (component, event.policy)).inc()


class _Collector:
    """
    The pull path: ``prometheus_client`` asks, the tallies answer.

    Reads every bus the exporter is attached to (`stormwall.tally.read`)
    through the shared table (`_vocabulary.families`) at each scrape.
    """

    def __init__(
        self,
        exporter: PrometheusExporter,
        specs: tuple[vocab.MetricSpec, ...],
    ) -> None:
        self._exporter = exporter
        self._specs = specs
        self._names = {spec.otel_name for spec in specs}

    def describe(self) -> Iterator[Metric]:
        """The families, empty: what the registry checks for clashes."""
        for spec in self._specs:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        """Every family, read now."""
        exporter = self._exporter
        readings = [tally.read(bus) for bus in exporter._attachments.buses()]
        keys = exporter._keys
        for family in vocab.families(readings, exporter._backend):
            if family.spec.otel_name not in self._names:
                continue
            if keys is not None and family.spec is vocab.LIMITER_AVAILABLE:
                yield _keyed_permits(family, readings, keys)
            else:
                yield _fill(family)


def _keyed_permits(
    family: vocab.Family,
    readings: list[tally.Reading],
    keys: vocab.KeyLabels,
) -> Metric:
    """
    The permits gauge with a ``key`` label, as the other keyed metrics.

    A global limiter's series has the key ``""`` (as a call without a key
    would); a per-key limiter has one series per key the label names,
    never one for ``"__other__"`` (the permits of many keys are no one
    number).
    """
    spec = family.spec
    metric = GaugeMetricFamily(
        spec.prometheus_name, spec.description, labels=(*spec.labels, "key")
    )
    for labels, value in family.values.items():
        metric.add_metric([*labels, ""], float(value))
    named = keys.named()
    for reading in readings:
        for limiter in reading.limiters:
            if limiter.per_key is None:
                continue
            for key in named:
                permits = limiter.per_key(key)
                if permits is not None:
                    metric.add_metric([limiter.name, key], permits)
    return metric


def _family(spec: vocab.MetricSpec) -> Metric:
    if spec.kind == "counter":
        return CounterMetricFamily(
            spec.prometheus_base, spec.description, labels=spec.labels
        )
    if spec.kind == "histogram":
        return HistogramMetricFamily(
            spec.prometheus_name, spec.description, labels=spec.labels
        )
    return GaugeMetricFamily(
        spec.prometheus_name, spec.description, labels=spec.labels
    )


_BOUNDS: Final = tuple(
    floatToGoString(b)  # type: ignore[no-untyped-call]
    for b in (*vocab.DURATION_BUCKETS, float("inf"))
)


def _fill(family: vocab.Family) -> Metric:
    metric = _family(family.spec)
    if isinstance(metric, HistogramMetricFamily):
        for labels, cell in family.cells.items():
            buckets = []
            total = 0
            sum_value = 0.0
            for bound, (_, count, part) in zip(
                _BOUNDS, tally.cell_parts(cell), strict=True
            ):
                total += count
                sum_value += part
                buckets.append((bound, float(total)))
            metric.add_metric(list(labels), buckets, sum_value)
        return metric
    for labels, value in family.values.items():
        metric.add_metric(list(labels), float(value))  # type: ignore[attr-defined]
    return metric


class MetricsServer:
    """
    A running ``/metrics`` endpoint; `close` stops it.

    Attributes:
        addr: The address it listens on.
        port: The port it is bound to (the real one when 0 was asked for).
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.addr: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])

    @property
    def url(self) -> str:
        """The URL of the ``/metrics`` page."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

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
        return f"<MetricsServer {self.url}>"


def serve_metrics(
    port: int = 0,
    *,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """
    Serve ``/metrics`` from a daemon thread.

    A thin wrapper of ``prometheus_client.start_http_server`` that reports
    the port it really bound and can be stopped. It listens on loopback by
    default: exposing metrics beyond the host is a decision to take on
    purpose (``addr="0.0.0.0"``).

    Args:
        port: The TCP port; ``0`` picks a free one (read it from ``.port``).
        addr: The address to listen on.
        registry: What to expose (default: ``prometheus_client.REGISTRY``,
            or, in multiprocess mode, every worker's values through a
            ``MultiProcessCollector``).

    Returns:
        The running `MetricsServer`.

    Raises:
        ConfigError: ``port`` is not an int in 0..65535.
        OSError: the address or port cannot be bound (e.g. the port is
            busy): the same class and ``errno`` as the socket's error, with
            ``host:port`` in the message, chained to the original.

    .. versionadded:: 0.1.0
    """
    if (
        isinstance(port, bool)
        or not isinstance(port, int)  # type: ignore[redundant-expr]
        or not 0 <= port <= 65535
    ):
        raise ConfigError("port", f"expected an int in 0..65535, got {port!r}")
    if registry is None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
    try:
        server, thread = prometheus_client.start_http_server(
            port, addr=addr, registry=registry
        )
    except OSError as exc:
        raise _bind_error(exc, addr, port) from exc
    return MetricsServer(server, thread)


def _bind_error(exc: OSError, addr: str, port: int) -> OSError:
    """
    ``exc`` again, as the same class, with the address in its message.

    The socket's own message ("Address already in use") does not say
    which address; the same class and errno keep ``except OSError`` (or
    ``PermissionError``, ...) and ``errno`` checks working.
    """
    host = f"[{addr}]" if ":" in addr else addr
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"cannot serve /metrics on {host}:{port}: {reason}"
    try:
        return type(exc)(exc.errno, message)
    except Exception:  # noqa: BLE001 - an OSError subclass with odd args
        return OSError(exc.errno, message)
