"""
Every panel query of the dashboard, evaluated by a real Prometheus that
scraped a real stormwall workload, returns data: through prometheus_client
and through the OTel SDK with its Prometheus reader alike.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

import pytest


pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.prometheus")

from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from stormwall import EventBus
from stormwall.exporters.otel import MetricsExporter
from stormwall.exporters.prometheus import PrometheusExporter, serve_metrics
from tests.support.dashboard_workload import (
    Workload,
    load_dashboard,
    substitute,
    targets,
)
from tests.support.otel_compat import prometheus_reader
from tests.support.servers import require_binary


if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "stormwall-e2e"
# What Grafana would send: the job scraped, every executor, limiter and
# bulkhead ("All" is .*), and one breaker, as the repeated state timeline
# panel does for each breaker.
VARIABLES = {"job": JOB, "breaker": "payments-api"}
RATE_INTERVAL = "15s"
DEADLINE = 25.0


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(base: str, expr: str) -> list[dict]:
    """The result of an instant query at now."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        body = json.load(response)
    assert "success" == body["status"], body
    return body["data"]["result"]


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as r:  # noqa: S310
            return 200 == r.status
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture(params=["prometheus_client", "opentelemetry"])
def workload_port(request) -> Iterator[tuple[int, Workload]]:
    """A running workload whose metrics are served on a loopback port."""
    bus = EventBus()
    registry = CollectorRegistry()
    provider = None
    if request.param == "prometheus_client":
        PrometheusExporter(registry).attach(bus)
    else:
        reader = prometheus_reader(registry)
        provider = MeterProvider(metric_readers=[reader])
        MetricsExporter(provider).attach(bus)
    workload = Workload(bus)
    server = serve_metrics(0, registry=registry)
    try:
        workload.start()
        yield server.port, workload
    finally:
        workload.stop()
        server.close()
        if provider is not None:
            provider.shutdown()


@pytest.fixture
def prometheus(tmp_path: Path, workload_port) -> Iterator[str]:
    """A real Prometheus scraping the workload every second; its URL."""
    binary = require_binary("prometheus")
    target_port, _ = workload_port
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{target_port}"]}
                        ],
                    }
                ],
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            while not ready(base):
                assert process.poll() is None, (
                    tmp_path / "prometheus.log"
                ).read_text()
                assert time.monotonic() < deadline, "prometheus not ready"
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                process.kill()
                process.wait()


class TestEveryPanelHasData:
    def test_every_panel_query_returns_data(self, prometheus, workload_port):
        """Each target of each panel returns series, on both metric paths."""
        _, workload = workload_port
        exprs = {
            f"{title} [{ref}]": substitute(expr, RATE_INTERVAL, VARIABLES)
            for title, ref, expr in targets(load_dashboard())
        }
        start = time.monotonic()
        empty = list(exprs)
        up: list[dict] = []
        while empty and time.monotonic() - start < DEADLINE:
            time.sleep(1)
            up = query(prometheus, f'up{{job="{JOB}"}} == 1')
            if up:
                empty = [
                    name
                    for name in empty
                    if not query(prometheus, exprs[name])
                ]

        assert [] == workload.errors
        assert 1 == len(up), "the workload's /metrics was never scraped"
        assert [] == [f"{name}: {exprs[name]}" for name in empty], (
            "panels without data"
        )
