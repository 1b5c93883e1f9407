"""End to end: docs, demo, examples, dashboards, CLI, package, bench."""
