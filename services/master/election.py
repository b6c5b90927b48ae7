"""Leader election among masters on an etcd lease.

Every master campaigns for /reservoir/leader: the key is created only if absent,
under a lease of `ttl` seconds that the winner keeps alive. When the leader dies
its lease expires and a standby takes over within the TTL (plus one poll); when
it stops cleanly it revokes the lease and the takeover is immediate. The key's
value names the leader, so standbys can tell clients where to send writes. Each
write of the leader is guarded by this key's exact value (see `reservoir.meta.kv`),
so a leader that lost its lease without noticing cannot write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from reservoir.errors import NotLeader, Unavailable
from reservoir.master import keys
from reservoir.meta.kv import KV, Guard

log = logging.getLogger(__name__)

# How often a standby looks for a vacant leadership.
POLL_SECONDS = 0.5


class Leadership:
    def __init__(self, kv: KV, address: str, ttl: int) -> None:
        self._kv = kv
        self.address = address
        self.ttl = ttl
        self._identity = json.dumps({"address": address, "id": uuid.uuid4().hex}).encode()
        self._lease = 0
        self._renewed = 0.0
        self.is_leader = False

    async def leader(self) -> str | None:
        """The leader's address, or None while there is none."""
        value = await self._kv.get(keys.LEADER)
        return str(json.loads(value)["address"]) if value else None

    async def require(self) -> Guard:
        """The guard for a write, or NotLeader naming where writes go."""
        if not self.is_leader:
            raise NotLeader(await self.leader())
        return (keys.LEADER, self._identity)

    async def run(self) -> None:
        """Campaign, then hold the leadership; forever (cancel to stop)."""
        while True:
            try:
                if self.is_leader:
                    await asyncio.sleep(self.ttl / 3)
                    await self._renew()
                else:
                    await self._campaign()
                    if not self.is_leader:
                        await asyncio.sleep(POLL_SECONDS)
            except Unavailable as exc:
                if self.is_leader and time.monotonic() - self._renewed > self.ttl:
                    self._step_down(f"lease not renewed for {self.ttl} s ({exc})")
                await asyncio.sleep(POLL_SECONDS)

    async def _campaign(self) -> None:
        if await self._kv.get(keys.LEADER) is not None:
            return
        lease = await self._kv.grant_lease(self.ttl)
        if await self._kv.create(keys.LEADER, self._identity, lease=lease):
            self._lease, self._renewed, self.is_leader = lease, time.monotonic(), True
            log.info("master %s is the leader", self.address)
        else:
            await self._kv.revoke_lease(lease)

    async def _renew(self) -> None:
        if await self._kv.refresh_lease(self._lease) > 0:
            self._renewed = time.monotonic()
        else:
            self._step_down("its lease expired")

    def _step_down(self, why: str) -> None:
        log.warning("master %s is no longer the leader: %s", self.address, why)
        self.is_leader = False

    async def follow(
        self, on_gain: Callable[[], Awaitable[None]], on_loss: Callable[[], Awaitable[None]]
    ) -> None:
        """Call `on_gain()` when this master becomes the leader and `on_loss()` when it
        stops being it; forever (cancel to stop). What the leader alone does starts and
        stops here."""
        leading = False
        while True:
            if self.is_leader and not leading:
                await on_gain()
            elif leading and not self.is_leader:
                await on_loss()
            leading = self.is_leader
            await asyncio.sleep(POLL_SECONDS)

    async def resign(self) -> None:
        """Hand over at once: revoke the lease so a standby need not wait for it."""
        if self.is_leader:
            self.is_leader = False
            await self._kv.revoke_lease(self._lease)
