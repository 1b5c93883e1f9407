"""
Added ns per successful run() with a LoggingExporter or StructlogExporter
attached, next to a bare logging call at the same level.

A successful call logs two DEBUG lines (attempt ended, call ended). Two cases
each: the logger filters DEBUG out (the production default: the exporter
must cost little more than the level check), and DEBUG enabled with output
going to /dev/null (what a line really costs).

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live in
``bench/cases/``; results in docs/performance.md). Run this one with
``python bench/bench_exporters_logs.py`` in any venv that has stormwall[all].
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import structlog
from _harness import HEADER, measure, row

from stormwall import (
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.exporters.logging import LoggingExporter
from stormwall.exporters.structlog import StructlogExporter


def build(bus: EventBus) -> ResilientExecutor:
    return ResilientExecutor(
        "bench",
        limiter=TokenBucket(capacity=1e12, refill_rate=1e12),
        retry_policy=RetryPolicy(max_attempts=3),
        circuit_breaker=CircuitBreaker("bench"),
        bus=bus,
    )


def fn() -> int:
    return 1


def stdlib_logger(level: int) -> logging.Logger:
    logger = logging.getLogger(f"bench.stdlib.{level}")
    logger.propagate = False
    logger.setLevel(level)
    handler = logging.StreamHandler(
        Path(os.devnull).open("w")  # noqa: SIM115 - lives for the run
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def structlog_logger(level: int):
    return structlog.wrap_logger(
        structlog.PrintLogger(Path(os.devnull).open("w")),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.KeyValueRenderer(),
        ],
    ).bind()  # a concrete logger: a lazy proxy would re-bind on every call


FIELDS = {
    "executor": "bench",
    "key": "k",
    "call_id": 1,
    "attempt": 1,
    "outcome": "success",
    "duration": 1e-6,
}


def main() -> None:
    lines = [HEADER]
    bus = EventBus()
    ex = build(bus)
    base = measure(lambda: ex.run("k", fn))
    lines.append(row("ResilientExecutor.run, no subscriber", base))
    for enabled in (False, True):
        level = logging.DEBUG if enabled else logging.INFO
        state = "DEBUG on, to /dev/null" if enabled else "DEBUG filtered"

        logger = stdlib_logger(level)
        lines.append(
            row(
                f"raw: 2 x logger.debug(msg, extra=...), {state}",
                measure(
                    lambda logger=logger: (
                        logger.debug(
                            "stormwall.attempt.ended k=v",
                            extra={"stormwall": FIELDS},
                        ),
                        logger.debug(
                            "stormwall.call.ended k=v",
                            extra={"stormwall": FIELDS},
                        ),
                    )
                ),
            )
        )
        bus = EventBus()
        LoggingExporter(logger).attach(bus)
        ex = build(bus)
        result = measure(lambda ex=ex: ex.run("k", fn))
        lines.append(row(f"run + LoggingExporter, {state}", result))
        added = result[0] - base[0]
        lines.append(f"| added by LoggingExporter, {state} | {added:,.0f} | |")

        slog = structlog_logger(level)
        lines.append(
            row(
                f"raw: 2 x structlog .debug(event, **6 fields), {state}",
                measure(
                    lambda slog=slog: (
                        slog.debug("stormwall.attempt.ended", **FIELDS),
                        slog.debug("stormwall.call.ended", **FIELDS),
                    )
                ),
            )
        )
        bus = EventBus()
        StructlogExporter(slog).attach(bus)
        ex = build(bus)
        result = measure(lambda ex=ex: ex.run("k", fn))
        lines.append(row(f"run + StructlogExporter, {state}", result))
        added = result[0] - base[0]
        lines.append(
            f"| added by StructlogExporter, {state} | {added:,.0f} | |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
