"""
The benchmark harness's entry point: ``make bench``, ``make bench-smoke``.

Runs with the system ``python3``. Syncs ``.venv-bench`` at the repository
root from ``uv.lock`` (stormwall editable with every extra, and the peers
pinned in the ``bench`` dependency group of ``pyproject.toml``), then
re-executes itself inside that venv and measures every case of
``bench/cases/`` in one run, repeats interleaved (case A rep 1, case B rep 1,
..., case A rep 2, ...).

    python3 bench/run.py            # full run: writes docs/performance.md
    python3 bench/run.py --smoke    # seconds: every case once, a temp file
    python3 bench/run.py --out X    # write the report to X instead
    python3 bench/run.py --here     # use the current interpreter as is

The venv is re-synced only when ``uv.lock``, ``pyproject.toml`` or the Python
version change (a hash in ``.venv-bench/.stormwall-bench``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".venv-bench"
UV = ROOT / ".venv-tools" / "bin" / "uv"
STAMP = VENV / ".stormwall-bench"
DOC = ROOT / "docs" / "performance.md"
INSIDE = "STORMWALL_BENCH_INSIDE"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def wanted_stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "uv.lock", ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create or refresh .venv-bench unless its stamp is current."""
    stamp = wanted_stamp()
    python = venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text() == stamp:
        return
    start = time.monotonic()
    if not UV.exists():  # the Makefile owns the pinned uv's bootstrap
        target = str(UV.relative_to(ROOT))
        subprocess.run(["make", "-s", target], cwd=ROOT, check=True)  # noqa: S607
    print(
        f"syncing {VENV.name} from uv.lock (stormwall[all] and the peers) ...",
        flush=True,
    )
    subprocess.run(
        [
            str(UV),
            "sync",
            "--locked",
            "--all-extras",
            "--no-default-groups",
            "--group",
            "bench",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(VENV),
            "UV_PYTHON": sys.executable,
            "UV_PYTHON_DOWNLOADS": "never",
        },
        check=True,
    )
    STAMP.write_text(stamp)
    print(f"{VENV.name} ready in {time.monotonic() - start:.0f} s", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few hundred calls, one repeat per case: seconds, not minutes",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the report (default: docs/performance.md, "
        "or a temporary file with --smoke)",
    )
    parser.add_argument(
        "--here",
        action="store_true",
        help="measure in the current interpreter (peers not installed there "
        "are reported missing)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if not args.here and not os.environ.get(INSIDE):
        ensure_venv()
        env = {**os.environ, INSIDE: "1"}
        cmd = [str(venv_python()), str(Path(__file__).resolve()), *argv]
        return subprocess.run(cmd, env=env, check=False).returncode
    sys.path.insert(0, str(HERE))
    from _report import measure_and_report

    out = args.out
    if out is None:
        out = (
            Path(tempfile.gettempdir()) / "stormwall-bench-smoke.md"
            if args.smoke
            else DOC
        )
    return measure_and_report(smoke=args.smoke, out=out, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
