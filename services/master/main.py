"""`reservoir master`: run one master until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from reservoir.master.blocks import BlockMap
from reservoir.master.datasets import Datasets
from reservoir.master.election import Leadership
from reservoir.master.loads import Loads
from reservoir.master.service import MasterServicer
from reservoir.master.workers import WorkerRegistry
from reservoir.meta import EtcdKV
from reservoir.rpc.channels import AsyncWorkerChannels
from reservoir.rpc.server import Service, start_server, wait_for_stop_signal
from reservoir.rpc.telemetry import setup_tracing
from reservoir.v1 import master_pb2, master_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MasterConfig:
    listen: str = "127.0.0.1:19700"
    etcd: str = "http://127.0.0.1:2379"
    # Where clients and standbys reach this master; `listen` when empty.
    advertise: str = ""
    # A dead leader is replaced within this many seconds.
    leader_ttl: int = 5
    # A dead worker leaves `reservoir workers` within this many seconds.
    worker_ttl: int = 10


async def serve(config: MasterConfig) -> None:
    setup_tracing("reservoir-master")
    kv = EtcdKV(config.etcd)
    leadership = Leadership(kv, config.advertise or config.listen, config.leader_ttl)
    datasets = Datasets(kv, leadership)
    workers = WorkerRegistry(kv, leadership, config.worker_ttl)
    blocks = BlockMap(kv, leadership, datasets, workers)
    channels = AsyncWorkerChannels()
    loads = Loads(kv, leadership, datasets, blocks, channels)
    servicer = MasterServicer(leadership, datasets, workers, blocks, loads)
    name = master_pb2.DESCRIPTOR.services_by_name["MasterService"].full_name
    server = await start_server(
        config.listen,
        [Service(name, servicer, master_pb2_grpc.add_MasterServiceServicer_to_server)],
    )
    campaign = asyncio.create_task(leadership.run())

    async def take_over() -> None:
        datasets.lead()
        await loads.resume()

    async def step_down() -> None:
        await loads.stop_all()
        await datasets.stop()

    leading = asyncio.create_task(leadership.follow(take_over, step_down))
    log.info("master serving on %s (etcd %s)", config.listen, config.etcd)
    try:
        await wait_for_stop_signal()
    finally:
        for task in (leading, campaign):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await step_down()
        await channels.close()
        await server.stop(grace=2)
        with contextlib.suppress(Exception):
            await leadership.resign()
        await kv.close()
