"""
The simulator: `stormwall.sim.run` against a synthetic `Upstream`, the
retry storm, the AWS back-off study (`occ_contention`), determinism, and
that no real time passes.
"""

from __future__ import annotations

import asyncio
import csv
import time

import pytest

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    ConfigError,
    RetryPolicy,
    TokenBucket,
    sim,
)
from stormwall.sim._loop import _JumpingSelector
from stormwall.sim._scenarios import (
    STORM_DURATION,
    STORM_MAX_ATTEMPTS,
    STORM_OUTAGE,
    STORM_RATE,
    outage_amplification,
    retry_storm_executors,
    storm_upstream,
)


def storm(label, seed=0):
    executor = retry_storm_executors()[label]
    return sim.run(
        executor,
        storm_upstream(),
        rate=STORM_RATE,
        duration=STORM_DURATION,
        seed=seed,
        label=label,
    )


class TestRetryStorm:
    def test_no_cure_multiplies_load_by_the_attempts(self):
        """Without a cure, every call makes max_attempts during the outage."""
        result = storm("no cure (4 attempts)")

        assert outage_amplification(result) > 0.9 * STORM_MAX_ATTEMPTS

    def test_a_ten_percent_budget_caps_the_amplification(self):
        """A 10 % retry budget keeps amplification under 1.25."""
        result = storm("10% retry budget")

        assert outage_amplification(result) < 1.25
        assert result.summary["amplification"] < 1.25

    def test_a_breaker_sheds_the_load_and_stays_open(self):
        """A breaker: amplification under 1.3, open most of the outage."""
        result = storm("circuit breaker")
        start, stop = STORM_OUTAGE

        assert outage_amplification(result) < 1.3
        assert result.summary["breaker_open_seconds"] > 0.8 * (stop - start)
        during = [
            r for r in result.timeline if start + 1 <= r["second"] < stop
        ]
        assert all(r["breaker_state"] != "closed" for r in during)
        assert result.summary["rejected"] > 0

    def test_same_seed_same_summary_bit_for_bit(self):
        """Two runs with one seed agree exactly; another seed differs."""
        a = storm("budget + breaker", seed=7)
        b = storm("budget + breaker", seed=7)
        c = storm("budget + breaker", seed=8)

        assert a.summary == b.summary
        assert a.timeline == b.timeline
        assert a.summary != c.summary


class TestRun:
    def test_no_real_sleep(self, monkeypatch):
        """A minute of traffic never waits on the OS and takes no time."""
        waits = []
        real_select = _JumpingSelector.select

        def select(self, timeout=None):
            waits.append(timeout)
            return real_select(self, timeout)

        monkeypatch.setattr(_JumpingSelector, "select", select)
        executor = AsyncResilientExecutor(
            "api", retry_policy=RetryPolicy(base_delay=1.0)
        )
        upstream = sim.Upstream(latency=0.5, failure_rate=0.3)

        started = time.perf_counter()
        result = sim.run(executor, upstream, rate=10, duration=60)

        assert time.perf_counter() - started < 2.0
        assert None not in waits
        assert result.summary["offered"] > 500
        assert result.summary["attempts"] > result.summary["offered"]

    def test_the_executor_is_unchanged_afterwards(self):
        """The executor keeps its own clock and breaker state after a run."""
        breaker = CircuitBreaker(failure_threshold=1)
        executor = AsyncResilientExecutor("api", circuit_breaker=breaker)
        before = executor.clock

        sim.run(executor, sim.Upstream(failure_rate=1.0), rate=5, duration=5)

        assert before is executor.clock is breaker.clock
        assert "closed" == breaker.state.value

    def test_capacity_stretches_latency(self):
        """Past its capacity the upstream shares itself: latency grows."""

        def p50(capacity):
            executor = AsyncResilientExecutor("api")
            upstream = sim.Upstream(latency=0.1, capacity=capacity)
            return sim.run(executor, upstream, clients=20, duration=10)

        free, tight = p50(None), p50(5)

        assert 0.1 == pytest.approx(free.summary["p50"])
        # 20 clients share 5 slots: each request takes 4x as long.
        assert 0.4 == pytest.approx(tight.summary["p50"])
        assert free.summary["offered"] == pytest.approx(
            4 * tight.summary["offered"], rel=0.05
        )

    def test_processor_sharing_is_exact(self):
        """Two 1 s requests on a capacity of 1 both finish at 2 s."""
        ended = []

        async def main():
            loop = asyncio.get_running_loop()
            server = sim._upstream._Server(loop, 1)

            async def request():
                await server.serve(1.0)
                ended.append(loop.time())

            await asyncio.gather(request(), request())

        sim.run_virtual(main)

        assert [2.0, 2.0] == pytest.approx(ended)

    def test_closed_loop_rejections_do_not_freeze_time(self):
        """Instant rejections in a closed loop still let time pass."""
        executor = AsyncResilientExecutor(
            "api",
            limiter=TokenBucket(1, 1),
            limiter_timeout=0,
        )

        result = sim.run(executor, sim.Upstream(), clients=2, duration=3)

        assert result.summary["rejected"] > 0
        assert result.timeline[0]["rejected_limiter"] > 0
        assert result.timeline[0]["limiter_permits"] is not None

    def test_timeline_and_csv(self, tmp_path):
        """The timeline has one row per second, written as CSV."""
        executor = AsyncResilientExecutor("api")
        result = sim.run(
            executor,
            sim.Upstream(latency=lambda rng: rng.uniform(0.01, 0.02)),
            rate=50,
            duration=5,
        )
        path = tmp_path / "timeline.csv"

        result.to_csv(path)

        with path.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert list(sim.SimResult.COLUMNS) == list(rows[0])
        assert len(result.timeline) == len(rows)
        assert 5 <= len(rows) <= 6
        assert result.summary["offered"] == sum(
            int(r["offered"]) for r in rows
        )

    def test_failure_schedule(self):
        """A schedule applies the latest entry at or before a time."""
        upstream = sim.Upstream(failure_rate=[(10, 1.0), (20, 0.25)])

        assert [0.0, 1.0, 1.0, 0.25] == [
            upstream.failure_at(t) for t in (9.9, 10, 19.9, 500)
        ]
        assert [(10, 20, 1.0), (20, 30, 0.25)] == upstream.outages(30)

    @pytest.mark.parametrize(
        ("kwargs", "parameter"),
        [
            ({"latency": -1}, "latency"),
            ({"failure_rate": 1.5}, "failure_rate"),
            ({"failure_rate": [(5, 0.5), (1, 0.1)]}, "failure_rate"),
            ({"failure_rate": []}, "failure_rate"),
            ({"failure_rate": "high"}, "failure_rate"),
            ({"capacity": 0}, "capacity"),
        ],
    )
    def test_upstream_validation(self, kwargs, parameter):
        """A bad Upstream parameter is a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            sim.Upstream(**kwargs)

        assert parameter == info.value.parameter

    @pytest.mark.parametrize(
        ("kwargs", "parameter"),
        [
            ({"duration": 1}, "rate"),
            ({"rate": 1, "clients": 1, "duration": 1}, "rate"),
            ({"rate": 0, "duration": 1}, "rate"),
            ({"clients": 0, "duration": 1}, "clients"),
            ({"rate": 1, "duration": 0}, "duration"),
            ({"rate": 1, "duration": 1, "seed": 1.5}, "seed"),
        ],
    )
    def test_run_validation(self, kwargs, parameter):
        """A bad run() parameter is a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            sim.run(AsyncResilientExecutor("api"), **kwargs)

        assert parameter == info.value.parameter


@pytest.fixture(scope="module")
def table():
    """The study at 50 clients, 10 runs per strategy (about 2 s)."""
    return {
        s: sim.occ_contention(50, s, runs=10, seed=3) for s in sim.STRATEGIES
    }


class TestOccContention:
    """The AWS "Exponential Backoff and Jitter" study, at 50 clients."""

    def test_no_backoff_costs_far_more_calls_than_full_jitter(self, table):
        """Retrying at once costs at least 1.5x the calls of full jitter."""
        assert table["none"].calls > 1.5 * table["full"].calls

    def test_exponential_without_jitter_takes_by_far_the_longest(self, table):
        """Lock-step back-off: at least 3x slower than any other."""
        others = [r.duration for s, r in table.items() if s != "exponential"]

        assert table["exponential"].duration > 3 * max(others)

    def test_equal_jitter_is_slower_than_full(self, table):
        """Equal jitter keeps half the back-off: it finishes later."""
        assert table["equal"].duration > table["full"].duration

    def test_full_and_decorrelated_are_best(self, table):
        """
        Full and decorrelated jitter do the least work of all five, and
        finish first of the four that back off.
        """
        best = {"full", "decorrelated"}
        by_calls = sorted(table, key=lambda s: table[s].calls)
        backing_off = [s for s in table if s != "none"]
        by_time = sorted(backing_off, key=lambda s: table[s].duration)

        assert best == set(by_calls[:2])
        assert best == set(by_time[:2])

    def test_deterministic(self):
        """Same seed, same means."""
        a = sim.occ_contention(5, "full", runs=3, seed=1)
        b = sim.occ_contention(5, "full", runs=3, seed=1)

        assert a == b

    def test_validation(self):
        """An unknown strategy is a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            sim.occ_contention(5, "linear")

        assert "strategy" == info.value.parameter
