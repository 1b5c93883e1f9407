"""
The httpx transports: what is retried, ``Retry-After`` (with the default
policy and with a user's own executor), breaker and limiter wiring, spans,
validation, and no leaked connection.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest


httpx = pytest.importorskip("httpx")

from stormwall import (  # noqa: E402
    AsyncResilientExecutor,
    CircuitOpenError,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import RetryScheduled  # noqa: E402
from stormwall.integrations.httpx import (  # noqa: E402
    AsyncResilientTransport,
    ResilientTransport,
    http_circuit_breaker,
    http_retry_policy,
    is_retryable,
    parse_retry_after,
)
from stormwall.testing import EventRecorder  # noqa: E402


# -- helpers ----------------------------------------------------------------


class Script:
    """A MockTransport handler that plays responses and logs request times."""

    def __init__(self, clock, *items) -> None:
        self.clock = clock
        self.items = list(items)
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def _next(self, request):
        self.times.append(self.clock.now())
        self.requests.append(request)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, Exception):
            raise item
        # A fresh response each time: a client consumes and closes it.
        return httpx.Response(
            item.status_code,
            headers=item.headers,
            stream=httpx.ByteStream(b"".join(item.stream)),
        )

    def __call__(self, request):
        self.bodies.append(request.read())
        return self._next(request)

    async def handle_async(self, request):
        self.bodies.append(await request.aread())
        return self._next(request)


def executor(kind="sync", **kwargs):
    """An executor on a MockClock and a private bus, HTTP policy."""
    kwargs.setdefault("clock", MockClock())
    kwargs.setdefault("bus", EventBus())
    kwargs.setdefault(
        "retry_policy",
        http_retry_policy(max_attempts=3, base_delay=0.1, jitter=None),
    )
    cls = ResilientExecutor if kind == "sync" else AsyncResilientExecutor
    return cls("api", **kwargs)


def sync_client(script, ex, **kwargs):
    """A client whose ResilientTransport wraps a MockTransport."""
    transport = ResilientTransport(
        httpx.MockTransport(script), executor=ex, **kwargs
    )
    return httpx.Client(transport=transport, base_url="http://api.test")


def async_client(script, ex, **kwargs):
    """An AsyncClient whose AsyncResilientTransport wraps a MockTransport."""
    transport = AsyncResilientTransport(
        httpx.MockTransport(script.handle_async), executor=ex, **kwargs
    )
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


def request(kind, script, ex, method, url, transport_kwargs=None, **kw):
    """Send one request through the sync or async resilient client."""
    transport_kwargs = transport_kwargs or {}
    if kind == "sync":
        with sync_client(script, ex, **transport_kwargs) as client:
            response = client.request(method, url, **kw)
            response.read()
            return response

    async def go():
        async with async_client(script, ex, **transport_kwargs) as client:
            response = await client.request(method, url, **kw)
            await response.aread()
            return response

    return asyncio.run(go())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


# -- behaviour --------------------------------------------------------------


@KINDS
def test_503_then_429_retry_after_then_200(kind):
    """503, 429 (Retry-After: 2), 200: 3 attempts, 2 s before the third."""
    ex = executor(kind)
    script = Script(
        ex.clock,
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(200, text="ok"),
    )
    response = request(kind, script, ex, "GET", "/x")
    assert response.status_code == 200
    assert response.text == "ok"
    assert len(script.times) == 3
    assert script.times[2] - script.times[1] >= 2.0


@KINDS
def test_http_date_retry_after(kind):
    """An HTTP-date Retry-After is honoured in seconds from now."""
    ex = executor(kind)
    when = datetime.now(UTC) + timedelta(seconds=5)
    script = Script(
        ex.clock,
        httpx.Response(
            503, headers={"Retry-After": format_datetime(when, usegmt=True)}
        ),
        httpx.Response(200),
    )
    response = request(kind, script, ex, "GET", "/x")
    assert response.status_code == 200
    assert 3.0 <= script.times[1] - script.times[0] <= 5.0


def user_executor(kind, policy):
    """The user's own executor: a plain RetryPolicy, no Retry-After hook."""
    cls = ResilientExecutor if kind == "sync" else AsyncResilientExecutor
    return cls("mine", retry_policy=policy, clock=MockClock(), bus=EventBus())


@KINDS
def test_retry_after_honoured_with_user_executor(kind):
    """A user's executor whose policy has no retry_after hook still waits
    what Retry-After says (7 s), not its own 0.1 s back-off; the user's
    policy object is left untouched (it may be shared)."""
    policy = RetryPolicy(
        max_attempts=3,
        base_delay=0.1,
        max_delay=30.0,
        jitter=None,
        retry_on=is_retryable,
    )
    ex = user_executor(kind, policy)
    script = Script(
        ex.clock,
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(503),
        httpx.Response(200),
    )

    response = request(kind, script, ex, "GET", "/x")

    assert 200 == response.status_code
    assert pytest.approx(7.0) == script.times[1] - script.times[0]
    # No hint on the second 503: the policy's own back-off (0.1 * 2).
    assert pytest.approx(0.2) == script.times[2] - script.times[1]
    assert policy.retry_after is None
    assert ex.retry_policy is policy


@KINDS
def test_retry_after_user_hook_wins_then_header(kind):
    """A user's own retry_after hook decides first; when it has no answer
    (None), the Retry-After header does; both are capped by max_delay."""
    seen = []

    def hook(error):
        seen.append(error)
        return 1.5 if len(seen) == 1 else None

    policy = RetryPolicy(
        max_attempts=3,
        base_delay=0.1,
        max_delay=4.0,
        jitter=None,
        retry_on=is_retryable,
        retry_after=hook,
    )
    ex = user_executor(kind, policy)
    script = Script(
        ex.clock,
        httpx.Response(503, headers={"Retry-After": "9"}),
        httpx.Response(429, headers={"Retry-After": "60"}),
        httpx.Response(200),
    )

    response = request(kind, script, ex, "GET", "/x")

    assert 200 == response.status_code
    assert pytest.approx(1.5) == script.times[1] - script.times[0]
    assert pytest.approx(4.0) == script.times[2] - script.times[1]
    assert 2 == len(seen)
    assert policy.retry_after is hook


@KINDS
def test_user_executor_keeps_its_components(kind):
    """The transport runs retried requests through the user's breaker,
    limiter, clock and bus, and reports under the user's executor name."""
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, jitter=None)
    breaker = http_circuit_breaker("mine", failure_threshold=2)
    cls = ResilientExecutor if kind == "sync" else AsyncResilientExecutor
    bus = EventBus()
    ex = cls(
        "mine",
        retry_policy=policy,
        circuit_breaker=breaker,
        clock=MockClock(),
        bus=bus,
    )
    with EventRecorder(bus) as recorder:
        script = Script(
            ex.clock, httpx.Response(503, headers={"Retry-After": "2"})
        )
        with pytest.raises(CircuitOpenError):
            request(kind, script, ex, "GET", "/x")

    assert "open" == breaker.state
    assert {"mine"} == {e.executor for e in recorder.of_type(RetryScheduled)}
    assert 2.0 == recorder.of_type(RetryScheduled)[0].delay


def test_parse_retry_after_forms():
    """Delta-seconds, past dates, garbage and absence parse sensibly."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(past) == 0.0


@KINDS
def test_retry_after_clamped_to_max_delay(kind):
    """A Retry-After above the policy's max_delay waits max_delay."""
    ex = executor(
        kind, retry_policy=http_retry_policy(max_delay=3.0, jitter=None)
    )
    script = Script(
        ex.clock,
        httpx.Response(503, headers={"Retry-After": "3600"}),
        httpx.Response(200),
    )
    assert request(kind, script, ex, "GET", "/x").status_code == 200
    assert script.times[1] - script.times[0] == pytest.approx(3.0)


@KINDS
def test_post_not_retried_by_default(kind):
    """A POST is sent once and its 503 returned as is."""
    ex = executor(kind)
    script = Script(
        ex.clock, httpx.Response(503, text="busy"), httpx.Response(200)
    )
    response = request(kind, script, ex, "POST", "/x", content=b"data")
    assert response.status_code == 503
    assert response.text == "busy"
    assert len(script.times) == 1


@KINDS
def test_post_retried_when_opted_in(kind):
    """A POST is retried, body replayed, when retry_methods includes it."""
    ex = executor(kind)
    script = Script(ex.clock, httpx.Response(503), httpx.Response(200))
    response = request(
        kind,
        script,
        ex,
        "POST",
        "/x",
        transport_kwargs={"retry_methods": {"post", "GET"}},
        content=b"data",
    )
    assert response.status_code == 200
    assert script.bodies == [b"data", b"data"]


@KINDS
def test_streaming_body_not_retried(kind):
    """A PUT whose body is a generator is sent once."""
    ex = executor(kind)
    script = Script(ex.clock, httpx.Response(503), httpx.Response(200))
    if kind == "sync":

        def body():
            yield b"a"
            yield b"b"

    else:

        async def body():
            yield b"a"
            yield b"b"

    response = request(kind, script, ex, "PUT", "/x", content=body())
    assert response.status_code == 503
    assert script.bodies == [b"ab"]


@KINDS
def test_exhausted_retries_return_last_response(kind):
    """When retries run out the last 503 comes back, readable, headers kept."""
    ex = executor(kind)
    script = Script(
        ex.clock,
        httpx.Response(503, headers={"X-Try": "1"}, text="one"),
        httpx.Response(503, headers={"X-Try": "2"}, text="two"),
        httpx.Response(503, headers={"X-Try": "3"}, json={"n": 3}),
    )
    response = request(kind, script, ex, "GET", "/x")
    assert response.status_code == 503
    assert response.headers["X-Try"] == "3"
    assert response.json() == {"n": 3}
    assert len(script.times) == 3


@KINDS
def test_gzip_body_of_last_response_decodes_once(kind):
    """A content-encoded retryable response comes back decodable."""
    import gzip

    ex = executor(kind, retry_policy=None)
    script = Script(
        ex.clock,
        httpx.Response(
            503,
            headers={"Content-Encoding": "gzip"},
            content=gzip.compress(b"zipped"),
        ),
    )
    response = request(kind, script, ex, "GET", "/x")
    assert response.content == b"zipped"


@KINDS
def test_connect_errors_retried_then_raised(kind):
    """Connect errors are retried and the last one is raised as is."""
    ex = executor(kind)
    script = Script(ex.clock, httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError, match="refused"):
        request(kind, script, ex, "GET", "/x")
    assert len(script.times) == 3


@KINDS
def test_connect_error_then_success(kind):
    """A read timeout followed by a 200 returns the 200."""
    ex = executor(kind)
    script = Script(ex.clock, httpx.ReadTimeout("slow"), httpx.Response(200))
    assert request(kind, script, ex, "GET", "/x").status_code == 200


@KINDS
def test_pool_timeout_not_retried(kind):
    """A PoolTimeout (local congestion) is raised at once."""
    ex = executor(kind)
    script = Script(ex.clock, httpx.PoolTimeout("full"))
    with pytest.raises(httpx.PoolTimeout):
        request(kind, script, ex, "GET", "/x")
    assert len(script.times) == 1


@KINDS
def test_breaker_opens_and_fails_fast(kind):
    """Repeated 503s open the breaker; the next request fails fast."""
    ex = executor(
        kind,
        circuit_breaker=http_circuit_breaker(
            failure_threshold=3, recovery_timeout=60
        ),
    )
    script = Script(ex.clock, httpx.Response(503))
    response = request(kind, script, ex, "GET", "/x")
    assert response.status_code == 503
    assert ex.circuit_breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        request(kind, script, ex, "GET", "/x")
    assert len(script.times) == 3


@KINDS
def test_breaker_ignores_429(kind):
    """429s are retried but never open the breaker."""
    ex = executor(
        kind,
        circuit_breaker=http_circuit_breaker(failure_threshold=2),
    )
    script = Script(ex.clock, httpx.Response(429))
    for _ in range(3):
        assert request(kind, script, ex, "GET", "/x").status_code == 429
    assert ex.circuit_breaker.state == "closed"


@KINDS
def test_post_503_counts_against_breaker(kind):
    """A non-retried request still passes through the breaker."""
    ex = executor(
        kind,
        circuit_breaker=http_circuit_breaker(failure_threshold=1),
    )
    script = Script(ex.clock, httpx.Response(503))
    assert request(kind, script, ex, "POST", "/x").status_code == 503
    with pytest.raises(CircuitOpenError):
        request(kind, script, ex, "POST", "/x")


@KINDS
def test_limiter_keyed_per_host(kind):
    """Two hosts have separate limiter buckets."""
    ex = executor(
        kind,
        limiter=TokenBucket(capacity=1, refill_rate=0.001),
        limiter_timeout=0,
    )
    script = Script(ex.clock, httpx.Response(200))
    assert (
        request(kind, script, ex, "GET", "http://a.test/").status_code == 200
    )
    assert (
        request(kind, script, ex, "GET", "http://b.test:8080/").status_code
        == 200
    )
    with pytest.raises(RateLimitedError) as info:
        request(kind, script, ex, "GET", "http://a.test/again")
    assert info.value.key == "a.test"
    with pytest.raises(RateLimitedError) as info:
        request(kind, script, ex, "GET", "http://b.test:8080/")
    assert info.value.key == "b.test:8080"


def test_custom_key_function():
    """A key function replaces the per-host key."""
    ex = executor(
        limiter=TokenBucket(capacity=1, refill_rate=0.001), limiter_timeout=0
    )
    script = Script(ex.clock, httpx.Response(200))
    kwargs = {"key": lambda r: r.url.path}
    assert (
        request(
            "sync", script, ex, "GET", "http://a.test/p", kwargs
        ).status_code
        == 200
    )
    assert (
        request(
            "sync", script, ex, "GET", "http://b.test/q", kwargs
        ).status_code
        == 200
    )
    with pytest.raises(RateLimitedError):
        request("sync", script, ex, "GET", "http://c.test/p", kwargs)


def test_default_transports_and_executors():
    """Defaults build an HTTP transport and an HTTP-aware executor."""
    with ResilientTransport() as transport:
        assert isinstance(transport.executor, ResilientExecutor)
        assert transport.executor.circuit_breaker is not None
    transport = AsyncResilientTransport()
    assert isinstance(transport.executor, AsyncResilientExecutor)
    asyncio.run(transport.aclose())


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"executor": AsyncResilientExecutor()}, "executor"),
        ({"executor": object()}, "executor"),
        ({"retry_methods": "GET"}, "retry_methods"),
        ({"retry_methods": [1]}, "retry_methods"),
        ({"retry_statuses": [99]}, "retry_statuses"),
        ({"retry_statuses": [True]}, "retry_statuses"),
        ({"retry_statuses": 503}, "retry_statuses"),
        ({"key": "host"}, "key"),
        ({"transport": httpx.AsyncHTTPTransport()}, "transport"),
    ],
)
def test_sync_validation(kwargs, parameter):
    """Bad parameters raise ConfigError naming the parameter."""
    with pytest.raises(ConfigError) as info:
        ResilientTransport(**kwargs)
    assert info.value.parameter == parameter


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"executor": ResilientExecutor()}, "executor"),
        ({"transport": httpx.HTTPTransport()}, "transport"),
        ({"retry_methods": None}, "retry_methods"),
    ],
)
def test_async_validation(kwargs, parameter):
    """The async transport refuses sync executors and transports."""
    with pytest.raises(ConfigError) as info:
        AsyncResilientTransport(**kwargs)
    assert info.value.parameter == parameter


# -- tracing ----------------------------------------------------------------


@KINDS
def test_attempt_spans_carry_http_attributes(kind):
    """Attempt spans get HTTP attributes; client spans nest under them."""
    pytest.importorskip("opentelemetry.sdk")
    otel_httpx = pytest.importorskip("opentelemetry.instrumentation.httpx")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from stormwall.exporters.otel import TracingExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ex = executor(kind)
    subscription = TracingExporter(provider).attach(ex.bus)
    script = Script(ex.clock, httpx.Response(503), httpx.Response(200))
    try:
        if kind == "sync":
            inner = otel_httpx.SyncOpenTelemetryTransport(
                httpx.MockTransport(script), tracer_provider=provider
            )
            with httpx.Client(
                transport=ResilientTransport(inner, executor=ex)
            ) as client:
                assert client.get("http://api.test:8080/x").status_code == 200
        else:
            inner = otel_httpx.AsyncOpenTelemetryTransport(
                httpx.MockTransport(script.handle_async),
                tracer_provider=provider,
            )

            async def go():
                async with httpx.AsyncClient(
                    transport=AsyncResilientTransport(inner, executor=ex)
                ) as client:
                    response = await client.get("http://api.test:8080/x")
                    assert response.status_code == 200

            asyncio.run(go())
    finally:
        subscription.close()
        spans = list(memory.get_finished_spans())
        provider.shutdown()
    attempts = sorted(
        (s for s in spans if s.name == "api attempt"),
        key=lambda s: s.attributes["stormwall.attempt"],
    )
    assert len(attempts) == 2
    for span in attempts:
        assert span.attributes["http.request.method"] == "GET"
        assert span.attributes["server.address"] == "api.test"
        assert span.attributes["server.port"] == 8080
    assert "http.request.resend_count" not in attempts[0].attributes
    assert attempts[1].attributes["http.request.resend_count"] == 1
    clients = [s for s in spans if s.kind.name == "CLIENT"]
    assert len(clients) == 2
    parents = {s.parent.span_id for s in clients}
    assert parents == {s.context.span_id for s in attempts}


def test_caller_span_not_annotated():
    """Without a tracing exporter the caller's own span is left alone."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ex = executor()
    script = Script(ex.clock, httpx.Response(200))
    with provider.get_tracer("t").start_as_current_span("caller"):
        assert request("sync", script, ex, "GET", "/x").status_code == 200
    (span,) = memory.get_finished_spans()
    provider.shutdown()
    assert "http.request.method" not in span.attributes


# -- real connections -------------------------------------------------------


class Alternating(http.server.BaseHTTPRequestHandler):
    """Answers 503 and 200 in turn, keeping connections alive."""

    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY, Nagle and the
    # client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    lock = threading.Lock()
    count = 0

    def do_GET(self) -> None:
        """Answer one request."""
        with self.lock:
            type(self).count += 1
            n = type(self).count
        status = 503 if n % 2 else 200
        body = b"busy" if status == 503 else b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002
        """Stay quiet."""


@pytest.fixture
def alternating_server():
    """A loopback server answering 503 then 200 alternately."""
    Alternating.count = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Alternating)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_no_leaked_connections_after_retries(alternating_server):
    """1,000 retried requests through a 4-connection pool all complete."""
    ex = ResilientExecutor(
        "leak",
        retry_policy=RetryPolicy(
            max_attempts=3,
            base_delay=0,
            retry_on=http_retry_policy().retry_on,
            retry_after=http_retry_policy().retry_after,
        ),
        bus=EventBus(),
    )
    inner = httpx.HTTPTransport(
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4)
    )
    transport = ResilientTransport(inner, executor=ex)
    started = time.monotonic()
    with httpx.Client(
        transport=transport,
        base_url=alternating_server,
        timeout=httpx.Timeout(5.0, pool=2.0),
    ) as client:
        for _ in range(1000):
            response = client.get("/")
            assert response.status_code == 200
        pool = inner._pool
        assert pool.connections
        assert all(c.is_idle() for c in pool.connections)
        assert len(pool.connections) <= 4
    assert Alternating.count == 2000
    assert time.monotonic() - started < 15


def test_http_retry_policy_takes_a_long_base_delay():
    """http_retry_policy(base_delay=30) follows RetryPolicy's rule: an
    unset max_delay never refuses a valid base_delay."""
    policy = http_retry_policy(base_delay=30, jitter=None)

    assert 30.0 == policy.max_delay
    assert 3.0 == http_retry_policy(max_delay=3.0).max_delay
