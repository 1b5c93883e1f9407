"""
Measure every case of bench/cases/ in one interleaved run and write the
Markdown report (docs/performance.md in the full run). Called by run.py
inside .venv-bench; not meant to be run on its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _harness import Case, run_interleaved
from cases import breakers, executors, exporters, keys, limiters, redis_cases
from cases import sim as sim_case
from cases.common import PEERS, version


if TYPE_CHECKING:
    from collections.abc import Iterable

ROOT = Path(__file__).resolve().parent.parent
MINUS, DASH, TIMES = "\u2212", "\u2013", "\u00d7"  # for the Markdown
FULL = {"repeat": 11, "target": 0.08, "number": 0, "warmup": 2_000}
SMOKE = {"repeat": 1, "target": None, "number": 300, "warmup": 20}

S_SYNC, S_ASYNC = executors.SYNC, executors.ASYNC
R_SYNC, R_ASYNC = executors.RETRY, executors.ARETRY
L_SYNC, L_ASYNC = limiters.SYNC, limiters.ASYNC
EXP, REDIS = exporters.GROUP, redis_cases.GROUP
FULL_RUN = "stormwall run(): breaker + bucket + retry"
RETRY_ONLY = "stormwall run(): retry only"
BREAKER_ONLY = "stormwall run(): breaker only"
LIMITPAL = "limitpal executor: breaker + bucket + retry"
TENACITY = "tenacity Retrying(stop_after_attempt(3), wait_exponential_jitter)"
TB = "stormwall TokenBucket.try_acquire()"
TB_K = "stormwall TokenBucket.try_acquire('k')"
AIOLIMITER = "aiolimiter await AsyncLimiter.acquire()"
TENACITY_ASYNC = (
    "tenacity AsyncRetrying(stop_after_attempt(3), wait_exponential_jitter)"
)
STAMINA_HOOKS = (
    "stamina RetryingCaller(no wait) + structlog + Prometheus hooks"
)
PYRATE_STATE = "pyrate-limiter Limiter.try_acquire (StateBucket, TokenBucket)"
LIMITS_FIXED = "limits FixedWindowRateLimiter.hit (MemoryStorage)"
NOPANIC_RETRY = "nopanic @retry(attempts=3, full_jitter)"
NOPANIC_ZERO = "nopanic @retry(attempts=3, backoff=0)"

# (section, stormwall case, peer case, target limit or None)
COMPARISONS: list[tuple[str, str, str, float | None]] = [
    (
        "Success path, sync",
        f"{S_SYNC}/{FULL_RUN}",
        f"{S_SYNC}/{LIMITPAL}",
        0.5,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{FULL_RUN}",
        f"{S_SYNC}/{TENACITY}",
        0.1,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{FULL_RUN}",
        f"{S_SYNC}/stamina RetryingCaller(attempts=3)",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{RETRY_ONLY}",
        f"{S_SYNC}/{TENACITY}",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{RETRY_ONLY}",
        f"{S_SYNC}/stamina RetryingCaller(attempts=3)",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{RETRY_ONLY}",
        f"{S_SYNC}/stamina retry_context(attempts=3)",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{RETRY_ONLY}",
        f"{S_SYNC}/backoff on_exception(expo, max_tries=3)",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{RETRY_ONLY}",
        f"{S_SYNC}/{NOPANIC_RETRY}",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{RETRY_ONLY}",
        f"{S_ASYNC}/{NOPANIC_RETRY}",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{RETRY_ONLY}",
        f"{R_SYNC}/{NOPANIC_ZERO}",
        None,
    ),
    (
        "One-retry path, async",
        f"{R_ASYNC}/{FULL_RUN}",
        f"{R_ASYNC}/{NOPANIC_ZERO}",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{BREAKER_ONLY}",
        f"{S_SYNC}/pybreaker CircuitBreaker.call(fn)",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{BREAKER_ONLY}",
        f"{S_SYNC}/circuitbreaker @CircuitBreaker",
        None,
    ),
    (
        "Success path, sync",
        f"{S_SYNC}/{BREAKER_ONLY}",
        f"{S_SYNC}/purgatory SyncCircuitBreakerFactory decorator",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{FULL_RUN}",
        f"{S_ASYNC}/{LIMITPAL}",
        0.5,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{FULL_RUN}",
        f"{S_ASYNC}/{TENACITY_ASYNC}",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{RETRY_ONLY}",
        f"{S_ASYNC}/{TENACITY_ASYNC}",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{RETRY_ONLY}",
        f"{S_ASYNC}/stamina AsyncRetryingCaller(attempts=3)",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{RETRY_ONLY}",
        f"{S_ASYNC}/backoff on_exception(expo, max_tries=3)",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{BREAKER_ONLY}",
        f"{S_ASYNC}/circuitbreaker @CircuitBreaker",
        None,
    ),
    (
        "Success path, async",
        f"{S_ASYNC}/{BREAKER_ONLY}",
        f"{S_ASYNC}/purgatory AsyncCircuitBreakerFactory decorator",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{FULL_RUN}",
        f"{R_SYNC}/{LIMITPAL}",
        None,
    ),
    (
        "One-retry path, async",
        f"{R_ASYNC}/{FULL_RUN}",
        f"{R_ASYNC}/{LIMITPAL}",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{RETRY_ONLY}",
        f"{R_SYNC}/tenacity Retrying(stop_after_attempt(3), wait_none)",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{RETRY_ONLY}",
        f"{R_SYNC}/tenacity Retrying(..., wait_none, sleep=no-op)",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{RETRY_ONLY}",
        f"{R_SYNC}/stamina RetryingCaller(attempts=3, no wait), no hooks",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/{RETRY_ONLY}",
        f"{R_SYNC}/backoff on_exception(constant 0, max_tries=3)",
        None,
    ),
    (
        "One-retry path, sync",
        f"{R_SYNC}/stormwall run() + structlog + Prometheus exporters",
        f"{R_SYNC}/{STAMINA_HOOKS}",
        None,
    ),
    *(
        (
            f"Rate-window breaker, {what}",
            f"{group}/{mine}",
            f"{group}/{peer}",
            None,
        )
        for what, group in (
            ("success, sync", breakers.SYNC),
            ("success, async", breakers.ASYNC),
            ("1 in 10 fails, sync", breakers.FAIL_SYNC),
            ("1 in 10 fails, async", breakers.FAIL_ASYNC),
        )
        for mine, peer in (
            (breakers.STORMWALL_TIME, breakers.NOPANIC),
            (breakers.STORMWALL_TIME, breakers.INTERLOCK_TIME),
            (breakers.STORMWALL_COUNT, breakers.INTERLOCK_COUNT),
            (breakers.STORMWALL_CONSECUTIVE, breakers.NOPANIC),
        )
    ),
    ("Limiter decisions", f"{L_SYNC}/{TB}", f"{L_ASYNC}/{AIOLIMITER}", 0.7),
    (
        "Limiter decisions",
        f"{L_ASYNC}/stormwall await TokenBucket.acquire_async('k')",
        f"{L_ASYNC}/{AIOLIMITER}",
        None,
    ),
    ("Limiter decisions", f"{L_SYNC}/{TB_K}", f"{L_SYNC}/{LIMITS_FIXED}", 0.3),
    (
        "Limiter decisions",
        f"{L_SYNC}/stormwall SlidingWindow.try_acquire('k')",
        f"{L_SYNC}/limits MovingWindowRateLimiter.hit (MemoryStorage)",
        None,
    ),
    (
        "Limiter decisions",
        f"{L_SYNC}/stormwall SlidingWindow.try_acquire('k')",
        f"{L_SYNC}/limits SlidingWindowCounterRateLimiter.hit (MemoryStorage)",
        None,
    ),
    (
        "Limiter decisions",
        f"{L_SYNC}/{TB_K}",
        f"{L_SYNC}/pyrate-limiter Limiter.try_acquire (InMemoryBucket)",
        None,
    ),
    (
        "Limiter decisions",
        f"{L_SYNC}/{TB_K}",
        f"{L_SYNC}/{PYRATE_STATE}",
        None,
    ),
    (
        "Limiter decisions",
        f"{L_SYNC}/{TB_K}",
        f"{L_SYNC}/limitpal TokenBucket.acquire('k')",
        None,
    ),
    (
        "Limiter decisions",
        f"{L_ASYNC}/stormwall await TokenBucket.acquire_async('k')",
        f"{L_ASYNC}/limitpal await AsyncTokenBucket.acquire('k')",
        None,
    ),
    (
        "Redis, same server",
        f"{S_SYNC}/{redis_cases.SHARED_BREAKER}",
        f"{S_SYNC}/{BREAKER_ONLY}",
        2.0,
    ),
    (
        "Redis, same server",
        f"{REDIS}/stormwall RedisTokenBucket.try_acquire",
        f"{REDIS}/limits FixedWindowRateLimiter.hit (RedisStorage)",
        None,
    ),
    (
        "Redis, same server",
        f"{REDIS}/stormwall RedisSlidingWindow.try_acquire",
        f"{REDIS}/limits MovingWindowRateLimiter.hit (RedisStorage)",
        None,
    ),
    (
        "Redis, same server",
        f"{REDIS}/stormwall RedisTokenBucket.try_acquire",
        f"{REDIS}/pyrate-limiter Limiter.try_acquire (RedisBucket)",
        None,
    ),
]
# (exporter run, raw equivalent, goal on added ÷ raw, floor) where the
# floor is (ratio, ns): added ≤ max(ratio x raw, raw + ns), the bound that
# must never be missed (docs/performance.md); the goal is the stretch one.
EXPORTER_OVERHEAD: list[
    tuple[str, str, float | None, tuple[float, float] | None]
] = [
    (
        "stormwall run() + OTel TracingExporter",
        "raw OTel: call + attempt span, made current",
        1.15,
        None,
    ),
    (
        "stormwall run() + OTel MetricsExporter",
        "raw OTel: 3 counter adds + 2 histogram records",
        0.1,
        (1.2, 1000.0),
    ),
    (
        "stormwall run() + PrometheusExporter",
        "raw prometheus_client: 3 inc + 2 observe",
        0.5,
        (1.2, 1000.0),
    ),
    (
        "stormwall run() + StructlogExporter, DEBUG to /dev/null",
        "raw structlog: 2 x .debug(**6 fields), to /dev/null",
        None,
        None,
    ),
    (
        "stormwall run() + StructlogExporter, DEBUG filtered",
        "raw structlog: 2 x .debug(**6 fields), filtered",
        None,
        (1.2, 500.0),
    ),
]
COUNTING_RUN = "stormwall run(), counting on, no exporter"


def floor_limit(raw: float, floor: tuple[float, float] | None) -> float:
    """The floor as a ratio of ``raw``: max(ratio, 1 + ns / raw)."""
    if floor is None or raw != raw or raw <= 0:  # noqa: PLR0124 - NaN
        return float("nan")
    return max(floor[0], 1 + floor[1] / raw)


def exporter_verdict(r: float, goal: float | None, floor: float) -> str:
    """Goal met, floor met, or missed."""
    if r != r:  # noqa: PLR0124 - NaN
        return "not measured"
    if goal is not None and r <= goal:
        return "**met**"
    if floor == floor and r <= floor:  # noqa: PLR0124
        return "floor met, goal missed" if goal is not None else "**met**"
    if goal is None and floor != floor:  # noqa: PLR0124
        return ""
    return "**missed**"


BASE_RUN = "stormwall run(), no exporter"
MEMORY_LIMIT = 200.0  # bytes per live key at 1M keys
FLAT_LIMIT = 1.5  # insertion ns/key at 1M ÷ at 10k


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- formatting -------------------------------------------------------------


def ns(value: float) -> str:
    if value != value:  # noqa: PLR0124 - NaN
        return "n/a"
    if value >= 100_000:
        return f"{value / 1000:,.0f} µs"
    if value >= 10_000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.0f} ns"


def ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"  # noqa: PLR0124


def verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return ""
    if value != value:  # noqa: PLR0124
        return "not measured"
    return "**met**" if value <= limit else "**missed**"


def table(head: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(head)
    body = [[str(c) for c in row] for row in rows]

    def numeric(cell: str) -> bool:
        return not cell or cell[0].isdigit() or cell[0] in "≤*n"

    align = [
        "---:" if all(numeric(row[i]) for row in body) else "---"
        for i in range(len(head))
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


# --- machine ----------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(
                ("model name", "hardware", "cpu model")
            ):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not on PATH"
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or "unknown"


def git_describe() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    head = subprocess.run(
        [git, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout.strip()
    dirty = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=no", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout.strip()
    return f"{head or 'unknown'}{' (src/ modified)' if dirty else ''}"


def machine() -> list[tuple[str, str]]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [
        ("platform", platform.platform()),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} logical"),
        (
            "Python",
            f"{platform.python_implementation()} {platform.python_version()}",
        ),
        ("stormwall", f"{version('stormwall')}, commit {git_describe()}"),
        (
            "load average at start",
            ", ".join(f"{x:.2f}" for x in load) if load else "n/a",
        ),
    ]


# --- measuring --------------------------------------------------------------


def measure_and_report(*, smoke: bool, out: Path, argv: list[str]) -> int:
    started = time.monotonic()
    settings = SMOKE if smoke else FULL
    progress(
        f"stormwall bench ({'smoke' if smoke else 'full'}): building cases"
    )
    info = machine()
    cases: list[Case] = []
    for module in (executors, breakers, limiters, exporters):
        cases += module.cases(smoke)
    server = redis_cases.RedisServer()
    closers: list[object] = []
    redis_note = ""
    if server.start():
        found, closers = redis_cases.cases(server.url)
        cases += found
    else:
        redis_note = (
            "redis-server is not on PATH: the Redis cases were skipped."
        )
        progress(f"  {redis_note}")
    try:
        progress(
            f"timing {len(cases)} cases, {settings['repeat']} interleaved "
            "repeats"
        )
        run_interleaved(cases, progress=progress, **settings)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()  # type: ignore[operator]
        server.stop()
    progress("per-key cost and memory")
    key_rows = keys.measure(smoke=smoke, progress=progress)
    sim_row = sim_case.measure(smoke=smoke, progress=progress)
    elapsed = time.monotonic() - started
    text = render(
        cases,
        key_rows,
        smoke=smoke,
        info=info,
        elapsed=elapsed,
        redis_note=redis_note,
        argv=argv,
        sim_row=sim_row,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if not smoke:
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "latest.json").write_text(
            json.dumps(
                {
                    "cases": [
                        {
                            "key": c.key,
                            "peer": c.peer,
                            "number": c.number,
                            "runs_ns": c.runs,
                            "error": c.error,
                        }
                        for c in cases
                    ],
                    "keys": key_rows,
                    "sim": sim_row,
                },
                indent=1,
            )
        )
    print(targets_text(cases, key_rows))
    errors = [c for c in cases if c.error]
    for case in errors:
        progress(f"error: {case.key}: {case.error}")
    progress(f"wrote {out} in {elapsed:.0f} s")
    return 1 if errors else 0


# --- the report -------------------------------------------------------------


def paired(cases: dict[str, Case], a: str, b: str) -> float:
    """Median over repeats of a - b (repeats were interleaved: pairs)."""
    ca, cb = cases.get(a), cases.get(b)
    if not ca or not cb or not ca.runs or not cb.runs:
        return float("nan")
    return statistics.median(
        x - y for x, y in zip(ca.runs, cb.runs, strict=False)
    )


def median(cases: dict[str, Case], key: str) -> float:
    case = cases.get(key)
    return case.median if case and case.runs else float("nan")


def label(key: str) -> str:
    return key.split("/", 1)[1]


def target_rows(
    all_cases: list[Case], key_rows: list[dict]
) -> list[list[str]]:
    cases = {c.key: c for c in all_cases}
    rows = []
    for section, mine, peer, limit in COMPARISONS:
        if limit is None:
            continue
        r = median(cases, mine) / median(cases, peer)
        rows.append(
            [
                f"{section}: {label(mine)} ÷ {label(peer)}",
                f"{ns(median(cases, mine))} / {ns(median(cases, peer))}",
                ratio(r),
                f"≤ {limit}",
                verdict(r, limit),
            ]
        )
    for exported, raw, goal, floor in EXPORTER_OVERHEAD:
        if goal is None and floor is None:
            continue
        added = paired(cases, f"{EXP}/{exported}", f"{EXP}/{BASE_RUN}")
        base = median(cases, f"{EXP}/{raw}")
        r = added / base
        bound = floor_limit(base, floor)
        rows.append(
            [
                f"added by {exported.split(' + ')[1]} ÷ {label('x/' + raw)}",
                f"{ns(added)} / {ns(base)}",
                ratio(r),
                " / ".join(
                    x
                    for x in (
                        f"≤ {goal}" if goal is not None else "",
                        f"floor ≤ {bound:.2f}" if bound == bound else "",  # noqa: PLR0124
                    )
                    if x
                ),
                exporter_verdict(r, goal, bound),
            ]
        )
    sizes = sorted({r["n"] for r in key_rows})
    biggest, smallest = sizes[-1], sizes[0]
    rows.extend(
        [
            f"{row['label']}: bytes per key at {biggest:,} keys",
            f"{row['bytes']:,.0f} B",
            f"{row['bytes']:,.0f}",
            f"≤ {MEMORY_LIMIT:.0f} B",
            verdict(row["bytes"], MEMORY_LIMIT),
        ]
        for row in key_rows
        if row["peer"] == "stormwall" and row["n"] == biggest
    )
    for row in key_rows:
        if (
            row["peer"] == "stormwall"
            and row["n"] == biggest
            and biggest > smallest
        ):
            first = next(
                r
                for r in key_rows
                if r["label"] == row["label"] and r["n"] == smallest
            )
            r = row["median"] / first["median"]
            rows.append(
                [
                    (
                        f"{row['label']}: insertion ns/key at {biggest:,} "
                        f"÷ at {smallest:,} keys"
                    ),
                    f"{ns(row['median'])} / {ns(first['median'])}",
                    ratio(r),
                    f"≤ {FLAT_LIMIT}",
                    verdict(r, FLAT_LIMIT),
                ]
            )
    return rows


def targets_text(cases: list[Case], key_rows: list[dict]) -> str:
    return "\n".join(
        table(
            ["target", "stormwall / peer", "ratio", "limit", "status"],
            target_rows(cases, key_rows),
        )
    )


def noise(cases: list[Case]) -> float:
    """Median over cases of the IQR relative to the median."""
    spreads = [
        (c.iqr[1] - c.iqr[0]) / c.median for c in cases if len(c.runs) >= 4
    ]
    return statistics.median(spreads) if spreads else float("nan")


def render(
    cases: list[Case],
    key_rows: list[dict],
    *,
    smoke: bool,
    info: list[tuple[str, str]],
    elapsed: float,
    redis_note: str,
    argv: list[str],
    sim_row: dict | None = None,
) -> str:
    by_key = {c.key: c for c in cases}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = (
        "make bench" if not argv else f"python3 bench/run.py {' '.join(argv)}"
    )
    relative = noise(cases)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        "# Performance",
        "",
        (
            "<!-- Generated by bench/run.py: do not edit by hand, "
            "rerun `make bench`. -->"
        ),
        "",
        (
            f"Generated by `{command}` on {now}, in {elapsed:.0f} s of "
            "measuring (plus the one-time build of `.venv-bench`). stormwall "
            "is measured against its peers installed from PyPI at pinned "
            "versions, **in the same run**, repeats interleaved (case A "
            "repeat 1, case B repeat 1, ..., case A repeat 2, ...) so that "
            "drift hits every case alike. Only ratios within one run are "
            "meaningful: absolute numbers depend on the machine below."
        ),
        "",
    ]
    if smoke:
        lines += [
            (
                "> **Smoke run**: one repeat of a few hundred calls per case. "
                "These "
                "numbers only show that every case runs; they measure nothing."
            ),
            "",
        ]
    lines += ["## Machine", ""]
    lines += table(
        ["", ""],
        [
            *info,
            (
                "load average at end",
                ", ".join(f"{x:.2f}" for x in load) if load else "n/a",
            ),
            (
                "timing",
                (
                    f"1 repeat of {SMOKE['number']} calls per case, after "
                    f"{SMOKE['warmup']} warm-up calls"
                    if smoke
                    else f"{FULL['repeat']} interleaved repeats per case, "
                    f"each calibrated to about {FULL['target'] * 1000:.0f} "
                    f"ms, after {FULL['warmup']} "
                    "warm-up calls"
                )
                + "; garbage collector off while timing, as in "
                "timeit",
            ),
            (
                "noise",
                f"median relative IQR over all cases: {relative:.1%}"
                if not math.isnan(relative)
                else "n/a (one repeat)",
            ),
        ],
    )
    if relative == relative and relative > 0.05:  # noqa: PLR0124
        lines += [
            "",
            (
                "> This machine was noisy during the run (the median case "
                f"varied by {relative:.0%} between its middle repeats): trust "
                "ratios more "
                "than absolute numbers, and ratios near a limit least."
            ),
        ]
    lines += ["", "Peers and the libraries they are measured with:", ""]
    lines += table(
        ["package", "version"],
        [(p, version(p)) for p in PEERS]
        + [
            (p, version(p))
            for p in (
                "opentelemetry-sdk",
                "prometheus-client",
                "structlog",
                "redis",
            )
        ]
        + [("redis-server", redis_version())],
    )
    lines += [
        "",
        "## Targets",
        "",
        (
            "From the issue; every ratio is stormwall ÷ peer measured in "
            "this run (< 1: stormwall is faster)."
        ),
        "",
    ]
    lines += table(
        ["target", "stormwall / peer", "ratio", "limit", "status"],
        target_rows(cases, key_rows),
    )
    lines += [
        "",
        "## Ratios, stormwall ÷ peer",
        "",
        (
            "Medians of the interleaved repeats; ratio < 1 means stormwall is "
            "faster."
        ),
        "",
    ]
    rows = []
    for section, mine, peer, limit in COMPARISONS:
        a, b = median(by_key, mine), median(by_key, peer)
        if a != a and b != b:  # noqa: PLR0124 - neither measured (e.g. no Redis)
            continue
        rows.append(
            [
                section,
                label(mine),
                label(peer),
                ns(a),
                ns(b),
                ratio(a / b),
                verdict(a / b, limit) + (f" (≤ {limit})" if limit else ""),
            ]
        )
    lines += table(
        [
            "path",
            "stormwall",
            "peer",
            "stormwall median",
            "peer median",
            "ratio",
            "target",
        ],
        rows,
    )
    lines += [
        "",
        "## Exporter overhead per call",
        "",
        (
            "What attaching one exporter adds to a successful `run()` "
            "(breaker + token bucket + retry): the median over repeats of "
            "(run with the exporter minus run without), next to the raw cost "
            "of the same library operations done by hand. Ratio = added ÷ "
            "raw. The goal is the stretch target; the floor, "
            "max(ratio x raw, raw + ns) as a ratio, is the bound that must "
            "never be missed. The metrics exporters count in process and "
            "are read at collection time, so their per-call cost can fall "
            "below the raw library's. The last row is what counting costs "
            "with no exporter: the reason it is switched on only when a "
            "pull exporter attaches."
        ),
        "",
    ]
    rows = []
    for exported, raw, goal, floor in EXPORTER_OVERHEAD:
        added = paired(by_key, f"{EXP}/{exported}", f"{EXP}/{BASE_RUN}")
        base = median(by_key, f"{EXP}/{raw}")
        bound = floor_limit(base, floor)
        rows.append(
            [
                exported.split(" + ", 1)[1],
                ns(added),
                raw,
                ns(base),
                ratio(added / base),
                "" if goal is None else f"≤ {goal}",
                "" if bound != bound else f"≤ {bound:.2f}",  # noqa: PLR0124
                exporter_verdict(added / base, goal, bound),
            ]
        )
    counting = paired(by_key, f"{EXP}/{COUNTING_RUN}", f"{EXP}/{BASE_RUN}")
    rows.append(
        [
            "counting on, no exporter (what always-on counting would cost)",
            ns(counting),
            "",
            ns(median(by_key, f"{EXP}/{BASE_RUN}")),
            "",
            "",
            "",
            "",
        ]
    )
    added = paired(
        by_key,
        f"{EXP}/stormwall run() + all four exporters",
        f"{EXP}/{BASE_RUN}",
    )
    rows.append(["all four exporters", ns(added), "", "", "", "", "", ""])
    lines += table(
        [
            "exporter",
            "added per call",
            "raw equivalent",
            "raw",
            "ratio",
            "goal",
            "floor",
            "status",
        ],
        rows,
    )
    lines += [
        "",
        "## Per-key cost and memory",
        "",
        (
            "N distinct keys, each decided once by a fresh limiter. ns/key: "
            "median [min-max] of the repeats, garbage collector off; with "
            "gc: one run with the collector on. bytes/key: `tracemalloc` "
            "growth / N, the key strings themselves not counted. stormwall's "
            "owing keys are all still live at the end; keys back at full "
            "capacity are forgotten as the limiter goes (lossless), the "
            "peers keep theirs."
        ),
        "",
    ]
    rows = []
    for row in key_rows:
        peers = [
            r
            for r in key_rows
            if r["n"] == row["n"] and r["peer"] != "stormwall"
        ]
        vs = (
            ", ".join(
                f"{ratio(row['median'] / p['median'])} {TIMES} {p['peer']}"
                for p in peers
            )
            if row["peer"] == "stormwall"
            else ""
        )
        rows.append(
            [
                row["label"],
                f"{row['n']:,}",
                (
                    f"{ns(row['median'])} "
                    f"[{row['min']:,.0f}{DASH}{row['max']:,.0f}]"
                ),
                ns(row["with_gc"]),
                f"{row['bytes']:,.0f}",
                vs,
            ]
        )
    lines += table(
        [
            "limiter",
            "keys",
            "ns/key",
            "ns/key with gc",
            "bytes/key",
            "time ratio vs peers",
        ],
        rows,
    )
    lines += ["", "## Every case", ""]
    if redis_note:
        lines += [redis_note, ""]
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    for group, members in groups.items():
        lines += [f"### {group[0].upper()}{group[1:]}", ""]
        rows = []
        for c in members:
            if not c.runs:
                rows.append([c.name, c.peer, "error", c.error or "", "", ""])
                continue
            low, high = c.iqr
            rows.append(
                [
                    c.name,
                    c.peer,
                    ns(c.median),
                    f"{low:,.0f}{DASH}{high:,.0f}",
                    f"{min(c.runs):,.0f}{DASH}{max(c.runs):,.0f}",
                    f"{1e9 / c.median:,.0f}"
                    if c.unit == "decisions/s"
                    else f"{c.number:,} {TIMES} {len(c.runs)}",
                ]
            )
        last = (
            "decisions/s"
            if members[0].unit == "decisions/s"
            else "calls x repeats"
        )
        lines += table(
            ["case", "library", "median", "IQR (ns)", "min-max (ns)", last],
            rows,
        )
        lines.append("")
    if sim_row is not None:
        lines += sim_section(sim_row)
    lines += METHOD
    return "\n".join(lines).rstrip() + "\n"


def sim_section(row: dict) -> list[str]:
    """The simulator: simulated calls per real second (bench/cases/sim.py)."""
    hour = row["virtual_seconds"] >= 3600
    return [
        "## Simulator",
        "",
        (
            "`stormwall.sim.run`: Poisson arrivals at 100 calls/s through "
            "`AsyncResilientExecutor` with breaker + token bucket + retry, "
            "against an upstream of 20 ms failing 1 % of requests, in "
            "virtual time. Target: one hour of traffic (360,000 calls) in "
            "under 30 s of real time."
        ),
        "",
        *table(
            [
                "virtual time",
                "calls",
                "attempts",
                "real time",
                "simulated calls / real s",
                "virtual s / real s",
                "target",
            ],
            [
                [
                    f"{row['virtual_seconds']:,.0f} s",
                    f"{row['calls']:,}",
                    f"{row['attempts']:,}",
                    f"{row['real_seconds']:.1f} s",
                    f"{row['calls_per_second']:,.0f}",
                    f"{row['speed_up']:,.0f}",
                    verdict(row["real_seconds"] / 30.0, 1.0) + " (hour ≤ 30 s)"
                    if hour
                    else "n/a (smoke)",
                ]
            ],
        ),
        "",
    ]


METHOD = """\
## What is compared

- **Workload.** `fn` returns 1 at once (`async def` for the async cases);
  the one-retry workload raises on every other call, so each call fails once
  and succeeds on its second attempt. Limits are huge (10¹² where a library
  allows it), so nothing is ever refused and nobody waits: these are the
  admit paths.
- **Executors.** stormwall `ResilientExecutor.run` /
  `AsyncResilientExecutor.run` with `CircuitBreaker(failure_threshold=5,
  recovery_timeout=30)` + `TokenBucket` + `RetryPolicy(max_attempts=3,
  base_delay=0.1, max_delay=10)`, a private `EventBus` and no subscriber,
  against limitpal's `ResilientExecutor` / `AsyncResilientExecutor` built
  from its own `TokenBucket` (`AsyncTokenBucket`),
  `CircuitBreaker(failure_threshold=5, recovery_timeout=30)` and
  `RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=10)`: the same
  three parts.
- **Retry.** tenacity `Retrying(stop=stop_after_attempt(3),
  wait=wait_exponential_jitter(initial=0.1, max=10), reraise=True)(fn)`
  (`AsyncRetrying` for async); stamina `RetryingCaller(attempts=3,
  timeout=None, wait_initial=0.1, wait_max=10).on(Exception)(fn)` and
  `retry_context` (instrumentation hooks off unless stated); backoff
  `on_exception(expo, Exception, max_tries=3)`; nopanic `@retry(attempts=3,
  backoff=full_jitter(base=0.1, cap=10))` (`backoff=0` on the one-retry
  path). They compare with
  stormwall's executor holding only the retry policy (and, for the targets,
  the whole pipeline).
- **Breakers.** pybreaker `CircuitBreaker(fail_max=5,
  reset_timeout=30).call(fn)`, circuitbreaker
  `CircuitBreaker(failure_threshold=5, recovery_timeout=30)` as a decorator,
  purgatory's `SyncCircuitBreakerFactory` /
  `AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)`
  decorator; against stormwall's executor holding only the breaker.
  pybreaker's async support needs Tornado and is not measured.
- **Rate-window breakers.** A breaker that trips at a 50 % failure rate
  once 10 calls are in its window, open for 30 s: stormwall's executor
  holding only `CircuitBreaker(failure_threshold=None,
  failure_rate_threshold=0.5, minimum_calls=10, window_duration=30)` (or
  `window_size=100`), against nopanic `CircuitBreaker(failure_threshold=0.5,
  min_calls=10, window=30, reset_timeout=30)` and interlock
  `CircuitBreaker(config=Config(failure_rate_threshold=0.5,
  minimum_number_of_calls=10, wait_duration_in_open=30, window_type=...,
  window_size=30 or 100))`, both as decorators, sync and async. Two
  workloads: every call succeeds, or one call in 10 raises (caught alike
  for everyone), so the rate is judged but never trips. stormwall's
  consecutive-failure breaker is shown against nopanic for scale.
- **One-retry path.** Zero back-off everywhere. tenacity, stamina and
  backoff still call `time.sleep(0)` for a zero wait, which on Linux costs
  tens of µs (timer slack) and dominates their numbers; stormwall and
  limitpal skip a zero sleep, so tenacity is also shown with `sleep=` a
  no-op: its own cost (stamina and backoff offer no such hook). With
  exporters: stormwall with all four exporters, and with structlog +
  Prometheus against stamina with its structlog + Prometheus retry hooks
  (swapped in per call, about a microsecond).
- **Limiters.** `TokenBucket(10¹², 10¹²).try_acquire()` against aiolimiter
  `await AsyncLimiter(10¹², 1).acquire()` (the target; stormwall's `await
  acquire_async` is shown too); `try_acquire('k')` against limits
  `FixedWindowRateLimiter(MemoryStorage()).hit(item, 'k')` with a per-second
  item of 10¹²; `SlidingWindow` against limits' moving window and
  sliding-window counter; pyrate-limiter `Limiter(...).try_acquire('k',
  blocking=False)` on its `InMemoryBucket` (a log of hits) and on
  `StateBucket` with its `TokenBucket` algorithm; limitpal
  `TokenBucket.acquire`. aiolimiter's `has_capacity()` is a check that
  consumes nothing, listed for scale only.
- **Exporters.** OTel SDK providers with a span processor exporting to
  nowhere and an in-memory metric reader; Prometheus on a private
  `CollectorRegistry`; structlog writing to `/dev/null` (DEBUG on) or
  filtering DEBUG out. The raw equivalents are exactly the spans, adds,
  observations and log lines one successful call produces.
- **Redis.** One `redis-server` started for the run on loopback, one client,
  one thread, one key; a decision is one round trip. stormwall
  `RedisTokenBucket` and `RedisSlidingWindow` against limits' fixed and
  moving windows on `RedisStorage` and pyrate-limiter's `RedisBucket`. The
  shared breaker's success path: the executor holding only the breaker,
  with `store=RedisBreakerStore(client)` (default `sync_interval=1.0`: one
  round trip per second, successes batched), against the same executor
  with the local breaker.
- **Per-key.** See the section above; peers are measured up to 100k keys
  only, to keep `make bench` within its time budget.
- **Timing.** `timeit.Timer(callable)` for sync cases, a loop of awaits in
  one long-lived event loop for async ones; each case is warmed up,
  calibrated once, then timed in interleaved repeats. The call overhead of
  the timing loop is in every number alike (see the bare-call rows).
""".splitlines()
