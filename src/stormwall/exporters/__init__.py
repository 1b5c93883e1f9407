"""
Exporters turn stormwall's events into traces, metrics and logs.

Importing this package imports nothing optional: each exporter is a submodule
(``stormwall.exporters.otel``, ``.prometheus``, ``.structlog``, ``.logging``)
that imports its own dependency when you import it.
"""
