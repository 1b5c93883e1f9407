from __future__ import annotations

import os
import shutil

import pytest


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
