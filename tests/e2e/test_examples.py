"""
Run every program in examples/ as a user would, and check what it prints.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 30


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the interpreter with ``args`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip when an optional dependency is missing (the core-only venv)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"needs {', '.join(missing)}"
    )


@needs("httpx")
def test_resilient_httpx_client() -> None:
    """The httpx client retries 503s, honours 404s and trips the breaker."""
    result = run(str(EXAMPLES / "resilient_httpx_client.py"))

    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert "-> 200 {'id': '1', 'name': 'user 1'}" in out
    assert "retry #2 in 0.200s" in out  # Retry-After: 1, clamped
    assert "HTTPStatusError 404" in out
    assert "breaker users-api: closed -> open" in out
    assert "CircuitOpenError: failing fast" in out
    assert "'/missing': 1, '/down': 3" in out
    assert "" == result.stderr


def test_tenant_worker() -> None:
    """Quiet tenants finish well before the noisy one, timeouts retry."""
    result = run(str(EXAMPLES / "tenant_worker.py"))

    assert 0 == result.returncode, result.stderr
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("acme", "globex", "initech"))
    }
    assert {"acme", "globex", "initech"} == set(rows)
    done = {tenant: float(row[3].rstrip("s")) for tenant, row in rows.items()}
    assert done["globex"] < done["acme"] / 2
    assert done["initech"] < done["acme"] / 2
    assert int(rows["acme"][2]) >= 1  # a stalled answer was retried
    assert "" == result.stderr


@needs("prometheus_client")
def test_metrics_service() -> None:
    """The service serves /metrics with the stormwall series."""
    result = run(str(EXAMPLES / "metrics_service.py"))

    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert "serving http://127.0.0.1:" in out
    assert "calls: {'ok': 20, 'failed': 2, 'rejected': 18}" in out
    assert (
        'stormwall_calls_total{executor="inventory",outcome="rejected"} 18.0'
        in out
    )
    assert (
        'stormwall_circuit_breaker_state{breaker="inventory",state="open"}'
        " 1.0" in out
    )
    assert "" == result.stderr


def test_retry_storm_suite() -> None:
    """The example test suite passes under pytest, every test of it."""
    result = run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(EXAMPLES / "test_retry_storm.py"),
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "4 passed" in result.stdout


@needs("httpx", "starlette")
def test_http_integrations() -> None:
    """The transport retries and then fails fast; the middleware answers 429
    with the IETF headers, per client address."""
    result = run(str(EXAMPLES / "http_integrations.py"))

    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert "-> 200 hello" in out
    assert "-> 503 after retries ran out" in out
    assert "-> CircuitOpenError: circuit 'upstream' is open" in out
    assert '10.0.0.1 request 4: 429 Retry-After=2 RateLimit="api";r=0' in out
    assert '10.0.0.2 request 1: 200 RateLimit="api";r=2' in out
    assert "" == result.stderr
