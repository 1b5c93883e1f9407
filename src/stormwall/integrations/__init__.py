"""
Integrations plug stormwall into other libraries.

Importing this package imports nothing optional: each integration is a
submodule (``stormwall.integrations.httpx``) that imports its own dependency
when you import it.
"""
