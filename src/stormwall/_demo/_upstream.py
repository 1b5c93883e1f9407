"""
The flaky upstream: a tiny HTTP/1.1 server whose health follows a schedule.

Rules:

- The run is cut into four phases, ``healthy -> degraded -> outage ->
  recovery``, as *fractions of the run's duration* (`make_schedule`), so a
  6-second test run passes through every phase just like a 30-second demo.
  The seed moves each inner boundary by a few percent: two seeds give two
  schedules, one seed always the same one.
- What one request gets is a pure function of ``(seed, request number,
  phase)`` (`decide`): reproducible by request number, although which request
  arrives when depends on real network timing and is not.
- Degraded: 5xx answers and latency spikes (some beyond the client's
  per-attempt timeout). Outage: the upstream mostly hangs (it sits on a
  request for 1-2 s, past the client's timeout), then answers 503 or
  closes the connection without an answer. Any phase but the outage: an
  occasional 429 with ``Retry-After``.

Only the standard library: the server is `asyncio.start_server` with just
enough HTTP/1.1 to serve ``GET`` with keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = [
    "PHASES",
    "PROFILES",
    "FlakyUpstream",
    "Phase",
    "Profile",
    "Reply",
    "Schedule",
    "decide",
    "make_schedule",
]

PHASES: Final = ("healthy", "degraded", "outage", "recovery")

# Shares of the run. The outage is long enough for the breaker to trip and
# re-trip a couple of times; recovery is the longest so the breaker has time
# to close and the success ratio to climb back where everyone can see it.
_SHARES: Final = (0.25, 0.20, 0.25, 0.30)

# How far the seed may move an inner boundary, as a fraction of the run.
_BOUNDARY_JITTER: Final = 0.03

_REASONS: Final = {
    200: "OK",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Phase:
    """
    One phase of the run: its name and its span in seconds from the start.
    """

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """
    The phases of one run, back to back from 0 to ``duration``.
    """

    duration: float
    phases: tuple[Phase, ...]

    def phase_at(self, elapsed: float) -> Phase:
        """
        The phase at ``elapsed`` seconds; the last one from its start on.
        """
        for phase in self.phases:
            if elapsed < phase.end:
                return phase
        return self.phases[-1]

    def describe(self) -> str:
        """One line: ``healthy 0-7.5s, degraded 7.5-13.5s, ...``."""
        return ", ".join(
            f"{p.name} {p.start:.3g}-{p.end:.3g}s" for p in self.phases
        )


def make_schedule(duration: float, seed: int) -> Schedule:
    """
    The phase schedule of a run of ``duration`` seconds with ``seed``.

    A pure function: the same arguments always give the same schedule.
    """
    rng = random.Random(f"stormwall-demo-schedule:{seed}")
    bounds = [0.0]
    share = 0.0
    for part in _SHARES[:-1]:
        share += part
        jitter = rng.uniform(-_BOUNDARY_JITTER, _BOUNDARY_JITTER)
        bounds.append(round((share + jitter) * duration, 3))
    bounds.append(duration)
    return Schedule(
        duration,
        tuple(
            Phase(name, bounds[i], bounds[i + 1])
            for i, name in enumerate(PHASES)
        ),
    )


@dataclass(frozen=True, slots=True)
class Profile:
    """
    How the upstream behaves in one phase (probabilities per request).

    Attributes:
        error_rate: A 500, 502 or 503 answer.
        drop_rate: The connection is closed without an answer.
        throttle_rate: A 429 with ``Retry-After``.
        spike_rate: A latency spike instead of the normal latency.
        latency: The normal latency range, seconds.
        spike: The spike latency range, seconds.
    """

    error_rate: float
    drop_rate: float
    throttle_rate: float
    spike_rate: float
    latency: tuple[float, float]
    spike: tuple[float, float]


# Tuned against the client in `_client`: its 0.5 s per-attempt timeout turns
# most degraded spikes into timeouts, and the degraded failure rate (about a
# third of attempts) stays under the breaker's 60 % rate threshold, so the
# breaker rides out the degradation and trips on the outage.
PROFILES: Final = {
    "healthy": Profile(
        error_rate=0.01,
        drop_rate=0.0,
        throttle_rate=0.02,
        spike_rate=0.01,
        latency=(0.002, 0.015),
        spike=(0.1, 0.3),
    ),
    "degraded": Profile(
        error_rate=0.22,
        drop_rate=0.0,
        throttle_rate=0.04,
        spike_rate=0.15,
        latency=(0.01, 0.05),
        spike=(0.3, 1.0),
    ),
    # Most requests hang past the client's timeout (what fills its
    # bulkhead before the breaker trips); the others fail at once.
    "outage": Profile(
        error_rate=0.85,
        drop_rate=0.15,
        throttle_rate=0.0,
        spike_rate=0.8,
        latency=(0.0, 0.005),
        spike=(1.0, 2.0),
    ),
    "recovery": Profile(
        error_rate=0.03,
        drop_rate=0.0,
        throttle_rate=0.02,
        spike_rate=0.02,
        latency=(0.003, 0.02),
        spike=(0.1, 0.3),
    ),
}


@dataclass(frozen=True, slots=True)
class Reply:
    """
    What the upstream does with one request.

    Attributes:
        status: The HTTP status (ignored when ``drop``).
        delay: Seconds to wait before answering (or dropping).
        retry_after: The ``Retry-After`` header in seconds, or ``None``.
        drop: Close the connection without an answer.
    """

    status: int
    delay: float
    retry_after: int | None = None
    drop: bool = False


def decide(seed: int, number: int, phase: str) -> Reply:
    """
    The reply to request ``number`` of a run with ``seed`` in ``phase``.

    A pure function, so a test can check the phase logic without a socket.
    """
    profile = PROFILES[phase]
    # One generator per request: the answer to request n does not depend on
    # how many random draws earlier requests happened to make.
    rng = random.Random(f"stormwall-demo:{seed}:{number}")
    if rng.random() < profile.spike_rate:
        delay = rng.uniform(*profile.spike)
    else:
        delay = rng.uniform(*profile.latency)
    roll = rng.random()
    if roll < profile.drop_rate:
        return Reply(0, delay, drop=True)
    roll -= profile.drop_rate
    if roll < profile.error_rate:
        return Reply(rng.choice((500, 502, 503, 503)), delay)
    roll -= profile.error_rate
    if roll < profile.throttle_rate:
        # Whole seconds: the delta-seconds form of Retry-After (RFC 9110).
        return Reply(429, delay, retry_after=1)
    return Reply(200, delay)


def _response(reply: Reply, body: bytes) -> bytes:
    """The bytes of an HTTP/1.1 response for ``reply``."""
    lines = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if reply.retry_after is not None:
        lines.append(f"Retry-After: {reply.retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class FlakyUpstream:
    """
    The flaky HTTP server on 127.0.0.1, following a `Schedule`.

    Args:
        schedule: The phases.
        seed: Seeds every reply (see `decide`).
        elapsed: Seconds since the run began (shared with the client side,
            so both agree on the phase).
    """

    def __init__(
        self,
        schedule: Schedule,
        seed: int,
        elapsed: Callable[[], float],
    ) -> None:
        self._schedule = schedule
        self._seed = seed
        self._elapsed = elapsed
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._requests = 0
        self.port = 0
        # (phase, "200" | "429" | "5xx" | "dropped") -> count.
        self.served: Counter[tuple[str, str]] = Counter()

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer requests on one connection until either side closes it."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while await self._answer(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (e.g. its attempt timed out)
        except asyncio.CancelledError:
            # Only `close` cancels us, and this task is ours to end: return
            # normally, because on Python 3.11 asyncio's stream callback
            # logs a spurious traceback for a cancelled handler task.
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Read one request and answer it; ``False`` to close."""
        request_line = await reader.readline()
        if not request_line.strip():
            return False
        length = 0
        while True:
            line = await reader.readline()
            if line in {b"\r\n", b"\n", b""}:
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        if length:
            await reader.readexactly(length)

        self._requests += 1
        phase = self._schedule.phase_at(self._elapsed()).name
        reply = decide(self._seed, self._requests, phase)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            self.served[phase, "dropped"] += 1
            return False
        kind = "5xx" if reply.status >= 500 else str(reply.status)
        self.served[phase, kind] += 1
        body = b'{"ok": true}' if reply.status == 200 else b'{"ok": false}'
        writer.write(_response(reply, body))
        await writer.drain()
        return True
