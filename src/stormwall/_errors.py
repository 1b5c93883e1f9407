"""
The exceptions stormwall raises.

::

    StormwallError
    ├── ConfigError (also a ValueError)      a parameter outside its domain
    ├── RejectedError                        stormwall refused to run the call
    │   ├── CircuitOpenError                 the breaker is open
    │   ├── RateLimitedError                 the wait would exceed the timeout
    │   └── BulkheadFullError                no concurrency slot in time
    ├── AttemptTimeoutError (also a TimeoutError)
    └── BackendUnavailableError              shared state unreachable, policy
                                             "raise"

A failure of the user's own function is never wrapped: when retries run out,
the function's last exception is raised unchanged.
"""

from __future__ import annotations


__all__ = [
    "AttemptTimeoutError",
    "BackendUnavailableError",
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "RateLimitedError",
    "RejectedError",
    "StormwallError",
]


class StormwallError(Exception):
    """
    The root of every exception stormwall raises itself.
    """


class ConfigError(StormwallError, ValueError):
    """
    A constructor or method received a value outside its parameter's domain.

    Attributes:
        parameter: The name of the offending parameter.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class RejectedError(StormwallError):
    """
    stormwall refused to run the call; the protected function was not called.

    Local rejections are never recorded as upstream failures and never
    retried.

    Attributes:
        retry_after: Seconds after which the same call may be admitted, when
            that is known, else ``None``.
    """

    retry_after: float | None

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(RejectedError):
    """
    The circuit breaker fails the call fast.

    Attributes:
        breaker: The breaker's name.
        state: Why: ``"open"``, ``"forced_open"``, or ``"half_open"`` when
            every probe slot is taken.
        retry_after: Seconds until the breaker lets a probe through, or
            ``None`` when nobody can know (forced open, probes in flight).
    """

    def __init__(
        self, breaker: str, retry_after: float | None, state: str = "open"
    ) -> None:
        if state == "half_open":
            why = "half-open and every probe slot is taken"
        elif state == "forced_open":
            why = "forced open until reset"
        elif retry_after is None:
            why = "open"
        else:
            why = f"open for another {retry_after:.3f}s"
        super().__init__(f"circuit {breaker!r} is {why}", retry_after)
        self.breaker = breaker
        self.state = state


class RateLimitedError(RejectedError):
    """
    The rate limiter could not admit the call within the allowed wait.

    Nothing was consumed.

    Attributes:
        retry_after: Exact seconds until the request would be admitted, or
            ``math.inf`` when it never can be (a cost above capacity).
        limiter: The limiter's name.
        key: The key that was limited.
    """

    retry_after: float

    def __init__(self, limiter: str, key: str, retry_after: float) -> None:
        super().__init__(
            f"rate limit {limiter!r} exceeded for key {key!r}; "
            f"retry after {retry_after:.3f}s",
            retry_after,
        )
        self.limiter = limiter
        self.key = key


class BulkheadFullError(RejectedError):
    """
    The bulkhead had no free slot within its ``max_wait``.

    Attributes:
        bulkhead: The bulkhead's name.
        in_flight: Calls in flight when the call was refused.
    """

    def __init__(self, bulkhead: str, in_flight: int) -> None:
        super().__init__(
            f"bulkhead {bulkhead!r} is full ({in_flight} in flight)", None
        )
        self.bulkhead = bulkhead
        self.in_flight = in_flight


class AttemptTimeoutError(StormwallError, TimeoutError):
    """
    One attempt ran past the executor's per-attempt ``timeout``.

    Retryable by default, and recorded by the breaker as a failure.

    Attributes:
        timeout: The per-attempt timeout in seconds.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"attempt timed out after {timeout:g}s")
        self.timeout = timeout


class BackendUnavailableError(StormwallError):
    """
    A shared-state backend (e.g. Redis) could not be reached.

    Raised when the component's ``on_backend_error`` policy is ``"raise"``;
    the backend's own exception is the ``__cause__``.

    Attributes:
        component: The limiter's or breaker's name.
        backend: The backend, e.g. ``"redis"``.
        operation: What was attempted, e.g. ``"acquire"``.
    """

    def __init__(self, component: str, backend: str, operation: str) -> None:
        super().__init__(
            f"{backend} backend of {component!r} failed during {operation}"
        )
        self.component = component
        self.backend = backend
        self.operation = operation
