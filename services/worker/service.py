"""The WorkerService servicer: translates between protobuf and the block cache.

ReadBlock yields the data itself, which `reservoir.rpc.block_stream` puts on the wire
as ReadBlockResponse messages without copying it into protobuf objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from reservoir.blocks import BlockId
from reservoir.errors import InvalidArgument
from reservoir.v1 import worker_pb2, worker_pb2_grpc
from reservoir.worker.blockcache import BlockCache

Context = grpc.aio.ServicerContext


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, cache: BlockCache) -> None:
        self._cache = cache

    async def ReadBlock(
        self,
        request: worker_pb2.ReadBlockRequest,
        context: Context[worker_pb2.ReadBlockRequest, bytes | memoryview],
    ) -> AsyncIterator[bytes | memoryview]:
        block = BlockId.from_proto(request.block)
        if request.offset + request.length >= 2**63:
            raise InvalidArgument(f"offset {request.offset} + length {request.length} overflows")
        chunks = self._cache.read(
            block, request.offset, request.length, cached_only=request.cached_only
        )
        async for data in chunks:
            yield data

    async def CacheBlock(
        self,
        request: worker_pb2.CacheBlockRequest,
        context: Context[worker_pb2.CacheBlockRequest, worker_pb2.CacheBlockResponse],
    ) -> worker_pb2.CacheBlockResponse:
        was_cached, length = await self._cache.ensure_cached(BlockId.from_proto(request.block))
        return worker_pb2.CacheBlockResponse(was_cached=was_cached, length=length)
