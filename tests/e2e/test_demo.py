"""
``stormwall demo``: the phase schedule, the flaky upstream, the status line
and the summary without a network; the bulkhead filling when the upstream
hangs; the summary against the Prometheus exposition of the same run; then
the whole demo as a subprocess, scraped while it runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stormwall._demo._status import (
    LogStream,
    Snapshot,
    StatusLine,
    Tally,
    format_status,
    format_summary,
    format_table,
)
from stormwall._demo._upstream import (
    PHASES,
    FlakyUpstream,
    Reply,
    decide,
    make_schedule,
)
from stormwall.events import (
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    LimiterRejected,
    RetryBudgetExhausted,
    RetryScheduled,
)


ROOT = Path(__file__).resolve().parents[2]


def _have(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


DEMO_EXTRA = ("httpx", "prometheus_client", "opentelemetry.sdk", "structlog")


class TestSchedule:
    def test_same_seed_same_schedule(self):
        """The same seed always gives the same phase schedule."""
        assert make_schedule(30, 7) == make_schedule(30, 7)

    def test_seed_moves_the_boundaries(self):
        """Different seeds give different schedules."""
        schedules = {make_schedule(30, seed) for seed in range(5)}

        assert 5 == len(schedules)

    @pytest.mark.parametrize("duration", [0.5, 6, 30, 3600])
    def test_phases_cover_the_run_in_order(self, duration):
        """Every phase comes once, in order, back to back from 0 to the
        end, however short the run."""
        schedule = make_schedule(duration, 3)
        phases = schedule.phases

        assert PHASES == tuple(p.name for p in phases)
        assert 0.0 == phases[0].start
        assert duration == phases[-1].end
        assert all(a.end == b.start for a, b in itertools.pairwise(phases))
        assert all(p.end > p.start for p in phases)

    def test_boundaries_are_fractions_of_the_duration(self):
        """Boundaries stay within 3 % of the run of 25/45/70 %."""
        for seed in range(50):
            schedule = make_schedule(100, seed)
            bounds = [p.start for p in schedule.phases[1:]]

            for nominal, bound in zip((25, 45, 70), bounds, strict=True):
                assert abs(nominal - bound) <= 3.0

    def test_phase_at(self):
        """phase_at maps elapsed seconds to the phase; past the end it
        stays in the last phase."""
        schedule = make_schedule(10, 1)
        degraded = schedule.phases[1]

        assert "healthy" == schedule.phase_at(0).name
        assert "degraded" == schedule.phase_at(degraded.start).name
        assert "recovery" == schedule.phase_at(10).name
        assert "recovery" == schedule.phase_at(1e9).name

    def test_describe(self):
        """describe() lists each phase with its window."""
        text = make_schedule(30, 1).describe()

        assert text.startswith("healthy 0-")
        assert text.endswith("-30s")


class TestDecide:
    def test_is_a_pure_function(self):
        """The reply depends only on seed, request number and phase."""
        first = [decide(4, n, "degraded") for n in range(200)]
        again = [decide(4, n, "degraded") for n in range(200)]

        assert first == again

    def _statuses(self, phase, n=2000):
        return [decide(1, i, phase) for i in range(n)]

    def test_healthy_mostly_succeeds(self):
        """Healthy: nearly every request is a fast 200."""
        replies = self._statuses("healthy")
        ok = sum(r.status == 200 for r in replies) / len(replies)

        assert ok > 0.95
        assert not any(r.drop for r in replies)

    def test_degraded_fails_and_spikes(self):
        """Degraded: a fifth or so of 5xx, and latency spikes."""
        replies = self._statuses("degraded")
        errors = sum(r.status >= 500 for r in replies) / len(replies)
        spikes = sum(r.delay >= 0.3 for r in replies) / len(replies)

        assert 0.15 < errors < 0.3
        assert 0.1 < spikes < 0.2

    def test_outage_never_succeeds(self):
        """Outage: only 503-ish answers and dropped connections, no 429."""
        replies = self._statuses("outage")

        assert not any(r.status in {200, 429} for r in replies if not r.drop)
        assert any(r.drop for r in replies)
        assert any(r.status == 503 for r in replies)

    @pytest.mark.parametrize("phase", ["healthy", "degraded", "recovery"])
    def test_throttles_with_retry_after(self, phase):
        """Outside the outage some requests get a 429 with Retry-After."""
        throttled = [r for r in self._statuses(phase) if r.status == 429]

        assert throttled
        assert {1} == {r.retry_after for r in throttled}


def _healthy_seed():
    """A seed whose first three healthy replies are fast (a quick test)."""
    for seed in range(1000):
        replies = [decide(seed, n, "healthy") for n in (1, 2, 3)]
        if sum(r.delay for r in replies) < 0.03:
            return seed, replies
    raise AssertionError("unreachable")


async def _get(reader, writer, path="/users/1"):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    await reader.readexactly(int(headers["Content-Length"]))
    return int(lines[0].split()[1]), headers


class TestUpstream:
    @pytest.mark.asyncio
    async def test_answers_as_decided_with_keep_alive(self):
        """Over a real loopback socket the upstream answers request n as
        decide() says, several requests on one connection."""
        seed, replies = _healthy_seed()
        upstream = FlakyUpstream(make_schedule(10, seed), seed, lambda: 0.0)
        await upstream.start()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", upstream.port
            )
            statuses = [(await _get(reader, writer))[0] for _ in range(3)]
            writer.close()
            await writer.wait_closed()
        finally:
            await upstream.close()

        assert [r.status for r in replies] == statuses
        assert upstream.url.startswith("http://127.0.0.1:")

    @pytest.mark.asyncio
    async def test_outage_drops_connections(self):
        """In the outage a dropped request closes the connection without
        an answer."""
        seed = next(s for s in range(1000) if decide(s, 1, "outage").drop)
        schedule = make_schedule(10, seed)
        in_outage = schedule.phases[2].start + 0.1
        upstream = FlakyUpstream(schedule, seed, lambda: in_outage)
        await upstream.start()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", upstream.port
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
        finally:
            await upstream.close()

        assert b"" == data
        assert 1 == upstream.served["outage", "dropped"]

    @pytest.mark.asyncio
    async def test_close_ends_idle_connections(self):
        """close() ends a connection the client left open."""
        upstream = FlakyUpstream(make_schedule(10, 1), 1, lambda: 0.0)
        await upstream.start()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", upstream.port
        )
        await asyncio.sleep(0.01)  # let the server accept it
        await upstream.close()
        data = await reader.read()
        writer.close()
        await writer.wait_closed()

        assert b"" == data

    def test_reply_defaults(self):
        """A Reply is a plain answer unless told otherwise."""
        reply = Reply(200, 0.01)

        assert (None, False) == (reply.retry_after, reply.drop)


class TestTally:
    def _tally(self, phase="healthy"):
        current = {"phase": phase}
        return Tally(PHASES, lambda: current["phase"]), current

    def test_counts_per_phase(self):
        """Events count towards the phase current when they happen."""
        tally, current = self._tally()
        tally.handle(
            CallEnded(time=0, outcome="success", attempts=1, duration=0.1)
        )
        tally.handle(RetryScheduled(time=0, delay=0.1))
        current["phase"] = "outage"
        tally.handle(
            BreakerStateChanged(
                time=1,
                breaker="upstream",
                from_state="closed",
                to_state="open",
                reason="failure_rate",
            )
        )
        tally.handle(
            BreakerRejected(
                time=1, breaker="upstream", state="open", retry_after=1.0
            )
        )
        tally.handle(
            CallEnded(time=1, outcome="rejected", attempts=0, duration=0.0)
        )
        tally.handle(LimiterRejected(time=1, limiter="l", retry_after=0.5))
        tally.handle(BulkheadRejected(time=1, bulkhead="b", in_flight=4))
        tally.handle(RetryBudgetExhausted(time=1))
        tally.handle(
            CallEnded(time=1, outcome="cancelled", attempts=1, duration=0.0)
        )
        healthy, outage = tally.phases["healthy"], tally.phases["outage"]

        assert (1, 1, 1) == (healthy.calls, healthy.successes, healthy.retries)
        assert (1, 0) == (outage.calls, outage.successes)
        assert (1, 1, 1, 1) == (
            outage.breaker_rejections,
            outage.limiter_rejections,
            outage.bulkhead_rejections,
            outage.budget_denials,
        )
        assert 3 == outage.refused
        assert {"rejected": 1, "cancelled": 1} == dict(outage.outcomes)
        assert {"open": 1} == dict(outage.entered)
        assert "open" == tally.breaker_state
        assert (2, 1, 1, 1) == (
            tally.calls,
            tally.successes,
            tally.retries,
            tally.rejected,
        )

    def test_breaker_stopping_a_retry_is_a_failure_call(self):
        """A call the breaker stopped mid-retry counts as one failure call
        (as stormwall_calls_total does) and one breaker rejection (as
        stormwall_circuit_breaker_rejections_total does), never as a
        rejected call."""
        tally, _ = self._tally("outage")
        tally.handle(RetryScheduled(time=0, delay=0.1))
        tally.handle(
            BreakerRejected(
                time=0, breaker="upstream", state="open", retry_after=1.0
            )
        )
        tally.handle(
            CallEnded(time=0, outcome="failure", attempts=1, duration=0.1)
        )
        outage = tally.phases["outage"]

        assert (1, 0, 1) == (
            outage.outcomes["failure"],
            outage.outcomes["rejected"],
            outage.breaker_rejections,
        )
        assert 0 == tally.rejected

    def test_bulkhead_in_flight_and_peak(self):
        """In flight follows the newest snapshot; the peak is per phase."""
        tally, current = self._tally()
        for n, sequence in ((1, 1), (2, 2), (3, 3)):
            tally.handle(
                BulkheadAcquired(
                    time=0, bulkhead="b", in_flight=n, sequence=sequence
                )
            )
        current["phase"] = "outage"
        tally.handle(
            BulkheadReleased(time=0, bulkhead="b", in_flight=2, sequence=4)
        )
        # A stale snapshot (delivered late) does not win.
        tally.handle(
            BulkheadAcquired(time=0, bulkhead="b", in_flight=3, sequence=3)
        )

        assert 2 == tally.in_flight
        assert 3 == tally.phases["healthy"].peak_in_flight
        assert 3 == tally.totals().peak_in_flight

    def test_totals(self):
        """totals() adds every phase up."""
        tally, current = self._tally()
        for phase in PHASES:
            current["phase"] = phase
            tally.handle(
                CallEnded(time=0, outcome="success", attempts=1, duration=0)
            )
        total = tally.totals()

        assert (4, 4, 0) == (total.calls, total.successes, total.refused)


def _snapshot(**kw):
    fields = {
        "elapsed": 12.34,
        "phase": "degraded",
        "calls_per_second": 98.4,
        "success_ratio": 0.713,
        "rejected_per_second": 12.2,
        "retries_per_second": 40.6,
        "breaker": "half_open",
        "in_flight": 15,
        "bulkhead_limit": 20,
    }
    fields.update(kw)
    return Snapshot(**fields)


class TestStatusLine:
    def test_format(self):
        """The status line shows the phase, then per-second rates marked
        "/s" (calls, rejected calls, retries) with the success share, and
        the breaker's state and the bulkhead's in-flight/limit now: no
        running total left unlabelled."""
        expected = (
            "12.3s degraded   98 calls/s ok  71%  breaker half_open"
            "  bulkhead 15/20  rejected 12/s  retries 41/s"
        )

        assert expected == format_status(_snapshot())

    def test_without_bulkhead(self):
        """No bulkhead: no bulkhead part."""
        line = format_status(_snapshot(bulkhead_limit=None))

        assert "bulkhead" not in line

    def test_format_without_calls(self):
        """No call ended yet: no success ratio."""
        assert "ok   --" in format_status(_snapshot(success_ratio=None))

    def test_fits_80_columns(self):
        """A busy run's line still fits an 80-column terminal (wrapped, it
        could not be repainted): whole parts are left out from the end,
        retries first, and the breaker and the bulkhead stay."""
        busy = _snapshot(
            elapsed=99.9,
            phase="recovery",
            calls_per_second=999,
            success_ratio=1.0,
            retries_per_second=999,
            rejected_per_second=999,
            in_flight=100,
            bulkhead_limit=100,
        )
        line = format_status(busy, 79)

        assert len(line) < 80
        assert line.endswith("bulkhead 100/100")
        assert "retries" in format_status(busy)

    def _line(self, tty, width=200):
        clock = {"t": 0.0, "phase": "healthy"}
        tally = Tally(PHASES, lambda: clock["phase"])
        out = io.StringIO()
        line = StatusLine(
            tally,
            lambda: clock["phase"],
            lambda: clock["t"],
            out,
            tty=tty,
            width=width,
        )
        return line, tally, clock, out

    def test_rate_over_the_last_second(self):
        """calls/s and the success ratio cover about the last second."""
        line, tally, clock, _ = self._line(tty=False)
        line.snapshot()
        for ok in (True, True, False, True):
            outcome = "success" if ok else "failure"
            tally.handle(
                CallEnded(time=0, outcome=outcome, attempts=1, duration=0)
            )
        clock["t"] = 0.5
        snap = line.snapshot()

        assert 8.0 == snap.calls_per_second
        assert 0.75 == snap.success_ratio

    def test_pipe_prints_one_line_per_render(self):
        """Not a terminal: plain lines, one per refresh, once a second."""
        line, _, clock, out = self._line(tty=False)
        line.render()
        clock["t"] = 1.0
        line.render()
        line.finish()

        assert 1.0 == line.interval
        assert 2 == out.getvalue().count("\n")
        assert "\r" not in out.getvalue()

    def test_terminal_repaints_in_place(self):
        """A terminal: the line is repainted, 4 times a second; a new
        phase keeps the previous phase's last line on screen."""
        line, _, clock, out = self._line(tty=True, width=40)
        line.render()
        line.render()
        clock["phase"] = "degraded"
        line.render()
        line.finish()
        text = out.getvalue()

        assert 0.25 == line.interval
        assert 3 == text.count("\r\x1b[K" + " 0.0s")
        assert 2 == text.count("\n")
        assert all(len(part) <= 39 for part in re.split(r"\r\x1b\[K|\n", text))

    def test_log_lines_erase_the_status_once(self):
        """A log line written in pieces erases the status line before its
        first piece only, and the next refresh paints the status again."""
        line, _, _, out = self._line(tty=True)
        logs = LogStream(out, line)
        line.render()
        logs.write("a log line")
        logs.write("\n")
        logs.flush()
        line.render()

        assert out.getvalue().endswith(
            "\r\x1b[Ka log line\n\r\x1b[K" + (format_status(line.snapshot()))
        )
        assert not logs.isatty()


class TestSummary:
    def test_table(self):
        """format_table right-aligns numbers and underlines the header."""
        expected = "name   n\n----  --\nab     1\nc     22"

        assert expected == format_table(("name", "n"), [("ab", 1), ("c", 22)])

    def test_summary(self):
        """The summary has a row per phase, a total row, the success
        ratio and the breaker states entered."""
        tally = Tally(PHASES, lambda: "outage")
        tally.handle(
            CallEnded(time=0, outcome="success", attempts=1, duration=0)
        )
        tally.handle(
            CallEnded(time=0, outcome="failure", attempts=3, duration=0)
        )
        for to_state in ("open", "half_open", "open"):
            tally.handle(
                BreakerStateChanged(
                    time=0,
                    breaker="b",
                    from_state="x",
                    to_state=to_state,
                    reason="r",
                )
            )
        tally.handle(
            CallEnded(time=0, outcome="rejected", attempts=0, duration=0)
        )
        tally.handle(BulkheadRejected(time=0, bulkhead="b", in_flight=4))
        tally.handle(
            BulkheadAcquired(time=0, bulkhead="b", in_flight=4, sequence=1)
        )
        tally.bulkhead_limit = 4
        schedule = make_schedule(10, 1)
        windows = [(p.name, p.start, p.end) for p in schedule.phases]
        calls, refused = format_summary(tally, windows).split("\n\n")
        lines = calls.splitlines()[1:]
        phases = ["healthy", "degraded", "outage", "recovery", "total"]

        assert "stormwall_calls_total" in calls.splitlines()[0]
        assert lines[0].split() == [
            "phase",
            "time",
            "calls",
            "success",
            "failure",
            "rejected",
            "ok",
            "retries",
            "breaker",
            "entered",
        ]
        assert phases == [line.split()[0] for line in lines[2:]]
        outage = lines[4]
        assert ["3", "1", "1", "1", "33.3%", "0"] == outage.split()[2:8]
        assert outage.endswith("open x2, half_open x1")
        assert lines[2].endswith("-")
        refused_lines = refused.splitlines()[1:]
        assert "rejection counters" in refused.splitlines()[0]
        assert phases == [line.split()[0] for line in refused_lines[2:]]
        assert ["outage", "0", "0", "1", "4/4"] == refused_lines[4].split()


# -- the bulkhead in the outage -----------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
@pytest.mark.asyncio
async def test_outage_fills_the_bulkhead():
    """In the outage the upstream hangs past the attempt timeout: a burst
    of calls fills the demo's bulkhead to its limit and the rest are
    refused at once (BulkheadRejected), before the breaker has seen a
    single failure."""
    import httpx

    from stormwall import EventBus
    from stormwall._demo._client import (
        build_executor,
        fetch,
        pipeline_settings,
    )
    from stormwall.testing import EventRecorder

    settings = pipeline_settings(30, 5, 20)
    limit = settings.bulkhead_limit
    schedule = make_schedule(30, 1)
    in_outage = schedule.phases[2].start + 1
    # A seed whose first `limit` outage requests all hang.
    seed = next(
        s
        for s in range(10_000)
        if all(
            decide(s, n, "outage").delay >= 1.0 for n in range(1, limit + 1)
        )
    )
    upstream = FlakyUpstream(schedule, seed, lambda: in_outage)
    await upstream.start()
    bus = EventBus()
    decided = []
    admitted = asyncio.Event()

    def count(event):
        decided.append(event)
        if len(decided) == 2 * limit:
            admitted.set()

    bus.subscribe(count, BulkheadAcquired, BulkheadRejected)
    try:
        async with httpx.AsyncClient(
            base_url=upstream.url, trust_env=False
        ) as client:
            executor = build_executor(settings, bus, seed)
            with EventRecorder(bus) as recorder:
                calls = [
                    asyncio.create_task(
                        executor.run(f"user:{i}", fetch, client, f"/users/{i}")
                    )
                    for i in range(2 * limit)
                ]
                # Every call has passed (or been refused by) the bulkhead
                # before any attempt can end: the upstream hangs >= 1 s.
                await asyncio.wait_for(admitted.wait(), timeout=10)
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await upstream.close()
    acquired = recorder.of_type(BulkheadAcquired)
    rejected = recorder.of_type(BulkheadRejected)

    assert 20 == limit
    assert limit == max(e.in_flight for e in acquired)
    assert limit == len(rejected)
    assert {limit} == {e.in_flight for e in rejected}
    assert not recorder.of_type(BreakerStateChanged)


@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
def test_bulkhead_scales_with_the_load():
    """The bulkhead holds a fifth of a second of the whole load, 4 at
    least."""
    from stormwall._demo._client import pipeline_settings

    assert 20 == pipeline_settings(30, 5, 20).bulkhead_limit
    assert 4 == pipeline_settings(30, 1, 1).bulkhead_limit
    assert 200 == pipeline_settings(30, 10, 100).bulkhead_limit


# -- the summary counts what the metrics count --------------------------------


def _samples(exposition):
    """{(name, sorted labels): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def _total(samples, name, **labels):
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name
        and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def _row(text, title_word, first):
    """The cells of the row starting with `first` in the table whose
    title mentions `title_word`."""
    table = next(t for t in text.split("\n\n") if title_word in t)
    return next(
        line.split() for line in table.splitlines() if line.split()[0] == first
    )


@pytest.fixture
def restore_logging():
    """The demo configures logging and structlog for its process: put the
    test process's back."""
    import logging

    structlog = pytest.importorskip("structlog")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.slow
@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
def test_summary_matches_prometheus(monkeypatch, restore_logging):
    """A short seeded run: every number of the summary's total rows equals
    the Prometheus exposition of the same run, taken when the load ended:
    calls by outcome (stormwall_calls_total), retries, the breaker's,
    limiter's and bulkhead's rejections, breaker openings and budget
    denials. A call the breaker stopped mid-retry is a failure in both."""
    from stormwall._demo import Options
    from stormwall._demo._run import run_demo

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    expositions = []
    out, err = io.StringIO(), io.StringIO()

    status = run_demo(
        Options(duration=4, seed=3, port=0, quiet=True),
        out,
        err,
        on_metrics=expositions.append,
    )
    summary = out.getvalue()
    (exposition,) = expositions
    metrics = _samples(exposition)
    calls = _row(summary, "stormwall_calls_total", "total")
    refused = _row(summary, "rejection counters", "total")

    assert 0 == status, err.getvalue()
    executor = {"executor": "upstream-api"}
    assert [
        _total(metrics, "stormwall_calls_total", **executor, outcome=o)
        for o in ("success", "failure", "rejected")
    ] == [int(n) for n in calls[2:5]]
    assert int(calls[1]) == sum(map(int, calls[2:5]))
    assert _total(metrics, "stormwall_retries_total", **executor) == int(
        calls[6]
    )
    assert [
        _total(
            metrics,
            "stormwall_circuit_breaker_rejections_total",
            breaker="upstream",
        ),
        _total(
            metrics,
            "stormwall_rate_limiter_requests_total",
            limiter="per-user",
            result="rejected",
        ),
        _total(
            metrics, "stormwall_bulkhead_rejections_total", bulkhead="upstream"
        ),
    ] == [int(n) for n in refused[1:4]]
    opened = re.search(r"breaker: opened (\d+) time", summary)
    assert _total(
        metrics,
        "stormwall_circuit_breaker_transitions_total",
        breaker="upstream",
        to_state="open",
    ) == int(opened.group(1))
    denied = re.search(r"retry budget: denied (\d+) retries", summary)
    assert _total(
        metrics, "stormwall_retry_budget_exhausted_total", **executor
    ) == int(denied.group(1))
    # The run had calls of every kind the comparison is about.
    assert int(calls[3]) > 0
    assert int(refused[1]) > 0
    assert ("stormwall_bulkhead_in_flight", (("bulkhead", "upstream"),)) in (
        metrics
    )


# -- the demo, end to end -----------------------------------------------------


class _Receiver:
    """A minimal OTLP/HTTP endpoint that counts trace exports."""

    def __init__(self):
        self.posts = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


def demo_command(*args):
    """
    ``python -m stormwall demo ...``, under coverage when the tests are.

    The subprocess then writes its own data file, which ``make unit``
    combines with the rest (``parallel = true`` in pyproject.toml).
    """
    coverage = sys.modules.get("coverage")
    if coverage is not None and coverage.Coverage.current() is not None:
        prefix = [
            "-m",
            "coverage",
            "run",
            f"--rcfile={ROOT / 'pyproject.toml'}",
        ]
    else:
        prefix = []
    return [sys.executable, *prefix, "-m", "stormwall", "demo", *args]


def _breaker_state(metrics):
    """The state whose stormwall_circuit_breaker_state series is 1."""
    for line in metrics.splitlines():
        if (
            line.startswith("stormwall_circuit_breaker_state{")
            and 'breaker="upstream"' in line
            and line.endswith(" 1.0")
        ):
            return re.search(r'state="(\w+)"', line).group(1)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
def test_demo_end_to_end(tmp_path):
    """The demo exits 0 with a summary, and while it runs /metrics shows
    stormwall_ series and a breaker that is closed, then opens in the
    outage; spans reach an OTLP endpoint when one is set."""
    otlp = _have("opentelemetry.exporter.otlp.proto.http")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    receiver = _Receiver() if otlp else None
    if receiver is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
    stdout, stderr = tmp_path / "out", tmp_path / "err"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    states, scrapes = [], []
    try:
        with stdout.open("w") as out, stderr.open("w") as err:
            proc = subprocess.Popen(
                demo_command(
                    "--duration", "6", "--port", "0", "--seed", "1", "--quiet"
                ),
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env=env,
            )
            try:
                url = None
                deadline = time.monotonic() + 30
                while url is None and time.monotonic() < deadline:
                    found = re.search(
                        r"metrics: (http://\S+/metrics)", stdout.read_text()
                    )
                    url = found and found.group(1)
                    time.sleep(0.05)
                while url is not None and proc.poll() is None:
                    try:
                        with opener.open(url, timeout=2) as response:
                            text = response.read().decode()
                    except (urllib.error.URLError, ConnectionError):
                        break  # the demo has just ended
                    scrapes.append(text)
                    states.append(_breaker_state(text))
                    time.sleep(0.1)
                returncode = proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        if receiver is not None:
            receiver.close()
    output, errors = stdout.read_text(), stderr.read_text()
    seen = [s for s in states if s is not None]
    outage_row = next(
        line for line in output.splitlines() if line.startswith("outage ")
    )

    assert 0 == returncode, errors
    assert "Traceback" not in errors
    assert "summary" in output
    assert any("stormwall_calls_total{" in text for text in scrapes)
    assert "closed" == seen[0]
    assert "open" in seen
    assert "open x" in outage_row
    if receiver is not None:
        assert receiver.posts
        assert {"/v1/traces"} == set(receiver.posts)
        assert f"traces: OTLP http/protobuf to {receiver.url}" in output


@pytest.mark.slow
@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
def test_demo_status_logs_and_spans():
    """Not quiet and piped, the demo prints a status line a second and the
    breaker's transitions as log lines; --spans prints spans on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        # 4 s: in a shorter run the bulkhead absorbs the whole outage and
        # the breaker never trips.
        demo_command(
            "--duration", "4", "--port", "0", "--seed", "2", "--spans", "-"
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    status = [
        line
        for line in proc.stdout.splitlines()
        if re.fullmatch(
            r" ?\d+\.\ds (healthy|degraded|outage|recovery) +\d+ calls/s"
            r" ok +(--|\d+%)  breaker \w+  bulkhead \d+/20"
            r"  rejected \d+/s  retries \d+/s",
            line,
        )
    ]

    assert 0 == proc.returncode, proc.stderr
    # Spans carry recorded exceptions' stack traces; an uncaught one would
    # start a line.
    assert not re.search("^Traceback", proc.stderr, re.MULTILINE)
    assert len(status) >= 2
    assert "  status: per second over the last second" in proc.stdout
    assert "traces: printed on stderr, one JSON object a line" in proc.stdout
    assert '"name": "upstream-api attempt"' in proc.stderr
    assert "stormwall.circuit_breaker.state_changed" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _have(*DEMO_EXTRA), reason="needs stormwall[demo]")
def test_demo_spans_to_a_file(tmp_path):
    """--spans FILE writes every span, one JSON object a line, to FILE and
    none on the terminal; the summary counts them, per second too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    spans = tmp_path / "spans.jsonl"
    proc = subprocess.run(
        demo_command(
            "--duration",
            "2",
            "--port",
            "0",
            "--seed",
            "2",
            "--quiet",
            "--spans",
            str(spans),
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    lines = spans.read_text().splitlines()
    names = {json.loads(line)["name"] for line in lines}
    counted = re.search(r"spans: (\d+) ended \((\d+) a second\)", proc.stdout)

    assert 0 == proc.returncode, proc.stderr
    assert '"name"' not in proc.stderr
    assert {"upstream-api", "upstream-api attempt"} <= names
    assert len(lines) == int(counted.group(1))
    assert f"traces: written to {spans}, one JSON object a line" in (
        proc.stdout
    )


def test_spans_file_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    """--spans into a missing directory: one line naming it, exit 2."""
    pytest.importorskip("opentelemetry.sdk")
    if not _have(*DEMO_EXTRA):
        pytest.skip("needs stormwall[demo]")
    from stormwall._cli import main

    target = tmp_path / "missing" / "spans.jsonl"
    status = main(["demo", "--port", "0", "--spans", str(target)])
    err = capsys.readouterr().err

    assert 2 == status
    assert 1 == len(err.splitlines())
    assert f"cannot write spans to {target}" in err
