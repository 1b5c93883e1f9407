"""
What every backend shares: the failure policy and how a failure is reported.

Standard library only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, TypeVar

from .. import _validate
from .._errors import BackendUnavailableError, ConfigError, RejectedError
from .._events import BackendError
from .._validate import positive


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

Each decision the policy takes is reported as a
`stormwall.events.BackendError` event. After a failure the backend is
probed again at most once per ``retry_interval`` (see `Cooldown`); the
decisions in between take no round trip. Recovery needs no restart.
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
    value = _validate.key(value)
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
    *,
    cooldown: bool = False,
) -> None:
    """
    Report a backend failure; raise when the policy is ``"raise"``.

    The caller applies ``fail_open`` / ``fail_closed`` itself. ``cooldown``
    says the backend was not asked this time (it failed less than
    ``retry_interval`` ago, ``error`` is that failure).
    """
    component._report(
        ctx,
        BackendError,
        component=component.name,
        backend=backend,
        operation=operation,
        policy=policy,
        error=error,
        cooldown=cooldown,
    )
    if policy == "raise":
        raise BackendUnavailableError(
            component.name, backend, operation
        ) from error


MAX_SCRIPT_DURATION: Final = 10 * 365 * 24 * 3600.0
"""
The longest duration (seconds, ten years) a backend hands its server.

Scripts keep time in microseconds and give Redis expiries in milliseconds; a
duration beyond this bound would overflow them (``1e300`` seconds is not a
window anybody means), so constructors refuse it with `ConfigError`.
"""


def check_duration(
    param: str, value: float, maximum: float = MAX_SCRIPT_DURATION
) -> float:
    """``value`` (already a positive float), refused above ``maximum``."""
    if value > maximum:
        raise ConfigError(
            param, f"must be at most {maximum:g} seconds, got {value!r}"
        )
    return value


MAX_BACKEND_TIMEOUT: Final = 60.0
MAX_RETRY_INTERVAL: Final = 3600.0


def check_backend_timeout(value: object) -> float:
    """``backend_timeout``: seconds in (0, `MAX_BACKEND_TIMEOUT`]."""
    return check_duration(
        "backend_timeout",
        positive("backend_timeout", value, seconds=True),
        MAX_BACKEND_TIMEOUT,
    )


def check_retry_interval(value: object) -> float:
    """``retry_interval``: seconds in (0, `MAX_RETRY_INTERVAL`]."""
    return check_duration(
        "retry_interval",
        positive("retry_interval", value, seconds=True),
        MAX_RETRY_INTERVAL,
    )


class Cooldown:
    """
    The gate in front of a failed backend: one probe per ``retry_interval``.

    While the backend answers, `retry_at` is ``None`` and the hot path pays
    one attribute check (``if cooldown.retry_at is not None``). After a
    failure (`failed`), `blocked` says ``True`` until ``retry_interval`` has
    passed; then it lets exactly one caller through to probe (and pushes
    the next probe another ``retry_interval`` away, so callers racing the
    probe are decided by the policy at once); `recovered` reopens the gate
    for everybody. Times come from the caller (a component's clock), so
    tests drive it with a `MockClock`.

    Attributes:
        retry_interval: Seconds between two probes of a failed backend.
        retry_at: When the next probe may go, ``None`` while healthy.
        last_error: The failure that closed the gate (the cause of the
            decisions taken meanwhile).
    """

    __slots__ = ("_lock", "last_error", "retry_at", "retry_interval")

    def __init__(self, retry_interval: float) -> None:
        self.retry_interval = retry_interval
        self.retry_at: float | None = None
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()

    def blocked(self, now: float) -> bool:
        """
        Whether to skip the backend now (call it only when `retry_at` is set).

        ``False`` means the caller is the probe: it must then call `failed`
        or `recovered`.
        """
        with self._lock:
            retry_at = self.retry_at
            if retry_at is None:
                return False
            if now < retry_at:
                return True
            self.retry_at = now + self.retry_interval
            return False

    def failed(self, now: float, error: BaseException) -> None:
        """The backend failed at ``now``: no probe for ``retry_interval``."""
        with self._lock:
            self.retry_at = now + self.retry_interval
            self.last_error = error

    def recovered(self) -> None:
        """The backend answered: every caller goes to it again."""
        with self._lock:
            self.retry_at = None
            self.last_error = None


_Rejection = TypeVar("_Rejection", bound=RejectedError)


def unavailable(
    rejection: _Rejection, component: str, backend: str
) -> _Rejection:
    """
    ``rejection`` (a `fail_closed` refusal), saying the backend is down.

    The type stays (callers catching `RateLimitedError` or
    `CircuitOpenError` keep working); only the message changes, so an
    operator looks at the backend, not for a limit that is too low. Chain
    the backend's error as its cause (``raise ... from error``).
    """
    retry_after = rejection.retry_after
    after = "" if retry_after is None else f"; retry after {retry_after:.3f}s"
    message = (
        f"{component!r} refused the call: its {backend} backend is "
        f"unavailable (on_backend_error='fail_closed'){after}"
    )
    rejection.args = (message,)
    return rejection
