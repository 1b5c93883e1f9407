"""
The demo's wiring: exporters, the flaky upstream, the load, the status.

The demo is an application, so unlike the library it configures logging
(structlog and stdlib, to stderr) and tracing (an SDK ``TracerProvider`` of
its own, not the global one) for its own process.

It reports on a private `EventBus`, not `stormwall.default_bus`: everything
the demo measures is the demo's own executor, and a private bus keeps that
true even when the demo runs inside another process (a test, a notebook)
that observes the default bus. An application would normally attach its
exporters to the default bus with one `stormwall.observe` call; the only
difference here is the ``bus=`` argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from typing import IO, TYPE_CHECKING, Final, TextIO, cast

import httpx
import structlog
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
)
from prometheus_client import CollectorRegistry, generate_latest

from stormwall import EventBus, MonotonicClock, __version__, observe
from stormwall.exporters.otel import TracingExporter
from stormwall.exporters.prometheus import (
    MetricsServer,
    PrometheusExporter,
    serve_metrics,
)
from stormwall.exporters.structlog import StructlogExporter

from ._client import (
    EXECUTOR,
    Load,
    PipelineSettings,
    build_executor,
    pipeline_settings,
)
from ._status import LogStream, StatusLine, Tally, format_summary
from ._upstream import PHASES, FlakyUpstream, Schedule, make_schedule


if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace.export import SpanExporter

    from . import Options


__all__ = ["run_demo"]

# Per-call lines (every retry, every failed or rejected call) are INFO: at
# a hundred calls a second they would bury the story. WARNING and up is then
# the breaker's transitions, which is what a human wants to see scroll by;
# the per-call lines are still there for whoever lowers the level.
_LOG_LEVELS: Final = {
    "stormwall.retry.scheduled": "info",
    "stormwall.retry_budget.exhausted": "info",
    "stormwall.call.ended:failure": "info",
    "stormwall.call.ended:rejected": "info",
    "stormwall.rate_limiter.rejected": "info",
    "stormwall.bulkhead.rejected": "info",
    "stormwall.circuit_breaker.state_changed:closed": "warning",
}

# Seconds calls still in flight at the end get to finish.
_GRACE: Final = 1.0

_OTLP_VARS: Final = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class _UsageError(Exception):
    """A one-line error for the user (exit status 2)."""


class _SpanCounter(SpanProcessor):
    """Counts ended spans, so the summary can say what tracing saw."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:  # noqa: ARG002
        self.ended += 1


class _Timeline:
    """Seconds since the load began (0 before), and the phase then."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._clock = MonotonicClock()
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = self._clock.now()

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self._clock.now() - self._t0

    def phase(self) -> str:
        return self.schedule.phase_at(self.elapsed()).name


def _span_line(span: ReadableSpan) -> str:
    """One span as one line of JSON (JSON Lines)."""
    return cast("str", span.to_json(indent=None)) + "\n"


def _span_file(
    options: Options, log_stream: TextIO, cleanup: contextlib.ExitStack
) -> tuple[IO[str] | None, str]:
    """Where ``--spans`` writes (opened), and how to say so."""
    if options.spans is None:
        return None, ""
    if options.spans == "-":
        return log_stream, "printed on stderr, one JSON object a line"
    try:
        # Closed after the tracer provider's shutdown has flushed it (the
        # exit stack runs callbacks last in, first out).
        stream = cleanup.enter_context(
            open(options.spans, "w", encoding="utf-8")  # noqa: SIM115, PTH123
        )
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _UsageError(
            f"cannot write spans to {options.spans}: {reason}"
        ) from None
    return stream, f"written to {options.spans}, one JSON object a line"


def _tracer_provider(
    spans_out: IO[str] | None, spans_where: str
) -> tuple[TracerProvider, _SpanCounter, str]:
    """The demo's tracer provider, its span counter, and where spans go."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "stormwall-demo", "service.version": __version__}
        )
    )
    counter = _SpanCounter()
    provider.add_span_processor(counter)
    endpoint = next(
        (os.environ[v] for v in _OTLP_VARS if os.environ.get(v)), None
    )
    if endpoint is not None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            provider.shutdown()
            raise _UsageError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is "
                "missing: pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        # The exporter reads the endpoint, headers and timeout from the
        # standard OTEL_EXPORTER_OTLP_* variables itself.
        exporters: list[tuple[SpanExporter, str]] = [
            (OTLPSpanExporter(), f"OTLP http/protobuf to {endpoint}")
        ]
    else:
        exporters = []
    if spans_out is not None:
        exporters.append(
            (
                ConsoleSpanExporter(out=spans_out, formatter=_span_line),
                spans_where,
            )
        )
    for exporter, _ in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if exporters:
        where = "; ".join(what for _, what in exporters)
    else:
        # Printing every span would flood the terminal (thousands a
        # second); tracing stays on (the spans are made and counted) so its
        # cost is part of the demo.
        where = (
            "recorded and counted, not exported (set "
            "OTEL_EXPORTER_OTLP_ENDPOINT to send them to a collector, or "
            "--spans FILE to write them to a file)"
        )
    return provider, counter, where


def _configure_logging(quiet: bool, stream: LogStream) -> str:
    """Send structlog and stdlib logging to ``stream``; describe it."""
    # A quiet demo logs nothing through structlog (the exporter's highest
    # level is ERROR) and only the stdlib logger's errors (a broken handler).
    level = logging.CRITICAL if quiet else logging.WARNING
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(
            file=cast("TextIO", stream)
        ),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        stream=stream,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if quiet:
        return "off (--quiet)"
    return "stderr, WARNING and up (the breaker's transitions)"


def _describe_pipeline(s: PipelineSettings) -> str:
    return (
        f"token bucket {s.bucket_rate:g}/s (burst {s.bucket_capacity:g}) per"
        f" user; {s.max_attempts} attempts, full jitter, Retry-After; breaker"
        f" trips at {s.failure_rate_threshold:.0%} of {s.window_size} or"
        f" {s.failure_threshold} in a row, open {s.recovery_timeout:g}s;"
        f" bulkhead {s.bulkhead_limit} attempts in flight"
    )


# What the status line shows, printed once above it.
_STATUS_LEGEND: Final = (
    "  status: per second over the last second (calls/s, ok share,"
    " rejected/s, retries/s); the breaker's state and the bulkhead's"
    " attempts in flight/limit now"
)


def run_demo(
    options: Options,
    out: TextIO,
    err: TextIO,
    *,
    on_metrics: Callable[[str], None] | None = None,
) -> int:
    """
    Run the demo (the demo extra is installed); the exit status.

    ``on_metrics`` receives the final Prometheus exposition, once the load
    has ended and before the exporters stop (the summary counts what it
    shows).
    """
    log_stream = LogStream(err, None)
    with contextlib.ExitStack() as cleanup:
        try:
            spans_out, spans_where = _span_file(
                options, cast("TextIO", log_stream), cleanup
            )
            provider, span_counter, traces = _tracer_provider(
                spans_out, spans_where
            )
            cleanup.callback(provider.shutdown)
            prometheus = PrometheusExporter(CollectorRegistry())
            cleanup.callback(prometheus.close)
            server = _serve(options.port, prometheus)
            cleanup.callback(server.close)
        except _UsageError as exc:
            err.write(f"stormwall demo: error: {exc}\n")
            return 2

        schedule = make_schedule(options.duration, options.seed)
        timeline = _Timeline(schedule)
        settings = pipeline_settings(
            options.duration, options.rate, options.users
        )
        tally = Tally(PHASES, timeline.phase, settings.bulkhead_limit)
        status = None
        if not options.quiet:
            status = StatusLine(
                tally,
                timeline.phase,
                timeline.elapsed,
                out,
                tty=out.isatty(),
                width=shutil.get_terminal_size().columns,
            )
            log_stream.status = status
            cleanup.callback(status.finish)
        logs = _configure_logging(options.quiet, log_stream)

        bus = EventBus()
        cleanup.enter_context(
            observe(
                prometheus,
                TracingExporter(provider),
                StructlogExporter(levels=_LOG_LEVELS),
                bus=bus,
            )
        )
        cleanup.enter_context(bus.subscribe(tally.handle, *Tally.EVENT_TYPES))
        header = [
            (
                f"stormwall demo {__version__}: {options.duration:g}s,"
                f" {options.users} users x {options.rate:g} calls/s,"
                f" seed {options.seed} (rerun with --seed {options.seed})"
            ),
            f"  schedule: {schedule.describe()}",
            f"  pipeline: {_describe_pipeline(settings)}",
            f"  metrics: {server.url}",
            f"  traces: {traces}",
            f"  logs: {logs}",
        ]
        if status is not None:
            header.append(_STATUS_LEGEND)
        upstream = FlakyUpstream(schedule, options.seed, timeline.elapsed)
        interrupted = False
        try:
            asyncio.run(
                _main(
                    options,
                    settings,
                    bus,
                    upstream,
                    timeline,
                    status,
                    header,
                    out,
                )
            )
        except KeyboardInterrupt:
            interrupted = True
        if on_metrics is not None and not interrupted:
            on_metrics(generate_latest(prometheus.registry).decode())
        # Stop the exporters (and flush the spans) before the summary, so
        # it is the last thing on screen.
        cleanup.close()

    out.write(
        "\n" + _summary(tally, timeline, upstream, span_counter, spans_where)
    )
    out.write(f"metrics were served at {server.url} while the demo ran\n")
    out.flush()
    if interrupted:
        err.write("stormwall demo: interrupted\n")
        return 130
    return 0


def _serve(port: int, prometheus: PrometheusExporter) -> MetricsServer:
    """Serve ``/metrics`` on loopback; a port in use is a usage error."""
    try:
        return serve_metrics(port, registry=prometheus.registry)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _UsageError(
            f"cannot serve /metrics on 127.0.0.1:{port}: {reason} (use "
            "another --port, or --port 0 for a free one)"
        ) from None


async def _main(
    options: Options,
    settings: PipelineSettings,
    bus: EventBus,
    upstream: FlakyUpstream,
    timeline: _Timeline,
    status: StatusLine | None,
    header: list[str],
    out: TextIO,
) -> None:
    """Serve the upstream, run the load against it, refresh the status."""
    await upstream.start()
    try:
        async with httpx.AsyncClient(
            base_url=upstream.url,
            # Loopback only: a proxy from the environment must not get in
            # the way (nor netrc credentials, nor SSL settings).
            trust_env=False,
            limits=httpx.Limits(
                max_connections=4 * options.users,
                max_keepalive_connections=options.users,
            ),
            # A backstop: the executor's per-attempt timeout cuts first.
            timeout=5.0,
        ) as client:
            executor = build_executor(settings, bus, options.seed)
            load = Load(
                executor,
                client,
                options.users,
                options.rate,
                options.seed,
                timeline.elapsed,
            )
            header.insert(
                1,
                f"  upstream: {upstream.url}, called through the"
                f" AsyncResilientExecutor {EXECUTOR!r}",
            )
            out.write("\n".join(header) + "\n")
            out.flush()
            timeline.start()
            refresh = None
            if status is not None:
                refresh = asyncio.create_task(_refresh(status))
            try:
                await load.run(options.duration)
                await load.drain(_GRACE)
            finally:
                if refresh is not None:
                    refresh.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await refresh
                if status is not None:
                    status.render()  # the final numbers
    finally:
        await upstream.close()


async def _refresh(status: StatusLine) -> None:
    """Repaint the status line until cancelled."""
    while True:
        status.render()
        await asyncio.sleep(status.interval)


def _summary(
    tally: Tally,
    timeline: _Timeline,
    upstream: FlakyUpstream,
    spans: _SpanCounter,
    spans_where: str,
) -> str:
    windows = [(p.name, p.start, p.end) for p in timeline.schedule.phases]
    total = tally.totals()
    opened = total.entered.get("open", 0)
    served: dict[str, int] = {}
    for (_, kind), n in upstream.served.items():
        served[kind] = served.get(kind, 0) + n
    answered = ", ".join(
        f"{kind} x{served[kind]}"
        for kind in ("200", "429", "5xx", "dropped")
        if kind in served
    )
    elapsed = timeline.elapsed()
    per_second = spans.ended / elapsed if elapsed > 0 else 0.0
    lines = [
        f"summary ({elapsed:.1f}s)",
        format_summary(tally, windows),
        "",
        (
            "a call the breaker stopped mid-retry reached the upstream: it"
            " is a failure call, and its refused retry a breaker rejection"
        ),
    ]
    cancelled = total.outcomes["cancelled"]
    if cancelled:
        lines.append(
            f"cancelled at the end of the run: {cancelled} call"
            f"{'s' * (cancelled != 1)} (outcome cancelled)"
        )
    limit = tally.bulkhead_limit
    lines += [
        "",
        (
            f"breaker: opened {opened} time{'s' * (opened != 1)},"
            f" ended {tally.breaker_state}"
        ),
        (
            f"bulkhead: at most {total.peak_in_flight} of {limit} attempts"
            f" in flight, refused {total.bulkhead_rejections}"
        ),
        f"retry budget: denied {total.budget_denials} retries",
        f"upstream answered: {answered or 'nothing'}",
        (
            f"spans: {spans.ended} ended ({per_second:.0f} a second)"
            + (f", {spans_where}" if spans_where else "")
        ),
    ]
    return "\n".join(lines) + "\n"
