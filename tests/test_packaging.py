from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import stormwall


SRC = pathlib.Path(stormwall.__file__).parent


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

    def test_core_is_sans_io(self):
        """Nothing under stormwall._core imports time, asyncio, threading
        waits or an exporter."""
        forbidden = {
            "asyncio",
            "time",
            "threading",
            "socket",
            "stormwall.exporters",
            "stormwall._clock",
        }
        offenders = []
        for path in (SRC / "_core").glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""]
                    if node.level:
                        mods = [f"stormwall.{node.module or ''}".rstrip(".")]
                else:
                    continue
                for mod in mods:
                    if any(
                        mod == f or mod.startswith(f + ".") for f in forbidden
                    ):
                        offenders.append(f"{path.name}: {mod}")

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
