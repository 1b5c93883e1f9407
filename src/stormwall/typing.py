"""
Public protocols and aliases: the extension points of stormwall.

Implement these to plug in your own clock, event handler, exporter or random
source; type checkers accept any object with the right methods.
"""

from __future__ import annotations

from ._bus import Handler
from ._clock import Clock
from ._core._backoff import RandomSource
from ._observe import Exporter


__all__ = ["Clock", "Exporter", "Handler", "RandomSource"]
