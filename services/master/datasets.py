"""Datasets and their file trees: what the master records of each under-storage.

A dataset is created in phase PENDING (which reserves its name), its under-storage
is listed once, the files are written in batched transactions, and only then does
it turn READY: a reader never sees half a tree as complete. A master that dies in
between leaves a PENDING dataset (or a DELETING one, mid-delete): the next leader
completes it (`finish_interrupted`), and meanwhile `sync` completes it and `delete`
removes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from reservoir import paths
from reservoir.blocks import file_id
from reservoir.errors import AlreadyExists, InvalidArgument, NotFound, ReservoirError
from reservoir.master import keys
from reservoir.master.election import Leadership
from reservoir.meta.kv import KV
from reservoir.origin import SECRET_OPTIONS, ObjectInfo, Origin, open_origin
from reservoir.v1 import master_pb2, types_pb2

log = logging.getLogger(__name__)

# Large enough that per-block overheads vanish next to a 30 GB model, small enough
# that several workers share one large file.
DEFAULT_BLOCK_SIZE = 64 * 1024 * 1024
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 4 * 1024 * 1024 * 1024
# ls reads this many keys per round trip.
LS_PAGE = 1000

Phase = master_pb2.DatasetPhase
OriginFactory = Callable[[str, Mapping[str, str]], Origin]


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

    async def list_directory(self, name: str, path: str) -> list[types_pb2.DirEntry]:
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
        origin = self._open_origin(uri, options)  # validates URI and options
        guard = await self._leadership.require()
        dataset = master_pb2.Dataset(
            name=name,
            mount_uri=uri,
            options=dict(options),
            block_size=block_size,
            phase=Phase.DATASET_PHASE_PENDING,
            created_unix_ms=_now_ms(),
        )
        key = keys.dataset(name)
        if not await self._kv.create(key, dataset.SerializeToString()):
            raise AlreadyExists(f"dataset {name!r} already exists")
        try:
            await self._record_tree(dataset, origin, guard)
        except BaseException:
            await self._kv.commit(deletes=[key], delete_prefixes=[keys.files(name)], guard=guard)
            raise
        finally:
            await origin.close()
        log.info("dataset %s: %d files, %d bytes", name, dataset.file_count, dataset.total_bytes)
        return dataset

    async def finish_interrupted(self, before_ms: int) -> None:
        """Complete what an earlier leader left half done: datasets created before
        `before_ms` (when this master took over) still PENDING are listed again, as
        `sync` does, and DELETING ones deleted. A failure is logged and left to the
        user's `sync` or `delete`."""
        for dataset in await self.list():
            if dataset.created_unix_ms >= before_ms:
                continue  # this leader's own, under way
            try:
                if dataset.phase == Phase.DATASET_PHASE_PENDING:
                    await self.sync(dataset.name)
                    log.info("dataset %s: its creation, cut short, is complete", dataset.name)
                elif dataset.phase == Phase.DATASET_PHASE_DELETING:
                    await self.delete(dataset.name)
            except ReservoirError as exc:
                log.warning("dataset %s: cannot complete it now: %s", dataset.name, exc)

    async def sync(self, name: str) -> tuple[master_pb2.Dataset, int, int, int]:
        """List the under-storage again; the dataset and counts added, changed, removed."""
        dataset = await self.get(name)
        origin = self._open_origin(dataset.mount_uri, dataset.options)
        guard = await self._leadership.require()
        try:
            return (dataset, *await self._record_tree(dataset, origin, guard))
        finally:
            await origin.close()

    async def delete(self, name: str) -> None:
        dataset = await self.get(name)
        guard = await self._leadership.require()
        dataset.phase = Phase.DATASET_PHASE_DELETING
        await self._kv.commit({keys.dataset(name): dataset.SerializeToString()}, guard=guard)
        owned = [keys.files(name), keys.blocks(name), keys.origin_bytes(name)]
        await self._kv.commit(delete_prefixes=owned, guard=guard)
        await self._kv.commit(deletes=[keys.dataset(name)], guard=guard)
        log.info("dataset %s deleted", name)

    async def _record_tree(
        self, dataset: master_pb2.Dataset, origin: Origin, guard: tuple[str, bytes]
    ) -> tuple[int, int, int]:
        """Record the origin's tree as the dataset's files; counts added, changed, removed.

        Updates `dataset` (counts, phase READY) in place and in etcd.
        """
        listed = {obj.path: _file_info(obj) async for obj in origin.list()}
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
        dataset.phase = Phase.DATASET_PHASE_READY
        dataset.synced_unix_ms = _now_ms()
        await self._kv.commit(
            {keys.dataset(dataset.name): dataset.SerializeToString()}, guard=guard
        )
        added = len(listed.keys() - known.keys())
        return added, len(puts) - added, len(removed)
