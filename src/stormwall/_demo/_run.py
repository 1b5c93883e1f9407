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
from typing import TYPE_CHECKING, Final, TextIO, cast

import httpx
import structlog
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
)
from prometheus_client import CollectorRegistry

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


def _tracer_provider(
    options: Options, spans_out: TextIO
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
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        where = f"OTLP http/protobuf to {endpoint}"
    elif options.spans:
        provider.add_span_processor(
            BatchSpanProcessor(ConsoleSpanExporter(out=spans_out))
        )
        where = "printed on stderr (--spans)"
    else:
        # Printing every span would flood the terminal; tracing stays on
        # (the spans are made and counted) so its cost is part of the demo.
        where = (
            "recorded, not exported (set OTEL_EXPORTER_OTLP_ENDPOINT to send "
            "them to a collector, or pass --spans to print them)"
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
        f" {s.failure_threshold} in a row, open {s.recovery_timeout:g}s"
    )


def run_demo(options: Options, out: TextIO, err: TextIO) -> int:
    """Run the demo (the demo extra is installed); the exit status."""
    log_stream = LogStream(err, None)
    with contextlib.ExitStack() as cleanup:
        try:
            provider, span_counter, traces = _tracer_provider(
                options, cast("TextIO", log_stream)
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
        tally = Tally(PHASES, timeline.phase)
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
        settings = pipeline_settings(options.duration, options.rate)
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
        # Stop the exporters (and flush the spans) before the summary, so
        # it is the last thing on screen.
        cleanup.close()

    out.write("\n" + _summary(tally, timeline, upstream, span_counter))
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
    lines = [
        f"summary ({timeline.elapsed():.1f}s)",
        format_summary(tally, windows),
        "",
        (
            f"breaker: opened {opened} time{'s' * (opened != 1)},"
            f" ended {tally.breaker_state}"
        ),
        f"retry budget: denied {total.budget_denials} retries",
        f"upstream answered: {answered or 'nothing'}",
        f"spans: {spans.ended} ended",
    ]
    return "\n".join(lines) + "\n"
