"""A bounded cache of values computed once per :class:`~app.core.model_spec.ModelSpec` object.

Keyed by object identity: hashing a spec would hash every tensor, and the callers (the fit table, the
sliders) reuse their spec objects. The stored value keeps its spec, so a recycled ``id`` never returns
another model's entry. Least recently used entries go first; safe to use from several threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from app.core.model_spec import ModelSpec


class _HasSpec(Protocol):
    @property
    def spec(self) -> ModelSpec: ...


V = TypeVar("V", bound=_HasSpec)


class SpecCache(Generic[V]):
    """``get(spec)`` returns ``build(spec)``, computed once per spec object (at most ``size`` kept)."""

    def __init__(self, build: Callable[[ModelSpec], V], size: int) -> None:
        self._build = build
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, V] = OrderedDict()

    def get(self, spec: ModelSpec) -> V:
        key = id(spec)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit.spec is spec:
                self._entries.move_to_end(key)
                return hit
        value = self._build(spec)  # outside the lock: building can take milliseconds
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
