"""A bounded least-recently-used cache: the one cache policy of the plugin."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

V = TypeVar('V')


class LRUCache(Generic[V]):
    """Keeps the ``capacity`` most recently used values (0 keeps nothing).

    Used for what is expensive and deterministic to recompute (image embeddings, patch
    features), never to pass data between components.
    """

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 0:
            raise ValueError(f'cache capacity must be >= 0, got {capacity}')
        self.capacity = int(capacity)
        self._items: 'OrderedDict[Hashable, V]' = OrderedDict()

    def get(self, key: Hashable) -> Optional[V]:
        """The cached value of ``key`` (now the most recent), or None."""
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value: V) -> V:
        """Store ``value`` under ``key`` (None: not stored), evicting the least recent."""
        if key is not None and self.capacity > 0:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value of ``key``, else ``compute()`` (stored when there is room)."""
        value = self.get(key)
        return value if value is not None else self.put(key, compute())

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
