"""
The simulator's figures, drawn with matplotlib (the ``[sim]`` extra).

Only this module imports matplotlib, and only when a figure is asked for.
Every figure has titled axes with units, a legend, and the upstream's
failure spans shaded, so an operator reads it at a glance. Figures are
drawn on a bare `matplotlib.figure.Figure` (no pyplot, no global state)
and saved without a timestamp, so the same run gives the same file.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from ._run import SimResult


try:
    from matplotlib.figure import Figure
except ImportError:  # pragma: no cover - depends on the install
    msg = (
        "stormwall's simulator draws its figures with matplotlib: "
        "pip install 'stormwall[sim]'"
    )
    raise ImportError(msg) from None


__all__ = [
    "plot_compare",
    "plot_dashboard",
    "plot_occ",
    "plot_run",
    "plot_waterfall",
]

# One colour per outcome, the same in every figure (colour-blind safe:
# Okabe-Ito).
COLOURS = {
    "succeeded": "#009E73",
    "failed": "#D55E00",
    "breaker": "#CC79A7",
    "limiter": "#E69F00",
    "bulkhead": "#8c564b",
    "offered": "#0072B2",
    "attempts": "#D55E00",
    "retries": "#E69F00",
    "waited": "#56B4E9",
}
# One colour per scenario or strategy, in order.
SERIES = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#000000"]
_OUTAGE = "#999999"
_DPI = 110


def _save(fig: Figure, path: str | Path) -> None:
    fig.savefig(path, dpi=_DPI, metadata={"Software": None})


def _shade(ax: Any, outages: Sequence[tuple[float, float, float]]) -> None:
    """Shade the upstream's failure spans (labelled once, for the legend)."""
    for n, (start, stop, fraction) in enumerate(outages):
        ax.axvspan(
            start,
            stop,
            color=_OUTAGE,
            alpha=0.12 + 0.18 * fraction,
            lw=0,
            label=(
                f"upstream outage ({fraction:.0%} of requests fail)"
                if n == 0
                else None
            ),
        )


def _seconds(result: SimResult) -> list[float]:
    return [row["second"] + 0.5 for row in result.timeline]


def _column(result: SimResult, name: str) -> list[float]:
    return [
        float("nan") if row[name] is None else float(row[name])
        for row in result.timeline
    ]


def plot_run(
    result: SimResult, path: str | Path, *, title: str | None = None
) -> None:
    """One run: outcomes, upstream load, latency, breaker and limiter."""
    fig = Figure(figsize=(10, 10), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    x = _seconds(result)
    fig.suptitle(title or f"Simulated run of {result.label!r}")

    ax = axes[0]
    stack = [
        ("succeeded", "succeeded", COLOURS["succeeded"]),
        ("failed", "failed", COLOURS["failed"]),
        ("rejected_breaker", "rejected: breaker open", COLOURS["breaker"]),
        ("rejected_limiter", "rejected: rate limited", COLOURS["limiter"]),
        ("rejected_bulkhead", "rejected: bulkhead full", COLOURS["bulkhead"]),
    ]
    shown = [s for s in stack if any(r[s[0]] for r in result.timeline)]
    if shown:
        ax.stackplot(
            x,
            *[_column(result, name) for name, _, _ in shown],
            labels=[label for _, label, _ in shown],
            colors=[colour for _, _, colour in shown],
            step="mid",
        )
    _shade(ax, result.outages)
    ax.set_title("Calls ended, by outcome")
    ax.set_ylabel("calls / s")
    ax.legend(loc="upper right", fontsize="small")

    ax = axes[1]
    ax.step(
        x,
        _column(result, "offered"),
        where="mid",
        label="calls offered",
        color=COLOURS["offered"],
    )
    ax.step(
        x,
        _column(result, "attempts"),
        where="mid",
        label="attempts reaching the upstream",
        color=COLOURS["attempts"],
    )
    ax.step(
        x,
        _column(result, "retries"),
        where="mid",
        label="of which retries",
        color=COLOURS["retries"],
        linestyle="--",
    )
    _shade(ax, result.outages)
    ax.set_title("Load on the upstream")
    ax.set_ylabel("per second")
    ax.legend(loc="upper right", fontsize="small")

    ax = axes[2]
    ax.step(
        x, _column(result, "p50"), where="mid", label="p50", color="#0072B2"
    )
    ax.step(
        x, _column(result, "p99"), where="mid", label="p99", color="#D55E00"
    )
    _shade(ax, result.outages)
    ax.set_title("Latency the callers saw (every outcome)")
    ax.set_ylabel("seconds")
    ax.legend(loc="upper right", fontsize="small")

    ax = axes[3]
    if any(r["breaker_open"] is not None for r in result.timeline):
        ax.fill_between(
            x,
            _column(result, "breaker_open"),
            step="mid",
            color=COLOURS["breaker"],
            alpha=0.6,
            label="breaker open (fraction of the second)",
        )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction open")
    ax.set_title("Circuit breaker and rate limiter")
    handles, labels = ax.get_legend_handles_labels()
    if any(r["limiter_permits"] is not None for r in result.timeline):
        twin = ax.twinx()
        twin.step(
            x,
            _column(result, "limiter_permits"),
            where="mid",
            color=COLOURS["limiter"],
            label="limiter permits available",
        )
        twin.set_ylabel("permits")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    _shade(ax, result.outages)
    extra = ax.get_legend_handles_labels()
    handles += [h for h, lab in zip(*extra, strict=True) if lab not in labels]
    labels += [lab for lab in extra[1] if lab not in labels]
    if handles:
        ax.legend(handles, labels, loc="upper right", fontsize="small")
    ax.set_xlabel("virtual time (s)")
    _save(fig, path)


def plot_compare(
    results: Sequence[SimResult], path: str | Path, *, title: str
) -> None:
    """Several runs of one traffic: amplification, success, p99 latency."""
    fig = Figure(figsize=(10, 9.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title)
    for n, result in enumerate(results):
        x = _seconds(result)
        # Runs often coincide (a breaker with or without a budget): vary
        # the dash and the width too, so no line hides another.
        style = {
            "where": "mid",
            "color": SERIES[n % len(SERIES)],
            "linestyle": _DASHES[n % len(_DASHES)],
            "linewidth": 2.6 - 0.5 * (n % 4),
            "label": result.label,
        }
        amplification = [
            row["attempts"] / row["offered"] if row["offered"] else math.nan
            for row in result.timeline
        ]
        success = [
            row["succeeded"] / ended if (ended := _ended(row)) else math.nan
            for row in result.timeline
        ]
        axes[0].step(x, amplification, **style)
        axes[1].step(x, success, **style)
        axes[2].step(x, _column(result, "p99"), **style)
    outages = results[0].outages if results else []
    for ax in axes:
        _shade(ax, outages)
        ax.grid(alpha=0.3)
    axes[0].set_title("Amplification: attempts reaching the upstream per call")
    axes[0].set_ylabel("attempts / call")
    axes[1].set_title("Success ratio of the calls that ended")
    axes[1].set_ylabel("fraction")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_title("p99 latency the callers saw (every outcome)")
    axes[2].set_ylabel("seconds")
    axes[2].set_xlabel("virtual time since the start (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 3),
        fontsize="small",
    )
    _save(fig, path)


_DASHES = ["solid", "solid", "dashed", "dotted", "dashdot"]


def _ended(row: Mapping[str, Any]) -> int:
    return int(row["succeeded"] + row["failed"] + row["rejected"])


def plot_occ(
    table: Mapping[str, Sequence[tuple[int, float, float]]],
    path: str | Path,
    *,
    title: str,
) -> None:
    """The OCC study: calls and completion time against clients."""
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    fig.suptitle(title)
    markers = "osD^v"
    for n, (strategy, points) in enumerate(table.items()):
        clients = [p[0] for p in points]
        style = {
            "color": SERIES[n % len(SERIES)],
            "marker": markers[n % len(markers)],
            "markersize": 4,
            "label": strategy,
        }
        axes[0].plot(clients, [p[1] for p in points], **style)
        axes[1].plot(clients, [p[2] * 1000 for p in points], **style)
    axes[0].set_title("Work: calls made until every client succeeded")
    axes[0].set_ylabel("calls (mean per run)")
    # Log scale: un-jittered exponential back-off takes ten times longer
    # than the rest, which would otherwise lie flat along the axis.
    axes[1].set_yscale("log")
    axes[1].set_title("Time until every client succeeded (log scale)")
    axes[1].set_ylabel("milliseconds (mean per run, log scale)")
    axes[1].set_xlabel("contending clients")
    for ax in axes:
        ax.legend(title="back-off", loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_dashboard(result: SimResult, path: str | Path, *, title: str) -> None:
    """What the bundled Grafana dashboard shows through the run."""
    fig = Figure(figsize=(10, 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    fig.suptitle(title)
    x = _seconds(result)
    rows = result.timeline

    ax = axes[0]
    ax.stackplot(
        x,
        _column(result, "succeeded"),
        _column(result, "failed"),
        _column(result, "rejected"),
        labels=["success", "failure", "rejected"],
        colors=[COLOURS["succeeded"], COLOURS["failed"], COLOURS["breaker"]],
        step="mid",
    )
    ax.set_title("Traffic by outcome  (rate(stormwall_calls_total))")
    ax.set_ylabel("calls / s")

    ax = axes[1]
    states = ["closed", "half_open", "open"]
    colours = {"closed": "#009E73", "half_open": "#E69F00", "open": "#D55E00"}
    for state in states:
        ax.fill_between(
            x,
            [1.0 if r["breaker_state"] == state else 0.0 for r in rows],
            step="mid",
            color=colours[state],
            label=state.replace("_", "-"),
            lw=0,
        )
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_title("Breaker state  (stormwall_circuit_breaker_state)")
    ax.set_ylabel("state")

    ax = axes[2]
    ax.step(
        x,
        _column(result, "retries"),
        where="mid",
        color=COLOURS["retries"],
        label="retries / s",
    )
    twin = ax.twinx()
    per_call = [
        r["attempts"] / calls if (calls := r["offered"]) else float("nan")
        for r in rows
    ]
    twin.step(
        x,
        per_call,
        where="mid",
        color=COLOURS["offered"],
        linestyle="--",
        label="attempts per call",
    )
    twin.set_ylabel("attempts / call")
    ax.set_title("Retries  (rate(stormwall_retries_total))")
    ax.set_ylabel("retries / s")
    more = twin.get_legend_handles_labels()
    _shade(ax, result.outages)
    h2, l2 = ax.get_legend_handles_labels()
    # Inside, where the panel is empty: beside it the twin axis' label is.
    ax.legend(h2 + more[0], l2 + more[1], loc="center left", fontsize="small")

    ax = axes[3]
    for name, label, colour in (
        ("limiter_allowed", "allowed", COLOURS["succeeded"]),
        ("limiter_waited", "waited", COLOURS["waited"]),
        ("limiter_rejected", "rejected", COLOURS["failed"]),
    ):
        ax.step(
            x, _column(result, name), where="mid", color=colour, label=label
        )
    ax.set_title(
        "Limiter decisions  (rate(stormwall_rate_limiter_requests_total))"
    )
    ax.set_ylabel("requests / s")
    ax.set_xlabel("time (s)")
    for n, ax in enumerate(axes):
        if n != 2:  # the retries panel is shaded and labelled above
            _shade(ax, result.outages)
            ax.legend(**_BESIDE)
    _save(fig, path)


# Legends beside a panel, never over its data.
_BESIDE: dict[str, Any] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
    "fontsize": "small",
}


def plot_waterfall(
    spans: Sequence[tuple[str, float, float, str]],
    path: str | Path,
    *,
    title: str,
) -> None:
    """
    A trace waterfall: ``(label, start, end, kind)`` bars, top to bottom.

    ``kind`` is ``call``, ``success``, ``failure`` or ``wait``.
    """
    fig = Figure(figsize=(10, 0.6 * len(spans) + 1.6), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    colours = {
        "call": "#0072B2",
        "success": COLOURS["succeeded"],
        "failure": COLOURS["failed"],
        "wait": "#BBBBBB",
    }
    names = {
        "call": "call span",
        "success": "attempt span: success",
        "failure": "attempt span: failure",
        "wait": "back-off (RetryScheduled)",
    }
    seen = set()
    for n, (_, start, end, kind) in enumerate(spans):
        ax.barh(
            n,
            (end - start) * 1000,
            left=start * 1000,
            height=0.6,
            color=colours[kind],
            hatch="//" if kind == "wait" else None,
            edgecolor="white" if kind != "wait" else "#777777",
            label=None if kind in seen else names[kind],
        )
        seen.add(kind)
        ax.text(
            end * 1000,
            n,
            f"  {(end - start) * 1000:.0f} ms",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(range(len(spans)), [s[0] for s in spans])
    ax.invert_yaxis()
    ax.set_xlabel("time since the call started (ms)")
    fig.legend(loc="outside lower center", ncols=4, fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, max(s[2] for s in spans) * 1000 * 1.15)
    _save(fig, path)
