"""`Client`: the Python face of a Reservoir cluster.

    client = Client()                       # RESERVOIR_MASTER, else 127.0.0.1:19700
    client.create_dataset("models", "s3://bucket/models", {"region": "eu-west-1"})
    for entry in client.ls("models"):
        print(entry.path, entry.size)
    with client.open("models", "llama/config.json") as f:   # a read-only binary file
        config = json.load(f)

Every method raises `reservoir.errors` (NotFound, InvalidArgument, ...), never gRPC
errors, and returns the dataclasses of `reservoir.client.types`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from reservoir import paths
from reservoir.client import types
from reservoir.client.reader import ReaderConfig, ReservoirFile
from reservoir.errors import NotFound
from reservoir.processes import tune_allocator
from reservoir.rpc.master_client import DEFAULT_MASTER, MasterClient
from reservoir.v1 import master_pb2 as pb

# How often waiting for a preload asks the master: a progress bar stays lively.
LOAD_POLL_SECONDS = 0.25


def default_master() -> str:
    return os.environ.get("RESERVOIR_MASTER") or DEFAULT_MASTER


class Client:
    def __init__(self, master: str | Sequence[str] | None = None) -> None:
        """`master`: HOST:PORT, or several of them (comma-separated or a list).

        Tunes glibc's malloc for streaming, once per process (see `tune_allocator`:
        about 15-25% on warm reads; RESERVOIR_TUNE_MALLOC=0 opts out).
        """
        tune_allocator()
        self._master = MasterClient(master or default_master())

    # -- datasets ----------------------------------------------------------------

    def create_dataset(
        self,
        name: str,
        mount: str,
        options: Mapping[str, str] | None = None,
        *,
        block_size: int = 0,
    ) -> types.Dataset:
        """Record a dataset over `mount` (s3://bucket/prefix or file:///dir), listed once."""
        request = pb.CreateDatasetRequest(
            name=name, mount_uri=mount, options=dict(options or {}), block_size=block_size
        )
        # Listing a large bucket takes a while: allow minutes, not the default.
        return types.dataset(self._master.call("CreateDataset", request, timeout=600).dataset)

    def dataset(self, name: str) -> types.Dataset:
        return types.dataset(
            self._master.call("GetDataset", pb.GetDatasetRequest(name=name)).dataset
        )

    def datasets(self) -> list[types.Dataset]:
        answer = self._master.call("ListDatasets", pb.ListDatasetsRequest())
        return [types.dataset(d) for d in answer.datasets]

    def sync_dataset(self, name: str) -> types.SyncResult:
        """List the under-storage again and record what changed."""
        answer = self._master.call("SyncDataset", pb.SyncDatasetRequest(name=name), timeout=600)
        return types.SyncResult(
            types.dataset(answer.dataset), answer.added, answer.changed, answer.removed
        )

    def update_credentials(self, name: str, credentials: Mapping[str, str]) -> types.Dataset:
        """Replace credential options (rotated keys); the tree and the cache stay."""
        request = pb.UpdateCredentialsRequest(name=name, credentials=dict(credentials))
        return types.dataset(self._master.call("UpdateCredentials", request).dataset)

    def delete_dataset(self, name: str) -> None:
        self._master.call("DeleteDataset", pb.DeleteDatasetRequest(name=name))

    # -- files -------------------------------------------------------------------

    def ls(self, dataset: str, path: str = "") -> list[types.FileStat]:
        """Entries of directory `path` of `dataset` (the file itself if `path` is one)."""
        request = pb.ListDirectoryRequest(dataset=dataset, path=paths.normalize(path))
        return [types.file_stat(e) for e in self._master.call("ListDirectory", request).entries]

    def stat(self, dataset: str, path: str) -> types.FileStat:
        request = pb.StatPathRequest(dataset=dataset, path=paths.normalize(path))
        return types.file_stat(self._master.call("StatPath", request).entry)

    def walk(self, dataset: str, path: str = "") -> Iterator[tuple[str, list[str], list[str]]]:
        """(dirpath, dirnames, filenames) for `path` and each directory below it, top
        down, like os.walk: prune the walk by editing dirnames in place. dirpath is a
        path inside the dataset; a directory that vanishes mid-walk is skipped."""
        top = paths.normalize(path)
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                entries = self.ls(dataset, directory)
            except NotFound:
                if directory == top:
                    raise
                continue
            if directory and [(e.path, e.is_dir) for e in entries] == [(directory, False)]:
                continue  # a file, as os.walk: nothing to walk
            dirnames = [e.name for e in entries if e.is_dir]
            filenames = [e.name for e in entries if not e.is_dir]
            yield directory, dirnames, filenames
            stack.extend(f"{directory}/{d}" if directory else d for d in reversed(dirnames))

    def open(self, dataset: str, path: str, *, config: ReaderConfig | None = None) -> ReservoirFile:
        """The file at `path` of `dataset`, open for reading (binary, seekable), with
        read-ahead and parallel fetches from the workers."""
        return ReservoirFile(self._master, dataset, path, config=config)

    def read(self, dataset: str, path: str) -> bytes:
        """The whole file at `path` of `dataset`."""
        with self.open(dataset, path) as f:
            return f.read()

    # -- preload -----------------------------------------------------------------

    def load(
        self, dataset: str, paths_: Sequence[str] = (), *, request_id: str = ""
    ) -> types.LoadJob:
        """Start caching these files or directories (the whole dataset if none).

        `request_id`: an idempotency key; a call with the key of an earlier one
        answers that call's job instead of starting another."""
        request = pb.StartLoadRequest(
            dataset=dataset, paths=[paths.normalize(p) for p in paths_], request_id=request_id
        )
        return types.load_job(self._master.call("StartLoad", request, timeout=600).job)

    def load_job(self, job_id: str) -> types.LoadJob:
        return types.load_job(self._master.call("GetLoad", pb.GetLoadRequest(id=job_id)).job)

    def wait_for_load(
        self, job_id: str, on_progress: Callable[[types.LoadJob], None] | None = None
    ) -> types.LoadJob:
        """Poll until the job is over; its last state."""
        while True:
            job = self.load_job(job_id)
            if on_progress:
                on_progress(job)
            if job.done:
                return job
            time.sleep(LOAD_POLL_SECONDS)

    # -- cluster -----------------------------------------------------------------

    def workers(self) -> list[types.Worker]:
        answer = self._master.call("ListWorkers", pb.ListWorkersRequest())
        return [types.worker(w) for w in answer.workers]

    def close(self) -> None:
        self._master.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
