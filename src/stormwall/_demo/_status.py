"""
The live status line and the final summary, counted from the bus.

`Tally` is one more bus subscriber, next to the exporters: it counts calls,
retries, rejections and breaker transitions per phase from the executor's
events, so the numbers on screen are the numbers the metrics show, and the
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

    Attributes:
        calls: Calls that ended (cancelled ones excluded).
        successes: Calls that ended in success.
        retries: Retries scheduled.
        breaker_rejections: Attempts the breaker short-circuited.
        limiter_rejections: Attempts the limiter refused.
        budget_denials: Retries the retry budget refused.
        entered: Breaker states entered, with how often.
    """

    calls: int = 0
    successes: int = 0
    retries: int = 0
    breaker_rejections: int = 0
    limiter_rejections: int = 0
    budget_denials: int = 0
    entered: Counter[str] = field(default_factory=Counter)

    @property
    def rejections(self) -> int:
        """Local rejections, breaker and limiter together."""
        return self.breaker_rejections + self.limiter_rejections

    def add(self, other: PhaseCounts) -> None:
        """Add ``other``'s counts to these."""
        self.calls += other.calls
        self.successes += other.successes
        self.retries += other.retries
        self.breaker_rejections += other.breaker_rejections
        self.limiter_rejections += other.limiter_rejections
        self.budget_denials += other.budget_denials
        self.entered.update(other.entered)


class Tally:
    """
    Count the executor's events per phase; subscribe `handle` to its bus.

    Handlers run inline on the emitting task (all on one event loop here),
    so plain integers do: no lock.

    Args:
        phases: The phase names, in order.
        phase_of: The current phase's name (an event counts towards the
            phase in which it happened).
    """

    EVENT_TYPES: Final[tuple[type[Event], ...]] = (
        CallEnded,
        RetryScheduled,
        RetryBudgetExhausted,
        BreakerStateChanged,
        BreakerRejected,
        LimiterRejected,
    )

    def __init__(
        self, phases: Sequence[str], phase_of: Callable[[], str]
    ) -> None:
        self.phases: dict[str, PhaseCounts] = {
            p: PhaseCounts() for p in phases
        }
        self._phase_of = phase_of
        self.breaker_state = "closed"
        # Running totals for the status line's rates.
        self.calls = 0
        self.successes = 0
        self.retries = 0
        self.rejections = 0

    def handle(self, event: Event) -> None:
        """Count one event."""
        counts = self.phases[self._phase_of()]
        if isinstance(event, CallEnded):
            if event.outcome == "cancelled":
                return
            counts.calls += 1
            self.calls += 1
            if event.outcome == "success":
                counts.successes += 1
                self.successes += 1
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
            self.rejections += 1
        elif isinstance(event, LimiterRejected):
            counts.limiter_rejections += 1
            self.rejections += 1

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

    Attributes:
        elapsed: Seconds since the start.
        phase: The upstream's phase.
        calls_per_second: Calls ended per second, over the last second.
        success_ratio: Successful / ended calls over the last second, or
            ``None`` when none ended.
        retries: Retries so far.
        breaker: The breaker's state.
        rejections: Local rejections so far (breaker and limiter).
    """

    elapsed: float
    phase: str
    calls_per_second: float
    success_ratio: float | None
    retries: int
    breaker: str
    rejections: int


def format_status(s: Snapshot) -> str:
    """
    The one-line status for ``s``.

    Short enough for an 80-column terminal (a wrapped line can no longer
    be repainted in place) in runs of up to 100 s and 10,000 retries.
    """
    ratio = "--" if s.success_ratio is None else f"{s.success_ratio:.0%}"
    return (
        f"{s.elapsed:4.1f}s {s.phase:<8} {s.calls_per_second:3.0f} calls/s"
        f" ok {ratio:>4} retries {s.retries} breaker {s.breaker}"
        f" rejected {s.rejections}"
    )


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
        # (time, calls, successes) samples of the last second or so.
        self._history: collections.deque[tuple[float, int, int]] = (
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
        history.append((now, tally.calls, tally.successes))
        # Keep one sample at least a second old as the baseline.
        while len(history) > 2 and now - history[1][0] >= 1.0:
            history.popleft()
        t0, calls0, ok0 = history[0]
        calls = tally.calls - calls0
        span = now - t0
        return Snapshot(
            elapsed=now,
            phase=self._phase_of(),
            calls_per_second=calls / span if span > 0 else 0.0,
            success_ratio=(tally.successes - ok0) / calls if calls else None,
            retries=tally.retries,
            breaker=tally.breaker_state,
            rejections=tally.rejections,
        )

    def render(self) -> None:
        """Print (or repaint) the status line."""
        snap = self.snapshot()
        line = format_status(snap)
        if not self.tty:
            self._stream.write(line + "\n")
        else:
            if self._shown and snap.phase != self._last_phase:
                # Keep the previous phase's last line on screen.
                self._stream.write("\n")
            self._stream.write(_CLEAR + line[: self._width])
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
    """Whether a cell reads as a number (or a percentage, or a dash)."""
    return cell == "-" or cell.rstrip("%").replace(".", "", 1).isdigit()


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
    The summary table: one row per phase, then the totals.

    Args:
        tally: The counts.
        windows: ``(phase, start, end)`` of each phase, in order.
    """
    rows: list[list[Any]] = []
    for name, start, end in windows:
        c = tally.phases[name]
        rows.append(_row(name, f"{start:.1f}-{end:.1f}s", c))
    rows.append(_row("total", "", tally.totals()))
    return format_table(
        (
            "phase",
            "time",
            "calls",
            "success",
            "retries",
            "rejected by breaker",
            "by limiter",
            "breaker entered",
        ),
        rows,
    )


def _row(name: str, window: str, c: PhaseCounts) -> list[Any]:
    return [
        name,
        window,
        c.calls,
        _percent(c.successes, c.calls),
        c.retries,
        c.breaker_rejections,
        c.limiter_rejections,
        _entered(c.entered),
    ]
