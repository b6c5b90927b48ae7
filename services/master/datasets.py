"""Datasets and their file trees: what the master records of each under-storage.

A dataset is created in phase PENDING (which reserves its name), its under-storage
is listed once, the files are written in batched transactions, and only then does
it turn READY: a reader never sees half a tree as complete.

A listing belongs to the leader, not to the RPC that asked for it: a caller that
goes away (a killed `reservoir dataset create`, a deadline) does not stop it, and a
`sync` that arrives meanwhile waits for the same listing instead of starting
another. The leader's sweep (`finish_interrupted`, at election and every
SWEEP_SECONDS) completes what no listing of its own is completing: PENDING datasets
left by an earlier leader or by a stopped master, and DELETING ones left mid-delete.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from reservoir import paths
from reservoir.blocks import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, file_id
from reservoir.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotLeader,
    ReservoirError,
    Unavailable,
)
from reservoir.master import keys
from reservoir.master.election import Leadership
from reservoir.meta.kv import KV, Guard, GuardFailed
from reservoir.origin import (
    CREDENTIAL_OPTIONS,
    SECRET_OPTIONS,
    ObjectInfo,
    Origin,
    open_origin,
)
from reservoir.v1 import master_pb2, types_pb2

log = logging.getLogger(__name__)

# ls reads this many keys per round trip.
LS_PAGE = 1000
# How often the leader looks for datasets that no listing of its own is completing:
# rarely needed (a takeover starts a sweep at once), so rare.
SWEEP_SECONDS = 30.0

Phase = master_pb2.DatasetPhase
OriginFactory = Callable[[str, Mapping[str, str]], Origin]
# What a listing comes to: the dataset as recorded, and its files added, changed, removed.
Listed = tuple[master_pb2.Dataset, int, int, int]


@dataclass
class _Listing:
    """One listing of a dataset's under-storage, run by the leader."""

    name: str
    task: asyncio.Task[Listed] = field(init=False)
    # What those waiting for it hear if it is cancelled: a master that stops leading
    # (or exits) answers NotLeader, so that clients retry with the next leader.
    stopped: ReservoirError = field(default_factory=lambda: NotLeader(None))


def redacted(dataset: master_pb2.Dataset) -> master_pb2.Dataset:
    """A copy safe to show: secret option values replaced."""
    shown = master_pb2.Dataset()
    shown.CopyFrom(dataset)
    for key in SECRET_OPTIONS & set(shown.options):
        shown.options[key] = "***"
    return shown


def _file_info(obj: ObjectInfo) -> types_pb2.FileInfo:
    return types_pb2.FileInfo(
        path=obj.path, size=obj.size, version=obj.version, mtime_unix_ms=obj.mtime_ms
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class Datasets:
    def __init__(
        self, kv: KV, leadership: Leadership, open_origin: OriginFactory = open_origin
    ) -> None:
        self._kv = kv
        self._leadership = leadership
        self._open_origin = open_origin
        # The listing under way in this master, by dataset: at most one each.
        self._listings: dict[str, _Listing] = {}
        # Held from "is a listing under way?" to recording the answer, so that create,
        # sync, delete and the sweep agree on which listing is a dataset's.
        self._claim = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- reads ---------------------------------------------------------------------

    async def get(self, name: str) -> master_pb2.Dataset:
        paths.check_name(name)
        value = await self._kv.get(keys.dataset(name))
        if value is None:
            raise NotFound(f"dataset {name!r} does not exist")
        return master_pb2.Dataset.FromString(value)

    async def list(self) -> list[master_pb2.Dataset]:
        return [master_pb2.Dataset.FromString(v) for _, v in await self._kv.scan(keys.DATASETS)]

    async def stat(self, name: str, path: str) -> types_pb2.DirEntry:
        await self.get(name)
        path = paths.normalize(path)
        if not path or await self._kv.exists_under(keys.directory(name, path)):
            return types_pb2.DirEntry(path=path, is_dir=True)
        value = await self._kv.get(keys.file(name, path))
        if value is None:
            raise NotFound(f"no such file or directory: {name}/{path}")
        return types_pb2.DirEntry(path=path, file=types_pb2.FileInfo.FromString(value))

    async def list_directory(self, name: str, path: str) -> builtins.list[types_pb2.DirEntry]:
        """The entries of directory `path`, or the file itself when `path` is one."""
        entry = await self.stat(name, path)
        if not entry.is_dir:
            return [entry]
        parent = entry.path
        prefix = keys.directory(name, parent)
        entries: list[types_pb2.DirEntry] = []
        cursor = prefix
        while True:
            page = await self._kv.scan(prefix, start=cursor, limit=LS_PAGE)
            for key, value in page:
                child, below, _ = key[len(prefix) :].partition("/")
                if below:  # a subdirectory: list it once, then skip past its subtree
                    child_path = f"{parent}/{child}" if parent else child
                    entries.append(types_pb2.DirEntry(path=child_path, is_dir=True))
                    cursor = prefix + child + "0"  # "0" is the character after "/"
                    break
                info = types_pb2.FileInfo.FromString(value)
                entries.append(types_pb2.DirEntry(path=info.path, file=info))
            else:
                if len(page) < LS_PAGE:
                    return entries
                cursor = page[-1][0] + "\0"

    # -- writes (leader only) ----------------------------------------------------

    async def create(
        self, name: str, uri: str, options: Mapping[str, str], block_size: int
    ) -> master_pb2.Dataset:
        paths.check_name(name)
        block_size = block_size or DEFAULT_BLOCK_SIZE
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
            raise InvalidArgument(
                f"block size {block_size} is outside [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}] bytes"
            )
        await self._open_origin(uri, options).close()  # validates URI and options
        guard = await self._leadership.require()
        dataset = master_pb2.Dataset(
            name=name,
            mount_uri=uri,
            options=dict(options),
            block_size=block_size,
            phase=Phase.DATASET_PHASE_PENDING,
            created_unix_ms=_now_ms(),
        )
        listing = _Listing(name)
        self._start(listing, self._first_listing(listing, dataset, guard), "the first listing")
        return (await self._wait(listing))[0]

    async def update_credentials(
        self, name: str, credentials: Mapping[str, str]
    ) -> master_pb2.Dataset:
        """Replace these credential options (rotated keys), keeping the tree and the
        cache. Refused while the dataset is listed: that listing would write the old
        ones back when it records its result."""
        others = sorted(set(credentials) - CREDENTIAL_OPTIONS)
        if others:
            allowed = ", ".join(sorted(CREDENTIAL_OPTIONS))
            raise InvalidArgument(f"only credentials ({allowed}) can be updated, not {others}")
        async with self._claim:
            dataset = await self.get(name)
            if dataset.phase == Phase.DATASET_PHASE_DELETING:
                raise FailedPrecondition(f"dataset {name!r} is being deleted")
            if name in self._listings:  # it holds a copy of the record, old options and all
                raise Unavailable(f"dataset {name!r} is being listed: try again when it is done")
            dataset.options.update(credentials)
            # Validates them as a create would.
            await self._open_origin(dataset.mount_uri, dataset.options).close()
            guard = await self._leadership.require()
            await self._kv.commit({keys.dataset(name): dataset.SerializeToString()}, guard=guard)
        log.info("dataset %s: credentials %s updated", name, ", ".join(sorted(credentials)))
        return dataset

    async def sync(self, name: str) -> Listed:
        """List the under-storage again (or wait for the listing already under way)."""
        listing = await self._listing(name)
        assert listing is not None  # only the sweep's call can find nothing to do
        return await self._wait(listing)

    async def delete(self, name: str) -> None:
        async with self._claim:  # no listing starts while the dataset goes
            dataset = await self.get(name)
            guard = await self._leadership.require()
            listing = self._listings.get(name)
            if listing is not None:  # its later writes would bring the dataset back
                listing.stopped = NotFound(f"dataset {name!r} was deleted while being listed")
                listing.task.cancel()
                await asyncio.gather(listing.task, return_exceptions=True)
            dataset.phase = Phase.DATASET_PHASE_DELETING
            await self._kv.commit({keys.dataset(name): dataset.SerializeToString()}, guard=guard)
        owned = [keys.files(name), keys.blocks(name), keys.origin_bytes(name)]
        await self._kv.commit(delete_prefixes=owned, guard=guard)
        await self._kv.commit(deletes=[keys.dataset(name)], guard=guard)
        log.info("dataset %s deleted", name)

    # -- the leader's own work ---------------------------------------------------

    def lead(self) -> None:
        """Start the sweep: call on becoming the leader."""
        self._spawn(self._sweep(), "the sweep of datasets")

    async def stop(self) -> None:
        """Cancel the sweep and every listing: on losing the leadership (their writes
        would be refused anyway) and at exit. What they leave PENDING stays so in
        etcd, and the next leader's sweep completes it."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sweep(self) -> None:
        while True:
            try:
                await self.finish_interrupted()
            except ReservoirError as exc:  # etcd away: the next sweep tries again
                log.warning("cannot look for datasets left half done: %s", exc)
            except Exception:  # a bug must not end the sweep for the rest of the term
                log.exception("the sweep of datasets left half done failed")
            await asyncio.sleep(SWEEP_SECONDS)

    async def finish_interrupted(self) -> None:
        """Complete the datasets left half done that no listing of this master is
        completing: PENDING ones are listed again, as `sync` does, and DELETING ones
        deleted. A failure is logged and tried again at the next sweep (a listing
        that fails for good turns the dataset FAILED, which ends the retries)."""
        for dataset in await self.list():
            try:
                if dataset.phase == Phase.DATASET_PHASE_PENDING:
                    listing = await self._listing(dataset.name, recover=True)
                    if listing is not None:
                        await self._wait(listing)
                        log.info("dataset %s: its creation, cut short, is complete", dataset.name)
                elif dataset.phase == Phase.DATASET_PHASE_DELETING:
                    await self.delete(dataset.name)
            except (ReservoirError, GuardFailed) as exc:
                log.warning("dataset %s: cannot complete it now: %s", dataset.name, exc)

    # -- listings ------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task of the leader's, which `stop` cancels; what it raises is logged."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            trace = None if isinstance(exc, ReservoirError) else exc
            log.info("%s failed: %s", task.get_name(), exc, exc_info=trace)

    async def _listing(self, name: str, *, recover: bool = False) -> _Listing | None:
        """The listing of `name` under way in this master, else a new one. With
        `recover` (the sweep): a new one only for a PENDING dataset, else None."""
        async with self._claim:
            listing = self._listings.get(name)
            if listing is not None:
                return None if recover else listing
            dataset = await self.get(name)
            if recover and dataset.phase != Phase.DATASET_PHASE_PENDING:
                return None
            if dataset.phase == Phase.DATASET_PHASE_DELETING:
                raise FailedPrecondition(f"dataset {name!r} is being deleted")
            guard = await self._leadership.require()
            listing = self._listings[name] = _Listing(name)
            return self._start(listing, self._relisting(dataset, guard), "the listing")

    def _start(self, listing: _Listing, work: Coroutine[Any, Any, Listed], what: str) -> _Listing:
        listing.task = self._spawn(work, f"{what} of {listing.name}")
        # Here, not in `work`: a task cancelled before it starts runs none of its code.
        listing.task.add_done_callback(lambda _: self._release(listing))
        return listing

    async def _wait(self, listing: _Listing) -> Listed:
        """What `listing` comes to, for a caller that waits. The listing goes on
        without the caller if the caller goes away (its RPC cancelled)."""
        try:
            return await asyncio.shield(listing.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not listing.task.cancelled() or (current is not None and current.cancelling()):
                raise  # the caller itself was cancelled
        raise listing.stopped

    async def _first_listing(
        self, listing: _Listing, dataset: master_pb2.Dataset, guard: Guard
    ) -> Listed:
        """Reserve the name (PENDING), then list. A failure removes what was written
        and goes to the caller; a cancellation leaves the dataset PENDING."""
        name, key = dataset.name, keys.dataset(dataset.name)
        async with self._claim:
            if not await self._kv.create(key, dataset.SerializeToString()):
                raise AlreadyExists(f"dataset {name!r} already exists")
            self._listings[name] = listing
        try:
            counts = await self._record_tree(dataset, guard)
        except Exception:
            try:  # nothing half-created is left behind, else the sweep completes it
                await self._kv.commit(
                    deletes=[key], delete_prefixes=[keys.files(name)], guard=guard
                )
            except (ReservoirError, GuardFailed) as exc:
                log.warning("dataset %s stays PENDING for now: %s", name, exc)
            raise
        log.info("dataset %s: %d files, %d bytes", name, dataset.file_count, dataset.total_bytes)
        return (dataset, *counts)

    async def _relisting(self, dataset: master_pb2.Dataset, guard: Guard) -> Listed:
        """List a recorded dataset again. A PENDING one whose listing fails for good
        turns FAILED with the reason; a transient failure changes nothing."""
        try:
            return (dataset, *await self._record_tree(dataset, guard))
        except ReservoirError as exc:
            transient = isinstance(exc, Unavailable | NotLeader)
            if dataset.phase == Phase.DATASET_PHASE_PENDING and not transient:
                dataset.phase, dataset.message = Phase.DATASET_PHASE_FAILED, str(exc)
                await self._kv.commit(
                    {keys.dataset(dataset.name): dataset.SerializeToString()}, guard=guard
                )
            raise

    def _release(self, listing: _Listing) -> None:
        if self._listings.get(listing.name) is listing:
            del self._listings[listing.name]

    async def _record_tree(self, dataset: master_pb2.Dataset, guard: Guard) -> tuple[int, int, int]:
        """Record the origin's tree as the dataset's files; counts added, changed, removed.

        Updates `dataset` (counts, phase READY) in place and in etcd.
        """
        origin = self._open_origin(dataset.mount_uri, dataset.options)
        try:
            listed = {obj.path: _file_info(obj) async for obj in origin.list()}
        finally:
            await origin.close()
        prefix = keys.files(dataset.name)
        known = {
            key[len(prefix) :]: types_pb2.FileInfo.FromString(value)
            for key, value in await self._kv.scan(prefix)
        }
        puts = {
            keys.file(dataset.name, path): info.SerializeToString()
            for path, info in listed.items()
            if known.get(path) != info
        }
        removed = [keys.file(dataset.name, path) for path in known.keys() - listed.keys()]
        # The cached blocks of versions that are gone no longer belong to the dataset.
        stale = [
            keys.file_blocks(dataset.name, file_id(old.path, old.version))
            for path, old in known.items()
            if listed.get(path) != old
        ]
        await self._kv.commit(puts, removed, delete_prefixes=stale, guard=guard)
        dataset.file_count = len(listed)
        dataset.total_bytes = sum(info.size for info in listed.values())
        dataset.phase, dataset.message = Phase.DATASET_PHASE_READY, ""
        dataset.synced_unix_ms = _now_ms()
        await self._kv.commit(
            {keys.dataset(dataset.name): dataset.SerializeToString()}, guard=guard
        )
        added = len(listed.keys() - known.keys())
        return added, len(puts) - added, len(removed)
