"""
httpx transports that run every request through a stormwall executor.

Needs ``pip install 'stormwall[httpx]'``::

    import httpx
    from stormwall.integrations.httpx import ResilientTransport

    client = httpx.Client(transport=ResilientTransport())

`ResilientTransport` (sync) and `AsyncResilientTransport` (asyncio) wrap any
httpx transport (default: ``httpx.HTTPTransport()`` /
``httpx.AsyncHTTPTransport()``) and send each request through a
`ResilientExecutor` / `AsyncResilientExecutor`:

- **What is retried.** Only methods in ``retry_methods`` (the idempotent
  ones by default) whose body can be replayed: the request's stream is a
  ``httpx.ByteStream`` (``content=bytes``, ``json=``, ``data=`` without
  files, no body, or a body already ``read()``). A generator or file body,
  or a multipart upload, is sent once. Retryable outcomes: the transport
  errors in `RETRYABLE_ERRORS` (connection, read and write failures and
  timeouts, a connection dropped mid-response) and the statuses in
  ``retry_statuses`` (429, 502, 503, 504 by default). ``PoolTimeout`` is
  not retried: it is local congestion, not an upstream failure.
- **Requests that are not retried** still pass the breaker, the limiter and
  the bulkhead: they run through a second executor built from the same
  components without a retry policy.
- **Retry-After.** A retryable response's ``Retry-After`` (delta-seconds or
  an HTTP-date) replaces the computed back-off, clamped to the policy's
  ``max_delay`` (see `retry_after_hint`), with your own executor too: when
  its policy has a ``retry_after`` hook, the hook is asked first and the
  header decides when it returns ``None``. Your `RetryPolicy` is not
  changed (it may be shared): the transport runs retried requests through
  a twin of your executor with the same components, clock, bus and name,
  whose policy copy also reads the header. An HTTP-date is an absolute wall
  clock time, so it is measured against ``datetime.now(UTC)``, not the
  executor's clock.
- **Responses.** A retryable response is read (raw bytes) and closed before
  the next attempt, so no pooled connection leaks. When retries run out,
  the caller gets that last response back, rebuilt from the stored status,
  headers and body: a normal, readable ``httpx.Response``.
- **Keys.** The limiter key is the request's host (``host:port`` for a
  non-default port); pass ``key=`` to change it. The default executor's
  circuit breaker is one per transport: use one transport per upstream if
  you want one breaker per host.
- **Breaker.** `http_circuit_breaker` records transport failures and
  retryable statuses except 429: a throttling server is alive.

Tracing: with `stormwall.exporters.otel.TracingExporter` attached, each
attempt span gets ``http.request.method``, ``server.address``,
``server.port`` and, on resends, ``http.request.resend_count`` (OTel HTTP
semantic conventions). To nest httpx's own client span under the attempt
span, instrument the *inner* transport, e.g.
``ResilientTransport(SyncOpenTelemetryTransport(httpx.HTTPTransport()))``,
or call ``HTTPXClientInstrumentor().instrument()`` (which instruments
``httpx.HTTPTransport`` itself). ``instrument_client(client)`` wraps the
client's transport, that is this one, so its span would be the *parent*
of the attempt spans instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar


try:
    import httpx
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stormwall.integrations.httpx needs httpx: "
        "pip install 'stormwall[httpx]'"
    ) from None

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    ConfigError,
    ResilientExecutor,
    RetryPolicy,
)


try:
    from opentelemetry import trace as otel_trace

    _TRACING = True
except ImportError:  # pragma: no cover - tracing is optional
    _TRACING = False


__all__ = [
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "MAX_RETRY_AFTER",
    "RETRYABLE_ERRORS",
    "AsyncResilientTransport",
    "ResilientTransport",
    "RetryableStatus",
    "host_key",
    "http_circuit_breaker",
    "http_retry_policy",
    "is_retryable",
    "is_upstream_failure",
    "parse_retry_after",
    "retry_after_hint",
]

DEFAULT_RETRY_METHODS: Final = frozenset(
    {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
)
DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})

MAX_RETRY_AFTER: Final = float(2**31)
"""The most seconds `parse_retry_after` returns (about 68 years).

The value a cache must assume for a delta-seconds it cannot represent
(RFC 9111 §1.2.2): it keeps absurd hints finite, never a real wait (the
transports clamp hints to the policy's ``max_delay``)."""

_MAX_DIGITS: Final = str(2**31)

# A date whose year has two digits: the day, the month's name and the year,
# as RFC 850 writes them ("06-Nov-94", an HTTP-date's obsolete form) or
# RFC 5322's obsolete syntax ("06 Nov 94"). Four digits, or asctime's
# "Nov  6 08:49:37 1994", do not match.
_NO_TIME: Final = timedelta(0)
_TWO_DIGIT_YEAR: Final = re.compile(r"\d{1,2}[ -][A-Za-z]+[ -]\d{2}(?![\d:])")

RETRYABLE_ERRORS: Final[tuple[type[httpx.TransportError], ...]] = (
    httpx.NetworkError,  # ConnectError, ReadError, WriteError, CloseError
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_E = TypeVar("_E", ResilientExecutor, AsyncResilientExecutor)


class RetryableStatus(Exception):  # noqa: N818 - an outcome, not a bug
    """
    A response whose status is retryable, read and closed.

    Raised inside the executor so the retry policy and the breaker see the
    outcome; the transport catches it and returns `to_response` when
    retries run out. Build your own policy with `is_retryable` and
    `retry_after_hint` to keep this behaviour.

    Attributes:
        status_code: The response's status.
        headers: Its headers.
        content: Its raw (still encoded) body.
        retry_after: Seconds from its ``Retry-After`` header, or ``None``.
    """

    def __init__(self, response: httpx.Response, content: bytes) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = content
        self.retry_after = parse_retry_after(
            response.headers.get("Retry-After")
        )
        self._extensions: dict[str, Any] = {
            name: response.extensions[name]
            for name in ("http_version", "reason_phrase")
            if name in response.extensions
        }

    def to_response(self, request: httpx.Request) -> httpx.Response:
        """
        A readable response equal to the one that was closed.

        Args:
            request: The request it answers.
        """
        return httpx.Response(
            self.status_code,
            headers=self.headers,
            stream=httpx.ByteStream(self.content),
            request=request,
            extensions=dict(self._extensions),
        )


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header value (RFC 9110 §10.2.3).

    The one parser of the header in stormwall: the transports and
    ``stormwall demo`` both read it here.

    Args:
        value: The header's value: delay-seconds (``"120"``: ASCII digits
            only) or an HTTP-date (``"Sun, 06 Nov 1994 08:49:37 GMT"``; the
            obsolete RFC 850 and asctime forms too); ``None`` when the
            header is absent.
        now: The wall-clock time an HTTP-date is measured from (default:
            ``datetime.now(UTC)``); an HTTP-date is absolute wall-clock
            time, so the executor's clock does not apply.

    Returns:
        Seconds, at most `MAX_RETRY_AFTER`: ``0.0`` for a date in the past,
        ``None`` when the header is absent or invalid (a negative or
        fractional number, a malformed date, anything else). Clamp it to
        what you are willing to wait: the transports clamp it to the
        policy's ``max_delay``.

    .. versionadded:: 0.1.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Compare as text first: int() of thousands of digits raises, and
        # float() of a huge int overflows.
        digits = value.lstrip("0") or "0"
        if len(digits) > len(_MAX_DIGITS) or (
            len(digits) == len(_MAX_DIGITS) and digits > _MAX_DIGITS
        ):
            return MAX_RETRY_AFTER
        return float(int(digits))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # asctime dates carry no zone, and "-0000" means "unknown": both
        # are GMT in HTTP.
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # a naive time is UTC, as above
    if _TWO_DIGIT_YEAR.search(value):
        try:
            when = _nearest_century(when, now)
        except ValueError:
            return None
    seconds = (when - now).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _nearest_century(when: datetime, now: datetime) -> datetime:
    """
    ``when``, a date written with a two-digit year, in the right century.

    RFC 9110 §5.6.7: a recipient reads such a year as the most recent past
    year with the same last two digits when it would otherwise be more than
    50 years in the future. (The email parser's rule, 1969-2068, is RFC
    5322's: it would read "70" as 1970 until 2068.) So the year is the one
    in ``(now - 50 years, now + 50 years]``. Raises ValueError when that
    year lacks the date (29 February 1900).
    """
    now = now.astimezone(UTC)
    year = now.year - now.year % 100 + when.year % 100
    for candidate in (year - 100, year, year + 100):
        try:
            moved = when.replace(year=candidate)
        except ValueError:  # 29 February in a year without one
            continue
        utc = moved.astimezone(UTC)
        # How far ahead: whole years, then the rest of the date (no
        # timedelta is exactly 50 years across leap days).
        ahead = (
            utc.year - now.year,
            utc.replace(year=2000) - now.replace(year=2000),
        )
        if (-50, _NO_TIME) < ahead <= (50, _NO_TIME):
            return moved
    raise ValueError(when)


def is_retryable(error: BaseException) -> bool:
    """
    Whether an attempt's exception should be retried.

    Args:
        error: The exception the attempt raised.

    Returns:
        ``True`` for a `RetryableStatus` or one of `RETRYABLE_ERRORS`.
    """
    return isinstance(error, (RetryableStatus, *RETRYABLE_ERRORS))


def is_upstream_failure(error: BaseException) -> bool:
    """
    Whether an attempt's exception counts against the circuit breaker.

    Args:
        error: The exception the attempt raised.

    Returns:
        ``True`` for transport failures and retryable statuses, except 429
        (the server is alive and asks us to slow down).
    """
    if isinstance(error, RetryableStatus):
        return error.status_code != 429
    return isinstance(error, RETRYABLE_ERRORS)


def _is_throttled(error: BaseException) -> bool:
    return isinstance(error, RetryableStatus) and error.status_code == 429


def retry_after_hint(error: object) -> float | None:
    """
    The ``Retry-After`` seconds of a `RetryableStatus`, for ``retry_after=``.

    Args:
        error: What failed the attempt.

    Returns:
        The server's hint, or ``None`` (use the computed back-off).
    """
    if isinstance(error, RetryableStatus):
        return error.retry_after
    return None


class _HintFirst:
    """
    A ``retry_after`` hook: the user's own first, then ``Retry-After``.

    Wraps the hook of a user's `RetryPolicy` in the copy the transports run
    (the user's object is never changed: it may be shared).
    """

    __slots__ = ("_own",)

    def __init__(
        self, own: Callable[[Any], float | timedelta | None] | None
    ) -> None:
        self._own = own

    def __call__(self, error: object) -> float | timedelta | None:
        own = self._own
        if own is not None:
            hint = own(error)
            if hint is not None:
                return hint
        return retry_after_hint(error)


def _hinted_policy(policy: RetryPolicy) -> RetryPolicy:
    """A copy of ``policy`` that also honours ``Retry-After``."""
    return RetryPolicy(
        max_attempts=policy.max_attempts,
        base_delay=policy.base_delay,
        max_delay=policy.max_delay,
        multiplier=policy.multiplier,
        jitter=policy.jitter,
        retry_on=policy.retry_on,
        retry_on_result=policy.retry_on_result,
        deadline=policy.deadline,
        retry_after=_HintFirst(policy.retry_after),
        # Shared, not copied: one budget and one random stream.
        budget=policy.budget,
        rng=policy.rng,
    )


def _honouring_retry_after(executor: _E) -> _E:
    """
    ``executor``, or its twin whose policy also honours ``Retry-After``.

    The twin shares every component (breaker, limiter, bulkhead, budget),
    the clock, the bus, the name, the timeouts and the fallback: only the
    policy's ``retry_after`` hook differs. The executor itself is returned
    when it has no policy or its policy already reads the header.
    """
    policy = executor.retry_policy
    if (
        policy is None
        or policy.retry_after is retry_after_hint
        or isinstance(policy.retry_after, _HintFirst)
    ):
        return executor
    return executor._with_policy(_hinted_policy(policy))


def http_retry_policy(**overrides: Any) -> RetryPolicy:
    """
    A `RetryPolicy` for HTTP: retryable errors and statuses, Retry-After.

    Args:
        overrides: Any `RetryPolicy` argument (e.g. ``max_delay=30``);
            defaults are ``max_attempts=3``, ``base_delay=0.1``,
            `RetryPolicy`'s ``max_delay`` (10 seconds, or ``base_delay``
            if larger), ``retry_on=is_retryable`` and
            ``retry_after=retry_after_hint``.
    """
    options: dict[str, Any] = {
        "max_attempts": 3,
        "base_delay": 0.1,
        "retry_on": is_retryable,
        "retry_after": retry_after_hint,
    }
    options.update(overrides)
    return RetryPolicy(**options)


def http_circuit_breaker(
    name: str = "httpx", **overrides: Any
) -> CircuitBreaker:
    """
    A `CircuitBreaker` that counts upstream failures but not 429s.

    Args:
        name: The breaker's name.
        overrides: Any `CircuitBreaker` argument; defaults are
            ``record_on=is_upstream_failure`` and ignoring 429.
    """
    options: dict[str, Any] = {
        "record_on": is_upstream_failure,
        "ignore_on": _is_throttled,
    }
    options.update(overrides)
    return CircuitBreaker(name, **options)


def host_key(request: httpx.Request) -> str:
    """
    The default limiter key: the host, with the port when not the default.

    Args:
        request: The request being sent.
    """
    url = request.url
    port = url.port
    return url.host if port is None else f"{url.host}:{port}"


def _methods(value: object) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(
            "retry_methods",
            "expected a collection of method names, got "
            f"{type(value).__name__}",
        )
    methods = set()
    for method in value:
        if not isinstance(method, str) or not method:
            raise ConfigError(
                "retry_methods", f"expected method names, got {method!r}"
            )
        methods.add(method.upper())
    return frozenset(methods)


def _statuses(value: object) -> frozenset[int]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise ConfigError(
            "retry_statuses",
            "expected a collection of status codes, got "
            f"{type(value).__name__}",
        )
    statuses = set()
    for status in value:
        if (
            isinstance(status, bool)
            or not isinstance(status, int)
            or not 100 <= status <= 599
        ):
            raise ConfigError(
                "retry_statuses",
                f"expected status codes in [100, 599], got {status!r}",
            )
        statuses.add(status)
    return frozenset(statuses)


def _key_function(
    key: Callable[[httpx.Request], str] | None,
) -> Callable[[httpx.Request], str]:
    if key is None:
        return host_key
    if not callable(key):
        raise ConfigError(
            "key",
            "expected a function of the request returning a str, got "
            f"{type(key).__name__}",
        )
    return key


def _replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again: fully in memory."""
    return isinstance(request.stream, httpx.ByteStream)


def _raw(response: httpx.Response) -> bytes:
    """The body as sent (still content-encoded), read to the end."""
    stream = response.stream
    # A response built in memory (MockTransport, a test double) was read
    # at construction; its in-memory stream can be iterated again.
    if isinstance(stream, httpx.ByteStream):
        return b"".join(stream)
    return b"".join(response.iter_raw())


def _current_span() -> object:
    if not _TRACING:  # pragma: no cover - tracing is optional
        return None
    return otel_trace.get_current_span()


def _annotate(outer: object, request: httpx.Request, attempt: int) -> None:
    """Put the HTTP attributes on the attempt span, if one is current."""
    if not _TRACING:  # pragma: no cover - tracing is optional
        return
    span = otel_trace.get_current_span()
    # The span current outside the executor is the caller's (say a server
    # span): only a span the executor made current is ours to annotate.
    if span is outer or not span.is_recording():
        return
    url = request.url
    span.set_attribute("http.request.method", request.method)
    span.set_attribute("server.address", url.host)
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if port is not None:
        span.set_attribute("server.port", port)
    if attempt > 1:
        span.set_attribute("http.request.resend_count", attempt - 1)


class _Options:
    """What both transports validate and keep."""

    __slots__ = ("_key", "_retry_methods", "_retry_statuses")

    def __init__(
        self,
        retry_methods: Iterable[str],
        retry_statuses: Iterable[int],
        key: Callable[[httpx.Request], str] | None,
    ) -> None:
        self._retry_methods = _methods(retry_methods)
        self._retry_statuses = _statuses(retry_statuses)
        self._key = _key_function(key)

    def _retries(self, request: httpx.Request) -> bool:
        return request.method in self._retry_methods and _replayable(request)


class ResilientTransport(httpx.BaseTransport):
    """
    A sync httpx transport that retries, throttles and fails fast.

    Args:
        transport: The transport that sends (default
            ``httpx.HTTPTransport()``); closed by `close`.
        executor: The pipeline (default: `http_retry_policy` and
            `http_circuit_breaker`, no limiter). Give its policy
            ``retry_on=is_retryable`` (or use `http_retry_policy`) to retry
            statuses; ``Retry-After`` is honoured whatever its
            ``retry_after`` hook (asked first when there is one).
        retry_methods: Methods that may be retried.
        retry_statuses: Statuses that are retried (and, through the
            breaker's classifier, may count as failures).
        key: ``key(request) -> str``, the limiter key (default `host_key`).

    Raises:
        ConfigError: a parameter outside its domain (an async transport or
            executor included).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        executor: ResilientExecutor | None = None,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        key: Callable[[httpx.Request], str] | None = None,
    ) -> None:
        if transport is not None and not isinstance(
            transport, httpx.BaseTransport
        ):
            raise ConfigError(
                "transport",
                "expected an httpx.BaseTransport (use AsyncResilientTransport "
                f"for async transports), got {type(transport).__name__}",
            )
        if executor is None:
            executor = ResilientExecutor(
                "httpx",
                retry_policy=http_retry_policy(),
                circuit_breaker=http_circuit_breaker(),
            )
        elif not isinstance(executor, ResilientExecutor):
            raise ConfigError(
                "executor",
                "expected a ResilientExecutor (use AsyncResilientTransport "
                f"with an async executor), got {type(executor).__name__}",
            )
        self._options = _Options(retry_methods, retry_statuses, key)
        self._executor = executor
        # What retried requests run through: the executor, its policy
        # honouring Retry-After (a twin when the user's policy does not).
        self._retried = _honouring_retry_after(executor)
        # Calls that must not be repeated: the same pipeline, no retries.
        self._once = executor._without_retries()
        self._transport = (
            httpx.HTTPTransport() if transport is None else transport
        )

    @property
    def executor(self) -> ResilientExecutor:
        """
        The executor given (or the default one).

        Retried requests run through it, or through its twin that also
        honours ``Retry-After`` (the same components, clock, bus and name).
        """
        return self._executor

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """
        Send ``request`` through the executor.

        Args:
            request: The request.

        Returns:
            The response: the first that is not retryable, or the last one
            when retries ran out.

        Raises:
            httpx.TransportError: the last transport error, retries spent.
            CircuitOpenError: the breaker is open.
            RateLimitedError: the limiter refused within its timeout.
        """
        options = self._options
        executor = self._retried if options._retries(request) else self._once
        statuses = options._retry_statuses
        inner = self._transport
        outer = _current_span()
        attempts = 0

        def send() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            _annotate(outer, request, attempts)
            response = inner.handle_request(request)
            if response.status_code not in statuses:
                return response
            try:
                content = _raw(response)
            finally:
                response.close()
            raise RetryableStatus(response, content)

        try:
            return executor.run(options._key(request), send)
        except RetryableStatus as exc:
            return exc.to_response(request)

    def close(self) -> None:
        """Close the wrapped transport."""
        self._transport.close()


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """
    An asyncio httpx transport that retries, throttles and fails fast.

    The twin of `ResilientTransport`, with an `AsyncResilientExecutor`
    (whose per-attempt ``timeout`` applies) and
    ``httpx.AsyncHTTPTransport()`` by default.

    Args:
        transport: The transport that sends; closed by `aclose`.
        executor: The pipeline (default as for `ResilientTransport`).
        retry_methods: Methods that may be retried.
        retry_statuses: Statuses that are retried.
        key: ``key(request) -> str``, the limiter key (default `host_key`).

    Raises:
        ConfigError: a parameter outside its domain (a sync transport or
            executor included).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        executor: AsyncResilientExecutor | None = None,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        key: Callable[[httpx.Request], str] | None = None,
    ) -> None:
        if transport is not None and not isinstance(
            transport, httpx.AsyncBaseTransport
        ):
            raise ConfigError(
                "transport",
                "expected an httpx.AsyncBaseTransport (use ResilientTransport "
                f"for sync transports), got {type(transport).__name__}",
            )
        if executor is None:
            executor = AsyncResilientExecutor(
                "httpx",
                retry_policy=http_retry_policy(),
                circuit_breaker=http_circuit_breaker(),
            )
        elif not isinstance(executor, AsyncResilientExecutor):
            raise ConfigError(
                "executor",
                "expected an AsyncResilientExecutor (use ResilientTransport "
                f"with a sync executor), got {type(executor).__name__}",
            )
        self._options = _Options(retry_methods, retry_statuses, key)
        self._executor = executor
        # What retried requests run through: the executor, its policy
        # honouring Retry-After (a twin when the user's policy does not).
        self._retried = _honouring_retry_after(executor)
        # Calls that must not be repeated: the same pipeline, no retries.
        self._once = executor._without_retries()
        self._transport = (
            httpx.AsyncHTTPTransport() if transport is None else transport
        )

    @property
    def executor(self) -> AsyncResilientExecutor:
        """
        The executor given (or the default one).

        As for `ResilientTransport.executor`.
        """
        return self._executor

    async def handle_async_request(
        self, request: httpx.Request
    ) -> httpx.Response:
        """
        Send ``request`` through the executor.

        Args:
            request: The request.

        Returns:
            The response: the first that is not retryable, or the last one
            when retries ran out.

        Raises:
            httpx.TransportError: the last transport error, retries spent.
            CircuitOpenError: the breaker is open.
            RateLimitedError: the limiter refused within its timeout.
        """
        options = self._options
        executor = self._retried if options._retries(request) else self._once
        statuses = options._retry_statuses
        inner = self._transport
        outer = _current_span()
        attempts = 0

        async def send() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            _annotate(outer, request, attempts)
            response = await inner.handle_async_request(request)
            if response.status_code not in statuses:
                return response
            try:
                stream = response.stream
                if isinstance(stream, httpx.ByteStream):
                    content = b"".join(stream)
                else:
                    content = b"".join(
                        [part async for part in response.aiter_raw()]
                    )
            finally:
                await response.aclose()
            raise RetryableStatus(response, content)

        try:
            return await executor.run(options._key(request), send)
        except RetryableStatus as exc:
            return exc.to_response(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()
