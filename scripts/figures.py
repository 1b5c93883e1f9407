"""
The documentation's figures, drawn from simulated runs (never by hand).

Run by the docs build (a MkDocs hook: ``hooks:`` in mkdocs.yml, so
``make docs`` and ``mkdocs serve`` both run it) and by hand::

    python scripts/figures.py          # redraw what is stale
    python scripts/figures.py --force  # redraw everything

Every figure comes from ``stormwall.sim`` with a fixed seed, so a redraw of
unchanged code gives the same pictures. The figures are redrawn when
``src/stormwall`` or this script changed since they were drawn (a hash in
``docs/img/.figures-stamp``); commit the PNGs and the stamp together.
Needs the ``[sim]`` extra (matplotlib); without it the build keeps the
committed figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
STAMP = IMG / ".figures-stamp"
SEED = 0
# The study's figure: fewer runs than the CLI's default keeps the docs
# build quick; the means are already stable to a few percent.
OCC_RUNS = 20
OCC_CLIENTS = (1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100)

FIGURES = (
    "simulate-occ-contention.png",
    "simulate-retry-storm.png",
    "observability-outage.png",
    "tracing-waterfall.png",
)


def inputs_hash() -> str:
    """A hash of everything the figures depend on."""
    digest = hashlib.sha256()
    files = [Path(__file__).resolve(), *sorted((ROOT / "src").rglob("*.py"))]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stale() -> bool:
    if not all((IMG / name).is_file() for name in FIGURES):
        return True
    return not STAMP.is_file() or STAMP.read_text().strip() != inputs_hash()


def draw_all(log: Any = print) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from stormwall.sim._scenarios import occ_scenario, retry_storm

    IMG.mkdir(parents=True, exist_ok=True)
    log("figures: the back-off study ...")
    occ_scenario(runs=OCC_RUNS, seed=SEED, clients=OCC_CLIENTS).draw(
        IMG / "simulate-occ-contention.png"
    )
    log("figures: the retry storm ...")
    retry_storm(seed=SEED).draw(IMG / "simulate-retry-storm.png")
    log("figures: the dashboard through an outage ...")
    draw_dashboard(IMG / "observability-outage.png")
    log("figures: a traced call ...")
    draw_waterfall(IMG / "tracing-waterfall.png")
    STAMP.write_text(inputs_hash() + "\n")


def draw_dashboard(path: Path) -> None:
    """What the bundled dashboard shows through the retry storm's outage."""
    from stormwall import (
        AsyncResilientExecutor,
        CircuitBreaker,
        RetryBudget,
        RetryPolicy,
        TokenBucket,
        sim,
    )
    from stormwall.sim._plot import plot_dashboard
    from stormwall.sim._scenarios import storm_upstream

    executor = AsyncResilientExecutor(
        "users-api",
        circuit_breaker=CircuitBreaker(
            failure_threshold=20, recovery_timeout=5.0
        ),
        limiter=TokenBucket(capacity=5, refill_rate=110),
        limiter_timeout=0.05,
        retry_policy=RetryPolicy(
            max_attempts=3,
            base_delay=0.05,
            budget=RetryBudget(ratio=0.2, min_per_second=5.0),
        ),
    )
    result = sim.run(
        executor, storm_upstream(), rate=100, duration=90, seed=SEED
    )
    plot_dashboard(
        result,
        path,
        title=(
            "The stormwall dashboard through an outage (simulated: "
            "100 calls/s, upstream down from 30 s to 60 s)"
        ),
    )


def draw_waterfall(path: Path) -> None:
    """One call, two failed attempts, their back-offs, then a success."""
    from stormwall import AsyncResilientExecutor, EventBus, RetryPolicy, sim
    from stormwall import events as ev
    from stormwall.sim._plot import plot_waterfall
    from stormwall.testing import EventRecorder

    bus = EventBus()
    executor = AsyncResilientExecutor(
        "users-api",
        retry_policy=RetryPolicy(max_attempts=4, base_delay=0.1),
        bus=bus,
    )
    latencies = iter([0.030, 0.045, 0.025])
    answers = iter([True, True, False])

    async def fetch_user() -> str:
        await asyncio.sleep(next(latencies))
        if next(answers):
            msg = "503 Service Unavailable"
            raise sim.UpstreamError(msg)
        return "user"

    async def main() -> list[Any]:
        with (
            EventRecorder(bus) as recorder,
            sim.keeping_time([executor], sim.current_clock(), seed=SEED),
        ):
            await executor.run("user:123", fetch_user)
        return recorder.events

    events = sim.run_virtual(main)
    start = events[0].time
    spans: list[tuple[str, float, float, str]] = []
    opened: dict[int, float] = {}
    for event in events:
        t = event.time - start
        if isinstance(event, ev.AttemptStarted):
            opened[event.attempt] = t
        elif isinstance(event, ev.AttemptEnded):
            spans.append(
                (
                    f"attempt {event.attempt}",
                    opened[event.attempt],
                    t,
                    "success" if event.outcome == "success" else "failure",
                )
            )
        elif isinstance(event, ev.RetryScheduled):
            spans.append(
                (f"back-off {event.attempt}", t, t + event.delay, "wait")
            )
        elif isinstance(event, ev.CallEnded):
            spans.insert(0, ("call users-api", 0.0, t, "call"))
    plot_waterfall(
        spans,
        path,
        title=(
            "One call, traced: failed attempts, their back-offs, "
            "then a success (simulated)"
        ),
    )


def on_pre_build(config: Any) -> None:  # noqa: ARG001 - MkDocs hook API
    """MkDocs hook: redraw stale figures before the site is built."""
    if importlib.util.find_spec("matplotlib") is None:
        return
    if stale():
        draw_all(log=lambda message: print(message, file=sys.stderr))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--force", action="store_true", help="redraw even if up to date"
    )
    args = parser.parse_args(argv)
    if args.force or stale():
        draw_all()
    else:
        print("figures: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
