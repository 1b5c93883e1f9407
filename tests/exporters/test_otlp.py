"""
End to end: stormwall spans through the real OTLP/HTTP exporter to a
receiver on loopback, decoded from the protobuf the collector would get.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.proto")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from stormwall import (
    EventBus,
    MockClock,
    ResilientExecutor,
    RetryPolicy,
)
from stormwall.exporters.otel import TracingExporter


class Boom(Exception):
    pass


class Receiver:
    """A minimal OTLP/HTTP trace receiver: it keeps every decoded request."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.paths.append(self.path)
                receiver.requests.append(
                    ExportTraceServiceRequest.FromString(body)
                )
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):  # noqa: A002
                pass  # keep the test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


@pytest.fixture
def receiver(monkeypatch):
    """A receiver on a free loopback port, for the duration of the test."""
    # A proxy from the environment must not swallow loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join()


def attributes(span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


class TestOTLPExport:
    """Call and attempt spans reach an OTLP collector intact."""

    def test_retried_call_arrives_with_parentage(self, receiver):
        """A call retried twice arrives as a call span under the request
        span and three attempt spans under the call span, with attributes,
        statuses and retry events."""
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)
            )
        )
        bus = EventBus()
        TracingExporter(provider).attach(bus)

        ex = ResilientExecutor(
            "users-api",
            retry_policy=RetryPolicy(
                max_attempts=3, base_delay=0.5, jitter=None
            ),
            clock=MockClock(),
            bus=bus,
        )
        script = iter([Boom(), Boom(), "ok"])

        def fetch():
            step = next(script)
            if isinstance(step, Exception):
                raise step
            return step

        try:
            with provider.get_tracer("app").start_as_current_span("GET /u"):
                assert "ok" == ex.run("user:1", fetch)
            assert provider.force_flush(10_000)
        finally:
            provider.shutdown()

        assert {"/v1/traces"} == set(receiver.paths)
        spans = receiver.spans()
        by_name: dict[str, list[Span]] = {}
        for span in spans:
            by_name.setdefault(span.name, []).append(span)
        (request,) = by_name["GET /u"]
        (call,) = by_name["users-api"]
        attempts = sorted(
            by_name["users-api attempt"],
            key=lambda s: attributes(s)["stormwall.attempt"],
        )
        assert 5 == len(spans)
        assert {request.trace_id} == {s.trace_id for s in spans}
        assert request.span_id == call.parent_span_id
        assert [call.span_id] * 3 == [a.parent_span_id for a in attempts]
        assert Span.SPAN_KIND_INTERNAL == call.kind
        assert {
            "stormwall.executor": "users-api",
            "stormwall.attempts": 3,
            "stormwall.outcome": "success",
        } == attributes(call)
        assert Status.STATUS_CODE_UNSET == call.status.code
        assert [
            ("stormwall.retry.scheduled", 0.5),
            ("stormwall.retry.scheduled", 1.0),
        ] == [
            (e.name, attributes(e)["stormwall.retry.delay"])
            for e in call.events
        ]
        assert [1, 2, 3] == [
            attributes(a)["stormwall.attempt"] for a in attempts
        ]
        assert [
            Status.STATUS_CODE_ERROR,
            Status.STATUS_CODE_ERROR,
            Status.STATUS_CODE_UNSET,
        ] == [a.status.code for a in attempts]
        assert ["Boom", "Boom", None] == [
            attributes(a).get("error.type") for a in attempts
        ]
        assert "stormwall" == next(
            scope_spans.scope.name
            for request in receiver.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            if any(s.name == "users-api" for s in scope_spans.spans)
        )
        for span in spans:
            assert span.start_time_unix_nano <= span.end_time_unix_nano
            assert span.start_time_unix_nano > 1_600_000_000 * 10**9
