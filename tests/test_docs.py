"""
The documentation's runnable code blocks run, and the site builds strictly.

A fenced block is runnable when the line before its opening fence is an
HTML comment (invisible on the rendered site):

- ``<!-- runnable -->``: the block is a complete program; it is run with
  ``python -c`` in a fresh interpreter and must exit 0.
- ``<!-- runnable: pytest -->``: the block is a test module; it is written
  to a temporary file and run with ``python -m pytest``, which must pass.

Blocks whose imports are not installed (the core-only venv has no
exporters) are skipped, never silently passed: `test_enough_blocks` makes
sure the collection itself cannot come up empty.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<mode>\w+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
TIMEOUT = 60
MIN_BLOCKS = 25


@dataclass(frozen=True)
class Block:
    """One runnable code block."""

    path: Path
    line: int
    mode: str
    code: str

    @property
    def id(self) -> str:
        """``docs/page.md:LINE``, for test ids and failure messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The runnable blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if marker is None:
            i += 1
            continue
        opening = (
            FENCE.match(lines[i + 1].strip()) if i + 1 < len(lines) else None
        )
        if opening is None or not opening["info"].startswith(("python", "py")):
            msg = f"{path}:{i + 1}: a runnable marker needs a python fence"
            raise AssertionError(msg)
        fence = opening["fence"]
        indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
        body = []
        j = i + 2
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:])
            j += 1
        if j == len(lines):
            msg = f"{path}:{i + 2}: unclosed code block"
            raise AssertionError(msg)
        blocks.append(
            Block(path, i + 2, marker["mode"] or "script", "\n".join(body))
        )
        i = j + 1
    return blocks


BLOCKS = [block for source in SOURCES for block in extract(source)]


def missing_modules(code: str) -> list[str]:
    """Top-level modules the block imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add((node.module or "").split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_enough_blocks() -> None:
    """The docs hold at least MIN_BLOCKS runnable blocks, so none vanish."""
    assert len(BLOCKS) >= MIN_BLOCKS, [b.id for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    """A runnable block runs to completion in a fresh interpreter."""
    missing = missing_modules(block.code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    if block.mode == "pytest":
        test_file = tmp_path / "test_block.py"
        test_file.write_text(block.code, encoding="utf-8")
        # pytest-asyncio is not needed by the blocks, and warns about its
        # own configuration when the warnings-as-errors filter is on.
        args = [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            str(test_file),
        ]
    else:
        assert "script" == block.mode, f"unknown mode {block.mode!r}"
        args = ["-c", block.code]
    result = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert 0 == result.returncode, (
        f"{block.id} failed:\n{result.stdout}\n{result.stderr}"
    )


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds: every nav page, link and ref."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()
