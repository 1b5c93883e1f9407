"""
``stormwall simulate``: run a scenario, write its summary, CSV and figure.

Writes ``summary.json``, ``timeline.csv`` and ``report.png`` into the
output directory. A progress bar goes to stderr: redrawn in place on a
terminal, one line per step otherwise (so a CI log stays readable).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from typing import TYPE_CHECKING, TextIO

from .._clock import DEFAULT_CLOCK
from .._errors import ConfigError
from ._scenarios import occ_scenario, retry_storm, scenario_file


if TYPE_CHECKING:
    from pathlib import Path

    from ._scenarios import Report


__all__ = ["SCENARIOS", "simulate"]

SCENARIOS = ("occ-contention", "retry-storm")

_MISSING_EXTRA = (
    "stormwall simulate draws report.png with matplotlib: "
    "pip install 'stormwall[sim]'"
)


class _Progress:
    """A progress bar on a terminal, plain lines elsewhere, or nothing."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.tty = stream is not None and stream.isatty()
        self.last = ""
        self.started = DEFAULT_CLOCK.now()

    def __call__(self, what: str, fraction: float) -> None:
        stream = self.stream
        if stream is None:
            return
        if self.tty:
            filled = round(self.WIDTH * fraction)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            stream.write(f"\r[{bar}] {fraction:4.0%} {what[:60]:<60}")
            stream.flush()
        elif what != self.last:
            stream.write(f"simulating {what} ...\n")
            stream.flush()
        self.last = what

    def done(self) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r" + " " * (self.WIDTH + 70) + "\r")
        elapsed = DEFAULT_CLOCK.now() - self.started
        self.stream.write(f"simulated in {elapsed:.1f} s of real time\n")
        self.stream.flush()


def simulate(
    scenario: str | None,
    out: Path,
    *,
    scenario_path: Path | None = None,
    seed: int | None = None,
    runs: int | None = None,
    quiet: bool = False,
) -> list[Path]:
    """
    Run one scenario and write its three files into ``out``.

    Returns:
        The paths written.

    Raises:
        ConfigError: a bad scenario file or option (the message names it).
        ImportError: matplotlib is missing (the ``[sim]`` extra).
    """
    try:
        from . import _plot  # noqa: F401 - fail before the long part
    except ImportError:
        raise ImportError(_MISSING_EXTRA) from None
    progress = _Progress(None if quiet else sys.stderr)
    report: Report
    if scenario_path is not None:
        report = scenario_file(scenario_path, seed=seed, progress=progress)
    elif scenario == "retry-storm":
        report = retry_storm(seed=seed or 0, progress=progress)
    elif scenario == "occ-contention":
        report = occ_scenario(
            runs=100 if runs is None else runs,
            seed=seed or 0,
            progress=progress,
        )
    else:  # the parser only lets the known ones through
        raise ConfigError("SCENARIO", f"unknown scenario {scenario!r}")
    progress.done()
    out.mkdir(parents=True, exist_ok=True)
    summary, timeline, figure = (
        out / "summary.json",
        out / "timeline.csv",
        out / "report.png",
    )
    summary.write_text(
        json.dumps(_finite(report.summary), indent=2) + "\n", encoding="utf-8"
    )
    with timeline.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(report.header)
        writer.writerows(
            ["" if v is None else v for v in row] for row in report.rows
        )
    report.draw(figure)
    return [summary, timeline, figure]


def _finite(value: object) -> object:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
