"""Tests of the core: policies, executors, bus, events, clock, testing."""
