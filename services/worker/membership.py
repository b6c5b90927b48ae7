"""Keeping a worker registered with the master, and the master told what it caches.

The worker registers under a lease and heartbeats at a third of its TTL, so one lost
heartbeat does not drop it. After each registration it reports every block it holds
(the master filed the old records under the old lease, which is gone); after that it
reports changes as they happen, batched over a few milliseconds, plus how many bytes
it has read from each dataset's origin. If the lease is gone (the worker was paused,
or etcd lost it), the worker registers again; if no master answers, it keeps trying.
Changes that could not be reported are kept and sent with the next report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from reservoir.blocks import BlockId
from reservoir.errors import NotFound, ReservoirError
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, types_pb2
from reservoir.worker.origins import Origins
from reservoir.worker.store import BlockStore

log = logging.getLogger(__name__)

# Before the first registration answers, retry this often.
RETRY_SECONDS = 1.0
# Changes that arrive within this window go in one report.
BATCH_SECONDS = 0.02


class Membership:
    def __init__(
        self,
        master: MasterClient,
        worker_id: str,
        address: str,
        store: BlockStore,
        origins: Origins,
        tiers: Callable[[], list[types_pb2.TierUsage]],
    ) -> None:
        self._master = master
        self.worker_id = worker_id
        self._address = address
        self._store = store
        self._origins = origins
        self._tiers = tiers
        self._changed = asyncio.Event()
        self._added: dict[BlockId, int] = {}
        self._removed: set[BlockId] = set()
        self._reported_origin: dict[str, int] = {}
        self.lease = 0

    def notify(self) -> None:
        """The store changed: report soon."""
        self._changed.set()

    async def _call(self, method: str, request: object, seconds: float) -> Any:
        return await asyncio.to_thread(self._master.call, method, request, timeout=seconds)

    async def run(self) -> None:
        """Register, then heartbeat and report forever (cancel to stop)."""
        ttl = 0
        beat_due = 0.0
        while True:
            try:
                if not self.lease:
                    ttl = await self._register()
                    beat_due = time.monotonic() + ttl / 3
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait(), max(0.0, beat_due - time.monotonic())
                    )
                    await asyncio.sleep(BATCH_SECONDS)
                self._changed.clear()
                await self._report(ttl / 2)
                if time.monotonic() >= beat_due:
                    beat = master_pb2.HeartbeatRequest(
                        worker_id=self.worker_id, lease_id=self.lease, tiers=self._tiers()
                    )
                    await self._call("Heartbeat", beat, ttl / 2)
                    beat_due = time.monotonic() + ttl / 3
            except NotFound:
                log.warning("worker %s: lease expired, registering again", self.worker_id)
                self.lease = 0
            except ReservoirError as exc:
                log.warning("worker %s: %s", self.worker_id, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _register(self) -> int:
        request = master_pb2.RegisterWorkerRequest(
            worker_id=self.worker_id, address=self._address, tiers=self._tiers()
        )
        answer = await self._call("RegisterWorker", request, 10)
        self.lease = answer.lease_id
        log.info("worker %s registered at %s", self.worker_id, self._address)
        # Everything held goes under the new lease; pending removals are moot.
        self._store.drain_changes()
        self._added, self._removed = dict(self._store.held()), set()
        self._changed.set()
        return int(answer.lease_ttl_seconds)

    async def _report(self, seconds: float) -> None:
        added, removed = self._store.drain_changes()
        for block, length in added:
            self._added[block] = length
            self._removed.discard(block)
        for block in removed:
            if self._added.pop(block, None) is None:
                self._removed.add(block)
        origin = [
            master_pb2.OriginBytes(dataset=d, bytes=n)
            for d, n in self._origins.bytes_read.items()
            if self._reported_origin.get(d) != n
        ]
        if not (self._added or self._removed or origin):
            return
        request = master_pb2.ReportBlocksRequest(
            worker_id=self.worker_id,
            lease_id=self.lease,
            added=[
                master_pb2.CachedBlock(key=b.to_proto(), length=n) for b, n in self._added.items()
            ],
            removed=[b.to_proto() for b in self._removed],
            origin_bytes=origin,
        )
        await self._call("ReportBlocks", request, seconds)
        self._added, self._removed = {}, set()
        self._reported_origin.update((o.dataset, o.bytes) for o in origin)
