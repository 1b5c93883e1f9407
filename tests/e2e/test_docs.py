"""
Every Python snippet of the documentation runs, and the site builds strictly.

Every fenced block whose language is ``python`` (or ``py``) in README.md and
docs/**/*.md is run, as written:

- by default the block is a complete program; it is run with ``python -c``
  in a fresh interpreter (warnings are errors) and must exit 0;
- a block right after the HTML comment ``<!-- runnable: pytest -->``
  (invisible on the rendered site) is a test module; it is written to a
  temporary file and run with ``python -m pytest``, which must pass.

A block that needs an external service (a Redis server) and cannot run
without one says so in its fence, visibly on the rendered page and
greppably in the source: ```` ```python title="needs redis" ````. Such a
block must still parse; `test_not_run_blocks_are_rare` keeps the
convention for services only, and for few blocks. Pseudo-code is not
Python: it goes in a ``text`` block.

A block whose imports are not installed is skipped, never silently passed,
and only for the optional packages listed in `OPTIONAL` (the core-only venv
has no extras; the migration pages show peer libraries' code); any other
missing import fails. `test_enough_blocks` makes sure the collection itself
cannot come up empty.

The last test keeps the project self-contained: no file points at a design
document or a folder that is not in the repository.
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


ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<mode>\w+))?\s*-->$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
NOT_RUN = re.compile(r'\btitle="needs (?P<service>[\w-]+)"')
TIMEOUT = 60
MIN_BLOCKS = 50
# The only services a block may need without being run, and how many
# blocks may do so: everything else runs.
SERVICES = frozenset({"redis"})
MAX_NOT_RUN = 2
# Top-level modules a block may import and be skipped without: stormwall's
# extras (absent from the core-only venv), the ASGI framework of the
# integrations page, and the peer libraries the migration pages start from.
OPTIONAL = frozenset(
    {
        "httpx",
        "limitpal",
        "opentelemetry",
        "prometheus_client",
        "pybreaker",
        "redis",
        "stamina",
        "starlette",
        "structlog",
        "tenacity",
    }
)


@dataclass(frozen=True)
class Block:
    """One fenced Python block."""

    path: Path
    line: int
    mode: str
    code: str
    service: str | None

    @property
    def id(self) -> str:
        """``docs/page.md:LINE``, for test ids and failure messages."""
        path = (
            self.path.relative_to(ROOT)
            if self.path.is_relative_to(ROOT)
            else self.path
        )
        return f"{path}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The Python blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip()
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:])
            j += 1
        if j == len(lines):
            msg = f"{path}:{i + 1}: unclosed code block"
            raise AssertionError(msg)
        language = info.split(maxsplit=1)[0] if info else ""
        marker = MARKER.match(lines[i - 1].strip()) if i else None
        if language in {"python", "py"}:
            not_run = NOT_RUN.search(info)
            blocks.append(
                Block(
                    path,
                    i + 1,
                    (marker and marker["mode"]) or "script",
                    "\n".join(body),
                    not_run["service"] if not_run else None,
                )
            )
        elif marker is not None:
            msg = f"{path}:{i}: a runnable marker needs a python fence"
            raise AssertionError(msg)
        i = j + 1
    return blocks


BLOCKS = [block for source in SOURCES for block in extract(source)]
RUN = [block for block in BLOCKS if block.service is None]


# stormwall's optional modules, and the dependency each imports.
EXTRA_MODULES = {
    "stormwall.exporters.otel": "opentelemetry",
    "stormwall.exporters.prometheus": "prometheus_client",
    "stormwall.exporters.structlog": "structlog",
    "stormwall.backends.redis": "redis",
    "stormwall.integrations.httpx": "httpx",
}


def missing_modules(code: str) -> list[str]:
    """Top-level modules the block needs that are not installed."""
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module or "")
    names = {module.split(".")[0] for module in imported}
    names.update(
        dependency
        for module in imported
        for prefix, dependency in EXTRA_MODULES.items()
        if module == prefix or module.startswith(prefix + ".")
    )
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_enough_blocks() -> None:
    """The docs hold at least MIN_BLOCKS Python blocks, so none vanish."""
    assert len(BLOCKS) >= MIN_BLOCKS, [b.id for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_parses(block: Block) -> None:
    """A ``python`` block compiles: pseudo-code belongs in ``text``."""
    try:
        compile(block.code, block.id, "exec", dont_inherit=True)
    except SyntaxError as exc:
        pytest.fail(f"{block.id}: not Python ({exc}); use a text block")


def defines_tests(code: str) -> bool:
    """Whether a block defines top-level ``test_*`` functions."""
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
        for node in ast.parse(code).body
    )


def test_test_modules_run_under_pytest() -> None:
    """A block of ``test_*`` functions is run by pytest, not just defined."""
    unmarked = [
        b.id for b in BLOCKS if b.mode == "script" and defines_tests(b.code)
    ]

    assert [] == unmarked, "add <!-- runnable: pytest --> before them"


def test_not_run_blocks_are_rare() -> None:
    """Only a block that needs an external service is left unrun."""
    not_run = [b for b in BLOCKS if b.service is not None]

    assert len(not_run) <= MAX_NOT_RUN, [b.id for b in not_run]
    for block in not_run:
        assert block.service in SERVICES, f"{block.id}: {block.service}"


def run_block(
    block: Block, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run one block in a fresh interpreter, warnings as errors."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    if block.mode == "pytest":
        test_file = tmp_path / "test_block.py"
        test_file.write_text(block.code, encoding="utf-8")
        # pytest-asyncio is not needed by the blocks, and warns about its
        # own configuration when the warnings-as-errors filter is on;
        # hypothesis is not needed either, and is slow to import.
        args = [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "-p",
            "no:hypothesispytest",
            str(test_file),
        ]
    else:
        assert "script" == block.mode, f"unknown mode {block.mode!r}"
        args = ["-c", block.code]
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    """A Python block runs to completion in a fresh interpreter."""
    missing = missing_modules(block.code)
    unexpected = sorted(set(missing) - OPTIONAL)
    assert not unexpected, f"{block.id} imports {unexpected}: not installed"
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")

    result = run_block(block, tmp_path)

    assert 0 == result.returncode, (
        f"{block.id} failed:\n{result.stdout}\n{result.stderr}"
    )


def test_a_broken_block_fails(tmp_path: Path) -> None:
    """Every ``python`` fence is collected, so a broken snippet is caught."""
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n```python\nuser = fetch_user('1')\n```\n\n"
        "<!-- runnable: pytest -->\n```python\n"
        "def test_it():\n    assert 1 == 2\n```\n\n"
        "```py\nuser = await users.run('k', fetch_user)\n```\n\n"
        '```python title="needs redis"\nimport redis\n```\n\n'
        "```text\nlimiter._acquire(key) -> float\n```\n",
        encoding="utf-8",
    )

    blocks = extract(page)

    assert [(3, "script", None), (8, "pytest", None)] == [
        (b.line, b.mode, b.service) for b in blocks[:2]
    ]
    assert [(13, None), (17, "redis")] == [
        (b.line, b.service) for b in blocks[2:]
    ]
    assert 0 != run_block(blocks[0], tmp_path).returncode  # NameError
    assert 0 != run_block(blocks[1], tmp_path).returncode  # a failing test
    with pytest.raises(SyntaxError):  # top-level await
        compile(blocks[2].code, blocks[2].id, "exec", dont_inherit=True)


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


# -- a self-contained project -------------------------------------------------

# Built by concatenation so that this file does not match itself.
POINTERS = re.compile(
    "|".join(
        [
            r"(?i:\bdes" + r"ign\.md\b)",
            r"(?i:\bsty" + r"le\.md\b)",
            r"\bDES" + r"IGN\b",
            r"(?i:(?<![\w.-])shared" + r"/)",
            r"(?i:\bthe shared " + r"(?:folder|directory)\b)",
        ]
    )
)
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "node_modules",
        "site",
        "__pycache__",
    }
)


def project_files() -> list[Path]:
    """The repository's files: git's list, else a walk without venvs."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listed = b""
    if listed:
        names = [name for name in listed.decode().split("\0") if name]
        return [ROOT / name for name in names if (ROOT / name).is_file()]
    return [
        path
        for path in ROOT.rglob("*")
        if path.is_file()
        and not any(
            part in SKIPPED_DIRS or part.startswith(".venv")
            for part in path.relative_to(ROOT).parts
        )
    ]


def test_pointer_pattern_catches_the_usual_forms() -> None:
    """The scan below recognises every way the files used to point out."""
    for text in (
        "see DES" + "IGN.md",
        "(DES" + "IGN §5)",
        "DES" + "IGN's name",
        "docs: /work/shared" + "/notes",
        "in the shared" + " folder",
        "code taste: style" + ".md",
    ):
        assert POINTERS.search(text), text
    for text in ("by design", "shared by all four", "a shared bucket"):
        assert POINTERS.search(text) is None, text


def test_no_pointer_to_a_missing_design_document() -> None:
    """
    No project file points at a design document or a folder outside the
    repository: the architecture and public contract live in
    docs/internals.md.
    """
    offenders = []
    for path in project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if POINTERS.search(line):
                where = f"{path.relative_to(ROOT)}:{number}"
                offenders.append(f"{where}: {line.strip()}")

    assert [] == offenders


# -- the internals page is the contract: its tables match the code -----------


def table(page: Path, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts ``header``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def names(cell: str) -> list[str]:
    """The ``code`` spans of a table cell, or its comma-separated words."""
    spans = re.findall(r"`([^`]+)`", cell)
    return spans or [w.strip() for w in cell.split(",") if w.strip()]


INTERNALS = ROOT / "docs" / "internals.md"


def test_internals_events_table_matches_the_code() -> None:
    """Every public event, with its name and fields, and nothing else."""
    import dataclasses

    from stormwall import events
    from stormwall.events import Event

    base = {f.name for f in dataclasses.fields(Event)}
    expected = {
        cls.__name__: (
            cls.name,
            [f.name for f in dataclasses.fields(cls) if f.name not in base],
        )
        for cls in (getattr(events, n) for n in events.__all__)
        if cls is not Event
    }

    documented = {
        names(row[0])[0]: (names(row[1])[0], names(row[2]))
        for row in table(INTERNALS, "| event | name |")
    }

    assert expected == documented


def test_internals_metrics_table_matches_the_vocabulary() -> None:
    """Every metric of the vocabulary, as both paths name it."""
    from stormwall.exporters import _vocabulary

    expected = [
        (m.otel_name, m.kind, m.prometheus_name, list(m.labels))
        for m in _vocabulary.METRICS
    ]

    documented = [
        (names(row[0])[0], row[1].split()[0], names(row[2])[0], names(row[3]))
        for row in table(INTERNALS, "| OTel instrument |")
    ]

    assert expected == documented


# -- what a new user reads first ----------------------------------------------

README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
NUMBERS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)


def test_readme_opens_with_make_demo_and_make_test() -> None:
    """The README's first block is the two commands, demo first."""
    lines = README.read_text(encoding="utf-8").splitlines()

    assert "```sh" == lines[2]
    assert lines[3].startswith("make demo   # from a fresh clone")
    assert lines[4].startswith("make test   # from a fresh clone")


def test_every_extra_is_documented() -> None:
    """README and Getting started list every extra pyproject declares."""
    import tomllib

    pyproject = tomllib.loads(
        (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    )
    extras = pyproject["project"]["optional-dependencies"]
    pages = [README, ROOT / "docs" / "getting-started.md"]

    for page in pages:
        text = page.read_text(encoding="utf-8")
        missing = [e for e in extras if f"| `{e}` |" not in text]
        assert [] == missing, page.name


def test_examples_are_counted_and_listed() -> None:
    """The docs give the right number of examples; the index lists each."""
    programs = sorted(p.name for p in EXAMPLES.glob("*.py"))
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")

    assert [] == [p for p in programs if f"| `{p}` |" not in index]
    assert f"holds {NUMBERS[len(programs)]} complete programs" in home
    assert f"`examples/`](examples/README.md), {NUMBERS[len(programs)]}" in (
        README.read_text(encoding="utf-8")
    )


def test_http_integrations_example_says_what_to_install(
    tmp_path: Path,
) -> None:
    """Without Starlette, the example names it and the pip command."""
    hide = (
        "import runpy, sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'starlette':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        f"runpy.run_path({str(EXAMPLES / 'http_integrations.py')!r},"
        " run_name='__main__')\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", hide],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert 1 == result.returncode
    assert "Traceback" not in result.stderr
    assert "pip install 'stormwall[httpx]' starlette" in result.stderr


def test_readme_names_the_exception_to_your_own_exception() -> None:
    """A breaker opening mid-retry raises CircuitOpenError, and the README
    says so next to the "your own exception" promise."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    promise = text.index("your function's own last exception is raised")
    caveat = text.index("raises `CircuitOpenError`, not your exception")

    assert 0 < caveat - promise < 1200
    assert "`__cause__`" in text[caveat : caveat + 300]


def test_contributing_describes_the_lock() -> None:
    """README and docs/contributing.md describe the lock and its targets."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "contributing.md" in nav
    for page in (README, ROOT / "docs" / "contributing.md"):
        text = page.read_text(encoding="utf-8")
        for needed in (
            "uv.lock",
            ".venv-tools",
            "make lock",
            "uv lock --upgrade",
            "make test-deps",
            "make bench",
            ".venv-core",
            ".ci/run",
            "open ranges",
        ):
            assert needed in text, (page.name, needed)
