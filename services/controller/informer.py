"""A local copy of the controller's resources, kept by list-then-watch (one thread per
kind), and told to the controller as changes.

An object whose resourceVersion the copy already holds is not a change: the watch
event that echoes the controller's own status write does not queue the key again.
A watch that fails for any reason is logged, retried with doubling delays, and
counted against `/healthz` once it has failed for `WATCH_STALE_S`; it counts as
working again only when a watch delivers an event or ends normally (a list that
works says nothing about the watch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from reservoir.controller.kube import GONE, Kube, Obj, status_of

log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 300  # the API server ends watches anyway; start a fresh one this often
WATCH_RETRY_MAX_S = 30.0
# A watch failing this long (the API server out of reach, a bug) makes /healthz 503.
# Longer than a quiet watch lasts after a retry (WATCH_RETRY_MAX_S + WATCH_TIMEOUT_S):
# a watch that works but brings no events clears its failure when it ends, before this.
WATCH_STALE_S = 2 * WATCH_TIMEOUT_S

# (plural, "namespace/name", own): called after the copy changed; `own` when the
# controller stored the answer to its own write.
OnChange = Callable[[str, str, bool], None]


def key_of(obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _version(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


class Informer:
    def __init__(self, kube: Kube, plurals: tuple[str, ...], on_change: OnChange) -> None:
        self._kube = kube
        self._on_change = on_change
        self.lock = threading.Lock()  # guards `cache`; readers take it too
        self.cache: dict[str, dict[str, Obj]] = {p: {} for p in plurals}
        self._failing: dict[str, float] = {}  # plural -> monotonic time its watch failed

    def get(self, plural: str, key: str) -> Obj | None:
        with self.lock:
            return self.cache[plural].get(key)

    def all_keys(self) -> list[str]:
        """Every object as `plural:namespace/name`."""
        with self.lock:
            return [f"{p}:{k}" for p, objs in self.cache.items() for k in objs]

    def store(self, plural: str, event: str, obj: Obj, *, base: str | None = None) -> None:
        """Take an event of the watch, or (`base` given) the answer to the controller's
        own write of the object at version `base`: that is kept only if the copy is
        still at `base`, so that a newer event the watch already brought (a deletion)
        is never overwritten by an older answer, nor a deleted object brought back."""
        key = key_of(obj)
        own = base is not None
        with self.lock:
            objs = self.cache[plural]
            if own and _version(objs.get(key)) != base:
                return  # the watch is ahead: it has brought this or something newer
            if event == "DELETED":
                if objs.pop(key, None) is None:
                    return
            elif _version(objs.get(key)) == _version(obj):
                return  # already held: the echo of our own write
            else:
                objs[key] = obj
        self._on_change(plural, key, own)

    def _relist(self, plural: str) -> str:
        items, version = self._kube.list(plural)
        fresh = {key_of(o): o for o in items}
        with self.lock:
            old = self.cache[plural]
            self.cache[plural] = fresh
        changed = [k for k, o in fresh.items() if _version(old.get(k)) != _version(o)]
        for key in changed:
            self._on_change(plural, key, False)
        return version

    def run(self, plural: str, stop: threading.Event) -> None:
        """List, then watch from there; list again when the watch ends or expires."""
        delay = 1.0
        while not stop.is_set():
            try:
                version = self._relist(plural)
                while not stop.is_set():
                    for event, obj in self._kube.watch(plural, version, WATCH_TIMEOUT_S):
                        self._failing.pop(plural, None)  # the watch works: it delivers
                        delay = 1.0
                        version = _version(obj) or version
                        self.store(plural, event, obj)
                        if stop.is_set():
                            return
                    # Ended normally. Not after a list alone: a watch that always fails
                    # while lists work would otherwise never show in /healthz.
                    self._failing.pop(plural, None)
                    delay = 1.0
            except Exception as exc:  # a watch thread must never die
                if status_of(exc) == GONE:
                    continue  # compacted: list again at once
                self._failing.setdefault(plural, time.monotonic())
                log.warning("watching %s: %s (retry in %.0f s)", plural, exc, delay)
                stop.wait(delay)
                delay = min(WATCH_RETRY_MAX_S, delay * 2)

    def healthy(self) -> bool:
        now = time.monotonic()
        return all(now - since < WATCH_STALE_S for since in list(self._failing.values()))
