"""
Tests of the Redis breaker store against a real redis-server.

Each test gets its own server (the ``redis_server`` fixture); breakers are
driven through the methods the executors call (``_admit``, ``_on_success``,
``_on_failure``, ``_release`` and their ``_async`` twins). Time is real
here (Redis TIME decides), so recovery timeouts are short.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time

import pytest


pytest.importorskip("redis")

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

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
from tests.support import redis_breaker_worker as worker


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
            store = RedisBreakerStore(client, sync_interval=0.1)
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
        assert -1 == admin.ttl("stormwall:{b}:cb")  # never expires

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
        assert 0 < admin.ttl("stormwall:{b}:cb")

    def test_sequences_are_the_shared_generation(self, make, events, admin):
        """Each transition's sequence is Redis's generation, increasing."""
        breaker = make(failure_threshold=1, recovery_timeout=0.2)
        fail(breaker)
        time.sleep(0.25)
        succeed(breaker)

        sequences = [e.sequence for e in of_type(events, BreakerStateChanged)]

        assert sorted(set(sequences)) == sequences
        assert 3 == len(sequences)
        assert sequences[-1] == int(admin.hget("stormwall:{b}:cb", "gen"))

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
        assert {b"svc:{first}:cb"} == set(admin.keys("*first*"))
        assert 0 < admin.pttl("svc:{first}:cb") <= 86_400_000

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

    def test_open_in_one_process_rejects_in_another(
        self, client, redis_server, make
    ):
        """A breaker tripped by another process rejects calls here."""
        breaker = make(
            "shared",
            store=RedisBreakerStore(client, sync_interval=0.1),
            failure_threshold=1,
            recovery_timeout=30.0,
        )
        succeed(breaker)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=worker.trip, args=(redis_server.port, "shared", queue)
        )
        child.start()
        state = queue.get(timeout=30)
        child.join(30)
        time.sleep(0.1)  # sync_interval, at most

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

    def test_closed_success_costs_no_round_trip(self, counted):
        """A closed success is batched: no round trip, amortised one per
        sync_interval (0.1 s here)."""
        breaker = counted(failure_rate_threshold=0.5)
        succeed(breaker)  # connects, loads the script, fetches the view

        def calls():
            for _ in range(200):
                succeed(breaker)

        started = time.monotonic()
        spent = round_trips(calls)
        elapsed = time.monotonic() - started

        # An admission fetch only when a whole sync_interval passed.
        assert spent <= elapsed / 0.1
        assert 0 == spent  # the loop takes far less than 0.1 s here

    def test_idle_process_fetches_once_per_interval(self, counted):
        """After sync_interval without a reply, admission asks Redis."""
        breaker = counted(failure_threshold=1)
        succeed(breaker)
        time.sleep(0.1)

        assert 1 == round_trips(breaker._admit, None)

    def test_open_and_half_open_decisions(self, counted):
        """While open, the view rejects (no round trip); a probe's admission
        and its outcome are one round trip each."""
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

        assert (0, 1, 1) == (open_cost, probe_admit, probe_outcome)


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
            assert breaker._async_only
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
    async def test_sync_api_refuses_async_only(self, redis_server):
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
        store = RedisBreakerStore(
            client, sync_interval=0.05, retry_interval=0.05
        )
        try:
            breaker = CircuitBreaker("a", store=store, bus=bus)
            permit = await breaker._admit_async(None)
            redis_server.stop()
            await breaker._on_failure_async(permit, BOOM, 0.0, None)
            permit = await breaker._admit_async(None)  # the fallback's
            await breaker._on_success_async(permit, 0.0, None)
            redis_server.start()
            await asyncio.sleep(0.06)  # past retry_interval
            permit = await breaker._admit_async(None)
            await breaker._on_success_async(permit, 0.0, None)
        finally:
            await client.aclose()

        assert [("failure", "fail_open"), ("admit", "fail_open")] == [
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

    def test_fail_open_decides_locally(
        self, client, redis_server, make, events
    ):
        """fail_open: a local breaker decides; Redis resumes on restart."""
        store = RedisBreakerStore(
            client, sync_interval=0.05, retry_interval=0.05
        )
        breaker = make(store=store, failure_threshold=2, recovery_timeout=30)
        results = []
        permit = breaker._admit(None)  # admitted from Redis
        redis_server.stop()
        breaker._on_success(permit, 0.0, None)  # batched: no round trip
        time.sleep(0.06)  # the view is stale: admissions ask Redis
        for outcome in ("ok", "fail", "fail", "ok"):
            self._run(breaker, results, outcome)
        local = changes(events)
        redis_server.start()
        time.sleep(0.06)  # past retry_interval: Redis is tried again
        for _ in range(2):
            self._run(breaker, results)

        assert ["ran", "ran", "ran", "CircuitOpenError", "ran", "ran"] == (
            results
        )
        assert [("closed", "open", "failure_threshold")] == local
        assert 0 == of_type(events, BreakerStateChanged)[0].sequence
        errors = of_type(events, BackendError)
        assert ["admit"] * 4 == [e.operation for e in errors]
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
        store = RedisBreakerStore(
            client,
            on_backend_error="fail_closed",
            sync_interval=0.05,
            retry_interval=0.05,
        )
        breaker = make(store=store)
        results = []
        self._run(breaker, results)
        redis_server.stop()
        self._run(breaker, results)  # from the fresh view; success batched
        time.sleep(0.06)
        for _ in range(2):
            self._run(breaker, results)
        redis_server.start()
        time.sleep(0.06)
        self._run(breaker, results)

        rejected = "CircuitOpenError"
        assert ["ran", "ran", rejected, rejected, "ran"] == results
        assert 2 == len(of_type(events, BreakerRejected))
        assert [
            ("admit", "fail_closed"),
            ("admit", "fail_closed"),
        ] == [(e.operation, e.policy) for e in of_type(events, BackendError)]

    def test_raise_policy(self, client, redis_server, make, events):
        """raise: admission raises BackendUnavailableError, chained."""
        store = RedisBreakerStore(client, on_backend_error="raise")
        breaker = make(store=store)
        permit = breaker._admit(None)
        redis_server.stop()
        breaker._on_failure(permit, BOOM, 0.0, None)  # never raises

        with pytest.raises(BackendUnavailableError) as info:
            breaker._admit(None)

        assert isinstance(info.value.__cause__, redis.exceptions.RedisError)
        assert ["failure", "admit"] == [
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
        store = RedisBreakerStore(
            redis.Redis(port=redis_server.port), sync_interval=0.05
        )
        breaker = make(store=store, failure_threshold=1, recovery_timeout=30)
        fail(breaker)
        redis_server.stop()
        redis_server.start()
        time.sleep(0.06)  # the open view is stale: ask the new server
        succeed(breaker)
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
            breaker._async_only,
        )

    def test_repr(self, client):
        """The repr names the prefix and policy."""
        store = RedisBreakerStore(client)

        assert (
            "<RedisBreakerStore prefix='stormwall' "
            "on_backend_error='fail_open'>"
        ) == repr(store)


# -- issue 16: Redis trouble follows the policy -------------------------------

POLICIES = ["fail_open", "fail_closed", "raise"]
_PW = "test-only"


def _decide(breaker):
    """One admission: "admitted", or the type of what it raised."""
    try:
        breaker._admit(None)
    except (CircuitOpenError, BackendUnavailableError) as exc:
        return exc
    return "admitted"


def _check_policy(policy, outcome, error_type):
    """The policy's answer, with the Redis error chained."""
    if policy == "fail_open":
        assert "admitted" == outcome
        return
    expected = (
        CircuitOpenError
        if policy == "fail_closed"
        else BackendUnavailableError
    )
    assert isinstance(outcome, expected)
    assert isinstance(outcome.__cause__, error_type)


class TestErrorReplies:
    """Defect 1: every error reply of a failing Redis follows the policy."""

    @pytest.mark.parametrize("policy", POLICIES)
    def test_out_of_memory_follows_policy(
        self, client, admin, make, events, policy
    ):
        """A full Redis (OOM under noeviction) is a backend failure."""
        breaker = make(
            store=RedisBreakerStore(client, on_backend_error=policy),
            failure_threshold=1,
            recovery_timeout=0.1,
        )
        fail(breaker)
        time.sleep(0.15)  # half-open: admitting a probe writes
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

        outcome = _decide(breaker)

        admin.config_set("maxmemory", 0)
        _check_policy(policy, outcome, redis.exceptions.OutOfMemoryError)
        assert [policy] == [e.policy for e in of_type(events, BackendError)]

    @pytest.mark.parametrize("policy", POLICIES)
    def test_acl_denial_follows_policy(
        self, redis_server, admin, bus, events, policy
    ):
        """NOPERM (a user without access to the keys) follows the policy."""
        admin.execute_command(
            "ACL", "SETUSER", "other", "on", f">{_PW}", "~other:*", "+@all"
        )
        with _client(redis_server, username="other", password=_PW) as c:
            breaker = CircuitBreaker(
                "b",
                store=RedisBreakerStore(c, on_backend_error=policy),
                bus=bus,
            )

            outcome = _decide(breaker)

        _check_policy(policy, outcome, redis.exceptions.NoPermissionError)

    def test_read_only_replica_fails_open(self, client, admin, make, events):
        """READONLY (Redis demoted to a replica) is a backend failure."""
        breaker = make(failure_threshold=1)
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")

        outcome = _decide(breaker)

        admin.execute_command("REPLICAOF", "NO", "ONE")
        assert "admitted" == outcome
        errors = of_type(events, BackendError)
        assert isinstance(errors[0].error, redis.exceptions.ReadOnlyError)

    def test_master_down_fails_closed(self, client, admin, make):
        """MASTERDOWN (a stale replica refusing to answer) too."""
        breaker = make(
            store=RedisBreakerStore(client, on_backend_error="fail_closed")
        )
        admin.config_set("replica-serve-stale-data", "no")
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")

        outcome = _decide(breaker)

        admin.execute_command("REPLICAOF", "NO", "ONE")
        assert isinstance(outcome, CircuitOpenError)
        assert isinstance(outcome.__cause__, redis.exceptions.ResponseError)
        assert "MASTERDOWN" in repr(outcome.__cause__) or (
            isinstance(outcome.__cause__, redis.exceptions.MasterDownError)
        )

    def test_busy_script_fails_open(self, redis_server, client, admin, make):
        """BUSY (another client's script runs too long) follows the policy."""
        breaker = make(failure_threshold=1)
        admin.config_set("busy-reply-threshold", 10)
        with socket_to(redis_server) as blocker:
            blocker.sendall(_resp("EVAL", _SPIN.format(us=600_000), "0"))
            time.sleep(0.05)  # the script is running: Redis answers BUSY

            outcome = _decide(breaker)

        time.sleep(0.6)
        assert "admitted" == outcome

    @pytest.mark.parametrize(
        "reply",
        [
            "LOADING Redis is loading the dataset in memory",
            "CLUSTERDOWN The cluster is down",
            "MASTERDOWN Link with MASTER is down",
            "BUSY Redis is busy running a script.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "NOPERM this user has no permissions to run the 'evalsha' command",
            "READONLY You can't write against a read only replica.",
            "MISCONF Redis is configured to save RDB snapshots",
            # An ACL refusal inside the script (Redis 7.0 says ERR).
            (
                "ERR The user executing the script can't run this command "
                "or subcommand script: 104ae65d, on @user_script:1."
            ),
        ],
    )
    def test_every_error_reply_is_a_backend_failure(self, reply):
        """The classifier (the limiters' too) knows every reply of a
        failing server."""
        from redis._parsers.base import BaseParser

        from stormwall.backends._redis_common import is_backend_failure

        error = BaseParser.parse_error(reply)

        assert is_backend_failure(error)

    def test_a_bug_of_ours_still_raises(self):
        """A script error (a bug here) is not hidden behind the policy."""
        from redis._parsers.base import BaseParser

        from stormwall.backends._redis_common import is_backend_failure

        error = BaseParser.parse_error(
            "ERR user_script:1: Script attempted to access nonexistent"
        )

        assert not is_backend_failure(error)


def socket_to(server):
    import socket

    return socket.create_connection((server.host, server.port), timeout=5)


def _resp(*args):
    """A command in the Redis protocol."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


# Keeps the server busy for ``us`` microseconds (scripts block everyone).
_SPIN = (
    "local s = redis.call('TIME') local n = 0 repeat "
    "local x = redis.call('TIME') "
    "n = (x[1] - s[1]) * 1000000 + (x[2] - s[2]) until n > {us} return n"
)


class TestCancelledProbe:
    """Defect 2: a cancelled half-open admit frees the slot it took."""

    @pytest.mark.asyncio
    async def test_cancelled_admit_frees_probe_slot(self, redis_server, admin):
        """Cancelled while Redis grants the slot: the slot comes back, and
        another process may probe at once (no probe_timeout wait)."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            breaker = CircuitBreaker(
                "p",
                store=RedisBreakerStore(client),
                failure_threshold=1,
                recovery_timeout=0.2,
                success_threshold=5,
            )
            permit = await breaker._admit_async(None)
            await breaker._on_failure_async(permit, BOOM, 0.0, None)
            await asyncio.sleep(0.25)  # half-open from now on
            with socket_to(redis_server) as blocker:
                # Redis is slow: the admit waits for its reply.
                blocker.sendall(_resp("EVAL", _SPIN.format(us=60_000), "0"))
                await asyncio.sleep(0.01)
                task = asyncio.ensure_future(breaker._admit_async(None))
                await asyncio.sleep(0.02)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.sleep(0.1)  # the spin is over
        finally:
            await client.aclose()

        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=worker.probe_once, args=(redis_server.port, "p", queue)
        )
        child.start()
        result = queue.get(timeout=30)
        child.join(30)

        assert ("ran", "half_open") == result
        assert 0 == _probes_in_flight(admin, "p")

    @pytest.mark.asyncio
    async def test_cancelled_probe_outcome_frees_slot(
        self, redis_server, admin
    ):
        """A probe cancelled while its outcome is on the way frees its
        slot too."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            breaker = CircuitBreaker(
                "q",
                store=RedisBreakerStore(client),
                failure_threshold=1,
                recovery_timeout=0.2,
                success_threshold=5,
            )
            permit = await breaker._admit_async(None)
            await breaker._on_failure_async(permit, BOOM, 0.0, None)
            await asyncio.sleep(0.25)
            permit = await breaker._admit_async(None)  # a probe slot
            with socket_to(redis_server) as blocker:
                blocker.sendall(_resp("EVAL", _SPIN.format(us=60_000), "0"))
                await asyncio.sleep(0.01)
                task = asyncio.ensure_future(
                    breaker._on_success_async(permit, 0.0, None)
                )
                await asyncio.sleep(0.02)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

        assert 0 == _probes_in_flight(admin, "q")


def _probes_in_flight(admin, name):
    """half_open_in_flight as a fresh process reads it from Redis."""
    store = RedisBreakerStore(admin)
    return CircuitBreaker(name, store=store).statistics().half_open_in_flight


class TestKeys:
    """Defect 3: keys start with the prefix; the hash tag follows."""

    def test_scan_by_prefix_finds_every_key(self, client, admin, make):
        """SCAN MATCH prefix:* returns every key the breaker wrote."""
        store = RedisBreakerStore(client, prefix="myapp")
        breaker = make(
            "api",
            store=store,
            failure_threshold=1,
            recovery_timeout=0.1,
            failure_rate_threshold=0.5,
        )
        fail(breaker)
        time.sleep(0.15)
        breaker._admit(None)  # a probe in flight

        everything = set(admin.keys("*"))

        assert everything
        assert everything == set(admin.scan_iter(match="myapp:*"))
        assert all(k.startswith(b"myapp:{api}:") for k in everything)

    def test_acl_scoped_to_the_prefix_works(self, redis_server, admin, bus):
        """A user limited to ~myapp:* (and the commands the docs list)
        runs the shared breaker."""
        admin.execute_command(
            "ACL",
            "SETUSER",
            "app",
            "on",
            f">{_PW}",
            "~myapp:*",
            *_ACL_COMMANDS,
        )
        with _client(redis_server, username="app", password=_PW) as c:
            breaker = CircuitBreaker(
                "api",
                store=RedisBreakerStore(
                    c, prefix="myapp", on_backend_error="raise"
                ),
                failure_threshold=1,
                failure_rate_threshold=0.5,
                bus=bus,
            )
            succeed(breaker)
            fail(breaker)

            assert CircuitState.OPEN == breaker.state


# The least-privilege command list docs/scaling.md gives for the breaker.
_ACL_COMMANDS = (
    "resetchannels",
    "-@all",
    "+evalsha",
    "+script|load",
    "+time",
    "+hmget",
    "+hget",
    "+hset",
    "+hgetall",
    "+hdel",
    "+hexists",
    "+hincrby",
    "+del",
    "+getrange",
    "+setrange",
    "+pexpire",
    "+persist",
)


class TestCooldown:
    """Defect 4: bounded decisions, one re-probe per retry_interval."""

    def test_killed_server_decisions_are_bounded(self, redis_server, bus):
        """With redis-py's default client options, each decision returns
        within backend_timeout (plus a margin), and recovery needs no
        restart."""
        events = []
        bus.subscribe(events.append, BackendError)
        with redis.Redis(port=redis_server.port) as default_client:
            breaker = CircuitBreaker(
                "b",
                store=RedisBreakerStore(
                    default_client,
                    backend_timeout=0.1,
                    retry_interval=0.2,
                    sync_interval=0.05,
                ),
                bus=bus,
            )
            succeed(breaker)
            redis_server.stop()
            durations = []
            for _ in range(5):
                time.sleep(0.06)
                started = time.monotonic()
                succeed(breaker)
                durations.append(time.monotonic() - started)
            redis_server.start()
            time.sleep(0.25)  # past retry_interval: Redis is probed again
            succeed(breaker)
            stats = breaker.statistics()

        assert max(durations) < 0.5  # the default client would take seconds
        assert 5 == len(events)
        assert CircuitState.CLOSED == stats.state

    def test_slow_server_is_probed_once_per_interval(self, bus):
        """A server that accepts and never answers: each decision waits
        backend_timeout at most, and only one per retry_interval tries."""
        import socket

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.01)
        port = listener.getsockname()[1]
        accepted = []
        with redis.Redis(port=port) as silent:
            breaker = CircuitBreaker(
                "b",
                store=RedisBreakerStore(
                    silent, backend_timeout=0.05, retry_interval=10.0
                ),
                bus=bus,
            )
            durations = []
            for _ in range(20):
                started = time.monotonic()
                _decide(breaker)
                durations.append(time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    accepted.append(listener.accept()[0])
        for conn in accepted:
            conn.close()
        listener.close()

        assert max(durations) < 0.5
        assert 1 == len(accepted)

    @pytest.mark.asyncio
    async def test_async_killed_server_decisions_are_bounded(
        self, redis_server, bus
    ):
        """The asyncio client: the same bound, whatever its retries."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            breaker = CircuitBreaker(
                "a",
                store=RedisBreakerStore(
                    client, retry_interval=0.2, sync_interval=0.05
                ),
                bus=bus,
            )
            await breaker._on_success_async(
                await breaker._admit_async(None), 0.0, None
            )
            redis_server.stop()
            durations = []
            for _ in range(3):
                await asyncio.sleep(0.06)  # past sync_interval
                started = time.monotonic()
                await breaker._admit_async(None)
                durations.append(time.monotonic() - started)
        finally:
            await client.aclose()

        assert max(durations) < 0.5


class TestFailClosedMessage:
    """Defect 6: a fail_closed rejection names the backend, not a quota."""

    def test_rejection_says_backend_unavailable(self, redis_server, make):
        """The CircuitOpenError says Redis is unavailable, cause chained."""
        breaker = make(
            store=RedisBreakerStore(
                _client(redis_server), on_backend_error="fail_closed"
            )
        )
        redis_server.stop()

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert "unavailable" in str(info.value)
        assert "redis" in str(info.value)
        assert isinstance(
            info.value.__cause__, redis.exceptions.ConnectionError
        )
        # The limiters' wording, the time until Redis is tried again.
        assert str(info.value).startswith(
            f"{breaker.name!r} refused the call: its redis backend is "
            "unavailable (on_backend_error='fail_closed'); retry after "
        )
        assert 0 < info.value.retry_after <= 1.0


class TestDurationBounds:
    """Defect 7: absurd durations are refused at construction."""

    @pytest.mark.parametrize(
        ("config", "parameter"),
        [
            pytest.param(
                {"recovery_timeout": 1e300}, "recovery_timeout", id="recovery"
            ),
            pytest.param(
                {"max_recovery_timeout": 1e300},
                "max_recovery_timeout",
                id="max-recovery",
            ),
            pytest.param(
                {"window_duration": 1e300, "failure_rate_threshold": 0.5},
                "window_duration",
                id="window",
            ),
            pytest.param(
                {
                    "slow_call_duration": 1e300,
                    "slow_call_rate_threshold": 0.5,
                },
                "slow_call_duration",
                id="slow",
            ),
        ],
    )
    def test_breaker_durations_bounded(self, client, config, parameter):
        """The breaker's durations the script receives are bounded."""
        with pytest.raises(ConfigError) as info:
            CircuitBreaker(store=RedisBreakerStore(client), **config)

        assert parameter == info.value.parameter

    @pytest.mark.parametrize(
        "parameter",
        ["ttl", "probe_timeout", "sync_interval"],
    )
    def test_store_durations_bounded(self, client, parameter):
        """The store's durations are bounded too."""
        with pytest.raises(ConfigError) as info:
            RedisBreakerStore(client, **{parameter: 1e300})

        assert parameter == info.value.parameter


class TestBatching:
    """A closed breaker's success path makes no round trip."""

    @pytest.mark.parametrize(
        ("config", "timed"),
        [
            pytest.param({}, False, id="no-slow-rule"),
            pytest.param({"slow_call_duration": 1.0}, True, id="slow-rule"),
        ],
    )
    def test_durations_measured_only_when_read(self, client, config, timed):
        """The executors time calls only for a slow-call rule."""
        breaker = CircuitBreaker(store=RedisBreakerStore(client), **config)

        assert timed is breaker._timed

    def test_batch_reaches_redis_at_the_next_sync(self, redis_server, bus):
        """The batched successes land in the shared window."""
        with _client(redis_server) as c:
            store = RedisBreakerStore(c, sync_interval=0.05)
            breaker = CircuitBreaker(
                "b",
                store=store,
                failure_threshold=None,
                failure_rate_threshold=0.5,
                bus=bus,
            )
            for _ in range(30):
                succeed(breaker)
            time.sleep(0.06)
            succeed(breaker)  # this admission syncs
            stats = breaker.statistics()

        assert 31 == stats.calls_in_window

    def test_failure_is_sent_at_once(self, counted):
        """A failure (which may trip the breaker) costs one round trip,
        carrying the successes batched before it."""
        breaker = counted(failure_threshold=3)
        succeed(breaker)

        assert 1 == round_trips(fail, breaker)

    def test_trip_propagates_within_sync_interval(self, redis_server, make):
        """Another process running successes sees a trip here within its
        sync_interval (plus the time to notice)."""
        breaker = make("shared", failure_threshold=1, recovery_timeout=30.0)
        succeed(breaker)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        ready = ctx.Event()
        child = ctx.Process(
            target=worker.watch,
            args=(redis_server.port, "shared", 0.2, ready, queue),
        )
        child.start()
        assert ready.wait(30)
        time.sleep(0.05)
        tripped = time.time()
        fail(breaker)
        seen = queue.get(timeout=30)
        child.join(30)

        # Within sync_interval, plus one round trip and the scheduling of
        # two busy processes on a loaded test machine.
        assert seen is not None
        assert seen - tripped < 0.2 + 0.25
