from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from stormwall import AsyncResilientExecutor, EventBus, ResilientExecutor
from stormwall.testing import EventRecorder


pytest_plugins = ["pytester"]

REQUIRE_INTEGRATION = os.environ.get("STORMWALL_REQUIRE_INTEGRATION") == "1"


def require_binary(name: str) -> str:
    """
    The path of a server binary an integration test needs.

    Skips when it is missing, unless STORMWALL_REQUIRE_INTEGRATION=1 (set by
    .ci/run), where a missing server is a failure, not a skip.
    """
    path = shutil.which(name)
    if path is None:
        if REQUIRE_INTEGRATION:
            pytest.fail(f"{name} is not on PATH (integration is required)")
        pytest.skip(f"{name} is not on PATH")
    return path


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


@pytest.fixture(params=["sync", "async"])
def harness(request):
    """The same behaviour, once through each executor."""
    return Harness(request.param)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (closed again before it is returned)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """
    A real ``redis-server`` on a free loopback port, for one test.

    `stop` kills it (to test what happens when Redis is unreachable) and
    `start` brings it back on the same port, empty.
    """

    def __init__(self, binary: str, workdir) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"redis://{self.host}:{self.port}/0"
        self._proc = None

    def start(self) -> None:
        import subprocess
        import time

        self._proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket_to(self.host, self.port) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        self.stop()
        msg = f"redis-server did not start on port {self.port}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def socket_to(host: str, port: int):
    import socket

    return socket.create_connection((host, port), timeout=1)


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server for the test (skips without the binary, fails
    without it under STORMWALL_REQUIRE_INTEGRATION=1)."""
    server = RedisServer(require_binary("redis-server"), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
