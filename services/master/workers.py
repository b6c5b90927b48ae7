"""Live workers: each registered under an etcd lease that its heartbeats renew.

A worker that stops heartbeating disappears from etcd by itself when its lease
expires; nothing has to notice that it died.
"""

from __future__ import annotations

import re
import time

from reservoir.errors import InvalidArgument, NotFound
from reservoir.master import keys
from reservoir.master.election import Leadership
from reservoir.meta.kv import KV
from reservoir.v1 import master_pb2, types_pb2

_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ADDRESS = re.compile(r"^\[?[A-Za-z0-9.:_-]+\]?:\d{1,5}$")


class WorkerRegistry:
    def __init__(self, kv: KV, leadership: Leadership, lease_ttl: int) -> None:
        self._kv = kv
        self._leadership = leadership
        self.lease_ttl = lease_ttl

    async def register(self, worker_id: str, address: str, tiers: list[types_pb2.TierUsage]) -> int:
        """Record the worker under a new lease; the lease's ID."""
        if not _WORKER_ID.match(worker_id):
            raise InvalidArgument(f"worker id {worker_id!r}: use letters, digits, '.', '_', '-'")
        if not _ADDRESS.match(address):
            raise InvalidArgument(f"worker address {address!r} is not HOST:PORT")
        guard = await self._leadership.require()
        lease = await self._kv.grant_lease(self.lease_ttl)
        info = master_pb2.WorkerInfo(
            worker_id=worker_id,
            address=address,
            tiers=tiers,
            registered_unix_ms=int(time.time() * 1000),
        )
        await self._kv.commit(
            {keys.worker(worker_id): info.SerializeToString()}, lease=lease, guard=guard
        )
        return lease

    async def heartbeat(self, worker_id: str, lease: int, tiers: list[types_pb2.TierUsage]) -> None:
        guard = await self._leadership.require()
        value = await self._kv.get(keys.worker(worker_id))
        if value is None or await self._kv.refresh_lease(lease) == 0:
            raise NotFound(
                f"worker {worker_id!r} is not registered (lease expired): register again"
            )
        info = master_pb2.WorkerInfo.FromString(value)
        del info.tiers[:]
        info.tiers.extend(tiers)
        await self._kv.commit(
            {keys.worker(worker_id): info.SerializeToString()}, lease=lease, guard=guard
        )

    async def list(self) -> list[master_pb2.WorkerInfo]:
        return [master_pb2.WorkerInfo.FromString(v) for _, v in await self._kv.scan(keys.WORKERS)]
