"""
The sans-I/O promise of ``stormwall._core``, scanned once per module.

No module under it imports a clock, a thread, an event loop, a socket or an
exporter, names one in its source, or sleeps; ``_backoff`` imports only what
its arithmetic needs. The scan lists the package's files when it is
collected, so a new core module is held to the promise the day it lands.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import stormwall._core


PACKAGE = "stormwall._core"
CORE = pathlib.Path(stormwall._core.__file__).parent
MODULES = sorted(path.stem for path in CORE.glob("*.py"))

# An import of any of these (or of anything under them) is I/O or real time.
FORBIDDEN_IMPORTS = (
    "asyncio",
    "time",
    "threading",
    "socket",
    "stormwall.exporters",
    "stormwall._clock",
)
# Nor may the source name them at all, docstrings and comments included:
# a lazy import or an injected module would pass the import scan.
FORBIDDEN_TEXT = re.compile(
    r"\basyncio\b|\bthreading\b|\bimport time\b|sleep\(|sleep_async\("
)
# Modules held to an exact list of imports: pure arithmetic, no clock.
ONLY_IMPORTS = {"_backoff": {"__future__", "math", "sys", "typing"}}


def imported_modules(tree: ast.Module) -> list[str]:
    """Every module an import names, relative ones resolved; ``from m
    import n`` also names ``m.n``, which may be a submodule."""
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = PACKAGE.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}".rstrip(".")
            modules.append(base)
            modules += [f"{base}.{alias.name}" for alias in node.names]
    return modules


def declared_imports(tree: ast.Module) -> set[str]:
    """The names the import statements spell, as written."""
    declared = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            declared |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            declared.add(node.module or "")
    return declared


@pytest.mark.parametrize("module", MODULES)
def test_core_module_is_sans_io(module):
    """A core module imports no time, asyncio, threading, socket, clock or
    exporter, never names them nor sleeps, and _backoff imports only math,
    sys and typing."""
    source = (CORE / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    offenders = [
        name
        for name in imported_modules(tree)
        if any(
            name == forbidden or name.startswith(forbidden + ".")
            for forbidden in FORBIDDEN_IMPORTS
        )
    ]

    assert [] == offenders
    assert [] == FORBIDDEN_TEXT.findall(source)
    if module in ONLY_IMPORTS:
        assert ONLY_IMPORTS[module] == declared_imports(tree)


def test_scan_finds_the_core():
    """The scan lists the core's modules, _backoff among them (a wrong
    folder would leave nothing to scan, a renamed module no allowlist)."""
    assert set(ONLY_IMPORTS) | {"__init__"} < set(MODULES)
