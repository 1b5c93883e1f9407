"""
Redis limiters when Redis misbehaves, against a real redis-server.

Every backend failure (a dead or frozen server, a full one, an ACL denial)
follows ``on_backend_error``, promptly (``backend_timeout``), without a
round trip per call while Redis is down (``retry_interval``), visibly
(``BackendError`` events and metrics), and recovers without a restart.
Keys start with the prefix, so ``SCAN MATCH prefix:*`` and an ACL scoped to
``~prefix:*`` cover them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest


pytest.importorskip("redis")

import redis
import redis.asyncio
import redis.exceptions

from stormwall import (
    BackendUnavailableError,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    RejectedError,
)
from stormwall.backends.redis import RedisSlidingWindow, RedisTokenBucket
from stormwall.events import BackendError, LimiterAllowed
from stormwall.testing import EventRecorder


pytestmark = pytest.mark.integration

KINDS = ["token_bucket", "sliding_window"]
POLICIES = ["fail_open", "fail_closed", "raise"]

# The least-privilege ACL line docs/scaling.md gives (PASSWORD and PREFIX
# filled in): keys under the prefix only, the commands the limiters and the
# breaker store send and their scripts run, nothing else.
ACL_RULES = (
    "on >{password} resetkeys ~{prefix}:* resetchannels -@all +evalsha "
    "+eval +script|load +scan +del +ping +hello +time +get +set +pexpire "
    "+persist +zadd +zrange +zrangebyscore +zremrangebyscore +zrem +zscore "
    "+zcard +hmget +hset +hdel +hincrby +getrange +setrange"
)


# A throwaway password of a throwaway server.
SECRET = os.urandom(8).hex()


def make(kind, client, **kwargs):
    """A token bucket of 3 at 10/s, or a window of 3 per second."""
    if kind == "token_bucket":
        return RedisTokenBucket(client, 3, 10, **kwargs)
    return RedisSlidingWindow(client, 3, 1.0, **kwargs)


@pytest.fixture
def admin(redis_server):
    """A client with every right, for setting the server up."""
    c = redis.Redis.from_url(redis_server.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def recorder():
    """An event recorder on a fresh bus."""
    bus = EventBus()
    rec = EventRecorder(bus).start()
    try:
        yield rec
    finally:
        rec.close()


def decide(limiter):
    """One decision: what try_acquire and acquire(timeout=0) did."""
    outcome = []
    try:
        outcome.append(limiter.try_acquire("k"))
    except BackendUnavailableError as exc:
        outcome.append(("unavailable", type(exc.__cause__).__name__))
    try:
        limiter.acquire("k", timeout=0)
        outcome.append("admitted")
    except RateLimitedError as exc:
        outcome.append(("refused", type(exc.__cause__).__name__, str(exc)))
    except BackendUnavailableError as exc:
        outcome.append(("unavailable", type(exc.__cause__).__name__))
    return outcome


def expected_for(policy, error_type):
    message = (
        "{name!r} refused the call: its redis backend is unavailable "
        "(on_backend_error='fail_closed'); retry after 1.000s"
    )
    return {
        "fail_open": [True, "admitted"],
        "fail_closed": [False, ("refused", error_type, message)],
        "raise": [("unavailable", error_type)] * 2,
    }[policy]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy", POLICIES)
class TestErrorReplies:
    def test_out_of_memory_follows_the_policy(
        self, kind, policy, client_of, admin, recorder
    ):
        """A full Redis (OOM under noeviction) is a backend failure."""
        limiter = make(
            kind, client_of(), on_backend_error=policy, bus=recorder._bus
        )
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

        got = decide(limiter)

        want = expected_for(policy, "OutOfMemoryError")
        if policy == "fail_closed":
            want[1] = (*want[1][:2], want[1][2].format(name=kind))
        assert want == got
        errors = recorder.of_type(BackendError)
        assert errors
        assert {"OutOfMemoryError"} == {type(e.error).__name__ for e in errors}
        assert {policy} == {e.policy for e in errors}

    def test_acl_denial_follows_the_policy(
        self, kind, policy, client_of, admin, recorder
    ):
        """A user whose ACL does not cover the keys: NOPERM, the policy."""
        admin.execute_command(
            "ACL",
            "SETUSER",
            "elsewhere",
            *ACL_RULES.format(password=SECRET, prefix="other").split(),
        )
        limiter = make(
            kind,
            client_of(username="elsewhere", password=SECRET),
            on_backend_error=policy,
            bus=recorder._bus,
        )

        got = decide(limiter)

        want = expected_for(policy, "NoPermissionError")
        if policy == "fail_closed":
            want[1] = (*want[1][:2], want[1][2].format(name=kind))
        assert want == got
        assert {"NoPermissionError"} == {
            type(e.error).__name__ for e in recorder.of_type(BackendError)
        }


@pytest.fixture
def client_of(redis_server):
    """Sync clients of the test's server (closed at the end)."""
    made = []

    def make_client(**kwargs):
        c = redis.Redis.from_url(redis_server.url, **kwargs)
        made.append(c)
        return c

    try:
        yield make_client
    finally:
        for c in made:
            c.close()


class TestFailClosedMessage:
    def test_fail_closed_says_the_backend_is_unavailable(
        self, redis_server, client_of
    ):
        """A fail_closed refusal names the backend, chains its error."""
        limiter = RedisTokenBucket(client_of(), 3, 10, name="api")
        redis_server.stop()

        with pytest.raises(RateLimitedError) as info:
            limiter.acquire("user:1", timeout=0)

        assert isinstance(info.value, RejectedError)
        assert "redis backend is unavailable" in str(info.value)
        assert "exceeded" not in str(info.value)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert 1.0 == info.value.retry_after


def reply_error(text):
    """An error reply as the installed redis-py builds it from ``text``."""
    try:
        return redis.exceptions.ResponseError(
            text, status_code=text.split(" ", 1)[0]
        )
    except TypeError:  # redis-py before 6 keeps the code in the message only
        return redis.exceptions.ResponseError(text)


class TestProgrammingErrors:
    @pytest.mark.parametrize(
        "error",
        [
            reply_error("BUSY Redis is busy running a script"),
            redis.exceptions.ReadOnlyError("You can't write against a r/o"),
            redis.exceptions.BusyLoadingError("Redis is loading"),
            redis.exceptions.ClusterDownError("The cluster is down"),
            redis.exceptions.MasterDownError("Link with MASTER is down"),
            redis.exceptions.TryAgainError("Multiple keys request"),
            redis.exceptions.OutOfMemoryError("command not allowed"),
            redis.exceptions.NoPermissionError("no permissions"),
            reply_error("MISCONF Errors writing to the AOF file"),
            redis.exceptions.ConnectionError("Connection refused"),
            redis.exceptions.TimeoutError("Timeout reading"),
            TimeoutError(),
            ConnectionResetError(),
        ],
        ids=lambda e: type(e).__name__ + ":" + str(e)[:8],
    )
    def test_server_trouble_is_a_backend_failure(self, error):
        """Every reply saying the server cannot serve follows the policy."""
        from stormwall.backends._redis_common import is_backend_failure

        assert is_backend_failure(error)

    @pytest.mark.parametrize(
        "error",
        [
            redis.exceptions.ResponseError(
                "user_script:1: Script attempted to access nonexistent "
                "global variable 'x'"
            ),
            reply_error("WRONGTYPE Operation against a key"),
            redis.exceptions.DataError("Invalid input of type: 'dict'"),
        ],
        ids=["script", "wrongtype", "data"],
    )
    def test_our_mistakes_are_not(self, error):
        """A script bug or a bad argument is ours: it must surface."""
        from stormwall.backends._redis_common import is_backend_failure

        assert not is_backend_failure(error)

    def test_a_foreign_value_at_our_key_raises(self, client_of, admin):
        """WRONGTYPE (our key holds a list) raises, even under fail_open."""
        limiter = RedisTokenBucket(
            client_of(), 3, 10, on_backend_error="fail_open"
        )
        admin.lpush("stormwall:{token_bucket:k}:tb", "x")

        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            limiter.try_acquire("k")


@pytest.mark.parametrize("kind", KINDS)
class TestKeyLayout:
    def test_scan_match_prefix_finds_every_key(self, kind, client_of, admin):
        """Keys are PREFIX:{NAME:KEY}:KIND; SCAN MATCH prefix:* sees all."""
        client = client_of()
        per_key = make(kind, client, prefix="myapp", name="api")
        shared = make(kind, client, prefix="myapp", name="all", per_key=False)
        for key in ("user:1", "user:2", "a}b"):
            per_key.try_acquire(key)
            shared.try_acquire(key)

        everything = sorted(k.decode() for k in admin.keys("*"))
        scanned = sorted(k.decode() for k in admin.scan_iter("myapp:*"))
        assert everything == scanned
        assert everything
        assert all(k.startswith("myapp:{") for k in everything)
        suffixes = {"token_bucket": [":tb"], "sliding_window": [":sw"]}[kind]
        assert f"myapp:{{api:user:1}}{suffixes[0]}" in everything
        assert f"myapp:{{all}}{suffixes[0]}" in everything

    def test_acl_scoped_to_the_prefix_works(self, kind, client_of, admin):
        """A user limited to ~myapp:* (the documented line) can do it all."""
        admin.execute_command(
            "ACL",
            "SETUSER",
            "limiter",
            *ACL_RULES.format(password=SECRET, prefix="myapp").split(),
        )
        client = client_of(username="limiter", password=SECRET)
        limiter = make(kind, client, prefix="myapp", on_backend_error="raise")

        assert [True, True, True, False] == [
            limiter.try_acquire("k") for _ in range(4)
        ]
        with pytest.raises(RateLimitedError) as info:
            limiter.acquire("k", timeout=0.0)
        assert "exceeded" in str(info.value)
        limiter.reset("k")
        limiter.try_acquire("j")
        limiter.reset()
        assert [] == admin.keys("myapp:*")


class TestPromptness:
    @pytest.mark.parametrize("kind", KINDS)
    def test_cooldown_asks_redis_once_per_retry_interval(
        self, kind, redis_server, client_of, recorder
    ):
        """While Redis is down, one probe per retry_interval, then back."""
        clock = MockClock()
        limiter = make(
            kind,
            client_of(),
            on_backend_error="fail_open",
            retry_interval=2.0,
            clock=clock,
            bus=recorder._bus,
        )
        redis_server.stop()

        for _ in range(10):  # 10 decisions in 10 x 0.5 s of virtual time
            assert True is limiter.try_acquire("k")
            clock.advance(0.5)

        events = recorder.of_type(BackendError)
        assert 10 == len(events)
        probes = [e.time for e in events if not e.cooldown]
        assert [0.0, 2.0, 4.0] == probes

        redis_server.start()
        clock.advance(2.0)
        assert True is limiter.try_acquire("k")  # the probe: Redis decides
        assert True is limiter.try_acquire("k")
        assert 2 == len(recorder.of_type(LimiterAllowed))
        assert 10 == len(recorder.of_type(BackendError))

    def test_a_frozen_server_costs_backend_timeout_not_the_clients(
        self, redis_server, client_of, recorder
    ):
        """
        A server that accepts but never answers (SIGSTOP): a decision waits
        about backend_timeout, though the client has no timeout at all and
        redis-py's default retries; then no round trip until retry_interval.
        """
        client = client_of()  # defaults: no socket timeout, 3 retries
        limiter = RedisTokenBucket(
            client,
            3,
            10,
            on_backend_error="fail_open",
            backend_timeout=0.2,
            retry_interval=0.5,
            bus=recorder._bus,
        )
        assert True is limiter.try_acquire("k")
        pid = redis_server._proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            spans = []
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                start = time.monotonic()
                assert True is limiter.try_acquire("k")
                spans.append(time.monotonic() - start)
                time.sleep(0.01)
        finally:
            os.kill(pid, signal.SIGCONT)

        # Generous margin (2 cores shared with other work), far below the
        # client's own "forever".
        assert max(spans) < 0.2 + 0.5
        probes = [e for e in recorder.of_type(BackendError) if not e.cooldown]
        assert 1 <= len(probes) <= 3  # at most one per 0.5 s in ~1.2 s
        assert all(
            isinstance(e.error, redis.exceptions.TimeoutError | TimeoutError)
            for e in probes
        )
        time.sleep(0.5)
        assert True is limiter.try_acquire("j")
        assert recorder.of_type(LimiterAllowed)[-1].key == "j"


@pytest.mark.asyncio
async def test_asyncio_client_frozen_server_costs_backend_timeout(
    redis_server, recorder
):
    """
    The asyncio client, no timeout and redis-py's default retries: a frozen
    server (SIGSTOP) costs a decision about backend_timeout, then nothing
    until retry_interval; SIGCONT, and Redis decides again.
    """
    client = redis.asyncio.Redis.from_url(redis_server.url)
    limiter = RedisSlidingWindow(
        client,
        3,
        1.0,
        on_backend_error="fail_closed",
        backend_timeout=0.2,
        retry_interval=0.5,
        bus=recorder._bus,
    )
    try:
        assert True is await limiter.try_acquire_async("k")
        pid = redis_server._proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            spans = []
            for _ in range(3):
                start = time.monotonic()
                assert False is await limiter.try_acquire_async("k")
                spans.append(time.monotonic() - start)
        finally:
            os.kill(pid, signal.SIGCONT)

        assert max(spans) < 0.2 + 0.5
        events = recorder.of_type(BackendError)
        assert [False, True, True] == [e.cooldown for e in events]
        assert isinstance(events[0].error, TimeoutError)
        await asyncio.sleep(0.5)
        assert True is await limiter.try_acquire_async("j")
    finally:
        await client.aclose()


class TestBounds:
    @pytest.mark.parametrize(
        ("param", "build"),
        [
            ("window", lambda c: RedisSlidingWindow(c, 3, 1e300)),
            ("window", lambda c: RedisSlidingWindow(c, 3, 1e10)),
            ("refill_rate", lambda c: RedisTokenBucket(c, 3, 1e-300)),
            ("refill_rate", lambda c: RedisTokenBucket(c, 1e12, 1e-3)),
            (
                "backend_timeout",
                lambda c: RedisTokenBucket(c, 3, 1, backend_timeout=0),
            ),
            (
                "backend_timeout",
                lambda c: RedisTokenBucket(c, 3, 1, backend_timeout=1e300),
            ),
            (
                "backend_timeout",
                lambda c: RedisTokenBucket(
                    c, 3, 1, backend_timeout=float("nan")
                ),
            ),
            (
                "retry_interval",
                lambda c: RedisSlidingWindow(c, 3, 1, retry_interval=-1),
            ),
            (
                "retry_interval",
                lambda c: RedisSlidingWindow(c, 3, 1, retry_interval=1e300),
            ),
        ],
    )
    def test_absurd_durations_are_refused_at_construction(
        self, param, build, client_of
    ):
        """Every duration a script receives is bounded: ConfigError."""
        with pytest.raises(ConfigError) as info:
            build(client_of())
        assert param == info.value.parameter

    def test_ten_years_is_still_fine(self, client_of):
        """The bound is far from any real setting."""
        client = client_of()
        window = RedisSlidingWindow(client, 3, 9 * 365 * 24 * 3600)
        bucket = RedisTokenBucket(client, 1e6, 1e6 / (9 * 365 * 24 * 3600))

        assert True is window.try_acquire("k")
        assert True is bucket.try_acquire("k")

    def test_huge_rates_are_fine(self, client_of):
        """A permit's interval below Redis's resolution still expires."""
        bucket = RedisTokenBucket(client_of(), 1e15, 1e15)

        assert [True] * 3 == [bucket.try_acquire("k") for _ in range(3)]
