"""Keeping a worker registered with the master.

The worker registers under a lease and heartbeats at a third of its TTL, so one
lost heartbeat does not drop it. If the master says the lease is gone (the worker
was paused, or etcd lost it), the worker registers again; if no master answers, it
keeps trying. The master client is synchronous, so calls run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from reservoir.errors import NotFound, ReservoirError
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, types_pb2

log = logging.getLogger(__name__)

# Before the first registration answers, retry this often.
RETRY_SECONDS = 1.0


async def keep_registered(
    master: MasterClient,
    worker_id: str,
    address: str,
    tiers: Callable[[], list[types_pb2.TierUsage]],
) -> None:
    """Register, then heartbeat forever (cancel to stop)."""
    lease, ttl = 0, 0
    while True:
        try:
            if not lease:
                request = master_pb2.RegisterWorkerRequest(
                    worker_id=worker_id, address=address, tiers=tiers()
                )
                answer = await asyncio.to_thread(master.call, "RegisterWorker", request, timeout=10)
                lease, ttl = answer.lease_id, answer.lease_ttl_seconds
                log.info("worker %s registered at %s (lease ttl %d s)", worker_id, address, ttl)
            else:
                beat = master_pb2.HeartbeatRequest(
                    worker_id=worker_id, lease_id=lease, tiers=tiers()
                )
                await asyncio.to_thread(master.call, "Heartbeat", beat, timeout=ttl / 2)
        except NotFound:
            log.warning("worker %s: lease expired, registering again", worker_id)
            lease = 0
            continue
        except ReservoirError as exc:
            log.warning("worker %s: %s", worker_id, exc)
        await asyncio.sleep(ttl / 3 if lease else RETRY_SECONDS)
