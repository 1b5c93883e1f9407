"""
Backends: component state kept outside the process.

With a backend, limits hold and breakers agree across many processes and
hosts. Importing this package imports nothing optional:
``stormwall.backends.redis`` imports redis-py when you import it
(``pip install 'stormwall[redis]'``).
"""
