"""
The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``mock_clock``: a fresh `MockClock` in autojump mode.
- ``stormwall_events``: an `EventRecorder` recording `stormwall.default_bus`
  for the duration of the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .._clock import MockClock
from ._recorder import EventRecorder


if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def mock_clock() -> MockClock:
    """A fresh `MockClock` (autojump) for the test."""
    return MockClock()


@pytest.fixture
def stormwall_events() -> Iterator[EventRecorder]:
    """Record every event on `stormwall.default_bus` during the test."""
    with EventRecorder() as recorder:
        yield recorder
