"""
Sans-I/O policy cores: pure decisions and arithmetic on plain values.

Nothing under ``stormwall._core`` sleeps, awaits, calls user code, reads a
clock or imports an exporter: each function takes ``now`` and returns a
decision. The shells (limiters, bulkhead, breaker, executors) do the waiting.
A test scans these modules' imports to keep that promise.
"""
