"""
Real servers for integration tests: a binary on PATH, a free loopback port,
a ``redis-server`` of the test's own.

A missing binary skips the test, or fails it under
``STORMWALL_REQUIRE_INTEGRATION=1`` (set by .ci/run).
"""

from __future__ import annotations

import os
import shutil

import pytest


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
