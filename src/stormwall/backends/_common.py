"""
What every backend shares: the failure policy and how a failure is reported.

Standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._errors import BackendUnavailableError, ConfigError
from .._events import BackendError


if TYPE_CHECKING:
    from .._component import CallContext, Component


POLICIES: Final = ("fail_open", "fail_closed", "raise")
"""
What a component does when its backend fails:

- ``"fail_open"``: admit the call as if the backend said yes (availability
  first: a Redis outage must not take your service down with it);
- ``"fail_closed"``: refuse it (`RateLimitedError` for a limiter,
  `CircuitOpenError` for a breaker): protection first;
- ``"raise"``: raise `BackendUnavailableError` and let the caller decide.

Each failure is reported as a `stormwall.events.BackendError` event, and the
component goes back to the backend on the next call: recovery needs no
restart.
"""


def check_policy(value: object) -> str:
    """``on_backend_error``, validated."""
    if value not in POLICIES:
        raise ConfigError(
            "on_backend_error",
            f"expected one of {', '.join(POLICIES)}, got {value!r}",
        )
    return str(value)


def check_prefix(value: object) -> str:
    """A key prefix: a non-empty str without spaces or braces."""
    if not isinstance(value, str):
        raise ConfigError(
            "prefix", f"expected a str, got {type(value).__name__}"
        )
    if not value or len(value) > 64:
        raise ConfigError("prefix", "must be 1 to 64 characters")
    if any(c.isspace() or c in "{}" for c in value):
        raise ConfigError(
            "prefix",
            "must not contain spaces or braces (braces mark Redis Cluster "
            "hash tags, which stormwall places itself)",
        )
    return value


MAX_KEY_LENGTH: Final = 512
"""The longest call key a backend stores (bytes of its UTF-8 form)."""


def check_key(value: object) -> str:
    """A call key: a str of at most `MAX_KEY_LENGTH` UTF-8 bytes."""
    if not isinstance(value, str):
        raise ConfigError("key", f"expected a str, got {type(value).__name__}")
    if len(value.encode()) > MAX_KEY_LENGTH:
        raise ConfigError("key", f"longer than {MAX_KEY_LENGTH} bytes (UTF-8)")
    return value


def report_failure(
    component: Component,
    ctx: CallContext | None,
    backend: str,
    operation: str,
    policy: str,
    error: BaseException,
) -> None:
    """
    Report a backend failure; raise when the policy is ``"raise"``.

    The caller applies ``fail_open`` / ``fail_closed`` itself.
    """
    component._report(
        ctx,
        BackendError,
        component=component.name,
        backend=backend,
        operation=operation,
        policy=policy,
        error=error,
    )
    if policy == "raise":
        raise BackendUnavailableError(
            component.name, backend, operation
        ) from error
