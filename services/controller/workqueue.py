"""A work queue of keys, each held once, due now or after a delay.

Watch events and timers both put keys; a key already waiting keeps the earlier of
its two due times, so a burst of events for one object costs one reconcile. Several
workers take keys side by side, but never the same key at once: a key taken stays
out of reach until its worker calls `done`, and a put meanwhile waits for that.
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
        self._active: set[str] = set()  # taken by a worker, not yet done

    def put(self, key: str, delay: float = 0.0) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cv:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._cv.notify()

    def get(self, timeout: float) -> str | None:
        """The next due key that no worker holds, or None after `timeout` seconds
        without one. The caller calls `done(key)` when it has finished with it."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                now = time.monotonic()
                held: list[tuple[float, int, str]] = []
                found = None
                while self._heap and self._heap[0][0] <= now:
                    entry = heapq.heappop(self._heap)
                    if self._due.get(entry[2]) != entry[0]:
                        continue  # superseded by an earlier put
                    if entry[2] in self._active:
                        held.append(entry)  # due, but its worker is still on it
                        continue
                    found = entry[2]
                    break
                for entry in held:
                    heapq.heappush(self._heap, entry)
                if found is not None:
                    del self._due[found]
                    self._active.add(found)
                    return found
                if now >= deadline:
                    return None
                # Wake at the next due key no worker holds; `done` wakes us for the rest.
                later = [due for due, _, key in self._heap if key not in self._active]
                self._cv.wait(max(0.0, min([deadline, *later]) - now))

    def done(self, key: str) -> None:
        """The worker that took `key` has finished: it may be taken again."""
        with self._cv:
            self._active.discard(key)
            self._cv.notify_all()
