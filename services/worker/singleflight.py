"""Single flight: at most one piece of work per key; later callers join it.

A hundred readers that miss the same block at the same moment must cause one fill,
not a hundred origin reads. The first caller starts the work; everyone who asks
while it is in flight gets the same object back.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._flights: dict[K, T] = {}

    def join(self, key: K, start: Callable[[], T]) -> tuple[T, bool]:
        """The flight for `key`, started by `start()` if there is none; whether it is new."""
        if key in self._flights:
            return self._flights[key], False
        flight = self._flights[key] = start()
        return flight, True

    def land(self, key: K) -> None:
        """The flight for `key` is over; the next caller starts a new one."""
        self._flights.pop(key, None)

    def __len__(self) -> int:
        return len(self._flights)
