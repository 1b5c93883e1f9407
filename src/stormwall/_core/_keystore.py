"""
Per-key state with bounded memory: lossless eviction, O(1) LRU, idle TTL.

Sans-I/O: the caller passes ``now`` and holds its own lock.

- **Lossless eviction** (always): a key whose state is back at full capacity
  owes nothing, so forgetting it changes no decision (a fresh state decides
  exactly alike). Such keys are dropped lazily, with no background thread:
  without ``max_keys`` or ``ttl`` the store is a plain dict (the hot path is
  one look-up) and, once it holds ``2 m`` keys (``m``: the keys left by the
  previous pass, at least `_FLOOR`), each new key examines two keys of a
  snapshot of the store and drops those that are full. A pass over ``2 m``
  keys thus spans ``m`` insertions and the snapshot costs O(1) amortised per
  insertion (a ``list(dict)`` copy: about 20 ms at 1M keys, once per pass).
  With ``max_keys`` (and no ``ttl``), each new key first drops up to two
  full keys at the cold end of the LRU order.
- **LRU** (``max_keys``): an insertion beyond the bound evicts the least
  recently used key at once (``OrderedDict.popitem``). That may forget a key
  that still owes capacity, which lets its next request through early; such
  evictions are counted in ``evicted_owing`` so they can be seen and
  ``max_keys`` raised.
- **TTL** (``ttl``): a key idle for ``ttl`` seconds is dropped only once
  forgetting it changes no decision (its state is back at full capacity and
  nobody waits on it). The sweep is lazy and amortised: each look-up checks at
  most two keys at the cold end, so no background thread and no pause. A
  cold key that still owes stops the sweep until it is settled; that keeps
  the LRU order true and costs nothing but a little memory for a while. A
  full key is kept until it has been idle ``ttl`` seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


__all__ = ["KeyStore"]


class _HasUsed(Protocol):
    used: float


S = TypeVar("S", bound=_HasUsed)

# Keys examined per look-up by the TTL sweep: two per look-up retire keys
# faster than one look-up can create them, so the store cannot grow without
# bound while the sweep keeps up.
_SWEEP = 2
# The fewest keys an unbounded store holds before its first lossless pass:
# below it, sweeping would cost more than the memory it frees.
_FLOOR = 1024


class KeyStore(Generic[S]):
    """
    Maps keys to states, creating them on first use.

    Args:
        factory: Makes a fresh (full) state.
        full: ``full(state, now)`` is true when forgetting the state would
            change no decision.
        max_keys: Bound on the number of keys (LRU), or ``None``.
        ttl: Idle seconds after which a full key is dropped, or ``None``.
    """

    __slots__ = (
        "_full",
        "_keys",
        "_lru",
        "_make",
        "_mark",
        "_todo",
        "evicted",
        "evicted_owing",
        "fast",
        "get",
        "max_keys",
        "ttl",
    )

    def __init__(
        self,
        factory: Callable[[], S],
        full: Callable[[S, float], bool],
        max_keys: int | None = None,
        ttl: float | None = None,
    ) -> None:
        self._make = factory
        self._full = full
        self.max_keys = max_keys
        self.ttl = ttl
        self.evicted = 0
        self.evicted_owing = 0
        # Lossless pass of the unbounded store: the keys still to examine,
        # and the size at which the next pass starts.
        self._todo: list[str] = []
        self._mark: float = _FLOOR
        # The same mapping, typed for its LRU methods when it is ordered.
        self._lru: OrderedDict[str, S] = OrderedDict()
        self._keys: dict[str, S] = (
            {} if max_keys is None and ttl is None else self._lru
        )
        # The look-up is picked once: the unbounded case is a bare dict
        # look-up on the hot path.
        self.get: Callable[[str, float], S] = (
            self._get_plain
            if max_keys is None and ttl is None
            else self._get_bounded
        )
        # For callers that inline the look-up: ``fast.get(key)`` is a hit
        # exactly when `get` would be a bare dict look-up (always a miss
        # when bounded: the LRU and TTL bookkeeping must run in `get`).
        self.fast: dict[str, S] = (
            self._keys if max_keys is None and ttl is None else {}
        )

    def _get_plain(self, key: str, now: float) -> S:
        keys = self._keys
        state = keys.get(key)
        if state is None:
            # Before the insertion: the new (full) state is never examined.
            if self._todo or len(keys) >= self._mark:
                self._step(keys, now)
            state = keys[key] = self._make()
        return state

    def _step(self, keys: dict[str, S], now: float) -> None:
        """Examine two keys of the current pass; drop those that are full."""
        todo = self._todo
        if not todo:
            todo = self._todo = list(keys)
        full = self._full
        for _ in range(_SWEEP):
            if not todo:
                break
            key = todo.pop()
            state = keys.get(key)
            if state is not None and full(state, now):
                del keys[key]
                self.evicted += 1
        if not todo:
            self._mark = max(_FLOOR, 2 * len(keys))

    def _get_bounded(self, key: str, now: float) -> S:
        keys = self._lru
        state = keys.get(key)
        if state is None:
            if self.ttl is None:
                # Before the insertion: the new (full) state stays.
                self._sweep(keys, now, 0.0)
            state = keys[key] = self._make()
            if self.max_keys is not None and len(keys) > self.max_keys:
                _, old = keys.popitem(last=False)
                self.evicted += 1
                if not self._full(old, now):
                    self.evicted_owing += 1
        else:
            keys.move_to_end(key)
        state.used = now
        if self.ttl is not None:
            self._sweep(keys, now, self.ttl)
        return state

    def _sweep(
        self, keys: OrderedDict[str, S], now: float, ttl: float
    ) -> None:
        for _ in range(_SWEEP):
            if not keys:
                return
            key = next(iter(keys))
            state = keys[key]
            if now - state.used < ttl or not self._full(state, now):
                return
            del keys[key]
            self.evicted += 1

    def peek(self, key: str) -> S | None:
        """A key's state without creating it or touching its LRU rank."""
        return self._keys.get(key)

    def pop(self, key: str) -> S | None:
        """Remove and return a key's state."""
        return self._keys.pop(key, None)

    def clear(self) -> list[S]:
        """Remove every key; return their states."""
        states = list(self._keys.values())
        self._keys.clear()
        self._todo = []
        self._mark = _FLOOR
        return states

    def states(self) -> Iterator[S]:
        """The states, coldest first."""
        return iter(list(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)
