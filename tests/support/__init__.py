"""Helpers, tables and subprocess workers the test modules share."""
