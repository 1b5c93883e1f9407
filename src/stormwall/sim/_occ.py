"""
The reference study: optimistic concurrency under contention.

Marc Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog,
2015, https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)
simulated N clients that all try to update one row with optimistic
concurrency control at the same moment, each retrying with a back-off
strategy until it succeeds, and compared the strategies' total work (calls)
and completion time. `occ_contention` reproduces that setup through the real
`stormwall.RetryPolicy` and `stormwall.AsyncResilientExecutor`.

One attempt is a read and a conditional write, two round trips of four
network legs, each ~ Normal(10 ms, 2 ms): the read reaches the row and sees
its version; two legs later (the read's reply, the write's request) the
write reaches it and fails (`ConflictError`) if another write landed in
between; its reply takes the fourth leg. The strategies map onto `RetryPolicy`:
``"none"`` retries at once (``base_delay=0``), ``"exponential"`` is
``jitter=None``, ``"equal"``, ``"full"`` and ``"decorrelated"`` are those
jitters; all double (``multiplier=2``) from ``base_delay`` up to
``max_delay``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Final

from .. import _validate
from .._async import AsyncResilientExecutor
from .._errors import ConfigError
from .._retry import RetryPolicy
from ._loop import VirtualEventLoop, keeping_time
from ._run import MAX_CALLS, check_seed


__all__ = ["STRATEGIES", "ConflictError", "OccResult", "occ_contention"]

STRATEGIES: Final = ("none", "exponential", "equal", "full", "decorrelated")

_JITTER: Final = {
    "none": None,
    "exponential": None,
    "equal": "equal",
    "full": "full",
    "decorrelated": "decorrelated",
}

# Network legs: Normal(10 ms, 2 ms), never negative.
_LEG_MEAN: Final = 0.010
_LEG_SD: Final = 0.002

# Attempts per client before giving up: never reached in practice (the
# study retries until success), but a RetryPolicy needs a bound.
_MAX_ATTEMPTS: Final = 1_000_000


class ConflictError(Exception):
    """Another write landed between this attempt's read and its write."""


@dataclass(frozen=True, slots=True)
class OccResult:
    """
    The means over the runs of one `occ_contention` setting.

    Attributes:
        strategy: The back-off strategy.
        clients: Contending clients per run.
        runs: How many runs the means are over.
        calls: Mean attempts made, all clients together, until every
            client had succeeded (the study's "work").
        duration: Mean seconds until the last client succeeded.

    .. versionadded:: 0.2.0
    """

    strategy: str
    clients: int
    runs: int
    calls: float
    duration: float


def policy_for(
    strategy: str, base_delay: float, max_delay: float
) -> RetryPolicy:
    """The `RetryPolicy` that implements ``strategy``."""
    if strategy not in _JITTER:
        raise ConfigError(
            "strategy",
            f"expected one of {', '.join(STRATEGIES)}, got {strategy!r}",
        )
    return RetryPolicy(
        max_attempts=_MAX_ATTEMPTS,
        base_delay=0.0 if strategy == "none" else base_delay,
        max_delay=max_delay,
        multiplier=2.0,
        jitter=_JITTER[strategy],
        retry_on=ConflictError,
    )


def occ_contention(
    clients: int,
    strategy: str,
    *,
    base_delay: float = 0.005,
    max_delay: float = 2.0,
    runs: int = 100,
    seed: int = 0,
) -> OccResult:
    """
    Run the AWS back-off study's contention scenario ``runs`` times.

    Args:
        clients: How many clients contend for the one row.
        strategy: ``"none"``, ``"exponential"``, ``"equal"``, ``"full"``
            or ``"decorrelated"``.
        base_delay: The first back-off, in seconds.
        max_delay: The back-off cap, in seconds.
        runs: Runs to average over (the network draws differ per run).
            A run makes up to ``clients**2`` calls (no back-off), and
            ``runs * clients**2`` is at most ten million.
        seed: Same seed, same result; the network draws depend on the
            seed and ``clients`` only, so every strategy meets the same
            network.

    Returns:
        The means, as an `OccResult` (``.calls``, ``.duration``).

    Raises:
        ConfigError: A parameter is outside its domain.

    .. versionadded:: 0.2.0
    """
    clients = _validate.positive_int("clients", clients)
    runs = _validate.positive_int("runs", runs)
    # Without back-off every client retries until it wins the row: a run
    # makes up to clients**2 calls.
    if clients * clients > MAX_CALLS:
        raise ConfigError(
            "clients",
            f"clients**2 must be <= {MAX_CALLS:_} calls, got "
            f"{_validate.shown(clients)}",
        )
    if runs * clients * clients > MAX_CALLS:
        raise ConfigError(
            "runs",
            f"runs * clients**2 must be <= {MAX_CALLS:_} calls, got "
            f"{_validate.shown(runs * clients * clients)}",
        )
    base_delay = _validate.positive("base_delay", base_delay, seconds=True)
    check_seed(seed)
    executor = AsyncResilientExecutor(
        f"occ-{strategy}",
        retry_policy=policy_for(strategy, base_delay, max_delay),
    )
    network = random.Random(f"stormwall.sim.occ:{seed}:{clients}")

    async def study() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)  # noqa: S101
        calls = 0
        elapsed = 0.0
        with keeping_time([executor], loop.virtual_clock, seed):
            for _ in range(runs):
                row = [0]  # the row's version
                made = [0]

                async def write(
                    row: list[int] = row, made: list[int] = made
                ) -> None:
                    made[0] += 1
                    await asyncio.sleep(_leg())  # the read reaches the row
                    seen = row[0]
                    # Its reply, then the conditional write's request.
                    await asyncio.sleep(_leg() + _leg())
                    conflict = row[0] != seen
                    if not conflict:
                        row[0] += 1
                    await asyncio.sleep(_leg())  # the write's reply
                    if conflict:
                        raise ConflictError

                start = loop.time()
                await asyncio.gather(
                    *(executor.run("row", write) for _ in range(clients))
                )
                elapsed += loop.time() - start
                calls += made[0]
        return calls, elapsed

    def _leg() -> float:
        return max(0.0, network.gauss(_LEG_MEAN, _LEG_SD))

    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        calls, elapsed = runner.run(study())
    return OccResult(strategy, clients, runs, calls / runs, elapsed / runs)
