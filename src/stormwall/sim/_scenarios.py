"""
The scenarios of ``stormwall simulate``, and the TOML scenario file.

Each scenario returns what the command writes: a JSON-able summary, CSV
rows, and a function that draws the report. The docs build draws its
figures from the same functions (``scripts/figures.py``), so the pictures
on the site are what the command produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .._async import AsyncResilientExecutor
from .._breaker import CircuitBreaker
from .._bulkhead import Bulkhead
from .._errors import ConfigError
from .._limiters import LeakyBucket, Limiter, SlidingWindow, TokenBucket
from .._retry import RetryBudget, RetryPolicy
from ._occ import STRATEGIES, occ_contention
from ._run import COLUMNS, SimResult, run
from ._upstream import Upstream


if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping
    from pathlib import Path


__all__ = [
    "OCC_CLIENTS",
    "Report",
    "occ_scenario",
    "retry_storm",
    "retry_storm_executors",
    "scenario_file",
]

OCC_CLIENTS: Final = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100)

# The retry storm: 100 calls/s for 90 s, the upstream down from 30 s to 60 s.
STORM_RATE: Final = 100.0
STORM_DURATION: Final = 90.0
STORM_OUTAGE: Final = (30.0, 60.0)
STORM_MAX_ATTEMPTS: Final = 4


@dataclass
class Report:
    """What a scenario produced: summary, CSV rows, and how to draw it."""

    summary: dict[str, Any]
    header: list[str]
    rows: list[list[Any]]
    draw: Callable[[Path], None]
    results: list[SimResult] = field(default_factory=list)


def _storm_latency(rng: random.Random) -> float:
    """About 20 ms, with a tail (lognormal, sigma 0.3)."""
    return rng.lognormvariate(math.log(0.02), 0.3)


def storm_upstream() -> Upstream:
    """The retry storm's upstream: a total outage from 30 s to 60 s."""
    start, stop = STORM_OUTAGE
    return Upstream(
        latency=_storm_latency, failure_rate=[(start, 1.0), (stop, 0.0)]
    )


def retry_storm_executors() -> dict[str, AsyncResilientExecutor]:
    """The four pipelines of the retry storm, by label."""

    def build(
        label: str, *, budget: bool, breaker: bool
    ) -> AsyncResilientExecutor:
        return AsyncResilientExecutor(
            f"storm-{label.replace(' ', '-').replace('%', 'pct')}",
            retry_policy=RetryPolicy(
                max_attempts=STORM_MAX_ATTEMPTS,
                base_delay=0.1,
                max_delay=2.0,
                budget=RetryBudget(ratio=0.1, min_per_second=1.0, ttl=10.0)
                if budget
                else None,
            ),
            circuit_breaker=CircuitBreaker(
                failure_threshold=5, recovery_timeout=5.0
            )
            if breaker
            else None,
        )

    return {
        "no cure (4 attempts)": build("none", budget=False, breaker=False),
        "10% retry budget": build("budget", budget=True, breaker=False),
        "circuit breaker": build("breaker", budget=False, breaker=True),
        "budget + breaker": build("both", budget=True, breaker=True),
    }


def outage_amplification(result: SimResult) -> float:
    """Attempts per call offered while the upstream was down."""
    start, stop = STORM_OUTAGE
    rows = [r for r in result.timeline if start <= r["second"] < stop]
    offered = sum(r["offered"] for r in rows)
    return sum(r["attempts"] for r in rows) / offered if offered else 0.0


def retry_storm(
    *, seed: int = 0, progress: Callable[[str, float], None] | None = None
) -> Report:
    """A 30 s total outage at 100 calls/s: no cure, budget, breaker, both."""
    results = []
    executors = retry_storm_executors()
    for n, (label, executor) in enumerate(executors.items()):

        def step(done: float, label: str = label, n: int = n) -> None:
            if progress is not None:
                progress(f"retry-storm: {label}", (n + done) / len(executors))

        results.append(
            run(
                executor,
                storm_upstream(),
                rate=STORM_RATE,
                duration=STORM_DURATION,
                seed=seed,
                label=label,
                progress=step,
            )
        )
    summary = {
        r.label: {
            **r.summary,
            "outage_amplification": outage_amplification(r),
        }
        for r in results
    }
    header, rows = _timeline_rows(results)

    def draw(path: Path) -> None:
        from ._plot import plot_compare

        plot_compare(
            results,
            path,
            title=(
                "Retry storm: 100 calls/s, the upstream fails every request "
                "from 30 s to 60 s"
            ),
        )

    return Report(summary, header, rows, draw, results)


def occ_scenario(
    *,
    runs: int = 100,
    seed: int = 0,
    clients: tuple[int, ...] = OCC_CLIENTS,
    progress: Callable[[str, float], None] | None = None,
) -> Report:
    """The AWS back-off study: calls and time against clients."""
    table: dict[str, list[tuple[int, float, float]]] = {}
    total = len(STRATEGIES) * len(clients)
    done = 0
    for strategy in STRATEGIES:
        points = table[strategy] = []
        for n in clients:
            if progress is not None:
                progress(
                    f"occ-contention: {strategy}, {n} clients", done / total
                )
            result = occ_contention(n, strategy, runs=runs, seed=seed)
            points.append((n, result.calls, result.duration))
            done += 1
    summary = {
        "runs": runs,
        "seed": seed,
        "strategies": {
            s: [
                {"clients": n, "calls": calls, "duration": duration}
                for n, calls, duration in points
            ]
            for s, points in table.items()
        },
    }
    rows = [
        [s, n, calls, duration]
        for s, points in table.items()
        for n, calls, duration in points
    ]

    def draw(path: Path) -> None:
        from ._plot import plot_occ

        plot_occ(
            table,
            path,
            title=(
                "Optimistic concurrency under contention: back-off strategies "
                f"(mean of {runs} runs)"
            ),
        )

    return Report(
        summary, ["strategy", "clients", "calls", "duration_s"], rows, draw
    )


def _timeline_rows(
    results: list[SimResult],
) -> tuple[list[str], list[list[Any]]]:
    header = ["scenario", *COLUMNS]
    rows = [
        [r.label, *(row[c] for c in COLUMNS)]
        for r in results
        for row in r.timeline
    ]
    return header, rows


# -- the scenario file --------------------------------------------------------

_LIMITERS: Final[Mapping[str, type[Limiter]]] = {
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
    "sliding_window": SlidingWindow,
}
_EXECUTOR_KEYS: Final = frozenset(
    {
        "timeout",
        "limiter_timeout",
        "retry",
        "retry_budget",
        "circuit_breaker",
        "limiter",
        "bulkhead",
    }
)


def scenario_file(
    path: Path,
    *,
    seed: int | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Report:
    """
    Simulate the executors a TOML file describes, against its upstream.

    See ``docs/simulate.md`` for the format. Every error is a `ConfigError`
    naming its path in the file (``executors.api.retry.max_attempts``).
    """
    import tomllib

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(
            "scenario-file", f"cannot read {path}: {exc}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("scenario-file", f"{path}: {exc}") from None
    _only(data, {"traffic", "upstream", "executors"}, "")
    traffic = _table(data, "traffic")
    _only(traffic, {"rate", "clients", "duration", "seed", "key"}, "traffic")
    upstream_spec = _table(data, "upstream")
    _only(upstream_spec, {"latency", "failure_rate", "capacity"}, "upstream")
    upstream = _call(Upstream, upstream_spec, "upstream")
    specs = _table(data, "executors")
    if not specs:
        raise ConfigError("executors", "describe at least one executor")
    executors = {
        name: _executor(name, _table(specs, name, "executors"))
        for name in specs
    }
    options = {
        k: traffic[k]
        for k in ("rate", "clients", "duration", "key")
        if k in traffic
    }
    if "duration" not in options:
        raise ConfigError("traffic.duration", "give the seconds of traffic")
    run_seed = seed if seed is not None else traffic.get("seed", 0)
    results = []
    for n, (name, executor) in enumerate(executors.items()):

        def step(done: float, name: str = name, n: int = n) -> None:
            if progress is not None:
                progress(f"{path.name}: {name}", (n + done) / len(executors))

        try:
            results.append(
                run(
                    executor,
                    upstream,
                    seed=run_seed,
                    label=name,
                    progress=step,
                    **options,
                )
            )
        except ConfigError as exc:
            where = (
                "traffic"
                if exc.parameter != "executor"
                else f"executors.{name}"
            )
            raise ConfigError(
                f"{where}.{exc.parameter}", str(exc).split(": ", 1)[-1]
            ) from None
    summary = {r.label: r.summary for r in results}
    header, rows = _timeline_rows(results)

    def draw(out: Path) -> None:
        if len(results) == 1:
            results[0].plot(out, title=f"{path.name}: {results[0].label}")
            return
        from ._plot import plot_compare

        plot_compare(results, out, title=f"{path.name}: executors compared")

    return Report(summary, header, rows, draw, results)


def _table(data: Mapping[str, Any], key: str, at: str = "") -> dict[str, Any]:
    where = f"{at}.{key}" if at else key
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(
            where, f"expected a table, got {type(value).__name__}"
        )
    return value


def _only(
    data: Mapping[str, Any], allowed: set[str] | frozenset[str], at: str
) -> None:
    for key in data:
        if key not in allowed:
            where = f"{at}.{key}" if at else key
            raise ConfigError(
                where,
                f"unknown key; expected one of {', '.join(sorted(allowed))}",
            )


def _call(cls: Callable[..., Any], spec: Mapping[str, Any], at: str) -> Any:
    """``cls(**spec)``, with every error named by its path in the file."""
    try:
        return cls(**spec)
    except ConfigError as exc:
        raise ConfigError(
            f"{at}.{exc.parameter}", str(exc).split(": ", 1)[-1]
        ) from None
    except TypeError as exc:
        raise ConfigError(at, str(exc)) from None


def _executor(name: str, spec: dict[str, Any]) -> AsyncResilientExecutor:
    at = f"executors.{name}"
    _only(spec, _EXECUTOR_KEYS, at)
    budget = None
    if "retry_budget" in spec:
        budget = _call(
            RetryBudget, _table(spec, "retry_budget", at), f"{at}.retry_budget"
        )
    policy = None
    if "retry" in spec or budget is not None:
        retry = dict(_table(spec, "retry", at))
        if "budget" in retry:
            raise ConfigError(
                f"{at}.retry.budget", "use a [retry_budget] table instead"
            )
        policy = _call(RetryPolicy, {**retry, "budget": budget}, f"{at}.retry")
    breaker = None
    if "circuit_breaker" in spec:
        breaker = _call(
            CircuitBreaker,
            _table(spec, "circuit_breaker", at),
            f"{at}.circuit_breaker",
        )
    limiter: Limiter | None = None
    if "limiter" in spec:
        limiter_spec = dict(_table(spec, "limiter", at))
        kind = limiter_spec.pop("kind", "token_bucket")
        if kind not in _LIMITERS:
            raise ConfigError(
                f"{at}.limiter.kind",
                f"expected one of {', '.join(_LIMITERS)}, got {kind!r}",
            )
        limiter = _call(_LIMITERS[kind], limiter_spec, f"{at}.limiter")
    bulkhead = None
    if "bulkhead" in spec:
        bulkhead = _call(
            Bulkhead, _table(spec, "bulkhead", at), f"{at}.bulkhead"
        )
    executor: AsyncResilientExecutor = _call(
        AsyncResilientExecutor,
        {
            "name": name,
            "retry_policy": policy,
            "circuit_breaker": breaker,
            "limiter": limiter,
            "bulkhead": bulkhead,
            **{
                k: spec[k] for k in ("timeout", "limiter_timeout") if k in spec
            },
        },
        at,
    )
    return executor
