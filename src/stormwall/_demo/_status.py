"""
The live status line and the final summary, counted from the bus.

`Tally` is one more bus subscriber, next to the exporters: it counts calls
by outcome, retries, the breaker's, limiter's and bulkhead's rejections,
breaker transitions and the bulkhead's calls in flight per phase, from the
very events the Prometheus exporter counts, with the same meaning (see
`PhaseCounts`), so the summary's numbers are the metrics' numbers and the
client code stays free of counting. The formatting functions are pure, so
tests check them without a terminal or a network.
"""

from __future__ import annotations

import collections
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from stormwall.events import (
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    Event,
    LimiterRejected,
    RetryBudgetExhausted,
    RetryScheduled,
)


if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence


__all__ = [
    "LogStream",
    "PhaseCounts",
    "Snapshot",
    "StatusLine",
    "Tally",
    "format_status",
    "format_summary",
    "format_table",
]

# The order states are listed in, in the summary's transitions column.
_STATE_ORDER: Final = (
    "open",
    "half_open",
    "closed",
    "forced_open",
    "disabled",
)

# ANSI: back to column 0 and erase to the end of the line.
_CLEAR: Final = "\r\x1b[K"


@dataclass(slots=True)
class PhaseCounts:
    """
    What happened during one phase (or the whole run).

    Counted from the same events, with the same meaning, as the Prometheus
    metrics named below, so the summary and ``/metrics`` agree.

    Attributes:
        outcomes: Calls ended, by outcome (``stormwall_calls_total``):
            ``"success"``; ``"failure"`` (the upstream was reached, a call
            the breaker stopped mid-retry included); ``"rejected"``
            (refused before its first attempt); ``"cancelled"`` (at the end
            of the run).
        retries: Retries scheduled (``stormwall_retries_total``).
        breaker_rejections: Attempts the breaker refused
            (``stormwall_circuit_breaker_rejections_total``).
        limiter_rejections: Attempts the limiter refused
            (``stormwall_rate_limiter_requests_total{result="rejected"}``).
        bulkhead_rejections: Attempts the bulkhead refused
            (``stormwall_bulkhead_rejections_total``).
        budget_denials: Retries the retry budget refused
            (``stormwall_retry_budget_exhausted_total``).
        entered: Breaker states entered, with how often
            (``stormwall_circuit_breaker_transitions_total``).
        peak_in_flight: The most attempts in the bulkhead at once.
    """

    outcomes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    breaker_rejections: int = 0
    limiter_rejections: int = 0
    bulkhead_rejections: int = 0
    budget_denials: int = 0
    entered: Counter[str] = field(default_factory=Counter)
    peak_in_flight: int = 0

    @property
    def calls(self) -> int:
        """Calls that ended, cancelled ones excluded."""
        return sum(self.outcomes.values()) - self.outcomes["cancelled"]

    @property
    def successes(self) -> int:
        """Calls that ended in success."""
        return self.outcomes["success"]

    @property
    def refused(self) -> int:
        """Attempts refused locally: breaker, limiter and bulkhead."""
        return (
            self.breaker_rejections
            + self.limiter_rejections
            + self.bulkhead_rejections
        )

    def add(self, other: PhaseCounts) -> None:
        """Add ``other``'s counts to these."""
        self.outcomes.update(other.outcomes)
        self.retries += other.retries
        self.breaker_rejections += other.breaker_rejections
        self.limiter_rejections += other.limiter_rejections
        self.bulkhead_rejections += other.bulkhead_rejections
        self.budget_denials += other.budget_denials
        self.entered.update(other.entered)
        self.peak_in_flight = max(self.peak_in_flight, other.peak_in_flight)


class Tally:
    """
    Count the executor's events per phase; subscribe `handle` to its bus.

    Handlers run inline on the emitting task (all on one event loop here),
    so plain integers do: no lock.

    Args:
        phases: The phase names, in order.
        phase_of: The current phase's name (an event counts towards the
            phase in which it happened).
        bulkhead_limit: The bulkhead's ``max_concurrent``, or ``None``
            without a bulkhead.
    """

    EVENT_TYPES: Final[tuple[type[Event], ...]] = (
        CallEnded,
        RetryScheduled,
        RetryBudgetExhausted,
        BreakerStateChanged,
        BreakerRejected,
        LimiterRejected,
        BulkheadAcquired,
        BulkheadReleased,
        BulkheadRejected,
    )

    def __init__(
        self,
        phases: Sequence[str],
        phase_of: Callable[[], str],
        bulkhead_limit: int | None = None,
    ) -> None:
        self.phases: dict[str, PhaseCounts] = {
            p: PhaseCounts() for p in phases
        }
        self._phase_of = phase_of
        self.breaker_state = "closed"
        self.bulkhead_limit = bulkhead_limit
        self.in_flight = 0
        self._in_flight_sequence = -1
        # Running totals, sampled by the status line for its rates.
        self.calls = 0
        self.successes = 0
        self.rejected = 0
        self.retries = 0

    def handle(self, event: Event) -> None:
        """Count one event."""
        counts = self.phases[self._phase_of()]
        if isinstance(event, CallEnded):
            counts.outcomes[event.outcome] += 1
            if event.outcome == "cancelled":
                return
            self.calls += 1
            if event.outcome == "success":
                self.successes += 1
            elif event.outcome == "rejected":
                self.rejected += 1
        elif isinstance(event, RetryScheduled):
            counts.retries += 1
            self.retries += 1
        elif isinstance(event, RetryBudgetExhausted):
            counts.budget_denials += 1
        elif isinstance(event, BreakerStateChanged):
            counts.entered[event.to_state] += 1
            self.breaker_state = event.to_state
        elif isinstance(event, BreakerRejected):
            counts.breaker_rejections += 1
        elif isinstance(event, LimiterRejected):
            counts.limiter_rejections += 1
        elif isinstance(event, BulkheadRejected):
            counts.bulkhead_rejections += 1
        elif isinstance(event, BulkheadAcquired | BulkheadReleased):
            # The newest snapshot wins (as in the exporters' gauge).
            if event.sequence > self._in_flight_sequence:
                self._in_flight_sequence = event.sequence
                self.in_flight = event.in_flight
            counts.peak_in_flight = max(counts.peak_in_flight, event.in_flight)

    def totals(self) -> PhaseCounts:
        """The counts of the whole run."""
        total = PhaseCounts()
        for counts in self.phases.values():
            total.add(counts)
        return total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """
    What the status line shows at one moment.

    The counts are per second, over the last second; the rest is the state
    now.

    Attributes:
        elapsed: Seconds since the start.
        phase: The upstream's phase.
        calls_per_second: Calls ended per second.
        success_ratio: Successful / ended calls, or ``None`` when none
            ended.
        rejected_per_second: Calls rejected (before their first attempt)
            per second.
        retries_per_second: Retries scheduled per second.
        breaker: The breaker's state.
        in_flight: Attempts in the bulkhead now.
        bulkhead_limit: The bulkhead's limit, or ``None`` without one.
    """

    elapsed: float
    phase: str
    calls_per_second: float
    success_ratio: float | None
    rejected_per_second: float
    retries_per_second: float
    breaker: str
    in_flight: int = 0
    bulkhead_limit: int | None = None


def format_status(s: Snapshot, width: int = 200) -> str:
    """
    The one-line status for ``s``, at most ``width`` characters.

    Rates carry their ``/s``; the breaker and the bulkhead show their state
    now. Parts that do not fit are left out whole, from the end (retries
    first, then rejections): the phase, the traffic, the breaker and the
    bulkhead fit an 80-column terminal in runs of up to 100 s.
    """
    ratio = "--" if s.success_ratio is None else f"{s.success_ratio:.0%}"
    parts = [
        f"{s.elapsed:4.1f}s {s.phase:<8}",
        f"{s.calls_per_second:3.0f} calls/s ok {ratio:>4}",
        f"breaker {s.breaker}",
    ]
    if s.bulkhead_limit is not None:
        parts.append(f"bulkhead {s.in_flight}/{s.bulkhead_limit}")
    parts.append(f"rejected {s.rejected_per_second:.0f}/s")
    parts.append(f"retries {s.retries_per_second:.0f}/s")
    line = "  ".join(parts)
    while len(line) > width and len(parts) > 1:
        parts.pop()
        line = "  ".join(parts)
    return line[:width]


class StatusLine:
    """
    Print the status: repainted in place on a terminal, else once a line.

    Args:
        tally: Where the numbers come from.
        phase_of: The current phase's name.
        elapsed: Seconds since the start.
        stream: Where to print.
        tty: Repaint one line in place (a terminal) rather than print
            a line per refresh (a pipe, a CI log).
        width: Truncate repainted lines to this many characters, so a
            narrow terminal does not wrap them (a wrapped line cannot be
            repainted).
    """

    def __init__(
        self,
        tally: Tally,
        phase_of: Callable[[], str],
        elapsed: Callable[[], float],
        stream: TextIO,
        *,
        tty: bool,
        width: int = 200,
    ) -> None:
        self._tally = tally
        self._phase_of = phase_of
        self._elapsed = elapsed
        self._stream = stream
        self.tty = tty
        self._width = max(20, width - 1)
        self._shown = False
        self._last_phase: str | None = None
        # (time, calls, successes, rejected, retries) samples of the last
        # second or so.
        self._history: collections.deque[tuple[float, int, int, int, int]] = (
            collections.deque()
        )

    @property
    def interval(self) -> float:
        """Seconds between refreshes: 4 a second on a terminal, else 1."""
        return 0.25 if self.tty else 1.0

    def snapshot(self) -> Snapshot:
        """Sample the tally now."""
        now = self._elapsed()
        tally = self._tally
        history = self._history
        history.append(
            (now, tally.calls, tally.successes, tally.rejected, tally.retries)
        )
        # Keep one sample at least a second old as the baseline.
        while len(history) > 2 and now - history[1][0] >= 1.0:
            history.popleft()
        t0, calls0, ok0, rejected0, retries0 = history[0]
        calls = tally.calls - calls0
        span = now - t0

        def rate(count: int) -> float:
            return count / span if span > 0 else 0.0

        return Snapshot(
            elapsed=now,
            phase=self._phase_of(),
            calls_per_second=rate(calls),
            success_ratio=(tally.successes - ok0) / calls if calls else None,
            rejected_per_second=rate(tally.rejected - rejected0),
            retries_per_second=rate(tally.retries - retries0),
            breaker=tally.breaker_state,
            in_flight=tally.in_flight,
            bulkhead_limit=tally.bulkhead_limit,
        )

    def render(self) -> None:
        """Print (or repaint) the status line."""
        snap = self.snapshot()
        if not self.tty:
            self._stream.write(format_status(snap) + "\n")
        else:
            if self._shown and snap.phase != self._last_phase:
                # Keep the previous phase's last line on screen.
                self._stream.write("\n")
            self._stream.write(_CLEAR + format_status(snap, self._width))
            self._shown = True
        self._last_phase = snap.phase
        self._stream.flush()

    def clear(self) -> None:
        """
        Erase a repainted line (before other output takes the line).

        Once: what is written next (a log line, in several writes) must not
        be erased in turn; the next `render` paints the line again.
        """
        if self.tty and self._shown:
            self._stream.write(_CLEAR)
            self._stream.flush()
            self._shown = False

    def finish(self) -> None:
        """End the repainted line, leaving it on screen."""
        if self.tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False


class LogStream:
    """
    A text stream for log lines that first erases a repainted status line.

    Log lines go to stderr while the status line is repainted on stdout;
    on one terminal a log line would otherwise be glued to the status line.
    """

    def __init__(self, stream: TextIO, status: StatusLine | None) -> None:
        self._stream = stream
        self.status = status

    def write(self, text: str) -> int:
        """Write ``text`` (after erasing the status line)."""
        if self.status is not None:
            self.status.clear()
        return self._stream.write(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal."""
        return self._stream.isatty()


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """
    A plain-text table: text left-aligned, numbers right-aligned.
    """
    table = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    # A column of numbers (a dash standing for "none") is right-aligned.
    numeric = [
        all(_is_number(row[i]) for row in table[1:])
        and any(row[i] != "-" for row in table[1:])
        for i in range(len(headers))
    ]
    lines = []
    for row in table:
        cells = [
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(cell: str) -> bool:
    """
    Whether a cell reads as a number (a percentage, ``12/20``, a dash).
    """
    plain = cell.rstrip("%").replace(".", "", 1).replace("/", "", 1)
    return cell == "-" or plain.isdigit()


def _entered(counts: Counter[str]) -> str:
    """``open x2, half_open x2, closed x1``, or ``-``."""
    states = sorted(
        counts,
        key=lambda s: (
            _STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER)
        ),
    )
    return ", ".join(f"{s} x{counts[s]}" for s in states) or "-"


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def format_summary(
    tally: Tally, windows: Sequence[tuple[str, float, float]]
) -> str:
    """
    The summary: two tables, one row per phase, then the totals.

    The first counts calls by outcome, as ``stormwall_calls_total`` does;
    the second counts the *attempts* each component refused, as its
    ``..._rejections_total`` counter does. The two differ by design: a call
    whose breaker opened mid-retry reached the upstream, so it is a
    ``failure`` call, and its refused retry is one breaker rejection.

    Args:
        tally: The counts.
        windows: ``(phase, start, end)`` of each phase, in order.
    """
    phases = [
        (name, f"{start:.1f}-{end:.1f}s", tally.phases[name])
        for name, start, end in windows
    ]
    phases.append(("total", "", tally.totals()))
    calls = format_table(
        (
            "phase",
            "time",
            "calls",
            "success",
            "failure",
            "rejected",
            "ok",
            "retries",
            "breaker entered",
        ),
        [
            [
                name,
                window,
                c.calls,
                c.successes,
                c.outcomes["failure"],
                c.outcomes["rejected"],
                _percent(c.successes, c.calls),
                c.retries,
                _entered(c.entered),
            ]
            for name, window, c in phases
        ],
    )
    refused = format_table(
        (
            "phase",
            "by breaker",
            "by limiter",
            "by bulkhead",
            "bulkhead peak",
        ),
        [
            [
                name,
                c.breaker_rejections,
                c.limiter_rejections,
                c.bulkhead_rejections,
                _peak(c.peak_in_flight, tally.bulkhead_limit),
            ]
            for name, _, c in phases
        ],
    )
    return (
        "calls, by outcome (as stormwall_calls_total counts them)\n"
        f"{calls}\n\n"
        "attempts refused without calling the upstream (as the breaker's,"
        " limiter's and bulkhead's rejection counters count them)\n"
        f"{refused}"
    )


def _peak(peak: int, limit: int | None) -> str:
    """``12/20`` (the most in flight, of the limit), or ``-``."""
    return "-" if limit is None else f"{peak}/{limit}"
