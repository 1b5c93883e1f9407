"""
Tests of the Redis breaker store against a real redis-server.

Each test gets its own server (the ``redis_server`` fixture); breakers are
driven through the methods the executors call (``_admit``, ``_on_success``,
``_on_failure``, ``_release`` and their ``_async`` twins). Time is real
here (Redis TIME decides), so recovery timeouts are short.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest


pytest.importorskip("redis")

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import _redis_breaker_worker as worker
from stormwall import (
    BackendUnavailableError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConfigError,
    EventBus,
)
from stormwall.backends.redis import RedisBreakerStore
from stormwall.events import (
    BackendError,
    BreakerRejected,
    BreakerStateChanged,
)


pytestmark = pytest.mark.integration

BOOM = RuntimeError("boom")


def _client(server, **kwargs):
    """A client that gives up fast while the server is down."""
    return redis.Redis(
        port=server.port,
        retry=Retry(NoBackoff(), 1),
        socket_timeout=2,
        socket_connect_timeout=2,
        **kwargs,
    )


@pytest.fixture
def client(redis_server):
    with _client(redis_server) as c:
        yield c


@pytest.fixture
def admin(redis_server):
    """A second connection, to look at the server without the breaker."""
    with redis.Redis(port=redis_server.port) as c:
        yield c


@pytest.fixture
def bus():
    return EventBus()


@pytest.fixture
def events(bus):
    received = []
    bus.subscribe(received.append)
    return received


@pytest.fixture
def make(client, bus):
    def make(name="b", store=None, **config):
        store = store or RedisBreakerStore(client)
        return CircuitBreaker(name, store=store, bus=bus, **config)

    return make


def succeed(breaker, duration=0.0):
    breaker._on_success(breaker._admit(None), duration, None)


def fail(breaker, error=BOOM, duration=0.0):
    breaker._on_failure(breaker._admit(None), error, duration, None)


def changes(events):
    return [
        (e.from_state, e.to_state, e.reason)
        for e in events
        if isinstance(e, BreakerStateChanged)
    ]


def of_type(events, kind):
    return [e for e in events if isinstance(e, kind)]


class CountingConnection(redis.connection.Connection):
    """A connection that counts the commands it sends: the round trips."""

    sent = 0

    def send_command(self, *args, **kwargs):
        CountingConnection.sent += 1
        return super().send_command(*args, **kwargs)


@pytest.fixture
def counted(redis_server, bus):
    """A breaker maker whose client counts its round trips."""
    pool = redis.ConnectionPool(
        connection_class=CountingConnection, port=redis_server.port
    )
    with redis.Redis(connection_pool=pool) as client:

        def make(**config):
            store = RedisBreakerStore(client)
            return CircuitBreaker("b", store=store, bus=bus, **config)

        yield make


def round_trips(fn, *args):
    """Run ``fn`` and return the round trips it cost."""
    before = CountingConnection.sent
    fn(*args)
    return CountingConnection.sent - before


class TestRules:
    """The local breaker's scenarios, through the Redis store."""

    def test_consecutive_failures_trip(self, make, events):
        """failure_threshold failures in a row open it; then it rejects."""
        breaker = make(failure_threshold=3, recovery_timeout=30.0)
        fail(breaker)
        fail(breaker)
        succeed(breaker)  # resets the count
        for _ in range(3):
            fail(breaker)

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert [("closed", "open", "failure_threshold")] == changes(events)
        assert CircuitState.OPEN == breaker.state
        assert "open" == info.value.state
        assert 29.0 < info.value.retry_after <= 30.0
        assert ["open"] == [e.state for e in of_type(events, BreakerRejected)]

    def test_count_window_rate_trip(self, make, events):
        """A failure rate over the count window trips from minimum_calls."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=10,
            minimum_calls=4,
        )
        for _ in range(3):
            fail(breaker)

        assert CircuitState.CLOSED == breaker.state

        succeed(breaker)

        assert [("closed", "open", "failure_rate")] == changes(events)
        stats = breaker.statistics()
        assert (4, 3, 0.75) == (
            stats.calls_in_window,
            stats.failures_in_window,
            stats.failure_rate,
        )

    def test_count_window_is_a_ring(self, make):
        """Only the last window_size calls count."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.9,
            window_size=4,
            minimum_calls=4,
        )
        for _ in range(3):
            fail(breaker)
        for _ in range(5):
            succeed(breaker)

        stats = breaker.statistics()

        assert (4, 0, CircuitState.CLOSED) == (
            stats.calls_in_window,
            stats.failures_in_window,
            stats.state,
        )

    def test_time_window_rate_trip(self, make, events):
        """A time window counts calls and trips on its failure rate."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_duration=60.0,
            minimum_calls=4,
        )
        for _ in range(3):
            succeed(breaker)
        fail(breaker)

        assert 4 == breaker.statistics().calls_in_window

        fail(breaker)
        fail(breaker)

        assert [("closed", "open", "failure_rate")] == changes(events)

    def test_slow_call_rate_trip(self, make, events):
        """Slow successes trip the slow-call rule."""
        breaker = make(
            failure_threshold=None,
            slow_call_duration=0.1,
            slow_call_rate_threshold=0.5,
            minimum_calls=2,
        )
        succeed(breaker, duration=0.05)
        succeed(breaker, duration=0.1)

        assert [("closed", "open", "slow_call_rate")] == changes(events)

    def test_recovery_then_probe_success_closes(self, make, events):
        """After recovery_timeout it is half-open; success_threshold closes."""
        breaker = make(
            failure_threshold=1, recovery_timeout=0.2, success_threshold=2
        )
        fail(breaker)
        time.sleep(0.25)

        assert CircuitState.HALF_OPEN == breaker.state

        succeed(breaker)

        assert CircuitState.HALF_OPEN == breaker.state

        succeed(breaker)

        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
            ("half_open", "closed", "probe_succeeded"),
        ] == changes(events)
        assert CircuitState.CLOSED == breaker.state

    def test_half_open_limits_probes(self, make, events):
        """half_open_max_calls probes run; the next is rejected, no ETA."""
        breaker = make(failure_threshold=1, recovery_timeout=0.2)
        fail(breaker)
        time.sleep(0.25)
        permit = breaker._admit(None)

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert ("half_open", None) == (
            info.value.state,
            info.value.retry_after,
        )

        breaker._release(permit)  # a cancelled probe frees its slot
        breaker._on_success(breaker._admit(None), 0.0, None)

        assert CircuitState.CLOSED == breaker.state

    def test_probe_failure_reopens_with_growth(self, make, events):
        """A failed probe re-opens for twice as long, up to the cap."""
        breaker = make(
            failure_threshold=1,
            recovery_timeout=0.2,
            max_recovery_timeout=1.0,
        )
        fail(breaker)
        time.sleep(0.25)
        fail(breaker)

        retry_after = breaker.retry_after

        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
            ("half_open", "open", "probe_failed"),
        ] == changes(events)
        assert 0.3 < retry_after <= 0.4

    def test_operator_actions(self, make, events, admin):
        """force_open, disable and reset work on the shared state."""
        breaker = make(failure_threshold=1)
        breaker.force_open()
        breaker.force_open()  # no-op

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert ("forced_open", None) == (
            info.value.state,
            info.value.retry_after,
        )
        assert -1 == admin.ttl("{stormwall:breaker:b}")  # never expires

        breaker.disable()
        fail(breaker)  # recorded nowhere

        assert CircuitState.DISABLED == breaker.state

        breaker.reset()

        assert [
            ("closed", "forced_open", "forced_open"),
            ("forced_open", "disabled", "disabled"),
            ("disabled", "closed", "reset"),
        ] == changes(events)
        assert CircuitState.CLOSED == breaker.state
        assert 0 < admin.ttl("{stormwall:breaker:b}")

    def test_sequences_are_the_shared_generation(self, make, events, admin):
        """Each transition's sequence is Redis's generation, increasing."""
        breaker = make(failure_threshold=1, recovery_timeout=0.2)
        fail(breaker)
        time.sleep(0.25)
        succeed(breaker)

        sequences = [e.sequence for e in of_type(events, BreakerStateChanged)]

        assert sorted(set(sequences)) == sequences
        assert 3 == len(sequences)
        assert sequences[-1] == int(admin.hget("{stormwall:breaker:b}", "gen"))

    def test_outcome_of_a_stale_permit_is_dropped(self, make):
        """A call admitted before a reset cannot count after it."""
        breaker = make(failure_threshold=1)
        permit = breaker._admit(None)
        breaker.reset()
        breaker._on_failure(permit, BOOM, 0.0, None)

        assert CircuitState.CLOSED == breaker.state

    def test_classification(self, make):
        """Ignored errors free the permit; unrecorded ones are successes."""
        breaker = make(
            failure_threshold=2,
            record_on=(ValueError,),
            ignore_on=(KeyError,),
        )
        fail(breaker, ValueError())
        fail(breaker, KeyError())  # ignored: the count stays
        fail(breaker, TypeError())  # a success: the count resets

        assert 0 == breaker.statistics().consecutive_failures

        fail(breaker, ValueError())
        fail(breaker, ValueError())

        assert CircuitState.OPEN == breaker.state

    def test_names_share_nothing(self, client, make, admin):
        """Two names on one store are two breakers, each in its hash tag."""
        store = RedisBreakerStore(client, prefix="svc")
        first = make("first", store=store, failure_threshold=1)
        second = make("second", store=store, failure_threshold=1)
        fail(first)

        assert (CircuitState.OPEN, CircuitState.CLOSED) == (
            first.state,
            second.state,
        )
        assert {b"{svc:breaker:first}"} == set(admin.keys("*first*"))
        assert 0 < admin.pttl("{svc:breaker:first}") <= 86_400_000

    def test_statistics(self, make):
        """statistics() reports the shared record in server time."""
        breaker = make(failure_threshold=2, recovery_timeout=5.0)
        fail(breaker)
        fail(breaker)
        with pytest.raises(CircuitOpenError):
            breaker._admit(None)

        stats = breaker.statistics()

        assert (CircuitState.OPEN, 2, 1, 5.0) == (
            stats.state,
            stats.consecutive_failures,
            stats.rejected,
            stats.open_period,
        )
        assert abs(stats.opened_at - time.time()) < 60
        assert stats.open_until == stats.opened_at + 5.0


class TestSharing:
    """What one process sees of another's breaker."""

    def test_staleness_bound(self, redis_server, bus):
        """A trip elsewhere rejects here within sync_interval."""
        with _client(redis_server) as a_client, _client(redis_server) as b_c:
            a = CircuitBreaker(
                "b",
                store=RedisBreakerStore(a_client),
                failure_threshold=1,
                bus=bus,
            )
            b = CircuitBreaker(
                "b",
                store=RedisBreakerStore(b_c, sync_interval=0.2),
                failure_threshold=1,
                bus=bus,
            )
            succeed(b)  # b's view: closed, fresh
            fail(a)
            stale = b._admit(None)  # within sync_interval: still admitted
            b._on_failure(stale, BOOM, 0.0, None)  # stale permit: dropped
            time.sleep(0.2)

            with pytest.raises(CircuitOpenError):
                b._admit(None)

            assert 1 == a.statistics().consecutive_failures

    def test_open_in_one_process_rejects_in_another(self, redis_server, make):
        """A breaker tripped by another process rejects calls here."""
        breaker = make("shared", failure_threshold=1, recovery_timeout=30.0)
        succeed(breaker)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=worker.trip, args=(redis_server.port, "shared", queue)
        )
        child.start()
        state = queue.get(timeout=30)
        child.join(30)
        time.sleep(0.1)  # the default sync_interval, at most

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert ("open", 0) == (state, child.exitcode)
        assert "open" == info.value.state

    @pytest.mark.slow
    def test_probes_are_limited_across_processes(self, redis_server, make):
        """Of 4 processes probing at once, half_open_max_calls=2 run."""
        breaker = make(
            "probed",
            failure_threshold=1,
            recovery_timeout=0.2,
            half_open_max_calls=2,
            success_threshold=5,
        )
        fail(breaker)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        barrier = ctx.Barrier(4)
        children = [
            ctx.Process(
                target=worker.probe,
                args=(redis_server.port, "probed", barrier, queue, 1.0),
            )
            for _ in range(4)
        ]
        for child in children:
            child.start()
        results = sorted(queue.get(timeout=60) for _ in children)
        for child in children:
            child.join(30)

        assert [
            ("ran", "half_open"),
            ("ran", "half_open"),
            ("rejected", "half_open"),
            ("rejected", "half_open"),
        ] == results
        assert [0, 0, 0, 0] == [child.exitcode for child in children]

    def test_transition_reported_once(self, redis_server):
        """A lazy move seen by two processes is reported by one of them."""
        received = []
        with _client(redis_server) as one, _client(redis_server) as two:
            breakers = []
            for client in (one, two):
                bus = EventBus()  # one bus per "process"
                bus.subscribe(received.append, BreakerStateChanged)
                breakers.append(
                    CircuitBreaker(
                        "b",
                        store=RedisBreakerStore(client),
                        failure_threshold=1,
                        recovery_timeout=0.2,
                        bus=bus,
                    )
                )
            fail(breakers[0])
            time.sleep(0.25)
            states = [breaker.state for breaker in breakers]

        assert [CircuitState.HALF_OPEN] * 2 == states
        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
        ] == changes(received)

    def test_lost_probe_slot_comes_back(self, client, make):
        """A probe slot nobody reports on is free after probe_timeout."""
        store = RedisBreakerStore(client, probe_timeout=0.2)
        breaker = make(store=store, failure_threshold=1, recovery_timeout=0.1)
        fail(breaker)
        time.sleep(0.15)
        breaker._admit(None)  # its process "dies": no outcome ever comes
        with pytest.raises(CircuitOpenError):
            breaker._admit(None)
        time.sleep(0.2)
        succeed(breaker)

        assert CircuitState.CLOSED == breaker.state

    def test_decoded_responses(self, redis_server, bus):
        """A client with decode_responses=True works the same."""
        with _client(redis_server, decode_responses=True) as client:
            breaker = CircuitBreaker(
                "b",
                store=RedisBreakerStore(client),
                failure_threshold=1,
                bus=bus,
            )
            fail(breaker)

            assert CircuitState.OPEN == breaker.state


class TestRoundTrips:
    """How many commands each decision costs."""

    def test_closed_success_is_one_round_trip(self, counted):
        """A closed success costs at most one round trip, amortised."""
        breaker = counted(failure_rate_threshold=0.5)
        succeed(breaker)  # connects, loads the script, fetches the view

        def calls():
            for _ in range(200):
                succeed(breaker)

        started = time.monotonic()
        spent = round_trips(calls)
        elapsed = time.monotonic() - started

        # One EVALSHA per success; an admission fetch only when a whole
        # sync_interval (0.1 s) passed without a reply.
        assert spent <= 200 + elapsed / 0.1
        assert 200 == spent  # the loop takes far less than 0.1 s here

    def test_idle_process_fetches_once_per_interval(self, counted):
        """After sync_interval without a reply, admission asks Redis."""
        breaker = counted(failure_threshold=1)
        succeed(breaker)
        time.sleep(0.1)

        assert 1 == round_trips(breaker._admit, None)

    def test_open_and_half_open_decisions(self, counted):
        """While open, each admission is one round trip; so is a probe."""
        breaker = counted(failure_threshold=1, recovery_timeout=0.2)
        fail(breaker)

        def rejected():
            for _ in range(10):
                with pytest.raises(CircuitOpenError):
                    breaker._admit(None)

        open_cost = round_trips(rejected)
        time.sleep(0.25)
        permit = None

        def admit():
            nonlocal permit
            permit = breaker._admit(None)

        probe_admit = round_trips(admit)
        probe_outcome = round_trips(breaker._on_success, permit, 0.0, None)

        assert (10, 1, 1) == (open_cost, probe_admit, probe_outcome)


class TestAsync:
    """The same store with a redis.asyncio client."""

    @pytest.mark.asyncio
    async def test_async_path(self, redis_server, bus, events):
        """The _async methods decide through the asyncio client."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            breaker = CircuitBreaker(
                "a",
                store=RedisBreakerStore(client),
                failure_threshold=2,
                recovery_timeout=0.2,
                bus=bus,
            )
            assert breaker._async_store
            for _ in range(2):
                permit = await breaker._admit_async(None)
                await breaker._on_failure_async(permit, BOOM, 0.0, None)
            with pytest.raises(CircuitOpenError):
                await breaker._admit_async(None)
            await asyncio.sleep(0.25)
            permit = await breaker._admit_async(None)
            await breaker._on_success_async(permit, 0.0, None)
            stats = await breaker.statistics_async()
            await breaker.force_open_async()
            rejecting = breaker._rejecting()
            await breaker.reset_async()
            permit = await breaker._admit_async(None)
            await breaker._release_async(permit)
        finally:
            await client.aclose()

        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
            ("half_open", "closed", "probe_succeeded"),
            ("closed", "forced_open", "forced_open"),
            ("forced_open", "closed", "reset"),
        ] == changes(events)
        assert (CircuitState.CLOSED, True) == (stats.state, rejecting)
        assert CircuitState.CLOSED == breaker.state  # the cached view

    @pytest.mark.asyncio
    async def test_sync_api_refuses_async_store(self, redis_server):
        """Blocking methods of an asyncio-backed breaker raise TypeError."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            breaker = CircuitBreaker("a", store=RedisBreakerStore(client))
            for call in (
                breaker.force_open,
                breaker.reset,
                breaker.disable,
                breaker.statistics,
                lambda: breaker.retry_after,
                lambda: breaker._admit(None),
            ):
                with pytest.raises(TypeError, match="_async"):
                    call()
        finally:
            await client.aclose()

    @pytest.mark.asyncio
    async def test_async_outage_fails_open(self, redis_server, bus, events):
        """An asyncio client's outage follows the policy too."""
        client = redis.asyncio.Redis(
            port=redis_server.port, retry=AsyncRetry(NoBackoff(), 1)
        )
        try:
            breaker = CircuitBreaker(
                "a", store=RedisBreakerStore(client), bus=bus
            )
            permit = await breaker._admit_async(None)
            redis_server.stop()
            await breaker._on_success_async(permit, 0.0, None)
            permit = await breaker._admit_async(None)
            await breaker._on_success_async(permit, 0.0, None)
            redis_server.start()
            permit = await breaker._admit_async(None)
            await breaker._on_success_async(permit, 0.0, None)
        finally:
            await client.aclose()

        assert [("success", "fail_open"), ("admit", "fail_open")] == [
            (e.operation, e.policy) for e in of_type(events, BackendError)
        ]


class TestOutage:
    """Redis killed mid-run, then restarted."""

    def _run(self, breaker, results, outcome="ok"):
        """One call: its result, or the documented error it raised."""
        try:
            permit = breaker._admit(None)
        except (CircuitOpenError, BackendUnavailableError) as exc:
            results.append(type(exc).__name__)
            return
        if outcome == "ok":
            breaker._on_success(permit, 0.0, None)
        else:
            breaker._on_failure(permit, BOOM, 0.0, None)
        results.append("ran")

    def test_fail_open_decides_locally(self, redis_server, make, events):
        """fail_open: a local breaker decides; Redis resumes on restart."""
        breaker = make(failure_threshold=2, recovery_timeout=30.0)
        results = []
        permit = breaker._admit(None)  # admitted from Redis
        redis_server.stop()
        breaker._on_success(permit, 0.0, None)  # lost, reported, no raise
        for outcome in ("ok", "fail", "fail", "ok"):
            self._run(breaker, results, outcome)
        local = changes(events)
        redis_server.start()
        for _ in range(2):
            self._run(breaker, results)

        assert ["ran", "ran", "ran", "CircuitOpenError", "ran", "ran"] == (
            results
        )
        assert [("closed", "open", "failure_threshold")] == local
        assert 0 == of_type(events, BreakerStateChanged)[0].sequence
        errors = of_type(events, BackendError)
        assert ["success"] + ["admit"] * 4 == [e.operation for e in errors]
        assert {("redis", "fail_open", "b")} == {
            (e.backend, e.policy, e.component) for e in errors
        }
        assert all(
            isinstance(e.error, redis.exceptions.ConnectionError)
            for e in errors
        )
        assert CircuitState.CLOSED == breaker.state  # Redis's, fresh

    def test_fail_closed_rejects(self, client, redis_server, make, events):
        """fail_closed: calls are rejected while Redis is down."""
        store = RedisBreakerStore(client, on_backend_error="fail_closed")
        breaker = make(store=store)
        results = []
        self._run(breaker, results)
        redis_server.stop()
        for _ in range(3):
            self._run(breaker, results)
        redis_server.start()
        self._run(breaker, results)

        # The first call after the kill was admitted from the view (less
        # than sync_interval old); its outcome could not be recorded.
        rejected = "CircuitOpenError"
        assert ["ran", "ran", rejected, rejected, "ran"] == results
        assert 2 == len(of_type(events, BreakerRejected))
        assert [
            ("success", "fail_closed"),
            ("admit", "fail_closed"),
            ("admit", "fail_closed"),
        ] == [(e.operation, e.policy) for e in of_type(events, BackendError)]

    def test_raise_policy(self, client, redis_server, make, events):
        """raise: admission raises BackendUnavailableError, chained."""
        store = RedisBreakerStore(client, on_backend_error="raise")
        breaker = make(store=store)
        permit = breaker._admit(None)
        redis_server.stop()
        breaker._on_success(permit, 0.0, None)  # recording never raises

        with pytest.raises(BackendUnavailableError) as info:
            breaker._admit(None)

        assert isinstance(info.value.__cause__, redis.exceptions.RedisError)
        assert ["success", "admit"] == [
            e.operation for e in of_type(events, BackendError)
        ]

    def test_operator_actions_raise_while_down(self, redis_server, make):
        """force_open/reset must not be dropped silently: they raise."""
        breaker = make()
        redis_server.stop()

        with pytest.raises(BackendUnavailableError):
            breaker.force_open()
        with pytest.raises(BackendUnavailableError):
            breaker.reset()

    def test_introspection_while_down(self, redis_server, make, events):
        """state and statistics answer from the local view meanwhile."""
        breaker = make()
        redis_server.stop()

        assert CircuitState.CLOSED == breaker.state
        assert 0 == breaker.statistics().calls_in_window
        assert ["poll", "poll"] == [
            e.operation for e in of_type(events, BackendError)
        ]

    def test_restart_reloads_the_script(self, redis_server, make, admin):
        """An emptied server gets the script again; state starts closed."""
        breaker = make(failure_threshold=1, recovery_timeout=30.0)
        fail(breaker)
        redis_server.stop()
        redis_server.start()
        succeed(breaker)  # may fail over once while reconnecting
        succeed(breaker)

        assert CircuitState.CLOSED == breaker.state
        assert 1 <= admin.info("commandstats")["cmdstat_script|load"]["calls"]


class TestConfig:
    """Bad input is refused with the parameter's name."""

    @pytest.mark.parametrize(
        ("kwargs", "parameter"),
        [
            pytest.param({"prefix": ""}, "prefix", id="prefix-empty"),
            pytest.param({"prefix": "a b"}, "prefix", id="prefix-space"),
            pytest.param({"prefix": "{x}"}, "prefix", id="prefix-brace"),
            pytest.param({"prefix": 5}, "prefix", id="prefix-int"),
            pytest.param(
                {"on_backend_error": "ignore"},
                "on_backend_error",
                id="policy",
            ),
            pytest.param(
                {"sync_interval": 0}, "sync_interval", id="sync-zero"
            ),
            pytest.param(
                {"sync_interval": float("nan")}, "sync_interval", id="nan"
            ),
            pytest.param(
                {"probe_timeout": -1}, "probe_timeout", id="probe-timeout"
            ),
            pytest.param({"ttl": float("inf")}, "ttl", id="ttl-inf"),
        ],
    )
    def test_bad_store_options(self, client, kwargs, parameter):
        """A bad option raises ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            RedisBreakerStore(client, **kwargs)

        assert parameter == info.value.parameter

    @pytest.mark.parametrize(
        "client",
        [
            pytest.param(object(), id="object"),
            pytest.param("redis://localhost", id="url"),
            pytest.param(redis.Redis, id="class"),
        ],
    )
    def test_not_a_client(self, client):
        """Anything but a redis-py client is refused as 'client'."""
        with pytest.raises(ConfigError) as info:
            RedisBreakerStore(client)

        assert "client" == info.value.parameter

    @pytest.mark.parametrize(
        "store",
        [
            pytest.param(object(), id="object"),
            pytest.param(RedisBreakerStore, id="class"),
        ],
    )
    def test_not_a_store(self, store):
        """A store of the wrong type is refused as 'store'."""
        with pytest.raises(ConfigError) as info:
            CircuitBreaker(store=store)

        assert "store" == info.value.parameter

    def test_local_breaker_unchanged(self):
        """store=None keeps the local, in-process breaker."""
        breaker = CircuitBreaker()

        assert (CircuitBreaker, False) == (
            type(breaker),
            breaker._async_store,
        )

    def test_repr(self, client):
        """The repr names the prefix and policy."""
        store = RedisBreakerStore(client)

        assert (
            "<RedisBreakerStore prefix='stormwall' "
            "on_backend_error='fail_open'>"
        ) == repr(store)
