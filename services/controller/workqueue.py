"""A work queue of keys, each held once, due now or after a delay.

Watch events and timers both put keys; a key already waiting keeps the earlier of
its two due times, so a burst of events for one object costs one reconcile.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time


class WorkQueue:
    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._cv = threading.Condition()

    def put(self, key: str, delay: float = 0.0) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cv:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._cv.notify()

    def get(self, timeout: float) -> str | None:
        """The next due key, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier put
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                if now >= deadline:
                    return None
                wake = min(deadline, self._heap[0][0]) if self._heap else deadline
                self._cv.wait(wake - now)
