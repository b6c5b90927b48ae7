"""The MasterService servicer: translates between protobuf and the master's domain."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from reservoir.errors import NotLeader
from reservoir.master.blocks import BlockMap
from reservoir.master.datasets import Datasets, redacted
from reservoir.master.election import Leadership
from reservoir.master.loads import Loads
from reservoir.master.workers import WorkerRegistry
from reservoir.meta.kv import GuardFailed
from reservoir.v1 import master_pb2 as pb
from reservoir.v1 import master_pb2_grpc

T = TypeVar("T")
Context = grpc.aio.ServicerContext


class MasterServicer(master_pb2_grpc.MasterServiceServicer):
    def __init__(
        self,
        leadership: Leadership,
        datasets: Datasets,
        workers: WorkerRegistry,
        blocks: BlockMap,
        loads: Loads,
    ) -> None:
        self._leadership = leadership
        self._datasets = datasets
        self._workers = workers
        self._blocks = blocks
        self._loads = loads

    async def _write(self, operation: Awaitable[T]) -> T:
        """Run a write; a deposed leader's refused write becomes NotLeader."""
        try:
            return await operation
        except GuardFailed:
            raise NotLeader(await self._leadership.leader()) from None

    async def _shown(self, dataset: pb.Dataset) -> pb.Dataset:
        """A dataset as answered: secrets redacted, cache figures filled in."""
        shown = redacted(dataset)
        shown.cached_bytes, shown.origin_bytes_read = await self._blocks.usage(dataset.name)
        return shown

    # -- workers -------------------------------------------------------------------

    async def RegisterWorker(
        self,
        request: pb.RegisterWorkerRequest,
        context: Context[pb.RegisterWorkerRequest, pb.RegisterWorkerResponse],
    ) -> pb.RegisterWorkerResponse:
        lease = await self._write(
            self._workers.register(request.worker_id, request.address, list(request.tiers))
        )
        return pb.RegisterWorkerResponse(lease_id=lease, lease_ttl_seconds=self._workers.lease_ttl)

    async def Heartbeat(
        self,
        request: pb.HeartbeatRequest,
        context: Context[pb.HeartbeatRequest, pb.HeartbeatResponse],
    ) -> pb.HeartbeatResponse:
        await self._write(
            self._workers.heartbeat(request.worker_id, request.lease_id, list(request.tiers))
        )
        return pb.HeartbeatResponse()

    async def ListWorkers(
        self,
        request: pb.ListWorkersRequest,
        context: Context[pb.ListWorkersRequest, pb.ListWorkersResponse],
    ) -> pb.ListWorkersResponse:
        return pb.ListWorkersResponse(workers=await self._workers.list())

    # -- datasets ------------------------------------------------------------------

    async def CreateDataset(
        self,
        request: pb.CreateDatasetRequest,
        context: Context[pb.CreateDatasetRequest, pb.CreateDatasetResponse],
    ) -> pb.CreateDatasetResponse:
        dataset = await self._write(
            self._datasets.create(
                request.name, request.mount_uri, dict(request.options), request.block_size
            )
        )
        return pb.CreateDatasetResponse(dataset=await self._shown(dataset))

    async def GetDataset(
        self,
        request: pb.GetDatasetRequest,
        context: Context[pb.GetDatasetRequest, pb.GetDatasetResponse],
    ) -> pb.GetDatasetResponse:
        return pb.GetDatasetResponse(
            dataset=await self._shown(await self._datasets.get(request.name))
        )

    async def ListDatasets(
        self,
        request: pb.ListDatasetsRequest,
        context: Context[pb.ListDatasetsRequest, pb.ListDatasetsResponse],
    ) -> pb.ListDatasetsResponse:
        shown = [await self._shown(d) for d in await self._datasets.list()]
        return pb.ListDatasetsResponse(datasets=shown)

    async def DeleteDataset(
        self,
        request: pb.DeleteDatasetRequest,
        context: Context[pb.DeleteDatasetRequest, pb.DeleteDatasetResponse],
    ) -> pb.DeleteDatasetResponse:
        await self._write(self._datasets.delete(request.name))
        return pb.DeleteDatasetResponse()

    async def SyncDataset(
        self,
        request: pb.SyncDatasetRequest,
        context: Context[pb.SyncDatasetRequest, pb.SyncDatasetResponse],
    ) -> pb.SyncDatasetResponse:
        dataset, added, changed, removed = await self._write(self._datasets.sync(request.name))
        return pb.SyncDatasetResponse(
            dataset=await self._shown(dataset), added=added, changed=changed, removed=removed
        )

    async def UpdateCredentials(
        self,
        request: pb.UpdateCredentialsRequest,
        context: Context[pb.UpdateCredentialsRequest, pb.UpdateCredentialsResponse],
    ) -> pb.UpdateCredentialsResponse:
        dataset = await self._write(
            self._datasets.update_credentials(request.name, dict(request.credentials))
        )
        return pb.UpdateCredentialsResponse(dataset=await self._shown(dataset))

    async def GetMount(
        self, request: pb.GetMountRequest, context: Context[pb.GetMountRequest, pb.GetMountResponse]
    ) -> pb.GetMountResponse:
        dataset = await self._datasets.get(request.dataset)
        return pb.GetMountResponse(mount_uri=dataset.mount_uri, options=dataset.options)

    # -- files and blocks ----------------------------------------------------------

    async def ListDirectory(
        self,
        request: pb.ListDirectoryRequest,
        context: Context[pb.ListDirectoryRequest, pb.ListDirectoryResponse],
    ) -> pb.ListDirectoryResponse:
        entries = await self._datasets.list_directory(request.dataset, request.path)
        return pb.ListDirectoryResponse(entries=entries)

    async def StatPath(
        self, request: pb.StatPathRequest, context: Context[pb.StatPathRequest, pb.StatPathResponse]
    ) -> pb.StatPathResponse:
        return pb.StatPathResponse(entry=await self._datasets.stat(request.dataset, request.path))

    async def GetBlockLocations(
        self,
        request: pb.GetBlockLocationsRequest,
        context: Context[pb.GetBlockLocationsRequest, pb.GetBlockLocationsResponse],
    ) -> pb.GetBlockLocationsResponse:
        info, block_size, blocks = await self._blocks.locations(request.dataset, request.path)
        return pb.GetBlockLocationsResponse(file=info, block_size=block_size, blocks=blocks)

    async def ReportBlocks(
        self,
        request: pb.ReportBlocksRequest,
        context: Context[pb.ReportBlocksRequest, pb.ReportBlocksResponse],
    ) -> pb.ReportBlocksResponse:
        await self._write(self._blocks.report(request))
        return pb.ReportBlocksResponse()

    # -- preload -------------------------------------------------------------------

    async def StartLoad(
        self,
        request: pb.StartLoadRequest,
        context: Context[pb.StartLoadRequest, pb.StartLoadResponse],
    ) -> pb.StartLoadResponse:
        job = await self._write(
            self._loads.start(request.dataset, list(request.paths), request.request_id)
        )
        return pb.StartLoadResponse(job=job)

    async def GetLoad(
        self, request: pb.GetLoadRequest, context: Context[pb.GetLoadRequest, pb.GetLoadResponse]
    ) -> pb.GetLoadResponse:
        return pb.GetLoadResponse(job=await self._loads.get(request.id))
