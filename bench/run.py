"""Run every benchmark script in bench/ and print their tables."""

from __future__ import annotations

import pathlib
import platform
import subprocess
import sys


HERE = pathlib.Path(__file__).parent


def main() -> int:
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{platform.system()}\n"
    )
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"## {script.stem}\n", flush=True)
        done = subprocess.run([sys.executable, str(script)], check=False)
        status = status or done.returncode
        print(flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
