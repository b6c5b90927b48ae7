"""The worker's read path: cache, then a peer, then the origin, each block filled once.

    read(block)
      1. in the store (memory, else disk, checksum verified)?   serve it
      2. a fill of it already in flight?                         stream from that fill
      3. start a fill (single flight), and stream from it while it runs:
           a peer that holds the block (asked with cached_only, so peers never chain
           fills), else the origin with ranged reads pinned to the block's version;
           a source that fails mid-way hands over to the next at the byte it reached
      4. when the fill completes, write it to the store and report it to the master:
         off the readers' path, who already have their bytes

A fill runs as its own task: a reader that goes away does not cancel it for the
others, and CacheBlock (preload) simply waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from reservoir.blocks import BlockId
from reservoir.errors import InvalidArgument, NotFound, ReservoirError
from reservoir.origin.base import changed_since_sync
from reservoir.rpc.channels import AsyncWorkerChannels
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, worker_pb2
from reservoir.worker.fill import Fill
from reservoir.worker.metrics import WorkerMetrics
from reservoir.worker.origins import Origins
from reservoir.worker.singleflight import SingleFlight
from reservoir.worker.store import BlockStore

log = logging.getLogger(__name__)

# 1 MiB messages: measured fastest on these machines (4 MiB ones were slower), and
# far below the raised 64 MiB message limit.
CHUNK = 1024 * 1024
# A peer serves from memory or disk; if it stalls this long, the origin is faster.
PEER_TIMEOUT = 60.0


class BlockCache:
    def __init__(
        self,
        store: BlockStore,
        master: MasterClient,
        origins: Origins,
        peers: AsyncWorkerChannels,
        address: str,
    ) -> None:
        self.store = store
        self._master = master
        self._origins = origins
        self._peers = peers
        self._address = address
        self.flights: SingleFlight[BlockId, asyncio.Future[Fill]] = SingleFlight()
        self.metrics = WorkerMetrics(store, lambda: len(self.flights))
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(
        self, block: BlockId, offset: int, length: int, *, cached_only: bool = False
    ) -> AsyncIterator[bytes | memoryview]:
        """Bytes [offset, offset+length) of `block` (length 0: to its end), in chunks.

        Chunks may be views of the cached block, which never changes once cached.
        """
        in_memory = self.store.in_memory(block)
        data = await self.store.get(block)
        if data is not None:
            self.metrics.hits.inc()
            source = "memory" if in_memory else "disk"
            end = _end(offset, length, len(data))
            view = memoryview(data)  # block_stream copies each piece once, onto the wire
            with self.store.pin(block):
                for start in range(offset, end, CHUNK):
                    piece = view[start : min(start + CHUNK, end)]
                    self.metrics.bytes_served.labels(source).inc(len(piece))
                    yield piece
            return
        if cached_only:
            raise NotFound(f"block {block} is not cached on {self._address}")
        self.metrics.misses.inc()
        fill = await self._fill(block)
        async for piece in fill.read(offset, _end(offset, length, fill.length), CHUNK):
            self.metrics.bytes_served.labels(fill.source).inc(len(piece))
            yield piece

    async def ensure_cached(self, block: BlockId) -> tuple[bool, int]:
        """(whether it was cached already, its length), filling it if needed."""
        cached = self.store.length(block)
        if cached is not None:
            return True, cached
        fill = await self._fill(block)
        await fill.wait()
        return False, fill.length

    async def _fill(self, block: BlockId) -> Fill:
        flight = self.flights.join(block, lambda: asyncio.get_running_loop().create_future())
        future: asyncio.Future[Fill] = flight[0]
        if flight[1]:
            try:
                fill, holders = await self._plan(block)
            except BaseException as exc:
                self.flights.land(block)
                future.set_exception(exc)
                future.exception()  # retrieved: later joiners re-raise it themselves
                raise
            future.set_result(fill)
            task = asyncio.create_task(self._run(block, fill, holders), name=f"fill {block}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _plan(self, block: BlockId) -> tuple[Fill, list[str]]:
        """The empty fill for `block`, and the peers that hold it."""
        request = master_pb2.GetBlockLocationsRequest(dataset=block.dataset, path=block.path)
        answer = await asyncio.to_thread(
            self._master.call, "GetBlockLocations", request, timeout=30
        )
        if answer.file.version != block.version:
            raise changed_since_sync(f"{block.dataset}/{block.path}")
        if block.index >= len(answer.blocks):
            raise InvalidArgument(
                f"{block.dataset}/{block.path} has {len(answer.blocks)} blocks, "
                f"so there is no block {block.index}"
            )
        location = answer.blocks[block.index]
        holders = [a for a in location.holders if a != self._address]
        return Fill(location.offset, location.length), holders

    async def _run(self, block: BlockId, fill: Fill, holders: list[str]) -> None:
        try:
            for peer in holders:
                fill.source = "peer"
                if await self._from_peer(block, fill, peer):
                    break
            else:
                fill.source = "origin"
                await self._from_origin(block, fill)
            await fill.finish()
        except BaseException as exc:
            log.warning("fill of %s failed: %s", block, exc)
            await fill.finish(exc if isinstance(exc, Exception) else ReservoirError(str(exc)))
            self.flights.land(block)
            return
        try:
            await self.store.put(block, fill.data())
        finally:
            self.flights.land(block)

    async def _from_peer(self, block: BlockId, fill: Fill, peer: str) -> bool:
        """Whether `peer` delivered the rest of the block."""
        request = worker_pb2.ReadBlockRequest(
            block=block.to_proto(), offset=fill.filled, cached_only=True
        )
        try:
            async for data in self._peers.stub(peer).ReadBlock(request, timeout=PEER_TIMEOUT):
                await fill.write(data)
                self.metrics.peer_bytes.inc(len(data))
        except grpc.aio.AioRpcError as exc:
            log.info(
                "peer %s could not serve %s (%s); trying the next source",
                peer,
                block,
                exc.code().name,
            )
            return False
        return fill.filled == fill.length

    async def _from_origin(self, block: BlockId, fill: Fill) -> None:
        origin = await self._origins.get(block.dataset)
        start, end = fill.file_offset + fill.filled, fill.file_offset + fill.length
        async for chunk in origin.get_range(block.path, start, end, version=block.version):
            await fill.write(chunk)
            self._origins.bytes_read[block.dataset] += len(chunk)
            self.metrics.origin_bytes.labels(block.dataset).inc(len(chunk))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _end(offset: int, length: int, size: int) -> int:
    return size if length == 0 else min(size, offset + length)
