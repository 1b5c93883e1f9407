"""Tests of the optional exporters (``stormwall.exporters``)."""
