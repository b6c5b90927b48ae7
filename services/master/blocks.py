"""The block map: which worker caches which block, and where a missing one goes.

Workers report the blocks they cached and evicted; each record is written under the
reporting worker's lease, so when a worker dies its records vanish with it and no
reader is sent to it for long. Records name one *version* of a file (its file id),
so a sync that changes a file simply stops pointing at the old blocks.
"""

from __future__ import annotations

from reservoir.blocks import BlockId, block_count, block_span, file_id
from reservoir.errors import FailedPrecondition, NotFound
from reservoir.master import keys
from reservoir.master.datasets import Datasets
from reservoir.master.election import Leadership
from reservoir.master.placement import Candidate, RecentFillers, rank
from reservoir.master.workers import WorkerRegistry
from reservoir.meta.kv import KV, LeaseExpired
from reservoir.v1 import master_pb2, types_pb2


def free_bytes(worker: master_pb2.WorkerInfo) -> int:
    """Free space of the tier that keeps blocks longest (disk, else memory)."""
    tiers = {t.name: t for t in worker.tiers}
    disk, mem = tiers.get("DISK"), tiers.get("MEM")
    tier = disk if disk and disk.capacity_bytes else mem
    return max(0, tier.capacity_bytes - tier.used_bytes) if tier else 0


class BlockMap:
    def __init__(
        self, kv: KV, leadership: Leadership, datasets: Datasets, workers: WorkerRegistry
    ) -> None:
        self._kv = kv
        self._leadership = leadership
        self._datasets = datasets
        self._workers = workers
        self._fillers = RecentFillers()

    async def locations(
        self, dataset: str, path: str
    ) -> tuple[types_pb2.FileInfo, int, list[master_pb2.BlockLocation]]:
        """A file's version, the block size, and where each of its blocks is."""
        ds = await self._datasets.get(dataset)
        entry = await self._datasets.stat(dataset, path)
        if entry.is_dir:
            raise FailedPrecondition(f"{dataset}/{entry.path} is a directory, not a file")
        info = entry.file
        live = await self._workers.list()
        address = {w.worker_id: w.address for w in live}
        candidates = [Candidate(w.worker_id, w.address, free_bytes(w)) for w in live]
        holders: dict[int, list[str]] = {}
        fid = file_id(info.path, info.version)
        for key, _ in await self._kv.scan(keys.file_blocks(dataset, fid)):
            held_index, worker_id = key.rsplit("/", 2)[-2:]
            if worker_id in address:
                holders.setdefault(int(held_index), []).append(address[worker_id])
        blocks = []
        for index in range(block_count(info.size, ds.block_size)):
            offset, length = block_span(index, ds.block_size, info.size)
            name = BlockId(dataset, info.path, info.version, index).name
            fillers = [c.address for c in rank(name, candidates)]
            if index in holders:
                self._fillers.forget(name)
            else:
                fillers = self._fillers.order(name, fillers)
            blocks.append(
                master_pb2.BlockLocation(
                    index=index,
                    offset=offset,
                    length=length,
                    holders=sorted(holders.get(index, [])),
                    fillers=fillers,
                )
            )
        return info, ds.block_size, blocks

    async def report(self, request: master_pb2.ReportBlocksRequest) -> None:
        guard = await self._leadership.require()
        worker = request.worker_id
        puts = {
            keys.block(b.key.dataset, file_id(b.key.path, b.key.version), b.key.index, worker): (
                b.SerializeToString()
            )
            for b in request.added
        }
        deletes = [
            keys.block(k.dataset, file_id(k.path, k.version), k.index, worker)
            for k in request.removed
        ]
        try:
            await self._kv.commit(puts, deletes, lease=request.lease_id, guard=guard)
        except LeaseExpired:
            raise NotFound(
                f"worker {worker!r} is not registered (lease expired): register again"
            ) from None
        counts = {
            keys.origin_bytes(o.dataset, worker): str(o.bytes).encode()
            for o in request.origin_bytes
        }
        if counts:  # not under the lease: what was read from the origin stays read
            await self._kv.commit(counts, guard=guard)

    async def usage(self, dataset: str) -> tuple[int, int]:
        """(cached bytes, bytes read from the origin) of a dataset."""
        cached: dict[str, int] = {}
        prefix = keys.blocks(dataset)
        for key, value in await self._kv.scan(prefix):
            block = key[len(prefix) :].rsplit("/", 1)[0]  # "<file id>/<index>": once per block
            cached[block] = master_pb2.CachedBlock.FromString(value).length
        origin = sum(int(v) for _, v in await self._kv.scan(keys.origin_bytes(dataset)))
        return sum(cached.values()), origin
