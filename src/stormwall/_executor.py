"""
What the sync and async executors share: configuration and binding.

An executor checks its parameters, wires its components to one name, clock
and bus, and builds its `Pipeline` (`_pipeline.py`), where the order of the
steps, the decisions and the events live. The drivers (`_sync.py`,
`_async.py`) run a call through it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from . import _tally, _validate
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead
from ._bus import EventBus, default_bus
from ._clock import DEFAULT_CLOCK, Clock, one_clock
from ._component import Component, check_bus, check_clock
from ._errors import ConfigError
from ._limiters import Limiter
from ._pipeline import Pipeline
from ._retry import RetryPolicy


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Self

    from ._core._backoff import RandomSource


logger = logging.getLogger("stormwall")


class ExecutorBase:
    """
    Configuration and decisions shared by both executors.

    See `ResilientExecutor` for the parameters.
    """

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_bulkhead",
        "_bus",
        "_buses",
        "_clock",
        "_fallback",
        "_limiter",
        "_limiter_timeout",
        "_name",
        "_pipeline",
        "_policy",
        "_timeout",
    )

    # The async executor: it awaits an awaitable fallback value, drives
    # components behind an asyncio client, and has per-attempt timeouts.
    _is_async: ClassVar[bool]

    def __init__(
        self,
        name: str = "default",
        *,
        limiter: Limiter | None = None,
        retry_policy: RetryPolicy | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: float | None = None,
        limiter_timeout: float | None = None,
        fallback: Callable[[BaseException], Any] | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._name = _validate.name("name", name, "default")
        self._limiter: Limiter | None = _optional(
            "limiter", limiter, Limiter, "a Limiter"
        )
        if self._limiter is not None:
            _check_grants_one(self._limiter)
        self._policy: RetryPolicy | None = _optional(
            "retry_policy", retry_policy, RetryPolicy, "a RetryPolicy"
        )
        self._breaker: CircuitBreaker | None = _optional(
            "circuit_breaker",
            circuit_breaker,
            CircuitBreaker,
            "a CircuitBreaker",
        )
        self._bulkhead: Bulkhead | None = _optional(
            "bulkhead", bulkhead, Bulkhead, "a Bulkhead"
        )
        self._timeout = self._check_timeout(timeout)
        self._limiter_timeout = _validate.optional_non_negative(
            "limiter_timeout", limiter_timeout, seconds=True
        )
        if fallback is not None and not callable(fallback):
            raise ConfigError(
                "fallback",
                f"expected a callable, got {type(fallback).__name__}",
            )
        self._fallback = fallback
        self._bus = check_bus("bus", bus) or default_bus
        self._check_async_only()
        self._clock = self._bind_components(check_clock("clock", clock))
        buses = [self._bus]
        for _, component in self._components():
            buses.extend(b for b in component._buses() if b not in buses)
        self._buses = tuple(buses)
        _check_names(self)
        self._pipeline = Pipeline(self, awaits=self._is_async)
        _tally.register_executor(self)  # pull metrics: the weak index

    def _check_timeout(self, timeout: object) -> float | None:
        if timeout is not None and not self._is_async:
            raise ConfigError(
                "timeout",
                "per-attempt timeouts need AsyncResilientExecutor (a running "
                "thread cannot be interrupted safely); bound the total time "
                "with RetryPolicy(deadline=...)",
            )
        return _validate.optional_positive("timeout", timeout, seconds=True)

    def _check_async_only(self) -> None:
        """
        Refuse, in the sync executor, a component behind an asyncio client.

        Its state lives behind an asyncio client (a Redis backend built on
        redis.asyncio), so it cannot serve a synchronous caller: refused
        now rather than on the first call.
        """
        if self._is_async:
            return
        for param, component in self._components():
            if component._async_only:
                raise ConfigError(
                    param,
                    f"{component.name!r} uses an asyncio client; give it a "
                    "synchronous client or use AsyncResilientExecutor",
                )

    def _components(self) -> list[tuple[str, Component]]:
        found: list[tuple[str, Component]] = []
        if self._breaker is not None:
            found.append(("circuit_breaker", self._breaker))
        if self._limiter is not None:
            found.append(("limiter", self._limiter))
        if self._bulkhead is not None:
            found.append(("bulkhead", self._bulkhead))
        budget = None if self._policy is None else self._policy.budget
        if budget is not None:
            found.append(("retry_policy", budget))
        return found

    def _bind_components(self, clock: Clock | None) -> Clock:
        """
        Pick the one clock of this pipeline and wire every component to it.

        The executor's own ``clock=`` wins; else the one clock its components
        were given; two different clocks are a `ConfigError`.
        """
        components = self._components()
        clock = (
            one_clock(
                ("clock", clock),
                *((param, c._explicit_clock) for param, c in components),
                hint="one executor needs one clock",
            )
            or DEFAULT_CLOCK
        )
        for param, component in components:
            component._bind(self._name, clock, self._bus, param)
        return clock

    # -- public ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The executor's name (the ``executor`` of its events and metrics)."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock the whole pipeline keeps time with."""
        return self._clock

    @property
    def bus(self) -> EventBus:
        """The bus the executor reports on."""
        return self._bus

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, if any."""
        return self._breaker

    @property
    def limiter(self) -> Limiter | None:
        """The rate limiter, if any."""
        return self._limiter

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The bulkhead, if any."""
        return self._bulkhead

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The retry policy, if any."""
        return self._policy

    def _without_retries(self) -> Self:
        """
        This pipeline without its retry policy.

        Integrations use it for calls that must not be repeated (e.g. a
        POST). Itself when it has no retry policy.
        """
        return self if self._policy is None else self._with_policy(None)

    def _with_policy(self, policy: RetryPolicy | None) -> Self:
        """
        A twin of this pipeline with another retry policy.

        The same name, components (so the same breaker state, limiter
        tokens and budget), clock, bus, timeouts and fallback.
        """
        return type(self)(
            self._name,
            limiter=self._limiter,
            retry_policy=policy,
            circuit_breaker=self._breaker,
            bulkhead=self._bulkhead,
            timeout=self._timeout,
            limiter_timeout=self._limiter_timeout,
            fallback=self._fallback,
            clock=self._clock,
            bus=self._bus,
        )

    def __repr__(self) -> str:
        parts = [repr(self._name)]
        for param, component in self._components():
            parts.append(f"{param}={component!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- keeping time on another clock (the simulator's seam) ---------------

    @contextlib.contextmanager
    def _keeping_time(
        self, clock: Clock, rng: RandomSource | None = None
    ) -> Iterator[None]:
        """
        Keep time on ``clock`` inside the block, then on the own clock again.

        The executor and every component that keeps time (breaker, limiter
        and its tiers, bulkhead, retry budget) switch to ``clock`` with fresh
        time-keeping state, set aside and put back when the block ends: a
        breaker opened or a bucket emptied in virtual time never leaks into
        real time, nor the other way round. With ``rng``, the retry policy
        draws jitter from it meanwhile. The executor's pipeline, which holds
        the clock and what it reads of the components, is rebuilt for the
        block and put back after it.

        Raises:
            ConfigError: ``executor``: it keeps time with a clock other than
                the default one (given to it or to a component), or is
                already keeping time elsewhere; or, naming the component's
                parameter, a component that keeps time with a backend.
        """
        if self._clock is not DEFAULT_CLOCK:
            raise ConfigError(
                "executor",
                f"{self._name!r} keeps time with {self._clock!r}; only an "
                "executor built with the default clock (and components "
                "given none) can keep time on another one",
            )
        restores: list[Callable[[], None]] = []
        own = self._pipeline
        try:
            for param, component in self._components():
                restores.append(component._rebind_clock(clock, param))
            if rng is not None and self._policy is not None:
                restores.append(self._policy._drawing_from(rng))
            self._clock = clock
            self._pipeline = Pipeline(self, awaits=self._is_async)
            yield
        finally:
            self._clock = DEFAULT_CLOCK
            self._pipeline = own
            for restore in reversed(restores):
                restore()


def protect_args(fn: Any, key: Any) -> tuple[Callable[..., str], Any]:
    """
    Sort out ``protect``'s forms.

    Returns:
        The key function, and the function to protect at once when used
        bare (else ``None``).
    """
    if fn is not None and key is not None:
        raise ConfigError(
            "key", "give the key once: protect(key=...) or protect('key')"
        )
    if fn is None:
        return _key_function("default" if key is None else key), None
    if isinstance(fn, str) or not callable(fn):
        return _key_function(fn), None  # a fixed key, or a ConfigError
    return _key_function("default"), fn


def _key_function(key: object) -> Callable[..., str]:
    return _validate.key_function(
        key, "a str or a function returning one", fixed=True
    )


def _optional(param: str, value: object, cls: type[Any], what: str) -> Any:
    if value is None:
        return None
    return _validate.instance_of(param, value, cls, what)


def _check_grants_one(limiter: Limiter) -> None:
    """
    Refuse a limiter that can never grant the 1 permit an attempt costs.

    Every ``run()`` through it would fail, so it is a configuration error.
    """
    for tier in getattr(limiter, "_tiers", None) or (limiter,):
        most = getattr(tier, "_max_cost", None)
        if most is not None and most < 1:
            raise ConfigError(
                "limiter",
                f"{tier.name!r} grants at most {most:g} permits at once "
                f"({getattr(tier, '_what', 'its maximum')}), but every "
                "attempt takes 1: no call could ever pass; give it 1 or more",
            )


# What the executor says when two distinct components report under one name:
# their metrics would blend into one series (one label value).
_KINDS = {
    "circuit_breaker": "circuit breaker",
    "limiter": "limiter",
    "bulkhead": "bulkhead",
}

# Per bus: (kind, name) -> the component wired under that name. Weak on both
# sides, so a component (or a bus) nobody uses any more frees its name.
_wired: weakref.WeakKeyDictionary[
    EventBus, weakref.WeakValueDictionary[tuple[str, str], Component]
] = weakref.WeakKeyDictionary()
_wired_lock = threading.Lock()


def _labelled(executor: ExecutorBase) -> list[tuple[str, Component]]:
    """The executor's components that name a metric series, with kind."""
    found: list[tuple[str, Component]] = []
    for param, component in executor._components():
        if param == "retry_policy":
            continue
        if param == "limiter":
            tiers = getattr(component, "_tiers", None) or (component,)
            found.extend(("limiter", tier) for tier in tiers)
        else:
            found.append((param, component))
    return found


def _check_names(executor: ExecutorBase) -> None:
    """
    Warn when a distinct component already reports under the same name.

    Two components of one kind with one name on one bus write one metric
    series, so their numbers blend (one open breaker and one closed one show
    as a single breaker). A component object shared by several executors
    is one series, as it should be, and is never reported.
    """
    clashes = []
    with _wired_lock:
        for kind, component in _labelled(executor):
            bus = component._explicit_bus or executor._bus
            names = _wired.get(bus)
            if names is None:
                names = _wired[bus] = weakref.WeakValueDictionary()
            key = (kind, component.name)
            seen = names.get(key)
            if seen is None:
                names[key] = component
            elif seen is not component:
                clashes.append((kind, component))
    for kind, component in clashes:
        logger.warning(
            "executor %r: another %s named %r already reports on this bus; "
            "their events and metrics will share one name and blend: give "
            "each its own name=",
            executor.name,
            _KINDS[kind],
            component.name,
        )


__all__ = ["ExecutorBase", "protect_args"]
