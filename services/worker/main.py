"""`reservoir worker`: serve a cache directory until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from reservoir.blocks import DEFAULT_BLOCK_SIZE
from reservoir.rpc.block_stream import add_worker_service
from reservoir.rpc.channels import AsyncWorkerChannels
from reservoir.rpc.master_client import MasterClient
from reservoir.rpc.server import Service, start_server, wait_for_stop_signal
from reservoir.rpc.telemetry import setup_tracing
from reservoir.units import format_size
from reservoir.v1 import types_pb2, worker_pb2
from reservoir.worker.blockcache import BlockCache
from reservoir.worker.membership import Membership
from reservoir.worker.origins import Origins
from reservoir.worker.service import WorkerServicer
from reservoir.worker.store import BlockStore

log = logging.getLogger(__name__)

GiB = 1024**3


@dataclass(frozen=True)
class WorkerConfig:
    master: str
    listen: str
    cache_dir: Path
    # Where clients and peers reach this worker; `listen` when empty.
    advertise: str = ""
    mem_quota: int = 1 * GiB
    disk_quota: int = 10 * GiB
    # HOST:PORT for Prometheus' /metrics; empty: the listen host, port + 1.
    metrics_listen: str = ""


def worker_id(cache_dir: Path) -> str:
    """This cache directory's identity, made once and kept across restarts."""
    path = cache_dir / "worker-id"
    if not path.exists():
        path.write_text(f"w-{uuid.uuid4().hex[:12]}\n")
    return path.read_text().strip()


def metrics_address(config: WorkerConfig) -> tuple[str, int]:
    host, _, port = (config.metrics_listen or config.listen).rpartition(":")
    return host.strip("[]"), int(port) + (0 if config.metrics_listen else 1)


async def serve(config: WorkerConfig) -> None:
    setup_tracing("reservoir-worker")
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    identity = worker_id(config.cache_dir)
    address = config.advertise or config.listen
    if max(config.mem_quota, config.disk_quota) < DEFAULT_BLOCK_SIZE:
        log.warning(
            "both quotas (memory %s, disk %s) are smaller than the default block size (%s): "
            "blocks of that size will be served but not cached",
            format_size(config.mem_quota),
            format_size(config.disk_quota),
            format_size(DEFAULT_BLOCK_SIZE),
        )
    store = BlockStore(config.cache_dir, config.mem_quota, config.disk_quota)
    await store.open()
    master = MasterClient(config.master)
    origins = Origins(master)
    peers = AsyncWorkerChannels()

    def tiers() -> list[types_pb2.TierUsage]:
        return [
            types_pb2.TierUsage(name=t.name, capacity_bytes=t.capacity, used_bytes=t.used)
            for t in store.stats()
        ]

    membership = Membership(master, identity, address, store, origins, tiers)
    store.on_change = membership.notify
    cache = BlockCache(store, master, origins, peers, address)
    host, port = metrics_address(config)
    cache.metrics.serve(host, port)
    name = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
    server = await start_server(
        config.listen,
        [Service(name, WorkerServicer(cache), add_worker_service)],
    )
    registration = asyncio.create_task(membership.run())
    log.info("worker %s serving on %s, metrics on %s:%d", identity, config.listen, host, port)
    try:
        await wait_for_stop_signal()
    finally:
        registration.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await registration
        await server.stop(grace=2)
        await cache.close()
        await store.close()
        await peers.close()
        await origins.close()
        master.close()
