"""Tests of the shared-state backends (``stormwall.backends``)."""
