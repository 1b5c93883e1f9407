"""
The Redis documentation's snippets are right for their world.

Every Python block of the docs that builds a Redis client runs (clients and
components are built without any I/O) with warnings as errors, and gives a
client the retry object of its own world: ``redis.retry.Retry`` for
``redis.Redis``, ``redis.asyncio.retry.Retry`` for ``redis.asyncio.Redis``
(redis-py 8.2 warns about the mix). The ACL line docs/scaling.md gives is
the one tests/backends/test_redis_backend_failures.py runs against a real
server.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest


pytest.importorskip("redis")

ROOT = Path(__file__).resolve().parents[2]
SCALING = ROOT / "docs" / "scaling.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def redis_blocks() -> list[tuple[str, str]]:
    """(page:index, code) of every Python block that imports redis."""
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for i, match in enumerate(BLOCK.finditer(text)):
            code = match.group(1)
            if re.search(r"^(import|from) redis\b", code, re.MULTILINE):
                found.append((f"{page.relative_to(ROOT)}:{i}", code))
    return found


BLOCKS = redis_blocks()


def retry_origins(code: str) -> dict[str, str]:
    """Local name of each imported ``Retry`` -> the module it came from."""
    origins = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name == "Retry":
                    origins[alias.asname or alias.name] = node.module
    return origins


def client_worlds(code: str) -> list[tuple[str, str]]:
    """(client world, module of the Retry passed) for each client built."""
    origins = retry_origins(code)
    out = []
    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Call):
            continue
        target = ast.unparse(node.func)
        if not re.fullmatch(r"redis(\.asyncio)?\.Redis(\.from_url)?", target):
            continue
        world = "asyncio" if ".asyncio." in target else "sync"
        for keyword in node.keywords:
            if keyword.arg == "retry" and isinstance(keyword.value, ast.Call):
                name = ast.unparse(keyword.value.func)
                out.append((world, origins.get(name, name)))
    return out


def test_the_scaling_page_shows_both_worlds():
    """docs/scaling.md has a sync and an asyncio client snippet."""
    worlds = {
        world
        for page, code in BLOCKS
        if page.startswith("docs/scaling.md")
        for world, _ in client_worlds(code)
    }

    assert {"sync", "asyncio"} == worlds


@pytest.mark.parametrize(("page", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_each_client_gets_the_retry_of_its_world(page, code):
    """redis.Redis <- redis.retry.Retry; redis.asyncio.Redis <-
    redis.asyncio.retry.Retry."""
    expected = {"sync": "redis.retry", "asyncio": "redis.asyncio.retry"}

    for world, origin in client_worlds(code):
        assert expected[world] == origin, (page, world)


@pytest.mark.parametrize(("page", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_each_snippet_builds_without_a_warning(page, code):
    """Run it: clients and components are built without I/O."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, page, "exec"), {"__name__": "snippet"})  # noqa: S102 - our docs


def test_the_acl_line_is_the_tested_one():
    """The documented ACL line is what the real-server test applies."""
    from tests.backends.test_redis_backend_failures import ACL_RULES

    (line,) = [
        line
        for line in SCALING.read_text(encoding="utf-8").splitlines()
        if line.startswith("ACL SETUSER stormwall ")
    ]
    documented = line.removeprefix("ACL SETUSER stormwall ")
    placeholder = "CHANGE-ME"

    assert ACL_RULES.format(password=placeholder, prefix="myapp") == (
        documented
    )
