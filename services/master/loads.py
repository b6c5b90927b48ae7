"""Preload jobs: fill the cache with chosen files before anyone reads them.

The leader expands the chosen paths into blocks, records a LoadJob in etcd, and asks
each block's placement-chosen worker to cache it (CacheBlock), a few at a time per
worker so a preload never starves live readers. A block that fails on one worker is
tried on the next in its ranking. Progress is written back to etcd as it goes, so
`reservoir load` (or anyone) can follow a job by its ID after the command exits. A
job is idempotent: if the leader changes mid-way, the new leader resumes every
RUNNING job, and blocks already cached cost only a quick check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence

import grpc

from reservoir import paths
from reservoir.errors import InvalidArgument, NotFound
from reservoir.master import keys
from reservoir.master.blocks import BlockMap
from reservoir.master.datasets import Datasets
from reservoir.master.election import Leadership
from reservoir.meta.kv import KV
from reservoir.rpc.channels import AsyncWorkerChannels
from reservoir.v1 import master_pb2, types_pb2, worker_pb2

log = logging.getLogger(__name__)

# Blocks in flight per worker: two keep a worker's origin reads and disk writes busy
# without taking all of its bandwidth from live readers.
PER_WORKER = 2
# How often progress is written to etcd.
PROGRESS_SECONDS = 0.5
# One block of 64 MiB from a slow origin (a few MB/s) still completes.
BLOCK_TIMEOUT = 600.0

State = master_pb2.LoadState


class Loads:
    def __init__(
        self,
        kv: KV,
        leadership: Leadership,
        datasets: Datasets,
        blocks: BlockMap,
        channels: AsyncWorkerChannels,
    ) -> None:
        self._kv = kv
        self._leadership = leadership
        self._datasets = datasets
        self._blocks = blocks
        self._channels = channels
        self._running: dict[str, asyncio.Task[None]] = {}
        self._starting = asyncio.Lock()

    async def get(self, job_id: str) -> master_pb2.LoadJob:
        value = await self._kv.get(keys.load(job_id)) if job_id else None
        if value is None:
            raise NotFound(f"no load job {job_id!r}")
        return master_pb2.LoadJob.FromString(value)

    async def start(
        self, dataset: str, chosen: Sequence[str], request_id: str = ""
    ) -> master_pb2.LoadJob:
        """A new job, or the one an earlier call with the same `request_id` started."""
        if not request_id:
            return await self._start(dataset, chosen, uuid.uuid4().hex[:12])
        job_id = hashlib.sha256(request_id.encode()).hexdigest()[:12]
        async with self._starting:  # the leader is the only writer of jobs
            value = await self._kv.get(keys.load(job_id))
            if value is not None:
                return master_pb2.LoadJob.FromString(value)
            return await self._start(dataset, chosen, job_id)

    async def _start(self, dataset: str, chosen: Sequence[str], job_id: str) -> master_pb2.LoadJob:
        await self._datasets.get(dataset)
        files = await self._files(dataset, [paths.normalize(p) for p in chosen] or [""])
        guard = await self._leadership.require()
        job = master_pb2.LoadJob(
            id=job_id,
            dataset=dataset,
            paths=list(chosen),
            state=State.LOAD_STATE_RUNNING,
            started_unix_ms=int(time.time() * 1000),
        )
        for path in files:
            _, _, blocks = await self._blocks.locations(dataset, path)
            job.total_blocks += len(blocks)
            job.total_bytes += sum(b.length for b in blocks)
        await self._kv.commit({keys.load(job.id): job.SerializeToString()}, guard=guard)
        self._launch(job, files)
        return job

    async def _files(self, dataset: str, roots: list[str]) -> list[str]:
        found: list[str] = []
        for root in roots:
            entry = await self._datasets.stat(dataset, root)
            if not entry.is_dir:
                found.append(entry.path)
                continue
            prefix = keys.directory(dataset, entry.path)
            found += [k[len(keys.files(dataset)) :] for k, _ in await self._kv.scan(prefix)]
        if not found:
            raise InvalidArgument(f"nothing to load in {dataset} under {', '.join(roots)}")
        return sorted(set(found))

    def _launch(self, job: master_pb2.LoadJob, files: list[str]) -> None:
        task = asyncio.create_task(self._run(job, files), name=f"load-{job.id}")
        self._running[job.id] = task
        task.add_done_callback(lambda _: self._running.pop(job.id, None))

    async def resume(self) -> None:
        """Take over the RUNNING jobs of a previous leader (call on election)."""
        for _, value in await self._kv.scan(keys.LOADS):
            job = master_pb2.LoadJob.FromString(value)
            if job.state == State.LOAD_STATE_RUNNING and job.id not in self._running:
                try:
                    files = await self._files(
                        job.dataset, [paths.normalize(p) for p in job.paths] or [""]
                    )
                except (NotFound, InvalidArgument) as exc:
                    job.state, job.message = State.LOAD_STATE_FAILED, str(exc)
                    await self._save(job)
                    continue
                log.info("resuming load %s of %s", job.id, job.dataset)
                job.loaded_blocks = job.loaded_bytes = 0
                self._launch(job, files)

    async def stop_all(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _save(self, job: master_pb2.LoadJob) -> None:
        guard = await self._leadership.require()
        await self._kv.commit({keys.load(job.id): job.SerializeToString()}, guard=guard)

    async def _run(self, job: master_pb2.LoadJob, files: list[str]) -> None:
        limits: dict[str, asyncio.Semaphore] = {}
        failures: list[str] = []
        last_save = 0.0

        async def cache(block: master_pb2.BlockLocation, key: worker_pb2.CacheBlockRequest) -> None:
            nonlocal last_save
            error = "no live workers"
            for address in [*block.holders, *block.fillers]:
                limit = limits.setdefault(address, asyncio.Semaphore(PER_WORKER))
                async with limit:
                    try:
                        await self._channels.stub(address).CacheBlock(key, timeout=BLOCK_TIMEOUT)
                        break
                    except grpc.aio.AioRpcError as exc:
                        log.warning(
                            "load %s: %s on %s: %s", job.id, key.block.path, address, exc.details()
                        )
                        error = exc.details() or exc.code().name
                        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                            break  # the origin changed: no other worker can do better
            else:
                failures.append(f"{key.block.path} block {key.block.index}: {error}")
                return
            job.loaded_blocks += 1
            job.loaded_bytes += block.length
            if time.monotonic() - last_save > PROGRESS_SECONDS:
                last_save = time.monotonic()
                await self._save(job)

        try:
            work = []
            for path in files:
                info, _, blocks = await self._blocks.locations(job.dataset, path)
                for block in blocks:
                    key = worker_pb2.CacheBlockRequest(
                        block=types_pb2.BlockKey(
                            dataset=job.dataset,
                            path=info.path,
                            version=info.version,
                            index=block.index,
                        )
                    )
                    work.append(cache(block, key))
            await asyncio.gather(*work)
            job.state = State.LOAD_STATE_FAILED if failures else State.LOAD_STATE_SUCCEEDED
            job.message = "; ".join(failures[:3]) + (
                f" (+{len(failures) - 3} more)" if len(failures) > 3 else ""
            )
        except Exception as exc:  # recorded on the job, where the user looks
            log.exception("load %s failed", job.id)
            job.state, job.message = State.LOAD_STATE_FAILED, str(exc)
        job.finished_unix_ms = int(time.time() * 1000)
        await self._save(job)
