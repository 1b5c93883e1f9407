"""
Fixtures shared by every test folder: ``harness`` (each scenario through
both executors) and ``redis_server`` (a real server on a free port).

Their helpers live in tests/support/ (`harness.py`, `servers.py`); the
``clock`` and ``recorder`` fixtures come from stormwall's own pytest plugin.
"""

from __future__ import annotations

import pytest

from tests.support.harness import Harness
from tests.support.servers import RedisServer, require_binary


pytest_plugins = ["pytester"]


@pytest.fixture(params=["sync", "async"])
def harness(request):
    """The same behaviour, once through each executor."""
    return Harness(request.param)


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
