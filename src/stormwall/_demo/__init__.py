"""
``stormwall demo``: a flaky upstream, protected by stormwall, observed.

The package is private; its entry point is ``stormwall demo`` (`_cli`).
This module imports only the standard library: the demo's optional
dependencies (httpx and every exporter's) are imported by `run`, which says
which extra to install when they are missing.

Layout:

- `_upstream`: the flaky HTTP server and its phase schedule (stdlib only).
- `_client`: the users and the resilience pipeline they call through.
- `_status`: the live status line and the summary (a bus subscriber).
- `_run`: the wiring: exporters, server, client, status, teardown.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from typing import TextIO


__all__ = ["MISSING_EXTRA", "Options", "run"]

MISSING_EXTRA: Final = (
    "stormwall demo needs the demo extra: pip install 'stormwall[demo]'"
)

# The third-party modules the demo imports (the "demo" extra).
_NEEDED: Final = (
    "httpx",
    "prometheus_client",
    "opentelemetry.sdk",
    "structlog",
)


@dataclass(frozen=True, slots=True)
class Options:
    """
    The demo's settings, validated by the CLI.

    Attributes:
        duration: Seconds the demo runs.
        seed: Seeds the upstream, the arrivals and the jitter.
        port: The ``/metrics`` port (0: a free one).
        quiet: No live status and no log lines; the URLs and the summary
            are still printed.
        users: Concurrent users (limiter keys ``user:1`` ...).
        rate: Calls per second per user.
        spans: Write every span, one JSON object a line, to this file
            (``"-"``: stderr), besides any OTLP endpoint; ``None``: spans
            are counted, not written.
    """

    duration: float = 30.0
    seed: int = 0
    port: int = 9464
    quiet: bool = False
    users: int = 20
    rate: float = 5.0
    spans: str | None = None


def run(
    options: Options,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """
    Run the demo; the process exit status.

    Returns 2 with one line on ``stderr`` when the demo extra is missing or
    the metrics port cannot be bound.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        for name in _NEEDED:
            __import__(name)
    except ImportError:
        err.write(MISSING_EXTRA + "\n")
        return 2
    from ._run import run_demo

    return run_demo(options, out, err)
