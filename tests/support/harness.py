"""
`Harness`: one scripted scenario, run through the sync or the async executor.

The ``harness`` fixture (tests/conftest.py) hands one out per executor kind;
`steps` turns values, exceptions and `Step` objects into the script a
protected function plays, one step per call.
"""

from __future__ import annotations

import asyncio

from stormwall import AsyncResilientExecutor, EventBus, ResilientExecutor
from stormwall.testing import EventRecorder


class Step:
    """One scripted behaviour of a protected function."""


class Raise(Step):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Return(Step):
    def __init__(self, value: object) -> None:
        self.value = value


class Sleep(Step):
    """Sleep on the clock for ``seconds``, then run the inner step."""

    def __init__(self, seconds: float, then: Step) -> None:
        self.seconds = seconds
        self.then = then


def steps(*items):
    """Exceptions raise, Steps act, anything else is returned."""
    out = []
    for item in items:
        if isinstance(item, Step):
            out.append(item)
        elif isinstance(item, BaseException):
            out.append(Raise(item))
        else:
            out.append(Return(item))
    return out


class _SyncExecutor(ResilientExecutor):
    __slots__ = ("recorder",)


class _AsyncExecutor(AsyncResilientExecutor):
    __slots__ = ("recorder",)


class Harness:
    """
    Runs the same scenario through the sync or the async executor.

    ``run(executor, key, script)`` calls a function that plays ``script``
    (one step per call) and returns what the executor returned, or raises.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls = 0

    def executor(self, name="svc", **kwargs):
        bus = kwargs.setdefault("bus", EventBus())
        cls = _SyncExecutor if self.kind == "sync" else _AsyncExecutor
        ex = cls(name, **kwargs)
        ex.recorder = EventRecorder(bus).start()
        return ex

    def _fn(self, executor, script):
        clock = executor.clock
        it = iter(script)

        def play(step):
            self.calls += 1
            if isinstance(step, Raise):
                raise step.exc
            return step.value

        if self.kind == "sync":

            def fn():
                step = next(it)
                if isinstance(step, Sleep):
                    clock.sleep(step.seconds)
                    step = step.then
                return play(step)

            return fn

        async def afn():
            step = next(it)
            if isinstance(step, Sleep):
                await clock.sleep_async(step.seconds)
                step = step.then
            return play(step)

        return afn

    def run(self, executor, key, script):
        fn = self._fn(executor, steps(*script))
        if self.kind == "sync":
            return executor.run(key, fn)
        return asyncio.run(executor.run(key, fn))

    def run_fn(self, executor, key, sync_fn, async_fn):
        if self.kind == "sync":
            return executor.run(key, sync_fn)
        return asyncio.run(executor.run(key, async_fn))
