"""
A resilient httpx client: retries, Retry-After, a circuit breaker, a limiter.

Run it with ``python examples/resilient_httpx_client.py``. It starts a
flaky HTTP server on 127.0.0.1 (a free port), calls it through a
`ResilientExecutor`, prints what happened to each call, and exits.

The server answers:

- ``/users/<id>``: 503 twice per id (the second time with
  ``Retry-After: 1``), then 200;
- ``/missing``: 404 (not retried, not a breaker failure);
- ``/down``: 500, always (the breaker opens, later calls fail fast).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from typing import ClassVar

import httpx

from stormwall import (
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import (
    BreakerStateChanged,
    CallEnded,
    Event,
    RetryScheduled,
)


# -- the flaky upstream ---------------------------------------------------


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Fails in the ways real upstreams do; see the module docstring."""

    seen: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        """Answer one request."""
        with self.lock:
            self.seen[self.path] += 1
            n = self.seen[self.path]
        if self.path.startswith("/users/") and n <= 2:
            headers = {"Retry-After": "1"} if n == 2 else {}
            self.reply(503, {"error": "busy"}, headers)
        elif self.path.startswith("/users/"):
            user_id = self.path.rsplit("/", 1)[1]
            self.reply(200, {"id": user_id, "name": f"user {user_id}"})
        elif self.path == "/missing":
            self.reply(404, {"error": "no such thing"})
        else:
            self.reply(500, {"error": "down"})

    def reply(
        self,
        status: int,
        body: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a JSON response."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep the example's output readable."""


class Upstream:
    """The flaky server, on a free loopback port, in a thread."""

    def __enter__(self) -> str:
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), FlakyHandler
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True
        )
        self.thread.start()
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# -- the resilient client -------------------------------------------------


def transient(error: BaseException) -> bool:
    """Whether an error is worth retrying: transport errors and 5xx."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def retry_after(error: object) -> float | None:
    """The server's ``Retry-After`` hint in seconds, if it sent one."""
    if isinstance(error, httpx.HTTPStatusError):
        value = error.response.headers.get("Retry-After")
        if value is not None and value.isdigit():
            return float(value)
    return None


def build_executor(bus: EventBus) -> ResilientExecutor:
    """The pipeline every request of this client goes through."""
    return ResilientExecutor(
        "users-api",
        # 20 requests a second per endpoint, in bursts of 5.
        limiter=TokenBucket(capacity=5, refill_rate=20),
        retry_policy=RetryPolicy(
            max_attempts=4,
            base_delay=0.02,
            # A hint of "1" second is clamped to this: the example must
            # stay fast. In production keep max_delay below the caller's
            # own timeout.
            max_delay=0.2,
            retry_on=transient,
            retry_after=retry_after,
        ),
        circuit_breaker=CircuitBreaker(
            "users-api",
            failure_threshold=3,
            recovery_timeout=30,
            # A 404 is the caller's mistake, not a sick upstream.
            record_on=transient,
        ),
        bus=bus,
    )


def get_json(client: httpx.Client, path: str) -> object:
    """GET ``path`` and decode it; raise for 4xx and 5xx."""
    response = client.get(path)
    response.raise_for_status()
    return response.json()


def narrate(event: Event) -> None:
    """Print the decisions the pipeline takes."""
    if isinstance(event, RetryScheduled):
        print(
            f"  retry #{event.attempt} in {event.delay:.3f}s "
            f"after {type(event.error).__name__}"
        )
    elif isinstance(event, BreakerStateChanged):
        print(
            f"  breaker {event.breaker}: {event.from_state} -> "
            f"{event.to_state} ({event.reason})"
        )
    elif isinstance(event, CallEnded):
        print(
            f"  call ended: {event.outcome} after {event.attempts} attempt(s)"
        )


# The paths this example requests, in order.
PATHS = (
    "/users/1",
    "/users/2",
    "/missing",
    "/down",
    "/down",
    "/down",
    "/down",
)


def main() -> int:
    """Run the demo; return the process exit code."""
    bus = EventBus()
    executor = build_executor(bus)
    with (
        Upstream() as base_url,
        bus.subscribe(narrate, RetryScheduled, BreakerStateChanged, CallEnded),
        httpx.Client(base_url=base_url, timeout=2.0) as client,
    ):
        for path in PATHS:
            print(f"GET {path}")
            try:
                body = executor.run(path, get_json, client, path)
            except CircuitOpenError as exc:
                # Chained to the last real failure when the breaker opened
                # during this call's retries.
                cause = exc.__cause__
                why = f" (cause: {type(cause).__name__})" if cause else ""
                print(
                    f"  -> CircuitOpenError{why}: failing fast for "
                    f"{exc.retry_after:.0f}s"
                )
            except httpx.HTTPStatusError as exc:
                # Retries ran out: the *original* httpx error is raised.
                print(f"  -> HTTPStatusError {exc.response.status_code}")
            else:
                print(f"  -> 200 {body}")
    print(f"requests the server saw: {dict(FlakyHandler.seen)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
