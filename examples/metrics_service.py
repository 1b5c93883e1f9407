"""
A service that exposes stormwall's metrics on ``/metrics`` for Prometheus.

Run it with ``python examples/metrics_service.py``. It wires the Prometheus
exporter at startup (one line), serves ``/metrics`` on 127.0.0.1 (a free
port unless ``--port`` is given), runs some protected calls against a
dependency that goes down (the breaker opens), scrapes its own ``/metrics``
page like Prometheus would, prints the stormwall series, and exits.

``--linger SECONDS`` keeps ``/metrics`` up that long afterwards, so you can
point a browser or ``curl`` at it.
"""

from __future__ import annotations

import argparse
import time
import urllib.request

import stormwall
from stormwall import (
    CircuitBreaker,
    MockClock,
    RejectedError,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.exporters.prometheus import PrometheusExporter, serve_metrics


SHOWN = (
    "stormwall_calls_total",
    "stormwall_retries_total",
    "stormwall_circuit_breaker_state",
    "stormwall_circuit_breaker_transitions_total",
    "stormwall_rate_limiter_requests_total",
)


class Inventory:
    """A dependency that works for a while, then goes down."""

    def __init__(self, healthy_calls: int) -> None:
        self.left = healthy_calls

    def stock(self, sku: str) -> int:
        """How many ``sku`` are in stock."""
        self.left -= 1
        if self.left < 0:
            raise ConnectionError("inventory is down")
        return len(sku)


def workload(executor: ResilientExecutor) -> dict[str, int]:
    """Forty calls; count how each ended."""
    inventory = Inventory(healthy_calls=20)
    outcomes = {"ok": 0, "failed": 0, "rejected": 0}
    for n in range(40):
        try:
            executor.run(f"shop-{n % 3}", inventory.stock, f"sku-{n}")
        except RejectedError as exc:
            # A breaker that opens during a call's retries raises
            # CircuitOpenError chained to the real failure: that call
            # failed (so say the metrics); the others were rejected.
            outcomes["failed" if exc.__cause__ else "rejected"] += 1
        except ConnectionError:
            outcomes["failed"] += 1
        else:
            outcomes["ok"] += 1
    return outcomes


def main() -> int:
    """Serve /metrics, run the workload, show what Prometheus would see."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--linger", type=float, default=0.0)
    args = parser.parse_args()

    # -- startup: the two lines a real service adds -----------------------
    stormwall.observe(PrometheusExporter())
    server = serve_metrics(args.port)  # 127.0.0.1 only, on purpose
    print(f"serving {server.url}")

    # A virtual clock keeps the back-off of this example instant; a real
    # service leaves clock= out.
    executor = ResilientExecutor(
        "inventory",
        limiter=TokenBucket(capacity=10, refill_rate=5, name="per_shop"),
        limiter_timeout=0,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1),
        circuit_breaker=CircuitBreaker(
            "inventory", failure_threshold=3, recovery_timeout=60
        ),
        clock=MockClock(),
    )
    try:
        print(f"calls: {workload(executor)}")
        with urllib.request.urlopen(server.url, timeout=5) as response:  # noqa: S310 (our own loopback URL)
            page = response.read().decode()
        for line in page.splitlines():
            if line.startswith(SHOWN) and not line.endswith(" 0.0"):
                print(line)
        if args.linger > 0:
            print(f"/metrics stays up for {args.linger:g}s")
            time.sleep(args.linger)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
