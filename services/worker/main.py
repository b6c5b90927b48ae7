"""`reservoir worker`: serve a cache directory until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from reservoir.rpc.master_client import MasterClient
from reservoir.rpc.server import Service, start_server, wait_for_stop_signal
from reservoir.rpc.telemetry import setup_tracing
from reservoir.v1 import types_pb2, worker_pb2, worker_pb2_grpc
from reservoir.worker.membership import keep_registered

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


def worker_id(cache_dir: Path) -> str:
    """This cache directory's identity, made once and kept across restarts."""
    path = cache_dir / "worker-id"
    if not path.exists():
        path.write_text(f"w-{uuid.uuid4().hex[:12]}\n")
    return path.read_text().strip()


async def serve(config: WorkerConfig) -> None:
    setup_tracing("reservoir-worker")
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    identity = worker_id(config.cache_dir)

    def tiers() -> list[types_pb2.TierUsage]:
        return [
            types_pb2.TierUsage(name="MEM", capacity_bytes=config.mem_quota),
            types_pb2.TierUsage(name="DISK", capacity_bytes=config.disk_quota),
        ]

    name = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
    servicer = worker_pb2_grpc.WorkerServiceServicer()
    server = await start_server(
        config.listen,
        [Service(name, servicer, worker_pb2_grpc.add_WorkerServiceServicer_to_server)],
    )
    master = MasterClient(config.master)
    membership = asyncio.create_task(
        keep_registered(master, identity, config.advertise or config.listen, tiers)
    )
    log.info("worker %s serving on %s", identity, config.listen)
    try:
        await wait_for_stop_signal()
    finally:
        membership.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await membership
        await server.stop(grace=2)
        master.close()
