"""Retry (being written)."""

from __future__ import annotations


class RetryPolicy:
    """Retry policy."""


class RetryBudget:
    """Retry budget."""
