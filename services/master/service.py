"""The MasterService servicer: translates between protobuf and the master's domain."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from reservoir.errors import NotLeader
from reservoir.master.datasets import Datasets, redacted
from reservoir.master.election import Leadership
from reservoir.master.workers import WorkerRegistry
from reservoir.meta.kv import GuardFailed
from reservoir.v1 import master_pb2 as pb
from reservoir.v1 import master_pb2_grpc

T = TypeVar("T")
Context = grpc.aio.ServicerContext


class MasterServicer(master_pb2_grpc.MasterServiceServicer):
    def __init__(self, leadership: Leadership, datasets: Datasets, workers: WorkerRegistry) -> None:
        self._leadership = leadership
        self._datasets = datasets
        self._workers = workers

    async def _write(self, operation: Awaitable[T]) -> T:
        """Run a write; a deposed leader's refused write becomes NotLeader."""
        try:
            return await operation
        except GuardFailed:
            raise NotLeader(await self._leadership.leader()) from None

    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: Context
    ) -> pb.RegisterWorkerResponse:
        lease = await self._write(
            self._workers.register(request.worker_id, request.address, list(request.tiers))
        )
        return pb.RegisterWorkerResponse(lease_id=lease, lease_ttl_seconds=self._workers.lease_ttl)

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        await self._write(
            self._workers.heartbeat(request.worker_id, request.lease_id, list(request.tiers))
        )
        return pb.HeartbeatResponse()

    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        return pb.ListWorkersResponse(workers=await self._workers.list())

    async def CreateDataset(
        self, request: pb.CreateDatasetRequest, context: Context
    ) -> pb.CreateDatasetResponse:
        dataset = await self._write(
            self._datasets.create(
                request.name, request.mount_uri, dict(request.options), request.block_size
            )
        )
        return pb.CreateDatasetResponse(dataset=redacted(dataset))

    async def GetDataset(
        self, request: pb.GetDatasetRequest, context: Context
    ) -> pb.GetDatasetResponse:
        return pb.GetDatasetResponse(dataset=redacted(await self._datasets.get(request.name)))

    async def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: Context
    ) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(datasets=[redacted(d) for d in await self._datasets.list()])

    async def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: Context
    ) -> pb.DeleteDatasetResponse:
        await self._write(self._datasets.delete(request.name))
        return pb.DeleteDatasetResponse()

    async def SyncDataset(
        self, request: pb.SyncDatasetRequest, context: Context
    ) -> pb.SyncDatasetResponse:
        dataset, added, changed, removed = await self._write(self._datasets.sync(request.name))
        return pb.SyncDatasetResponse(
            dataset=redacted(dataset), added=added, changed=changed, removed=removed
        )

    async def ListDirectory(
        self, request: pb.ListDirectoryRequest, context: Context
    ) -> pb.ListDirectoryResponse:
        entries = await self._datasets.list_directory(request.dataset, request.path)
        return pb.ListDirectoryResponse(entries=entries)

    async def StatPath(self, request: pb.StatPathRequest, context: Context) -> pb.StatPathResponse:
        return pb.StatPathResponse(entry=await self._datasets.stat(request.dataset, request.path))
