"""
ns per EventBus.emit with 0 and 1 subscribers, and the cost of wants().

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live in
``bench/cases/``; results in docs/performance.md). Run this one with
``python bench/bench_bus.py`` in any venv that has stormwall[all].
"""

from __future__ import annotations

from _harness import HEADER, measure, row

from stormwall import EventBus
from stormwall.events import CallStarted, RetryScheduled


def main() -> None:
    bus = EventBus()
    event = CallStarted(time=0.0, executor="x", key="k", call_id=1)
    lines = [HEADER]
    lines.append(row("emit, 0 subscribers", measure(lambda: bus.emit(event))))
    lines.append(
        row("wants(), 0 subscribers", measure(lambda: bus.wants(CallStarted)))
    )
    sub = bus.subscribe(lambda e: None, CallStarted)
    lines.append(
        row("emit, 1 no-op subscriber", measure(lambda: bus.emit(event)))
    )
    lines.append(
        row(
            "wants() other type, 1 subscriber",
            measure(lambda: bus.wants(RetryScheduled)),
        )
    )
    lines.append(
        row(
            "build + emit CallStarted, 1 subscriber",
            measure(
                lambda: bus.emit(
                    CallStarted(time=0.0, executor="x", key="k", call_id=1)
                )
            ),
        )
    )
    sub.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
