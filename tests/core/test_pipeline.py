"""
The pipeline's one home: `_pipeline.py` decides, the two drivers only wait.

The drivers are twins (their ``run`` loops differ by ``await``, the wait
primitives and the per-attempt timeout); nothing forks at call time on
whether a component sits behind an asyncio client; a step granted at once
is the shared `INVOKE` sentinel; the plainest call skips the per-call object
for its first attempt, and every other call goes through one; a breaker
whose decisions must be awaited runs every decision as a `Wait` and reports
exactly what a local one reports.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import socket
import sys
from collections import Counter
from pathlib import Path

import pytest

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CompositeLimiter,
    ConfigError,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
    _async,
    _sync,
)
from stormwall._pipeline import (
    INVOKE,
    RETURN,
    Call,
    QuickCall,
    StoredCall,
    Wait,
)
from stormwall.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerStateChanged,
    CallEnded,
    CallStarted,
    LimiterAllowed,
    RetryScheduled,
)
from stormwall.testing import EventRecorder, MockClock


SRC = Path(__file__).resolve().parents[2] / "src" / "stormwall"


def _run_body(module: object) -> list[str]:
    """The lines of a driver's ``run`` body, without its docstring."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name == "run"
        ):
            body = node.body[1:]  # the docstring first
            lines = source.splitlines()[
                body[0].lineno - 1 : body[-1].end_lineno
            ]
            return [line.strip() for line in lines if line.strip()]
    raise AssertionError("no run()")


class TestDrivers:
    def test_the_drivers_differ_by_await_waits_and_timeout_only(self):
        sync = _run_body(_sync)
        asyn = [line.replace("await ", "") for line in _run_body(_async)]
        only_sync = sorted((Counter(sync) - Counter(asyn)).elements())
        only_async = sorted((Counter(asyn) - Counter(sync)).elements())
        # The colour check of what fn returned, and the wait primitive.
        assert only_sync == sorted(
            [
                "result = fn(*args, **kwargs)",
                "if type(result) not in plain and awaitable(result):",
                "raise AwaitableError(fn, result)  # noqa: TRY301",
                "outcome = wait.blocking(*wait.args)  # type: ignore[misc]",
            ]
        )
        # The same, plus the per-attempt timeout only a coroutine can have.
        assert only_async == sorted(
            [
                "timeout = self._timeout",
                "awaitable = fn(*args, **kwargs)",
                "if type(awaitable) is not CoroutineType and (",
                "not inspect.isawaitable(awaitable)",
                "):",
                "raise NotAwaitableError(fn, awaitable)  # noqa: TRY301",
                "if timeout is None:",
                "result = awaitable",
                "else:",
                "async with Timeout(self._clock, timeout):",
                "result = awaitable",
                "outcome = wait.awaiting(*wait.args)  # type: ignore[misc]",
            ]
        )

    def test_nothing_forks_on_an_asyncio_client_at_call_time(self):
        text = "\n".join(path.read_text() for path in SRC.rglob("*.py"))
        assert not re.search(r"\bif remote\b", text)
        assert not re.search(r"getattr\([^)]*_async_(only|store)", text)


def _executor(cls=ResilientExecutor, **parts):
    parts.setdefault("bus", EventBus())
    return cls("p", clock=MockClock(), **parts)


class TestSteps:
    def test_a_step_granted_at_once_is_the_shared_sentinel(self):
        ex = _executor(
            limiter=TokenBucket(10, 10),
            circuit_breaker=CircuitBreaker(),
            bulkhead=Bulkhead(2),
        )
        ex.bus.subscribe(lambda _: None)  # a listener: a real Call
        call = ex._pipeline.call("k")
        first = call.admit()
        assert first.__class__ is Wait  # the bulkhead slot
        assert first.then(first.blocking(*first.args)) is INVOKE
        assert call.succeeded(1) is RETURN
        assert call.value == 1

    def test_the_plainest_call_skips_the_call_object(self):
        ex = _executor(
            limiter=TokenBucket(10, 10),
            circuit_breaker=CircuitBreaker(),
            retry_policy=RetryPolicy(max_attempts=3),
        )
        assert ex._pipeline.enter("k").__class__ is int

    @pytest.mark.parametrize(
        "why",
        ["listener", "bulkhead", "deadline", "open", "empty", "key", "slow"],
    )
    def test_every_other_call_goes_through_a_call(self, why):
        parts = {
            "limiter": TokenBucket(1, 1),
            "circuit_breaker": CircuitBreaker(),
            "retry_policy": RetryPolicy(max_attempts=3),
        }
        if why == "bulkhead":
            parts["bulkhead"] = Bulkhead(1)
        if why == "deadline":
            parts["retry_policy"] = RetryPolicy(deadline=5)
        if why == "slow":
            parts["circuit_breaker"] = CircuitBreaker(slow_call_duration=1)
        ex = _executor(**parts)
        key = "k"
        if why == "listener":
            ex.bus.subscribe(lambda _: None)
        if why == "open":
            ex.circuit_breaker.force_open()
        if why == "empty":
            assert ex.limiter.try_acquire("k")
        if why == "key":
            key = "k"[:0] + "k"  # still a str: must stay quick
        entered = ex._pipeline.enter(key)
        if why == "key":
            assert entered.__class__ is int
        else:
            assert isinstance(entered, Call)

    def test_a_composite_limiter_takes_the_full_path(self):
        """A limiter that grants nothing at once (a composite, a Redis
        backend) sends every call through a `Call`."""
        ex = _executor(
            limiter=CompositeLimiter(
                TokenBucket(10, 10, name="a"), SlidingWindow(10, 1, name="b")
            ),
            circuit_breaker=CircuitBreaker(),
        )
        assert isinstance(ex._pipeline.enter("k"), Call)
        assert ex.run("k", lambda: 1) == 1
        assert ex.limiter.statistics().allowed == 1

    def test_a_redis_limiter_takes_the_full_path_without_a_round_trip(self):
        redis = pytest.importorskip("redis")
        from stormwall.backends.redis import RedisTokenBucket

        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        client = redis.Redis(port=port)
        try:
            limiter = RedisTokenBucket(
                client, 10, 10, on_backend_error="fail_open"
            )
            ex = _executor(limiter=limiter, circuit_breaker=CircuitBreaker())
            assert isinstance(ex._pipeline.enter("k"), Call)
            assert limiter.statistics().backend_errors == 0  # no I/O yet
        finally:
            client.close()

    def test_the_quick_way_in_reads_the_generation_then_the_state(self):
        """As `CircuitBreaker._admit` does: a transition writes the state
        before it bumps the generation, so a closed state read second
        makes the permit current or stale, never wrongly admitting."""
        ex = _executor(circuit_breaker=CircuitBreaker())
        pipe = ex._pipeline
        reads = []

        class Spy:
            def __getattr__(self, name):
                reads.append(name)
                return getattr(ex.circuit_breaker._record, name)

        pipe.record = Spy()
        assert pipe.enter("k").__class__ is int
        assert reads == ["generation", "state"]

    def test_a_quick_attempt_that_fails_is_retried_through_a_call(self):
        ex = _executor(retry_policy=RetryPolicy(max_attempts=3, base_delay=0))
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) == 1:
                raise ValueError
            return "ok"

        assert ex.run("k", flaky) == "ok"
        assert len(calls) == 2


# What a log exporter whose logger drops successes takes.
FAILURES = {
    AttemptEnded: {"failure", "timeout", "cancelled"},
    CallEnded: {"failure", "rejected", "fallback", "cancelled"},
}


class TestObservedQuickWay:
    """Somebody listens: the quick way in, reporting what a Call would."""

    def _hushed(self, threshold=5):
        ex = _executor(
            limiter=TokenBucket(10, 10),
            circuit_breaker=CircuitBreaker(failure_threshold=threshold),
            retry_policy=RetryPolicy(
                max_attempts=3, base_delay=1, jitter=None
            ),
        )
        seen = []
        ex.bus.subscribe(
            seen.append,
            AttemptEnded,
            CallEnded,
            RetryScheduled,
            BreakerStateChanged,
            outcomes=FAILURES,
        )
        return ex, seen

    def test_a_success_takes_the_quick_way_and_builds_nothing(self):
        """After the call that tells the listener what the executor is
        made of, a call starts as a QuickCall; its success builds no
        context and no event."""
        ex, seen = self._hushed()
        first = ex._pipeline.enter("k")
        first.admit()
        first.succeeded(1)

        call = ex._pipeline.enter("k")

        assert Call is first.__class__
        assert QuickCall is call.__class__
        assert call.ctx is None
        assert INVOKE is call.admit()
        assert RETURN is call.succeeded(2)
        assert 2 == call.value
        assert 1 == ex.run("k", lambda: 1)
        assert [] == seen

    def test_a_listener_of_successes_gets_a_context(self):
        """A subscriber to CallStarted, or to successful outcomes, makes
        the quick call build its context and report; one to the limiter's
        grants makes every call a full Call."""
        ex, _ = self._hushed()
        ex.run("k", lambda: 1)
        sub = ex.bus.subscribe(print, CallStarted)
        ex.run("k", lambda: 1)

        assert ex._pipeline.enter("k").ctx is not None

        sub.close()
        assert ex._pipeline.enter("k").ctx is None
        ex.bus.subscribe(print, LimiterAllowed)
        ex.run("k", lambda: 1)
        assert Call is ex._pipeline.enter("k").__class__

    @pytest.mark.parametrize("fails", [False, True], ids=["success", "retry"])
    def test_an_observed_quick_call_reports_what_a_call_reports(self, fails):
        """With every call event taken, a quick call reports the same
        events, times and durations as a Call."""

        def trace(quick):
            ex = _executor(
                limiter=TokenBucket(10, 10),
                circuit_breaker=CircuitBreaker(),
                retry_policy=RetryPolicy(
                    max_attempts=3, base_delay=1, jitter=None
                ),
            )
            ex._pipeline.quick = quick
            clock = ex._clock
            seen = []
            ex.run("k", lambda: 1)
            ex.bus.subscribe(seen.append, CallStarted, AttemptStarted)
            ex.bus.subscribe(seen.append, AttemptEnded, CallEnded)
            ex.bus.subscribe(seen.append, RetryScheduled)
            ex.run("k", lambda: 1)
            seen.clear()
            attempts = []

            def work():
                clock.advance(0.5)
                attempts.append(1)
                if fails and len(attempts) == 1:
                    raise ValueError
                return 1

            assert quick is (ex._pipeline.enter("k").__class__ is QuickCall)
            assert 1 == ex.run("k", work)
            return [
                (
                    type(e).__name__,
                    e.time,
                    e.attempt,
                    getattr(e, "outcome", None),
                    getattr(e, "duration", None),
                )
                for e in seen
            ]

        quick = trace(quick=True)

        assert trace(quick=False) == quick
        assert ("CallEnded", "success") == (quick[-1][0], quick[-1][3])

    @pytest.mark.parametrize(
        ("threshold", "error"),
        [
            pytest.param(5, ValueError, id="retried"),
            pytest.param(1, ValueError, id="breaker-opens"),
            pytest.param(5, KeyboardInterrupt, id="interrupted"),
        ],
    )
    def test_a_failure_reports_what_a_full_call_reports(
        self, threshold, error
    ):
        """A hushed call whose first attempt fails reports the same events,
        times and durations as a call that went through a Call, with the
        call's identity."""

        def trace(hushed):
            ex, seen = self._hushed(threshold)
            ex._pipeline.quick = hushed
            clock = ex._clock
            ex.run("k", lambda: 1)
            attempts = []

            def flaky():
                clock.advance(0.5)
                attempts.append(1)
                if len(attempts) == 1:
                    raise error
                return 1

            assert hushed is (ex._pipeline.enter("k").__class__ is QuickCall)
            with contextlib.suppress(error, CircuitOpenError):
                ex.run("k", flaky)
            assert all(e.call_id is not None for e in seen)
            return [
                (
                    type(e).__name__,
                    e.time,
                    e.attempt,
                    getattr(e, "outcome", None),
                    getattr(e, "duration", None),
                )
                for e in seen
            ]

        hushed = trace(hushed=True)

        assert trace(hushed=False) == hushed
        assert ("AttemptEnded", 0.5) == (hushed[0][0], hushed[0][4])


class TestAwaitedBreaker:
    """A breaker whose decisions are awaited (as behind an asyncio client)."""

    async def _trace(self, awaited: bool) -> list[tuple[str, object]]:
        clock = MockClock()
        breaker = CircuitBreaker(
            failure_threshold=2, recovery_timeout=10, clock=clock
        )
        if awaited:
            breaker._async_only = True
        bus = EventBus()
        recorder = EventRecorder(bus).start()
        ex = AsyncResilientExecutor(
            "p",
            circuit_breaker=breaker,
            # The breaker opens on the second failure, with a retry left:
            # the retry asks it first (a probe), and its refusal ends the call.
            retry_policy=RetryPolicy(
                max_attempts=3, base_delay=1, jitter=None
            ),
            fallback=lambda error: "fallback",
            bus=bus,
        )
        expected = StoredCall if awaited else Call
        assert ex._pipeline.call.func is expected

        async def boom():
            raise ValueError

        async def fine():
            return "fine"

        assert await ex.run("k", boom) == "fallback"
        other = AsyncResilientExecutor("q", circuit_breaker=breaker, bus=bus)
        with pytest.raises(CircuitOpenError):
            await other.run("k", fine)
        await clock.sleep_async(10)
        assert await ex.run("k", fine) == "fine"
        return [
            (type(event).__name__, getattr(event, "outcome", None))
            for event in recorder.events
        ]

    @pytest.mark.asyncio
    async def test_reports_what_a_local_breaker_reports(self):
        trace = await self._trace(awaited=True)
        assert trace == await self._trace(awaited=False)
        names = [name for name, _ in trace]
        assert names.count("AttemptStarted") == 3  # 2 failures, 1 success
        assert names.count("BreakerRejected") == 2  # the probe, the "q" call
        assert ("CallEnded", "fallback") in trace
        assert ("CallEnded", "success") in trace

    def test_the_sync_executor_refuses_it(self):
        breaker = CircuitBreaker()
        breaker._async_only = True
        with pytest.raises(ConfigError, match="asyncio client") as info:
            ResilientExecutor("p", circuit_breaker=breaker)
        assert info.value.parameter == "circuit_breaker"


class Boom(Exception):
    """What the protected function raises."""


class HookBug(Exception):
    """What a user hook raises."""


def _built(kind: str, listened: bool, stored: bool = False, **parts):
    """An executor of ``kind``; listened: with a subscriber (a `Call` from
    the start), else the quick way in; stored: its breaker's decisions
    awaited, as behind an asyncio client (async only)."""
    clock = MockClock()
    bus = EventBus()
    if listened:
        bus.subscribe(lambda _: None)
    breaker = parts.get("circuit_breaker")
    if stored and breaker is not None:
        breaker._async_only = True
    cls = AsyncResilientExecutor if kind == "async" else ResilientExecutor
    return cls("p", clock=clock, bus=bus, **parts)


def _run(ex, fn):
    """Run ``fn`` (a plain function) through ``ex``, whatever its kind."""
    if isinstance(ex, AsyncResilientExecutor):

        async def afn():
            return fn()

        return asyncio.run(ex.run("k", afn))
    return ex.run("k", fn)


def _boom():
    raise Boom


_PATHS = [
    ("sync", False, False),
    ("sync", True, False),
    ("async", False, False),
    ("async", True, False),
    ("async", False, True),
    ("async", True, True),
]


class TestAFirstAttemptThatFails:
    """
    What the function's failure leads to, whichever way the call came in.

    A user hook that raises after the first attempt (a quick one when
    nobody listens) surfaces its own exception, chained to the failure it
    was judging: never an internal error about the quick way in.
    """

    @pytest.mark.parametrize("hook", ["retry_on", "retry_after", "record_on"])
    @pytest.mark.parametrize(("kind", "listened", "stored"), _PATHS)
    def test_a_raising_hook_surfaces_its_own_error(
        self, hook, kind, listened, stored
    ):
        def bug(_):
            raise HookBug

        ex = _built(
            kind,
            listened,
            stored,
            circuit_breaker=CircuitBreaker(
                record_on=bug if hook == "record_on" else (Exception,)
            ),
            retry_policy=RetryPolicy(
                max_attempts=3,
                retry_on=bug if hook == "retry_on" else (Exception,),
                retry_after=bug if hook == "retry_after" else None,
            ),
        )
        with pytest.raises(HookBug) as info:
            _run(ex, _boom)
        assert isinstance(info.value.__context__, Boom)
        # Nothing held: the breaker still admits and is closed.
        assert ex.circuit_breaker.statistics().half_open_in_flight == 0

    @pytest.mark.parametrize(("kind", "listened", "stored"), _PATHS)
    def test_a_raising_fallback_surfaces_its_own_error(
        self, kind, listened, stored
    ):
        def fallback(error):
            raise HookBug from error

        ex = _built(
            kind,
            listened,
            stored,
            circuit_breaker=CircuitBreaker(),
            fallback=fallback,
        )
        with pytest.raises(HookBug) as info:
            _run(ex, _boom)
        assert isinstance(info.value.__cause__, Boom)

    @pytest.mark.parametrize(("kind", "listened", "stored"), _PATHS)
    def test_an_interrupt_in_a_hook_escapes_as_it_is(
        self, kind, listened, stored
    ):
        def interrupted(_):
            raise KeyboardInterrupt

        ex = _built(
            kind,
            listened,
            stored,
            circuit_breaker=CircuitBreaker(),
            retry_policy=RetryPolicy(max_attempts=3, retry_on=interrupted),
        )
        with pytest.raises(KeyboardInterrupt):
            _run(ex, _boom)

    @pytest.mark.parametrize(("kind", "listened", "stored"), _PATHS)
    def test_hooks_run_after_the_failure_was_handled(
        self, kind, listened, stored
    ):
        """retry_on, retry_after and the fallback judge the failure they
        are given, as tenacity's hooks do: not from inside its ``except``
        (``sys.exc_info()`` is empty there), on every path alike."""
        seen = []

        def note(name, answer):
            def hook(_):
                seen.append((name, sys.exc_info()[1]))
                return answer

            return hook

        ex = _built(
            kind,
            listened,
            stored,
            circuit_breaker=CircuitBreaker(),
            retry_policy=RetryPolicy(
                max_attempts=2,
                base_delay=0,
                retry_on=note("retry_on", True),
                retry_after=note("retry_after", None),
            ),
            fallback=note("fallback", "fallback"),
        )
        assert _run(ex, _boom) == "fallback"
        assert seen == [
            ("retry_on", None),
            ("retry_after", None),
            ("fallback", None),  # after the second (last) attempt
        ]
