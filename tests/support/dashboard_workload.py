"""
The dashboard tests' helpers: reading the dashboard's queries, and a small,
real-clock stormwall workload that gives every panel data.

Four executors share one bus: ``checkout`` succeeds and retries flaky calls,
``payments`` trips its breaker, is rejected while open and recovers through
half-open, ``search`` is rate limited (allowed, waited and rejected) and
``reports`` fills its bulkhead so the next call is refused, and
``inventory`` has a Redis limiter whose Redis is down (a loopback port
nobody listens on): backend errors, and the calls ``fail_open`` admitted.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from pathlib import Path

from stormwall import (
    Bulkhead,
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)


ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
DASHBOARD = DASHBOARDS / "stormwall-overview.json"
ALERTS = DASHBOARDS / "alerts.yml"
ALERTS_TEST = DASHBOARDS / "alerts_test.yml"
STACK = ROOT / "examples" / "observability-stack"

# Grafana's global variables a query may use without defining them.
BUILTIN_VARIABLES = frozenset(
    {
        "__all",
        "__interval",
        "__interval_ms",
        "__rate_interval",
        "__range",
        "__range_s",
        "__range_ms",
        "__dashboard",
        "__from",
        "__to",
    }
)

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


def load_dashboard() -> dict:
    """The dashboard JSON."""
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict) -> list[dict]:
    """Every panel that is not a row (nested rows' panels included)."""
    out = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def targets(dashboard: dict) -> list[tuple[str, str, str]]:
    """``(panel title, refId, expr)`` of every panel query."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables_used(text: str) -> set[str]:
    """The names of the ``$var``, ``${var}`` and ``[[var]]`` in ``text``."""
    return {
        next(group for group in match.groups() if group)
        for match in _VARIABLE.finditer(text)
    }


def substitute(expr: str, rate_interval: str, values: dict[str, str]) -> str:
    """
    ``expr`` as Grafana would send it: interval builtins replaced by
    ``rate_interval``, every other variable by ``values`` (default ``.*``).
    """

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in {"__rate_interval", "__interval", "__range"}:
            return rate_interval
        return values.get(name, ".*")

    return _VARIABLE.sub(replace, expr)


class Flaky(ConnectionError):
    """A transient failure of the fake upstream."""


def _ok() -> str:
    return "ok"


def _fail() -> str:
    raise Flaky("upstream down")


def _inventory(bus: EventBus) -> ResilientExecutor | None:
    """An executor whose Redis limiter's Redis is down (None without
    redis-py): refused connections, probed every 50 ms, fail_open."""
    try:
        import redis

        from stormwall.backends.redis import RedisTokenBucket
    except ImportError:  # pragma: no cover - the redis extra is a dev dep
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    limiter = RedisTokenBucket(
        redis.Redis(port=port),
        100,
        100,
        name="inventory-api",
        on_backend_error="fail_open",
        retry_interval=0.05,
        bus=bus,
    )
    return ResilientExecutor("inventory", limiter=limiter, bus=bus)


class Workload:
    """
    Drives the executors from a background thread until `stop`.

    ``start`` returns at once; each round takes about ``tick`` seconds of
    real time, so a scrape every second sees every counter move.
    """

    def __init__(self, bus: EventBus, tick: float = 0.05) -> None:
        self.tick = tick
        self.rounds = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="dashboard-workload", daemon=True
        )
        retry = RetryPolicy(max_attempts=3, base_delay=0.005, jitter=None)
        self.checkout = ResilientExecutor(
            "checkout", retry_policy=retry, bus=bus
        )
        self.breaker = CircuitBreaker(
            "payments-api", failure_threshold=2, recovery_timeout=0.15, bus=bus
        )
        self.payments = ResilientExecutor(
            "payments", circuit_breaker=self.breaker, bus=bus
        )
        self.search = ResilientExecutor(
            "search",
            limiter=TokenBucket(2, 10, name="search-api", bus=bus),
            limiter_timeout=0.02,
            bus=bus,
        )
        self.bulkhead = Bulkhead(1, name="report-pool", bus=bus)
        self.reports = ResilientExecutor(
            "reports", bulkhead=self.bulkhead, bus=bus
        )
        self.inventory = _inventory(bus)

    def start(self) -> Workload:
        """Run rounds in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current round and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except BaseException as exc:  # reported to the test by `errors`
                self.errors.append(exc)
                return
            self.rounds += 1
            self._stop.wait(self.tick)

    def round(self) -> None:
        """One round of every behaviour the dashboard shows."""
        self._checkout()
        self._payments()
        self._search()
        self._reports()
        if self.inventory is not None:
            self._swallow(self.inventory, _ok)

    def _checkout(self) -> None:
        self.checkout.run("user-1", _ok)
        outcomes = iter([Flaky("reset"), TimeoutError("slow"), None])

        def flaky() -> str:
            error = next(outcomes)
            if error is not None:
                raise error
            return "ok"

        self.checkout.run("user-2", flaky)

    def _payments(self) -> None:
        # Every tenth round the upstream fails twice: the breaker opens,
        # the next call is short-circuited, and a later round's call, after
        # the recovery timeout, probes it half-open and closes it.
        if self.rounds % 10 == 0:
            for _ in range(2):
                self._swallow(self.payments, _fail)
            self._swallow(self.payments, _ok)
        else:
            self._swallow(self.payments, _ok)

    def _search(self) -> None:
        # Bursts of 6 against 10 tokens/s (capacity 2): allowed, waited for
        # up to 20 ms, or rejected.
        for _ in range(6):
            self._swallow(self.search, _ok)

    def _reports(self) -> None:
        entered = threading.Event()
        release = threading.Event()

        def slow() -> str:
            entered.set()
            release.wait(1)
            return "done"

        holder = threading.Thread(
            target=self._swallow, args=(self.reports, slow)
        )
        holder.start()
        entered.wait(1)
        self._swallow(self.reports, _ok)  # refused: the pool is full
        release.set()
        holder.join()

    @staticmethod
    def _swallow(executor: ResilientExecutor, fn: object) -> None:
        with contextlib.suppress(Exception):  # rejections are expected
            executor.run("k", fn)  # type: ignore[arg-type]
