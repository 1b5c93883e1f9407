"""
The package as shipped: the public API, no third-party import, outer
layers on public names only, one module reading real time, and the wheel and
sdist holding the dashboards that ``stormwall dashboards export`` writes.
(The core's sans-I/O scan is tests/core/test_sans_io.py.)
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

import stormwall
from stormwall._export import FILES


SRC = pathlib.Path(stormwall.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[2]


class TestPublicAPI:
    def test_version(self):
        """__version__ is a non-empty string."""
        assert isinstance(stormwall.__version__, str)
        assert stormwall.__version__

    def test_all_is_sorted_and_importable(self):
        """__all__ is sorted and every name exists."""
        names = stormwall.__all__

        assert sorted(names) == names
        for name in names:
            assert hasattr(stormwall, name), name

    def test_contract_names(self):
        """The documented public names are exported."""
        expected = {
            "AsyncResilientExecutor",
            "AttemptTimeoutError",
            "Bulkhead",
            "BulkheadFullError",
            "CircuitBreaker",
            "CircuitOpenError",
            "CircuitState",
            "Clock",
            "CompositeLimiter",
            "ConfigError",
            "EventBus",
            "LeakyBucket",
            "MockClock",
            "MonotonicClock",
            "RateLimitedError",
            "ResilientExecutor",
            "RetryBudget",
            "RetryPolicy",
            "SlidingWindow",
            "StormwallError",
            "TokenBucket",
            "default_bus",
        }

        assert expected <= set(stormwall.__all__)

    def test_py_typed_shipped(self):
        """The package ships py.typed for type checkers."""
        assert (SRC / "py.typed").exists()


class TestDependencies:
    def test_import_pulls_no_third_party_module(self):
        """`import stormwall` imports only the standard library."""
        code = (
            "import sys, stormwall, stormwall.events, stormwall.testing\n"
            "std = sys.stdlib_module_names\n"
            "bad = sorted({m.split('.')[0] for m in sys.modules}"
            " - set(std) - {'stormwall', '__main__'}"
            " - {m for m in sys.modules if m.startswith('_')})\n"
            "print(','.join(bad))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
        )

        assert "" == out.stdout.strip()

    @pytest.mark.parametrize("package", ["exporters", "integrations"])
    def test_outer_layers_import_only_public_names(self, package):
        """Exporters and integrations import the core through its public
        names only (stormwall, stormwall.events, ...), lazy imports
        included; their own package's private modules are theirs."""
        own = f"stormwall.{package}"
        offenders = []
        for path in (SRC / package).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parent = own.rsplit(".", node.level - 1)[0]
                        base = f"{parent}.{base}".rstrip(".")
                    modules = [base] + [
                        f"{base}.{a.name}"
                        for a in node.names
                        if not a.name.startswith("__")
                    ]
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    continue
                for module in modules:
                    parts = module.split(".")
                    if (
                        parts[0] == "stormwall"
                        and not module.startswith(own + ".")
                        and any(p.startswith("_") for p in parts)
                    ):
                        offenders.append(f"{path.name}: {module}")

        assert [] == offenders

    def test_only_clock_module_reads_real_time(self):
        """No module but _clock.py calls time.monotonic/time.time/sleep."""
        offenders = []
        for path in SRC.rglob("*.py"):
            if path.name == "_clock.py":
                continue
            text = path.read_text()
            for needle in (
                "time.monotonic",
                "time.time(",
                "time.sleep(",
                "perf_counter",
            ):
                if needle in text:
                    offenders.append(f"{path.relative_to(SRC)}: {needle}")

        assert [] == offenders


class TestTypingModule:
    def test_protocols_are_public(self):
        """stormwall.typing exposes the extension-point protocols."""
        import stormwall.typing as t

        assert {"Clock", "Exporter", "Handler", "RandomSource"} == set(
            t.__all__
        )

    def test_a_users_clock_satisfies_clock(self):
        """Any object with now/sleep/sleep_async is a Clock."""
        import stormwall.typing as t

        class Frozen:
            def now(self):
                return 0.0

            def sleep(self, seconds):
                return None

            async def sleep_async(self, seconds):
                return None

        assert isinstance(Frozen(), t.Clock)
        assert not isinstance(object(), t.Clock)


def _uv():
    found = ROOT / ".venv-tools" / "bin" / "uv"
    return str(found) if found.exists() else shutil.which("uv")


class TestDashboardsShipped:
    def test_every_dashboard_file_is_exported(self):
        """Every file of dashboards/ but its README and the JSON
        type-check is in the exported (and shipped) list."""
        folder = ROOT / "dashboards"
        found = sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file()
            and p.name != "README.md"
            and "typecheck" not in p.relative_to(folder).parts
        )

        assert found == sorted(FILES)

    def test_wheel_force_include_lists_them(self):
        """pyproject.toml maps exactly those files into
        stormwall/_dashboards, and the sdist includes dashboards/."""
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
        targets = config["tool"]["hatch"]["build"]["targets"]
        mapping = targets["wheel"]["force-include"]

        assert {
            f"dashboards/{name}": f"stormwall/_dashboards/{name}"
            for name in FILES
        } == mapping
        assert "dashboards" in targets["sdist"]["include"]

    @pytest.mark.slow
    def test_built_wheel_and_sdist_ship_and_export_them(self, tmp_path):
        """uv build: the sdist holds dashboards/, the wheel (built from
        the sdist) stormwall/_dashboards/; installed from the wheel in a
        fresh venv, `stormwall dashboards export` writes files equal to
        the repository's, read from the package data."""
        uv = _uv()
        if uv is None:
            pytest.skip("uv is not installed (make .venv-tools/bin/uv)")
        dist = tmp_path / "dist"
        subprocess.run(
            [uv, "build", "--quiet", "--out-dir", str(dist), str(ROOT)],
            check=True,
            capture_output=True,
        )
        (wheel,) = dist.glob("*.whl")
        (sdist,) = dist.glob("*.tar.gz")
        with zipfile.ZipFile(wheel) as archive:
            in_wheel = {
                name: archive.read(name)
                for name in archive.namelist()
                if name.startswith("stormwall/_dashboards/")
            }
        with tarfile.open(sdist) as archive:
            in_sdist = {
                name.split("/", 1)[1]
                for name in archive.getnames()
                if "/dashboards/" in name
            }

        for name in FILES:
            original = (ROOT / "dashboards" / name).read_bytes()
            assert original == in_wheel[f"stormwall/_dashboards/{name}"]
            assert f"dashboards/{name}" in in_sdist
        assert len(FILES) == len(in_wheel)
        assert not any("node_modules" in name for name in in_sdist)

        venv = tmp_path / "venv"
        subprocess.run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            check=True,
            capture_output=True,
        )
        python = venv / "bin" / "python"
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--offline",
                "--no-deps",
                "--python",
                str(python),
                str(wheel),
            ],
            check=True,
            capture_output=True,
        )
        target = tmp_path / "exported"
        proc = subprocess.run(
            [str(venv / "bin" / "stormwall"), "dashboards", "export", target],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        where = subprocess.run(
            [
                str(python),
                "-c",
                "from stormwall._export import source; print(source())",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()

        assert 0 == proc.returncode, proc.stderr
        assert where.endswith("site-packages/stormwall/_dashboards")
        for name in FILES:
            assert (ROOT / "dashboards" / name).read_bytes() == (
                target / name
            ).read_bytes(), name
