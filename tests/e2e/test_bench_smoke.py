"""The benchmark harness's smoke mode runs every case, peers included."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
PEERS = [
    re.split(r"[=<>\[ ]", requirement, maxsplit=1)[0]
    for requirement in tomllib.loads(
        (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    )["dependency-groups"]["bench"]
]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("STORMWALL_SKIP_BENCH_SMOKE") == "1",
    reason="STORMWALL_SKIP_BENCH_SMOKE=1",
)
@pytest.mark.skipif(
    importlib.util.find_spec("ensurepip") is None,
    reason="no ensurepip: .venv-bench cannot be built",
)
def test_bench_smoke(tmp_path: Path) -> None:
    """``bench/run.py --smoke`` exits 0 and its table names every peer."""
    out = tmp_path / "performance.md"
    env = {
        k: v for k, v in os.environ.items() if k != "STORMWALL_BENCH_INSIDE"
    }
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--smoke",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = out.read_text(encoding="utf-8")
    assert "Smoke run" in report
    missing = [peer for peer in PEERS if f"| {peer} " not in report]
    assert not missing, missing
    assert len(PEERS) == 13
    assert not (ROOT / "docs" / "performance.md").exists() or (
        "Smoke run" not in (ROOT / "docs" / "performance.md").read_text()
    )
