"""
The stormwall test suite, laid out like ``src/stormwall``.

``core/`` tests the policies, executors, bus, events, clock and testing
module; ``exporters/``, ``backends/`` and ``integrations/`` the optional
packages of the same names; ``e2e/`` what a user runs (docs, demo,
examples, dashboards, CLI, the built package, the benchmark harness);
``support/`` holds the helpers and subprocess workers they share, and
``typing/`` the file mypy checks. Every folder is a package, so test modules
import as ``tests.<folder>.<module>`` and may share a basename.
"""
