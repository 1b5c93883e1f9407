"""Tests of the HTTP integrations (``stormwall.integrations``)."""
