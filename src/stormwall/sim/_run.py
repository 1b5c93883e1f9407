"""
`run`: the user's own executor against an `Upstream`, in virtual time.

Traffic is open-loop (Poisson arrivals at ``rate`` per second, as from many
independent users: arrivals do not slow down when the upstream does) or
closed-loop (``clients`` callers, each calling again as soon as its call
ends, as a worker pool does). Every call goes through ``executor.run``, the
production code path; the upstream counts the attempts that reach it.

What is recorded, per virtual second (`SimResult.timeline`): calls offered
(by start time), attempts and retries that reached the upstream, calls that
ended (by end time) in success, failure or a local rejection by kind, the
latency the callers saw, the breaker's state (from the events it reports on
the executor's bus) and the limiter's decisions and permits (sampled every
second).
"""

from __future__ import annotations

import asyncio
import csv
import math
import random
from typing import TYPE_CHECKING, Any, Final

from .. import _validate
from .._async import AsyncResilientExecutor
from .._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    RateLimitedError,
    RejectedError,
)
from .._events import BreakerStateChanged
from ._loop import VirtualEventLoop, keeping_time
from ._upstream import Upstream, UpstreamError, _Server


if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .._bus import EventBus


__all__ = [
    "MAX_CALLS",
    "MAX_CLIENTS",
    "MAX_DURATION",
    "SimResult",
    "check_seed",
    "run",
]

# What one simulation may be asked to do, so that a typo (``rate=1e18``,
# ``duration=10**18``) is a ConfigError rather than a run that never ends
# or a MemoryError. The timeline keeps a row per virtual second (about
# 130 bytes) and the latency of every call (about 32 bytes); a call costs
# about 15 us of CPU. So at the bounds: a week is ~80 MB of timeline, ten
# million calls ~320 MB and a few minutes, a hundred thousand clients as
# many tasks.
MAX_DURATION: Final = 7 * 86_400.0
MAX_CALLS: Final = 10_000_000
MAX_CLIENTS: Final = 100_000

# The columns of `SimResult.timeline`, in order (also the CSV header).
COLUMNS = (
    "second",
    "offered",
    "attempts",
    "retries",
    "succeeded",
    "failed",
    "rejected",
    "rejected_breaker",
    "rejected_limiter",
    "rejected_bulkhead",
    "p50",
    "p99",
    "breaker_state",
    "breaker_open",
    "limiter_permits",
    "limiter_allowed",
    "limiter_waited",
    "limiter_rejected",
    "failure_rate",
)

_KINDS = (
    (CircuitOpenError, "breaker"),
    (RateLimitedError, "limiter"),
    (BulkheadFullError, "bulkhead"),
)

# A closed-loop client whose call took no virtual time at all (refused at
# once) waits this long before its next call, so a loop of instant
# refusals cannot freeze virtual time.
_MIN_GAP = 0.001

# What the upstream returns: any other value came from a fallback.
_SERVED = object()

# How long after ``duration`` calls still in flight may take to finish
# before they are cancelled (and counted in no outcome).
_DRAIN = 3600.0


class SimResult:
    """
    What `run` measured.

    Attributes:
        summary: The whole run: ``offered`` (calls started),
            ``attempts`` (that reached the upstream), ``amplification``
            (attempts / offered), ``succeeded``, ``failed`` (the function
            ran and the call failed, or a fallback replaced the failure),
            ``rejected`` (refused locally before any attempt),
            ``success_ratio`` (succeeded / offered), ``p50`` and ``p99``
            (seconds, the latency callers saw, every outcome), and
            ``breaker_open_seconds`` (virtual seconds the breaker spent
            open or forced open).
        timeline: One dict per virtual second, keys as in `COLUMNS`:
            calls ``offered`` in that second; ``attempts`` and ``retries``
            that reached the upstream; calls that ended ``succeeded``,
            ``failed`` or ``rejected`` (and ``rejected_breaker``,
            ``_limiter``, ``_bulkhead``); ``p50`` / ``p99`` latency of the
            calls that ended (``None`` when none did); ``breaker_state`` at
            the end of the second and ``breaker_open``, the fraction of it
            spent open; ``limiter_permits`` (a token bucket's tokens for
            the key, at the end of the second) and the limiter's
            ``allowed`` / ``waited`` / ``rejected`` decisions; the
            upstream's scheduled ``failure_rate``.
        outages: ``(start, stop, fraction)``: when the upstream's schedule
            made requests fail.
        duration: The virtual seconds of traffic.
        label: A name for legends (the executor's name by default).

    .. versionadded:: 0.2.0
    """

    COLUMNS = COLUMNS

    def __init__(
        self,
        summary: dict[str, float],
        timeline: list[dict[str, Any]],
        outages: list[tuple[float, float, float]],
        duration: float,
        label: str,
    ) -> None:
        self.summary = summary
        self.timeline = timeline
        self.outages = outages
        self.duration = duration
        self.label = label

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<SimResult {self.label!r} offered={s['offered']:g} "
            f"amplification={s['amplification']:.3f} "
            f"success_ratio={s['success_ratio']:.3f}>"
        )

    def to_csv(self, path: str | Path) -> None:
        """Write `timeline` as CSV, one row per second, with a header."""
        with open(path, "w", newline="", encoding="utf-8") as f:  # noqa: PTH123
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in self.timeline:
                writer.writerow(
                    {k: "" if v is None else v for k, v in row.items()}
                )

    def plot(self, path: str | Path, *, title: str | None = None) -> None:
        """
        Draw the run as a PNG at ``path`` (needs the ``[sim]`` extra).

        Four panels against virtual time, the outages shaded: calls per
        second by outcome, upstream attempts and retries, the latency
        callers saw (p50, p99), and the breaker's state with the limiter's
        permits.
        """
        from ._plot import plot_run

        plot_run(self, path, title=title)


def run(
    executor: AsyncResilientExecutor,
    upstream: Upstream | None = None,
    *,
    rate: float | None = None,
    clients: int | None = None,
    duration: float,
    seed: int = 0,
    key: str = "default",
    label: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> SimResult:
    """
    Simulate ``executor`` against ``upstream`` in virtual time.

    The executor is yours, built as in production with the default clock:
    for the run it, its breaker, limiter, bulkhead and retry budget keep
    time on the simulator's virtual clock, from a fresh state, and its
    retry policy draws jitter from a generator seeded from ``seed``; all of
    it gets its own clock and state back afterwards. Its events go to its
    bus as usual (with virtual ``time`` stamps), so a recorder or exporter
    attached there sees the simulated run.

    Args:
        executor: The `stormwall.AsyncResilientExecutor` to simulate.
        upstream: What it calls (default: ``Upstream()``, 10 ms, no
            failures, no capacity limit).
        rate: Open loop: Poisson arrivals, this many calls per second on
            average, whatever happens to earlier calls.
        clients: Closed loop: this many callers, each calling again as soon
            as its call ends (after 1 ms if it took no time at all); at
            most 100,000.
        duration: Virtual seconds during which calls start; calls still in
            flight then are waited for (up to an hour). At most a week;
            with ``rate``, ``rate * duration`` is at most ten million
            calls.
        seed: Same seed, same executor settings, same result, bit for bit.
        key: The call key passed to ``executor.run``.
        label: The name in legends (default: the executor's name).
        progress: Called with the fraction of ``duration`` done, once per
            virtual second (for a progress bar).

    Exactly one of ``rate`` and ``clients`` is given.

    Returns:
        The `SimResult`.

    Raises:
        ConfigError: A parameter is outside its domain; ``executor`` was
            built with a clock other than the default (or is not an
            `AsyncResilientExecutor`).

    .. versionadded:: 0.2.0
    """
    if not isinstance(executor, AsyncResilientExecutor):
        raise ConfigError(
            "executor",
            "expected an AsyncResilientExecutor, got "
            f"{type(executor).__name__}",
        )
    if upstream is None:
        upstream = Upstream()
    elif not isinstance(upstream, Upstream):
        raise ConfigError(
            "upstream",
            "expected a stormwall.sim.Upstream, got "
            f"{type(upstream).__name__}",
        )
    if (rate is None) == (clients is None):
        raise ConfigError("rate", "give exactly one of rate= and clients=")
    if rate is not None:
        rate = _validate.positive("rate", rate)
        if math.isinf(rate):
            raise ConfigError("rate", "expected a finite rate")
    if clients is not None:
        clients = _validate.positive_int("clients", clients)
        if clients > MAX_CLIENTS:
            raise ConfigError(
                "clients",
                f"must be <= {MAX_CLIENTS:_} (each is a task), got "
                f"{_validate.shown(clients)}",
            )
    duration = _validate.positive("duration", duration, seconds=True)
    if duration > MAX_DURATION:  # infinity too
        raise ConfigError(
            "duration",
            f"must be <= {MAX_DURATION:g} s (a week: the timeline keeps a "
            f"row per second), got {duration:g}",
        )
    if rate is not None and rate * duration > MAX_CALLS:
        raise ConfigError(
            "rate",
            f"rate * duration must be <= {MAX_CALLS:_} calls (every "
            f"latency is kept), got {rate * duration:g}",
        )
    check_seed(seed)
    _validate.key(key)
    sim = _Simulation(executor, upstream, rate, clients, duration, seed, key)
    sim.progress = progress
    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        runner.run(sim.main())
    return sim.result(label or executor.name)


def check_seed(seed: object) -> int:
    """A seed: any int whose digits fit in a string (they seed by text)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(
            "seed", f"expected an int, got {type(seed).__name__}"
        )
    try:
        str(seed)
    except ValueError:  # past sys.get_int_max_str_digits()
        raise ConfigError("seed", "too many digits to seed by") from None
    return seed


class _Simulation:
    """One run: the traffic, the upstream, and the counters per second."""

    def __init__(
        self,
        executor: AsyncResilientExecutor,
        upstream: Upstream,
        rate: float | None,
        clients: int | None,
        duration: float,
        seed: int,
        key: str,
    ) -> None:
        self.executor = executor
        self.upstream = upstream
        self.rate = rate
        self.clients = clients
        self.duration = duration
        self.seed = seed
        self.key = key
        self.arrivals = random.Random(f"stormwall.sim:{seed}:arrivals")
        self.draws = random.Random(f"stormwall.sim:{seed}:upstream")
        n = math.ceil(duration) + 1
        self.offered = [0] * n
        self.attempts = [0] * n
        self.retries = [0] * n
        self.succeeded = [0] * n
        self.failed = [0] * n
        self.rejected = {
            kind: [0] * n
            for kind in ("breaker", "limiter", "bulkhead", "other")
        }
        self.latencies: list[list[float]] = [[] for _ in range(n)]
        self.samples: list[dict[str, Any]] = []
        self.transitions: list[tuple[float, str]] = []
        self.loop: VirtualEventLoop | None = None
        self.server: _Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.end = duration
        self.progress: Callable[[float], None] | None = None

    # -- per-second bins ------------------------------------------------------

    def _grow(self, i: int) -> None:
        extra = i + 1 - len(self.offered)
        for series in (
            self.offered,
            self.attempts,
            self.retries,
            self.succeeded,
            self.failed,
            *self.rejected.values(),
        ):
            series.extend([0] * extra)
        self.latencies.extend([] for _ in range(extra))

    # -- the run --------------------------------------------------------------

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)  # noqa: S101 - run() made it
        self.loop = loop
        if self.upstream.capacity is not None:
            self.server = _Server(loop, self.upstream.capacity)
        executor = self.executor
        breaker = executor.circuit_breaker
        subscriptions = []
        if breaker is not None:
            buses: list[EventBus] = list(executor._buses)
            own = breaker._bus_for(None)
            if own not in buses:
                buses.append(own)
            name = breaker.name

            def on_change(event: BreakerStateChanged) -> None:
                if event.breaker == name:
                    self.transitions.append((event.time, event.to_state))

            subscriptions = [
                bus.subscribe(on_change, BreakerStateChanged) for bus in buses
            ]
        try:
            with keeping_time([executor], loop.virtual_clock, self.seed):
                if breaker is not None:
                    self.transitions.append((0.0, breaker.state.value))
                sampler = loop.create_task(self._sample())
                try:
                    if self.rate is not None:
                        await self._open_loop(self.rate)
                    else:
                        assert self.clients is not None  # noqa: S101
                        await asyncio.gather(
                            *(self._client() for _ in range(self.clients))
                        )
                    await self._drain()
                finally:
                    sampler.cancel()
                    for task in list(self.tasks):
                        task.cancel()
                    await asyncio.gather(
                        sampler, *self.tasks, return_exceptions=True
                    )
                self.end = loop.time()
        finally:
            for subscription in subscriptions:
                subscription.close()

    async def _open_loop(self, rate: float) -> None:
        """Poisson arrivals: a timer callback per call starts its task."""
        loop = self.loop
        assert loop is not None  # noqa: S101
        gap = self.arrivals.expovariate
        duration = self.duration
        tasks = self.tasks
        discard = tasks.discard
        call = self._call
        done = loop.create_future()

        def arrive(t: float) -> None:
            task = loop.create_task(call())
            tasks.add(task)
            task.add_done_callback(discard)
            t += gap(rate)
            if t < duration:
                loop.call_at(t, arrive, t)
            elif not done.done():
                done.set_result(None)

        first = gap(rate)
        if first < duration:
            loop.call_at(first, arrive, first)
            await done

    async def _client(self) -> None:
        loop = self.loop
        assert loop is not None  # noqa: S101
        duration = self.duration
        call = self._call
        while (start := loop.time()) < duration:
            await call()
            if loop.time() == start:
                await asyncio.sleep(_MIN_GAP)

    async def _drain(self) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(
                list(self.tasks), timeout=_DRAIN + self.duration
            )
            for task in pending:
                task.cancel()

    async def _call(self) -> None:
        loop = self.loop
        assert loop is not None  # noqa: S101
        start = loop.time()
        i = int(start)
        if i >= len(self.offered):
            self._grow(i)
        self.offered[i] += 1
        tries = 0
        upstream = self.upstream
        draws = self.draws
        server = self.server

        async def attempt() -> object:
            nonlocal tries
            tries += 1
            now = loop.time()
            j = int(now)
            if j >= len(self.attempts):
                self._grow(j)
            self.attempts[j] += 1
            if tries > 1:
                self.retries[j] += 1
            failing = draws.random() < upstream.failure_at(now)
            latency = upstream.latency
            if callable(latency):
                latency = max(0.0, float(latency(draws)))
            if server is not None:
                await server.serve(latency)
            elif latency > 0:
                await asyncio.sleep(latency)
            if failing:
                raise UpstreamError
            return _SERVED

        outcome = "succeeded"
        try:
            value = await self.executor.run(self.key, attempt)
        except RejectedError as exc:
            outcome = "failed" if tries else _kind(exc)
        except Exception:  # noqa: BLE001 - any failure is an outcome here
            outcome = "failed"
        else:
            if value is not _SERVED:
                outcome = "failed"  # a fallback's value
        end = loop.time()
        k = int(end)
        if k >= len(self.offered):
            self._grow(k)
        if outcome == "succeeded":
            self.succeeded[k] += 1
        elif outcome == "failed":
            self.failed[k] += 1
        else:
            self.rejected[outcome][k] += 1
        self.latencies[k].append(end - start)

    async def _sample(self) -> None:
        """Every virtual second: the breaker's state, the limiter's counts."""
        executor = self.executor
        breaker, limiter = executor.circuit_breaker, executor.limiter
        tokens = getattr(limiter, "tokens", None)
        second = 0
        while True:
            second += 1
            await asyncio.sleep(second - self.loop.time())  # type: ignore[union-attr]
            sample: dict[str, Any] = {"second": second - 1}
            if breaker is not None:
                sample["breaker_state"] = breaker.state.value
            if limiter is not None:
                stats = limiter.statistics()
                sample["limiter_allowed"] = stats.allowed
                sample["limiter_waited"] = stats.waited
                sample["limiter_rejected"] = stats.rejected
                if tokens is not None:
                    sample["limiter_permits"] = tokens(self.key)
            self.samples.append(sample)
            if self.progress is not None:
                self.progress(min(1.0, second / self.duration))

    # -- the result -----------------------------------------------------------

    def result(self, label: str) -> SimResult:
        end = self.end
        rows = []
        previous = {
            "limiter_allowed": 0,
            "limiter_waited": 0,
            "limiter_rejected": 0,
        }
        samples = {s["second"]: s for s in self.samples}
        open_per_second = self._open_time(end)
        state = self.transitions[0][1] if self.transitions else None
        all_latencies: list[float] = []
        for i in range(len(self.offered)):
            if i >= end and not self.latencies[i] and not self.attempts[i]:
                break
            lat = sorted(self.latencies[i])
            all_latencies.extend(lat)
            sample = samples.get(i, {})
            state = sample.get("breaker_state", state)
            row: dict[str, Any] = {
                "second": i,
                "offered": self.offered[i],
                "attempts": self.attempts[i],
                "retries": self.retries[i],
                "succeeded": self.succeeded[i],
                "failed": self.failed[i],
                "rejected": sum(r[i] for r in self.rejected.values()),
                "rejected_breaker": self.rejected["breaker"][i],
                "rejected_limiter": self.rejected["limiter"][i],
                "rejected_bulkhead": self.rejected["bulkhead"][i],
                "p50": _quantile(lat, 0.5),
                "p99": _quantile(lat, 0.99),
                "breaker_state": state,
                "breaker_open": open_per_second.get(i, 0.0)
                if state is not None
                else None,
                "limiter_permits": sample.get("limiter_permits"),
                "limiter_allowed": None,
                "limiter_waited": None,
                "limiter_rejected": None,
                "failure_rate": self.upstream.failure_at(i),
            }
            for name, before in previous.items():
                if name in sample:
                    row[name] = sample[name] - before
                    previous[name] = sample[name]
            rows.append(row)
        offered = sum(self.offered)
        attempts = sum(self.attempts)
        succeeded = sum(self.succeeded)
        all_latencies.sort()
        summary = {
            "offered": offered,
            "attempts": attempts,
            "amplification": attempts / offered if offered else 0.0,
            "succeeded": succeeded,
            "failed": sum(self.failed),
            "rejected": sum(sum(r) for r in self.rejected.values()),
            "success_ratio": succeeded / offered if offered else 0.0,
            "p50": _quantile(all_latencies, 0.5) or 0.0,
            "p99": _quantile(all_latencies, 0.99) or 0.0,
            "breaker_open_seconds": sum(open_per_second.values()),
        }
        return SimResult(
            summary,
            rows,
            self.upstream.outages(self.duration),
            self.duration,
            label,
        )

    def _open_time(self, end: float) -> dict[int, float]:
        """Seconds spent open (or forced open), per virtual second."""
        per_second: dict[int, float] = {}
        spans = []
        opened: float | None = None
        for t, state in self.transitions:
            is_open = state in {"open", "forced_open"}
            if is_open and opened is None:
                opened = t
            elif not is_open and opened is not None:
                spans.append((opened, t))
                opened = None
        if opened is not None:
            spans.append((opened, end))
        for start, stop in spans:
            at = start
            while at < stop:
                i = int(at)
                step = min(stop, i + 1.0) - at
                per_second[i] = per_second.get(i, 0.0) + step
                at += step
        return per_second


def _kind(exc: RejectedError) -> str:
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return "other"


def _quantile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank quantile of a sorted list; ``None`` when empty."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
