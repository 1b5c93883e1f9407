"""
Rate limiting for any ASGI application (Starlette, FastAPI, ...).

`RateLimitMiddleware` charges a stormwall limiter for every HTTP request
and answers ``429 Too Many Requests`` itself when the limit is reached,
with ``Retry-After`` and the IETF ``RateLimit`` / ``RateLimit-Policy``
header fields (draft-ietf-httpapi-ratelimit-headers, structured-field
form). It is pure ASGI and imports nothing but the standard library::

    from starlette.applications import Starlette
    from stormwall import TokenBucket
    from stormwall.integrations.asgi import RateLimitMiddleware

    app = Starlette(routes=routes)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=TokenBucket(capacity=10, refill_rate=100 / 60),
        exempt=["/health"],
    )

Installed with ``app.add_middleware`` the middleware runs inside the
application's own error handling, so a key function that raises gives the
application's ``500`` (never a request that skipped the limit).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import timedelta
from typing import Any

from stormwall import (
    ConfigError,
    Limiter,
    RateLimitedError,
    parse_duration,
)


__all__ = [
    "RateLimitMiddleware",
    "client_address",
    "key_from_header",
    "key_from_user",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyFunction = Callable[[Scope], "str | Awaitable[str]"]

# The key of a request whose scope carries no client address (all such
# requests share one budget rather than escaping the limit).
UNKNOWN_CLIENT = "unknown"


def client_address(scope: Scope) -> str:
    """
    The default key: the client's host from ``scope["client"]``.

    Behind a proxy this is the proxy's address; use `key_from_header` (for
    instance on ``X-Forwarded-For`` set by a proxy you trust) instead.

    Args:
        scope: The ASGI connection scope.

    Returns:
        The client host, or ``"unknown"`` when the server gave none.

    Example::

        RateLimitMiddleware(app, limiter, key=client_address)
    """
    client = scope.get("client")
    if client:
        return str(client[0])
    return UNKNOWN_CLIENT


def key_from_header(
    name: str, *, default: KeyFunction | None = None
) -> Callable[[Scope], str | Awaitable[str]]:
    """
    A key function reading a request header (an API key, a tenant id, ...).

    Args:
        name: The header's name (case-insensitive).
        default: The key function for requests without the header (default:
            `client_address`, so they are limited per address rather than
            let through).

    Returns:
        A key function for `RateLimitMiddleware`.

    Raises:
        ConfigError: ``name`` is not a non-empty str.

    Example::

        RateLimitMiddleware(app, limiter, key=key_from_header("X-API-Key"))
    """
    given: object = name
    if not isinstance(given, str) or not given:
        raise ConfigError("name", f"expected a header name, got {given!r}")
    if default is not None and not callable(default):
        raise ConfigError("default", "expected a key function or None")
    wanted = name.lower().encode("latin-1")
    fallback: KeyFunction = default or client_address

    def key(scope: Scope) -> str | Awaitable[str]:
        for header, value in scope.get("headers", ()):
            if bytes(header).lower() == wanted:
                return bytes(value).decode("latin-1")
        return fallback(scope)

    return key


def key_from_user(
    *, default: KeyFunction | None = None
) -> Callable[[Scope], str | Awaitable[str]]:
    """
    A key function for the authenticated user, ``scope["user"]``.

    The user is set by an authentication middleware (Starlette's
    ``AuthenticationMiddleware``), which must run before this one: with
    ``app.add_middleware``, add it after `RateLimitMiddleware`. The key is
    the user's ``identity``, else its ``display_name``, else ``str(user)``.
    An unauthenticated user (``is_authenticated`` false) is keyed by
    ``default``. A scope without ``"user"`` is a misconfiguration and
    raises ``RuntimeError`` (the application answers 500).

    Args:
        default: The key function for anonymous requests (default:
            `client_address`).

    Returns:
        A key function for `RateLimitMiddleware`.

    Example::

        app.add_middleware(RateLimitMiddleware, limiter=limiter,
                           key=key_from_user())
        app.add_middleware(AuthenticationMiddleware, backend=backend)
    """
    if default is not None and not callable(default):
        raise ConfigError("default", "expected a key function or None")
    fallback: KeyFunction = default or client_address

    def key(scope: Scope) -> str | Awaitable[str]:
        if "user" not in scope:
            msg = (
                'key_from_user(): the scope has no "user"; install an '
                "authentication middleware outside RateLimitMiddleware"
            )
            raise RuntimeError(msg)
        user = scope["user"]
        if user is None or not getattr(user, "is_authenticated", True):
            return fallback(scope)
        for attribute in ("identity", "display_name"):
            try:
                value = getattr(user, attribute, None)
            except NotImplementedError:
                continue
            if isinstance(value, str) and value:
                return value
        return str(user)

    return key


def _sf_string(param: str, value: object) -> str:
    """``value`` as a structured-field string (RFC 8941 §3.3.3)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(param, f"expected a non-empty str, got {value!r}")
    if any(not (0x20 <= ord(c) <= 0x7E) for c in value):
        raise ConfigError(param, "must be printable ASCII")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _policy(limiter: Limiter) -> tuple[float, float] | None:
    """The limiter's (quota, window seconds), when it has such a shape."""
    capacity = getattr(limiter, "capacity", None)
    refill_rate = getattr(limiter, "refill_rate", None)
    if isinstance(capacity, float | int) and isinstance(
        refill_rate, float | int
    ):
        return float(capacity), capacity / refill_rate
    limit = getattr(limiter, "limit", None)
    window = getattr(limiter, "window", None)
    if isinstance(limit, float | int) and isinstance(window, float | int):
        return float(limit), float(window)
    return None


def _number(
    name: str, value: object, *, zero: bool, finite: bool, seconds: bool
) -> float:
    """
    ``value`` as a float > 0 (>= 0 with ``zero``), or a ConfigError.

    The core's rules: ``bool`` and NaN refused, a `~datetime.timedelta` or
    a duration string only for a duration (``seconds``, read by
    `stormwall.parse_duration`), infinity only when not ``finite``.
    """
    if seconds and isinstance(value, timedelta | str):
        number = parse_duration(value, name=name)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            name, f"expected a number, got {type(value).__name__}"
        )
    else:
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(
                name, "out of range: an int too large for a float"
            ) from None
    if math.isnan(number):
        raise ConfigError(name, "must not be NaN")
    if number < 0 or (number == 0 and not zero):
        raise ConfigError(
            name, f"must be {'>=' if zero else '>'} 0, got {value!r}"
        )
    if finite and math.isinf(number):
        raise ConfigError(name, "must be finite")
    return number


def _seconds(value: float) -> int:
    """Whole seconds, rounded up (what the header fields carry)."""
    return max(0, math.ceil(value))


class RateLimitMiddleware:
    """
    ASGI middleware charging a stormwall limiter for each HTTP request.

    Each ``http`` request is keyed (by default by client address) and
    charged ``cost`` permits with ``await limiter.acquire_async(key, cost,
    timeout=timeout)``; any `Limiter` works, the Redis ones included. A
    refused request gets ``429`` with a ``application/problem+json`` body
    and the headers::

        Retry-After: 3
        RateLimit-Policy: "api";q=10;w=6
        RateLimit: "api";r=0;t=3

    An admitted request reaches the application, and its response gets
    ``RateLimit-Policy`` and, when the limiter can tell the remaining quota
    cheaply (a local `TokenBucket`), ``RateLimit``. ``q`` and ``w`` are
    the capacity and ``capacity / refill_rate`` of a token bucket, the
    limit and window of a sliding window; ``RateLimit-Policy`` is left out
    for other limiters. The limiter reports its own events
    (``LimiterAllowed``, ``LimiterRejected``, ...).

    ``lifespan`` and ``websocket`` scopes pass through unlimited (a
    websocket is one long connection; limit what it carries in the
    application instead). Exceptions other than `RateLimitedError` (a key
    function that raises, `BackendUnavailableError` under the ``"raise"``
    policy) propagate to the application's error handling: a 500, never an
    unlimited request.

    Args:
        app: The ASGI application to protect.
        limiter: The limiter to charge.
        key: A function of the ASGI scope returning the key (sync or
            async); default `client_address`. See `key_from_header` and
            `key_from_user`.
        cost: Permits per request (a finite number > 0, at most what the
            limiter can ever grant).
        exempt: Paths never limited. ``"/health"`` exempts ``/health`` and
            everything below ``/health/``; ``"/static/"`` everything below.
        timeout: How long a request may wait for the limiter, in seconds:
            ``0`` (the default) refuses at once, ``None`` waits as long as
            needed.
        policy_name: The policy's name in the ``RateLimit`` header fields
            (default: the limiter's name).

    Raises:
        ConfigError: A parameter is out of its domain.

    Example::

        app = RateLimitMiddleware(
            app, TokenBucket(10, 1), key=key_from_header("X-API-Key")
        )
    """

    __slots__ = (
        "_app",
        "_cost",
        "_exempt",
        "_key",
        "_limiter",
        "_policy",
        "_policy_header",
        "_sf_name",
        "_timeout",
    )

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        *,
        key: KeyFunction | None = None,
        cost: float = 1,
        exempt: Iterable[str] = (),
        timeout: float | None = 0.0,
        policy_name: str | None = None,
    ) -> None:
        if not callable(app):
            raise ConfigError("app", "expected an ASGI application")
        if not isinstance(limiter, Limiter):
            raise ConfigError(
                "limiter",
                f"expected a stormwall Limiter, got {type(limiter).__name__}",
            )
        if key is not None and not callable(key):
            raise ConfigError("key", "expected a function of the scope")
        self._app = app
        self._limiter = limiter
        self._key: KeyFunction = key or client_address
        self._cost = _number(
            "cost", cost, zero=False, finite=True, seconds=False
        )
        self._policy = _policy(limiter)
        if self._policy is not None and self._cost > self._policy[0]:
            raise ConfigError(
                "cost",
                f"{self._cost:g} is above what the limiter can ever grant "
                f"({self._policy[0]:g})",
            )
        self._exempt = self._check_exempt(exempt)
        self._timeout = (
            None
            if timeout is None
            else _number(
                "timeout", timeout, zero=True, finite=False, seconds=True
            )
        )
        self._sf_name = _sf_string(
            "policy_name",
            limiter.name if policy_name is None else policy_name,
        )
        self._policy_header: bytes | None = None
        if self._policy is not None:
            quota, window = self._policy
            self._policy_header = (
                f"{self._sf_name};q={math.floor(quota)};"
                f"w={max(1, _seconds(window))}"
            ).encode("ascii")

    @staticmethod
    def _check_exempt(exempt: object) -> tuple[tuple[str, str], ...]:
        """Each exempt path as (exact match, prefix match)."""
        if isinstance(exempt, str):
            exempt = (exempt,)
        if not isinstance(exempt, Iterable):
            raise ConfigError("exempt", "expected an iterable of paths")
        paths: list[tuple[str, str]] = []
        for path in exempt:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(
                    "exempt", f"expected paths starting with '/', got {path!r}"
                )
            stem = path.rstrip("/")
            paths.append((path, stem + "/"))
        return tuple(paths)

    @property
    def limiter(self) -> Limiter:
        """The limiter charged for each request."""
        return self._limiter

    def _is_exempt(self, path: str) -> bool:
        return any(
            path == exact or path.startswith(prefix)
            for exact, prefix in self._exempt
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http" or self._is_exempt(scope.get("path", "")):
            await self._app(scope, receive, send)
            return
        found = self._key(scope)
        key = await found if inspect.isawaitable(found) else found
        try:
            await self._limiter.acquire_async(
                key, self._cost, timeout=self._timeout
            )
        except RateLimitedError as error:
            await self._reject(error, send)
            return
        headers = self._allowed_headers(key)
        if not headers:
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self._app(scope, receive, send_with_headers)

    def _allowed_headers(self, key: str) -> list[tuple[bytes, bytes]]:
        """The header fields of an admitted request's response."""
        headers: list[tuple[bytes, bytes]] = []
        if self._policy_header is None:
            return headers
        headers.append((b"ratelimit-policy", self._policy_header))
        tokens = getattr(self._limiter, "tokens", None)
        rate = getattr(self._limiter, "refill_rate", None)
        if callable(tokens) and isinstance(rate, float | int):
            left = float(tokens(key))
            capacity = self._policy[0] if self._policy else left
            reset = (capacity - left) / rate
            field = (
                f"{self._sf_name};r={max(0, math.floor(left))};"
                f"t={_seconds(reset)}"
            )
            headers.append((b"ratelimit", field.encode("ascii")))
        return headers

    async def _reject(self, error: RateLimitedError, send: Send) -> None:
        """Answer 429 with the retry hints."""
        wait = error.retry_after
        detail = "Rate limit exceeded."
        headers = [
            (b"content-type", b"application/problem+json"),
        ]
        if math.isfinite(wait):
            seconds = max(1, _seconds(wait))
            detail = f"Rate limit exceeded; retry after {seconds} s."
            headers.append((b"retry-after", str(seconds).encode("ascii")))
            field = f"{self._sf_name};r=0;t={seconds}"
            headers.append((b"ratelimit", field.encode("ascii")))
        if self._policy_header is not None:
            headers.append((b"ratelimit-policy", self._policy_header))
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Too Many Requests",
                "status": 429,
                "detail": detail,
            }
        ).encode()
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send(
            {"type": "http.response.start", "status": 429, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})
