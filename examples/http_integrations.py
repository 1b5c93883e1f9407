"""
Both HTTP integrations, end to end on loopback.

1. A client: `ResilientTransport` under an `httpx.Client` retries a flaky
   upstream (a real HTTP server on 127.0.0.1 answering 503 with
   ``Retry-After`` before it answers 200) and fails fast once the breaker
   has seen enough.
2. A server: `RateLimitMiddleware` in a Starlette app answers 429 with
   ``Retry-After`` and the IETF ``RateLimit`` headers past its budget, per
   client address.

Run: ``python examples/http_integrations.py``. It needs httpx (the
``httpx`` extra) and Starlette, which no stormwall extra installs (the
middleware works with any ASGI framework)::

    pip install 'stormwall[httpx]' starlette

The repository's ``make test`` venv has both (Starlette comes with the
``integrations`` dependency group).
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


try:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
except ModuleNotFoundError as missing:
    if (missing.name or "").split(".")[0] not in {"httpx", "starlette"}:
        raise
    raise SystemExit(
        f"http_integrations.py needs {missing.name}, which is not installed:"
        " pip install 'stormwall[httpx]' starlette (no stormwall extra"
        " installs starlette)"
    ) from missing

from stormwall import (
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    ResilientExecutor,
    TokenBucket,
)
from stormwall.events import RetryScheduled
from stormwall.integrations.asgi import RateLimitMiddleware
from stormwall.integrations.httpx import (
    ResilientTransport,
    http_retry_policy,
    is_upstream_failure,
)


class Flaky(BaseHTTPRequestHandler):
    """503 (Retry-After: 0) twice per path, then 200; /down is always 503."""

    seen: dict[str, int] = {}  # noqa: RUF012 - shared by the server's threads
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Answer by the rule above."""
        count = self.seen[self.path] = self.seen.get(self.path, 0) + 1
        ok = self.path != "/down" and count > 2
        body = b"hello" if ok else b"busy"
        self.send_response(200 if ok else 503)
        if not ok:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the example's output readable."""


def client_side() -> None:
    """Retries on 503, honours Retry-After, then fails fast."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bus = EventBus()
    bus.subscribe(
        lambda e: print(f"  retry #{e.attempt} in {e.delay:.2f}s"),
        RetryScheduled,
    )
    executor = ResilientExecutor(
        "upstream",
        retry_policy=http_retry_policy(max_attempts=3, base_delay=0.01),
        circuit_breaker=CircuitBreaker(
            "upstream", failure_threshold=3, record_on=is_upstream_failure
        ),
        bus=bus,
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with httpx.Client(
            transport=ResilientTransport(executor=executor), base_url=base
        ) as client:
            print("GET /hello")
            response = client.get("/hello")
            print(f"  -> {response.status_code} {response.text}")
            print("GET /down")
            response = client.get("/down")
            print(f"  -> {response.status_code} after retries ran out")
            print("GET /down again")
            try:
                client.get("/down")
            except CircuitOpenError as exc:
                print(f"  -> CircuitOpenError: {exc}")
    finally:
        server.shutdown()
        server.server_close()


async def server_side() -> None:
    """Three requests per client pass, the fourth gets 429."""

    async def hello(_request: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(
        RateLimitMiddleware,
        limiter=TokenBucket(3, 0.5, name="api"),
    )
    for client_ip in ("10.0.0.1", "10.0.0.2"):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 1234))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as client:
            for n in range(1, 5):
                r = await client.get("/")
                line = f"  {client_ip} request {n}: {r.status_code}"
                if r.status_code == 429:
                    line += f" Retry-After={r.headers['Retry-After']}"
                line += f" RateLimit={r.headers.get('RateLimit')}"
                print(line)


def main() -> None:
    """Run both halves."""
    print("client: ResilientTransport")
    client_side()
    print("server: RateLimitMiddleware")
    asyncio.run(server_side())


if __name__ == "__main__":
    main()
