"""Doubles of the master and the workers for the client's read path: real gRPC servers
on real sockets, serving files held in memory, and failing on cue.

They let unit tests drive the reader through retries, seeks, read-ahead and errors
deterministically; the end-to-end tests run the real services.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

import grpc

from reservoir.blocks import block_count, block_span
from reservoir.processes import free_port
from reservoir.rpc.server import APP_ERROR_KEY, CHANNEL_OPTIONS
from reservoir.v1 import master_pb2, master_pb2_grpc, types_pb2, worker_pb2, worker_pb2_grpc

Context: TypeAlias = grpc.ServicerContext


@dataclass
class StoredFile:
    data: bytes
    version: str = "v1"
    mtime_ms: int = 1_700_000_000_000

    def info(self, path: str) -> types_pb2.FileInfo:
        return types_pb2.FileInfo(
            path=path, size=len(self.data), version=self.version, mtime_unix_ms=self.mtime_ms
        )


@dataclass
class Store:
    """The origin both doubles agree on: files by (dataset, path), one block size."""

    block_size: int
    files: dict[tuple[str, str], StoredFile] = field(default_factory=dict)

    def add(self, dataset: str, path: str, data: bytes, version: str = "v1") -> bytes:
        self.files[(dataset, path)] = StoredFile(data, version)
        return data


@dataclass
class Fault:
    """How a FakeWorker misbehaves in a ReadBlock call."""

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    after: int = 0  # bytes it sends before the fault strikes
    calls: int | None = None  # calls it strikes before going away; None: every call
    stall: float = 0.0  # seconds it sleeps before each chunk
    short: bool = False  # end the stream cleanly, without the rest and without an error


def _refuse(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    """As the real services refuse: marked as their own answer, not a broken connection."""
    context.set_trailing_metadata(((APP_ERROR_KEY, "1"),))
    context.abort(code, message)
    raise AssertionError("abort returns by raising")


class FakeWorker(worker_pb2_grpc.WorkerServiceServicer):
    """Serves any block of the store (as a filler would), in chunks; records requests."""

    def __init__(self, store: Store, chunk_size: int = 64 * 1024) -> None:
        self.store = store
        self.chunk_size = chunk_size
        self.fault: Fault | None = None
        self.requests: list[tuple[str, int, int, int]] = []  # path, index, offset, length
        self.cache_requests: list[tuple[str, int]] = []  # path, index (CacheBlock)
        self._lock = threading.Lock()

    def _take_fault(self) -> Fault | None:
        with self._lock:
            fault = self.fault
            if fault is not None and fault.calls is not None:
                fault.calls -= 1
                if fault.calls <= 0:
                    self.fault = None
            return fault

    def bytes_asked(self) -> int:
        with self._lock:
            return sum(length for _, _, _, length in self.requests)

    def ReadBlock(
        self, request: worker_pb2.ReadBlockRequest, context: Context
    ) -> Iterator[worker_pb2.ReadBlockResponse]:
        key = request.block
        with self._lock:
            self.requests.append((key.path, key.index, request.offset, request.length))
        fault = self._take_fault()
        if fault is not None and fault.after == 0 and not fault.short:  # before any lookup
            time.sleep(fault.stall)
            context.abort(fault.code, "injected fault")
        stored = self.store.files.get((key.dataset, key.path))
        if stored is None:
            _refuse(context, grpc.StatusCode.NOT_FOUND, f"no such file: {key.dataset}/{key.path}")
        if stored.version != key.version:
            _refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{key.dataset}/{key.path} changed at the origin since the last sync: "
                f"run `reservoir dataset sync {key.dataset}`",
            )
        start, block_length = block_span(key.index, self.store.block_size, len(stored.data))
        if request.offset > block_length:
            _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "offset past the end of the block")
        stop = block_length if not request.length else request.offset + request.length
        data = stored.data[start + request.offset : start + min(stop, block_length)]
        sent = 0
        for i in range(0, len(data), self.chunk_size):
            if fault is not None:
                time.sleep(fault.stall)
                if sent >= fault.after:
                    if fault.short:
                        return
                    context.abort(fault.code, "injected fault")
            chunk = data[i : i + self.chunk_size]
            yield worker_pb2.ReadBlockResponse(data=chunk)
            sent += len(chunk)

    def CacheBlock(
        self, request: worker_pb2.CacheBlockRequest, context: Context
    ) -> worker_pb2.CacheBlockResponse:
        key = request.block
        with self._lock:
            self.cache_requests.append((key.path, key.index))
        stored = self.store.files.get((key.dataset, key.path))
        if stored is None:
            _refuse(context, grpc.StatusCode.NOT_FOUND, f"no such file: {key.dataset}/{key.path}")
        _, length = block_span(key.index, self.store.block_size, len(stored.data))
        return worker_pb2.CacheBlockResponse(was_cached=True, length=length)


class FakeMaster(master_pb2_grpc.MasterServiceServicer):
    """Answers GetBlockLocations, StatPath and ListDirectory from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fillers: list[str] = []
        # (path, block index, how many times GetBlockLocations was called) -> (holders,
        # fillers); by default no holder, and `fillers` for every block.
        self.placement: Callable[[str, int, int], tuple[list[str], list[str]]] = (
            lambda path, index, calls: ([], self.fillers)
        )
        self.locate_calls = 0

    def _file(self, dataset: str, path: str, context: Context) -> StoredFile:
        stored = self.store.files.get((dataset, path))
        if stored is None:
            _refuse(context, grpc.StatusCode.NOT_FOUND, f"no such file: {dataset}/{path}")
        return stored

    def GetBlockLocations(
        self, request: master_pb2.GetBlockLocationsRequest, context: Context
    ) -> master_pb2.GetBlockLocationsResponse:
        stored = self._file(request.dataset, request.path, context)
        self.locate_calls += 1
        size, block_size = len(stored.data), self.store.block_size
        blocks = []
        for index in range(block_count(size, block_size)):
            offset, length = block_span(index, block_size, size)
            holders, fillers = self.placement(request.path, index, self.locate_calls)
            blocks.append(
                master_pb2.BlockLocation(
                    index=index, offset=offset, length=length, holders=holders, fillers=fillers
                )
            )
        return master_pb2.GetBlockLocationsResponse(
            file=stored.info(request.path), block_size=block_size, blocks=blocks
        )

    def _entries(self, dataset: str, directory: str) -> list[types_pb2.DirEntry] | None:
        prefix = f"{directory}/" if directory else ""
        files: list[types_pb2.DirEntry] = []
        dirs: set[str] = set()
        for (name, path), stored in sorted(self.store.files.items()):
            if name != dataset or not path.startswith(prefix):
                continue
            child, below, _ = path[len(prefix) :].partition("/")
            if below:
                dirs.add(prefix + child)
            else:
                files.append(types_pb2.DirEntry(path=path, file=stored.info(path)))
        if not files and not dirs and directory:
            return None
        dir_entries = [types_pb2.DirEntry(path=d, is_dir=True) for d in sorted(dirs)]
        return sorted([*files, *dir_entries], key=lambda e: e.path)

    def StatPath(
        self, request: master_pb2.StatPathRequest, context: Context
    ) -> master_pb2.StatPathResponse:
        stored = self.store.files.get((request.dataset, request.path))
        if stored is not None:
            entry = types_pb2.DirEntry(path=request.path, file=stored.info(request.path))
            return master_pb2.StatPathResponse(entry=entry)
        if self._entries(request.dataset, request.path) is None:
            _refuse(
                context, grpc.StatusCode.NOT_FOUND, f"no such file or directory: {request.path}"
            )
        return master_pb2.StatPathResponse(entry=types_pb2.DirEntry(path=request.path, is_dir=True))

    def ListDirectory(
        self, request: master_pb2.ListDirectoryRequest, context: Context
    ) -> master_pb2.ListDirectoryResponse:
        stored = self.store.files.get((request.dataset, request.path))
        if stored is not None:
            entry = types_pb2.DirEntry(path=request.path, file=stored.info(request.path))
            return master_pb2.ListDirectoryResponse(entries=[entry])
        entries = self._entries(request.dataset, request.path)
        if entries is None:
            _refuse(
                context, grpc.StatusCode.NOT_FOUND, f"no such file or directory: {request.path}"
            )
        return master_pb2.ListDirectoryResponse(entries=entries)

    def ListDatasets(
        self, request: master_pb2.ListDatasetsRequest, context: Context
    ) -> master_pb2.ListDatasetsResponse:
        names = sorted({name for name, _ in self.store.files})
        return master_pb2.ListDatasetsResponse(
            datasets=[
                master_pb2.Dataset(name=n, phase=master_pb2.DATASET_PHASE_READY) for n in names
            ]
        )


class Served:
    """A servicer on a real gRPC server at 127.0.0.1:<free port>."""

    def __init__(self, servicer: Any, add: Callable[[Any, grpc.Server], None]) -> None:
        self.servicer = servicer
        self.address = f"127.0.0.1:{free_port()}"
        self.server = grpc.server(ThreadPoolExecutor(max_workers=32), options=CHANNEL_OPTIONS)
        add(servicer, self.server)
        if not self.server.add_insecure_port(self.address):
            raise RuntimeError(f"cannot listen on {self.address}")
        self.server.start()

    def stop(self) -> None:
        """Like a killed process: the port closes and calls under way break."""
        self.server.stop(grace=None)


class Mesh:
    """A FakeMaster and FakeWorkers over one store; `stop()` ends them all."""

    def __init__(self, block_size: int, chunk_size: int = 64 * 1024) -> None:
        self.store = Store(block_size)
        self.chunk_size = chunk_size
        self.master = FakeMaster(self.store)
        self._master = Served(self.master, master_pb2_grpc.add_MasterServiceServicer_to_server)
        self.master_address = self._master.address
        self.workers: list[FakeWorker] = []
        self.served: dict[str, Served] = {}

    def worker(self) -> tuple[FakeWorker, str]:
        """A new worker, added to the fillers of every block."""
        worker = FakeWorker(self.store, self.chunk_size)
        served = Served(worker, worker_pb2_grpc.add_WorkerServiceServicer_to_server)
        self.workers.append(worker)
        self.served[served.address] = served
        self.master.fillers.append(served.address)
        return worker, served.address

    def kill(self, address: str) -> None:
        self.served[address].stop()

    def stop(self) -> None:
        for served in [self._master, *self.served.values()]:
            served.stop()
