"""The ASGI rate-limit middleware, driven through httpx.ASGITransport."""

from __future__ import annotations

import pytest


pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.authentication import (  # noqa: E402
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
)
from starlette.middleware.authentication import (  # noqa: E402
    AuthenticationMiddleware,
)
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from stormwall import (  # noqa: E402
    ConfigError,
    EventBus,
    MockClock,
    SlidingWindow,
    TokenBucket,
)
from stormwall.events import LimiterAllowed, LimiterRejected  # noqa: E402
from stormwall.integrations.asgi import (  # noqa: E402
    RateLimitMiddleware,
    client_address,
    key_from_header,
    key_from_user,
)
from stormwall.testing import EventRecorder  # noqa: E402


class Hits:
    """Counts the requests that reached the endpoints."""

    def __init__(self) -> None:
        self.count = 0


def make_app(hits: Hits, **middleware) -> Starlette:
    """A Starlette app with the middleware installed by add_middleware."""

    async def home(request) -> PlainTextResponse:
        hits.count += 1
        return PlainTextResponse("home")

    async def health(request) -> PlainTextResponse:
        hits.count += 1
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", home), Route("/health", health)],
    )
    app.add_middleware(RateLimitMiddleware, **middleware)
    return app


def bucket(bus: EventBus | None = None, **kwargs) -> TokenBucket:
    """A bucket of 2 refilling 0.5 permit/s, on a mock clock."""
    return TokenBucket(2, 0.5, clock=MockClock(), bus=bus, **kwargs)


def client_for(app, address: str = "1.2.3.4", **kwargs) -> httpx.AsyncClient:
    """An httpx client calling ``app`` from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 1234), **kwargs)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.asyncio
async def test_limit_headers_and_429():
    """Allowed responses carry the remaining quota; the third gets 429."""
    hits = Hits()
    app = make_app(hits, limiter=bucket(name="api"))
    async with client_for(app) as client:
        first = await client.get("/")
        second = await client.get("/")
        third = await client.get("/")

    assert first.status_code == 200
    assert first.text == "home"
    assert first.headers["ratelimit-policy"] == '"api";q=2;w=4'
    assert first.headers["ratelimit"] == '"api";r=1;t=2'
    assert second.headers["ratelimit"] == '"api";r=0;t=4'
    assert third.status_code == 429
    assert third.headers["retry-after"] == "2"
    assert third.headers["ratelimit"] == '"api";r=0;t=2'
    assert third.headers["ratelimit-policy"] == '"api";q=2;w=4'
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["status"] == 429
    assert hits.count == 2


@pytest.mark.asyncio
async def test_refill_admits_again():
    """Once the mock clock has refilled a permit, a request passes again."""
    clock = MockClock()
    limiter = TokenBucket(1, 0.5, clock=clock)
    app = make_app(Hits(), limiter=limiter, policy_name="default")
    async with client_for(app) as client:
        assert (await client.get("/")).status_code == 200
        rejected = await client.get("/")
        assert rejected.status_code == 429
        assert rejected.headers["ratelimit"] == '"default";r=0;t=2'
        clock.advance(2)
        assert (await client.get("/")).status_code == 200


@pytest.mark.asyncio
async def test_timeout_lets_a_request_wait():
    """With a timeout, a request over the limit waits for its permit."""
    clock = MockClock()
    limiter = TokenBucket(1, 0.5, clock=clock)
    app = make_app(Hits(), limiter=limiter, timeout=5)
    async with client_for(app) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/")).status_code == 200
    assert clock.now() == 2


@pytest.mark.asyncio
async def test_clients_keyed_apart():
    """Two client addresses have separate budgets."""
    app = make_app(Hits(), limiter=bucket())
    async with (
        client_for(app, "10.0.0.1") as a,
        client_for(app, "10.0.0.2") as b,
    ):
        assert [(await a.get("/")).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert [(await b.get("/")).status_code for _ in range(2)] == [
            200,
            200,
        ]
        assert (await a.get("/")).status_code == 429


@pytest.mark.asyncio
async def test_key_from_header():
    """Requests are keyed by a header, and without it by client address."""
    limiter = bucket()
    app = make_app(Hits(), limiter=limiter, key=key_from_header("X-API-Key"))
    async with client_for(app) as client:
        for _ in range(2):
            await client.get("/", headers={"x-api-key": "alice"})
        refused = await client.get("/", headers={"X-Api-Key": "alice"})
        other = await client.get("/", headers={"X-API-Key": "bob"})
        anonymous = await client.get("/")

    assert refused.status_code == 429
    assert other.status_code == 200
    assert anonymous.status_code == 200
    assert limiter.tokens("alice") == 0
    assert limiter.tokens("bob") == 1
    assert limiter.tokens("1.2.3.4") == 1


@pytest.mark.asyncio
async def test_async_key_function():
    """An async key function is awaited."""
    limiter = bucket()

    async def tenant(scope):
        return "tenant-7"

    app = make_app(Hits(), limiter=limiter, key=tenant)
    async with client_for(app) as client:
        assert (await client.get("/")).status_code == 200
    assert limiter.tokens("tenant-7") == 1


class HeaderAuth(AuthenticationBackend):
    """Authenticates whoever sends an X-User header."""

    async def authenticate(self, conn):
        user = conn.headers.get("x-user")
        if user is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(user)


@pytest.mark.asyncio
async def test_key_from_user():
    """The signed-in user is the key; anonymous requests use the address."""
    limiter = bucket()
    app = make_app(Hits(), limiter=limiter, key=key_from_user())
    app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
    async with client_for(app) as client:
        await client.get("/", headers={"x-user": "carol"})
        await client.get("/")
    assert limiter.tokens("carol") == 1
    assert limiter.tokens("1.2.3.4") == 1


@pytest.mark.asyncio
async def test_exempt_path_never_limited():
    """An exempt path is served however much the key has used."""
    hits = Hits()
    app = make_app(hits, limiter=bucket(), exempt=["/health"])
    async with client_for(app) as client:
        statuses = [
            (await client.get("/health")).status_code for _ in range(5)
        ]
        assert "ratelimit" not in (await client.get("/health")).headers
        assert (await client.get("/")).status_code == 200
    assert statuses == [200] * 5
    assert hits.count == 7


@pytest.mark.asyncio
async def test_key_function_error_is_a_500_not_a_bypass():
    """A raising key function gives the app's 500; nothing is consumed."""
    hits = Hits()
    limiter = bucket()

    def broken(scope):
        msg = "misconfigured"
        raise LookupError(msg)

    app = make_app(hits, limiter=limiter, key=broken)

    async def on_error(request, exc):
        return PlainTextResponse("app error handler", status_code=500)

    app.add_exception_handler(Exception, on_error)
    async with client_for(app, raise_app_exceptions=False) as client:
        responses = [await client.get("/") for _ in range(3)]

    assert [r.status_code for r in responses] == [500] * 3
    assert {r.text for r in responses} == {"app error handler"}
    assert hits.count == 0
    assert limiter.statistics().allowed == 0


@pytest.mark.asyncio
async def test_events_emitted():
    """The limiter reports its allowed and rejected events with the key."""
    bus = EventBus()
    with EventRecorder(bus) as events:
        app = make_app(Hits(), limiter=bucket(bus))
        async with client_for(app) as client:
            for _ in range(3):
                await client.get("/")
    assert [e.key for e in events.of_type(LimiterAllowed)] == ["1.2.3.4"] * 2
    rejected = events.assert_emitted(LimiterRejected, key="1.2.3.4")
    assert rejected.retry_after == 2


@pytest.mark.asyncio
async def test_sliding_window_policy_without_remaining():
    """A sliding window gets a policy header but no remaining quota."""
    limiter = SlidingWindow(1, 60, clock=MockClock(), name="w")
    app = make_app(Hits(), limiter=limiter)
    async with client_for(app) as client:
        allowed = await client.get("/")
        refused = await client.get("/")
    assert allowed.headers["ratelimit-policy"] == '"w";q=1;w=60'
    assert "ratelimit" not in allowed.headers
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"


@pytest.mark.asyncio
async def test_lifespan_and_websocket_pass_through():
    """Non-HTTP scopes reach the app untouched and unlimited."""
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    limiter = bucket()
    middleware = RateLimitMiddleware(inner, limiter)

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    for kind in ("lifespan", "websocket", "websocket", "websocket"):
        await middleware({"type": kind, "client": ("h", 1)}, receive, send)
    assert seen == ["lifespan", "websocket", "websocket", "websocket"]
    assert limiter.statistics().allowed == 0


def test_client_address_without_client():
    """A scope without a client address is keyed "unknown", not exempt."""
    assert client_address({"type": "http", "client": None}) == "unknown"
    assert client_address({"type": "http", "client": ("h", 1)}) == "h"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"limiter": object()}, "limiter"),
        ({"cost": 0}, "cost"),
        ({"cost": 3}, "cost"),
        ({"timeout": -1}, "timeout"),
        ({"exempt": [5]}, "exempt"),
        ({"exempt": ["health"]}, "exempt"),
        ({"key": "ip"}, "key"),
        ({"policy_name": ""}, "policy_name"),
        ({"policy_name": "caf\u00e9"}, "policy_name"),
    ],
)
def test_config_errors(kwargs, parameter):
    """Out-of-domain parameters raise ConfigError naming the parameter."""
    arguments = {"limiter": bucket(), **kwargs}

    async def inner(scope, receive, send):
        pass

    with pytest.raises(ConfigError) as info:
        RateLimitMiddleware(inner, **arguments)
    assert info.value.parameter == parameter


def test_helper_config_errors():
    """The key helpers validate their parameters."""
    with pytest.raises(ConfigError):
        key_from_header("")
    with pytest.raises(ConfigError):
        key_from_user(default="ip")


@pytest.mark.integration
@pytest.mark.asyncio
async def test_redis_token_bucket(redis_server):
    """A RedisTokenBucket on an asyncio client works unchanged."""
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from stormwall.backends.redis import RedisTokenBucket

    aclient = redis_asyncio.Redis.from_url(redis_server.url)
    try:
        limiter = RedisTokenBucket(aclient, 2, 0.001, name="shared")
        app = make_app(Hits(), limiter=limiter)
        async with client_for(app) as a, client_for(app, "5.6.7.8") as b:
            statuses = [(await a.get("/")).status_code for _ in range(3)]
            other = await b.get("/")
            refused = await a.get("/")
    finally:
        await aclient.aclose()

    assert statuses == [200, 200, 429]
    assert other.status_code == 200
    assert other.headers["ratelimit-policy"] == '"shared";q=2;w=2000'
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 990 <= retry_after <= 1000
    assert refused.headers["ratelimit"] == f'"shared";r=0;t={retry_after}'
