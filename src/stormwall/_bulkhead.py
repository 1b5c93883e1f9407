"""Bulkhead (being written)."""

from __future__ import annotations


class Bulkhead:
    """Bulkhead."""


class BulkheadStatistics:
    """Snapshot."""
