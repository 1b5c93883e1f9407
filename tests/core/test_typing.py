"""The typing test file really checks something: mypy passes on it and fails
on a deliberately wrong twin."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[2]
mypy = pytest.importorskip("mypy")

WRONG = """
from typing import assert_type
from stormwall import AsyncResilientExecutor, ResilientExecutor

def fetch() -> int:
    return 1

async def afetch() -> str:
    return ""

async def main() -> None:
    assert_type(await AsyncResilientExecutor().run("k", afetch), int)

assert_type(ResilientExecutor().run("k", fetch), str)
ResilientExecutor().run("k", fetch, 1)

@ResilientExecutor().protect
def bare(n: int) -> int:
    return n

assert_type(bare(1), str)
bare("1")
"""


def run_mypy(path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.slow
class TestTyping:
    def test_api_file_type_checks(self):
        """tests/typing/api.py passes mypy --strict."""
        out = run_mypy(ROOT / "tests" / "typing" / "api.py")

        assert 0 == out.returncode, out.stdout

    def test_wrong_types_are_caught(self, tmp_path):
        """Wrong return types and wrong arguments are reported by mypy."""
        path = tmp_path / "wrong.py"
        path.write_text(WRONG)

        out = run_mypy(path)

        assert 0 != out.returncode
        assert 5 == out.stdout.count("error:"), out.stdout
