"""The key-value seam the master keeps all of its state in.

Small on purpose (JuiceFS' tkv is the model): reads, writes in batches with an
optional guard, and leases. A *guard* is a (key, value) pair that must hold for a
batch to apply: the master passes its leadership key so that a deposed leader's
late writes are refused by etcd itself, not by a flag in memory (fencing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

Guard = tuple[str, bytes]


class GuardFailed(Exception):
    """The guard of a batch did not hold; nothing of that batch was applied."""


class LeaseExpired(Exception):
    """A write named a lease that no longer exists; nothing of that batch was applied."""


class KV(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value at `key`, or None."""
        ...

    async def scan(
        self, prefix: str, *, start: str | None = None, limit: int = 0
    ) -> list[tuple[str, bytes]]:
        """Pairs under `prefix` in key order, from `start` (inclusive) if given.

        `limit` 0 means all of them; the implementation pages internally.
        """
        ...

    async def exists_under(self, prefix: str) -> bool:
        """Whether any key starts with `prefix`."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        """Write `key` only if it is absent; whether it was written."""
        ...

    async def commit(
        self,
        puts: Mapping[str, bytes] = {},
        deletes: Iterable[str] = (),
        *,
        delete_prefixes: Iterable[str] = (),
        lease: int = 0,
        guard: Guard | None = None,
    ) -> None:
        """Apply writes, in as few transactions as the store allows.

        Each transaction is atomic and checks `guard` (GuardFailed if it fails, and
        LeaseExpired if `lease` is gone); a batch larger than one transaction is
        applied in order, not atomically.
        """
        ...

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; keys written with it vanish when it expires."""
        ...

    async def refresh_lease(self, lease: int) -> int:
        """Renew `lease`; its new TTL in seconds, or 0 if it has already expired."""
        ...

    async def revoke_lease(self, lease: int) -> None:
        """End `lease` now, deleting its keys."""
        ...

    async def close(self) -> None: ...
