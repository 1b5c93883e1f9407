"""
Test your resilient code: virtual time and recorded events.

- `MockClock`: time as a value the test controls (``stormwall.MockClock``).
- `EventRecorder`: keeps the events a bus delivers and asserts on them.
- pytest fixtures, registered automatically when stormwall is installed:
  ``mock_clock`` (a fresh `MockClock`) and ``stormwall_events`` (an
  `EventRecorder` on `stormwall.default_bus`).
"""

from __future__ import annotations

from .._clock import MockClock
from ._recorder import EventRecorder


__all__ = ["EventRecorder", "MockClock"]
