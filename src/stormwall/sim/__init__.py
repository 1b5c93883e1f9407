"""
The simulator: your executor against a synthetic upstream, in virtual time.

`run` drives the real `stormwall.AsyncResilientExecutor` (yours, built as in
production) with open-loop or closed-loop traffic against an `Upstream`
whose latency, failure rate and capacity you choose, on a
`VirtualEventLoop` whose clock jumps whenever every task waits: an hour of
traffic runs in seconds, the same seed gives the same result bit for bit.
`occ_contention` is the reference study of the AWS Architecture Blog's
"Exponential Backoff and Jitter". `run_virtual` runs any coroutine function
in virtual time, for your own tests.

Plotting (`SimResult.plot`, ``stormwall simulate``) needs the ``[sim]``
extra (matplotlib); nothing else here needs a third-party package.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from ._loop import (
    VirtualClock,
    VirtualEventLoop,
    current_clock,
    keeping_time,
    run_virtual,
)
from ._occ import STRATEGIES, ConflictError, OccResult, occ_contention
from ._run import SimResult, run
from ._upstream import Upstream, UpstreamError


__all__ = [
    "STRATEGIES",
    "ConflictError",
    "OccResult",
    "SimResult",
    "Upstream",
    "UpstreamError",
    "VirtualClock",
    "VirtualEventLoop",
    "current_clock",
    "keeping_time",
    "occ_contention",
    "run",
    "run_virtual",
]
