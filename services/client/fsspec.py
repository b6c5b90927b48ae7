"""`reservoir://dataset/path/in/it`: Reservoir as an fsspec file system.

    import fsspec, pandas
    with fsspec.open("reservoir://models/llama/config.json") as f: ...
    pandas.read_csv("reservoir://tables/2024.csv")          # master from $RESERVOIR_MASTER
    pandas.read_csv(url, storage_options={"master": "10.0.0.5:19700"})

Registered as "reservoir" through the `fsspec.specs` entry point, so nothing needs
importing first. A thin adapter: it holds a `reservoir.client.Client` and translates
paths, listings and errors into fsspec's terms (a missing path is FileNotFoundError,
a write EROFS, as fsspec callers expect); other failures stay `reservoir.errors`.
The top level lists the datasets as directories. Synchronous: the file object's own
thread pool does the parallel fetching, and a sync gRPC client is about twice as
fast here as grpc.aio.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fsspec.config import apply_config
from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from reservoir.client.client import Client, default_master
from reservoir.client.reader import ReservoirFile
from reservoir.client.types import FileStat
from reservoir.errors import NotFound

PROTOCOL = "reservoir"


class _MasterResolved(type(AbstractFileSystem)):  # type: ignore[misc]
    """fsspec caches instances by their arguments: resolve the master first, so that
    a process that changes $RESERVOIR_MASTER gets a file system for the new one."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = apply_config(cls, kwargs)
        kwargs["master"] = kwargs.get("master") or default_master()
        return super().__call__(*args, **kwargs)


@contextmanager
def _as_os_errors(path: str) -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc), path) from exc


def _read_only(path: str, what: str) -> OSError:
    return OSError(errno.EROFS, f"reservoir:// is read-only: cannot {what}", path)


class ReservoirFileSystem(AbstractFileSystem, metaclass=_MasterResolved):  # type: ignore[misc]
    """Datasets of one Reservoir cluster; `master` is HOST:PORT (several: comma-separated)."""

    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, master: str | None = None, **kwargs: Any) -> None:
        super().__init__(master=master, **kwargs)
        self.master = master or default_master()
        self.client = Client(self.master)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for prefix in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path.strip("/")

    def _split(self, path: str) -> tuple[str, str]:
        """(dataset, path inside it); the client checks and normalises the latter."""
        dataset, _, inner = self._strip_protocol(path).partition("/")
        return dataset, inner

    # -- reading -------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        dataset, inner = self._split(path)
        if not dataset:
            entries = [_directory(d.name) for d in self.client.datasets()]
        else:
            with _as_os_errors(path):
                entries = [_entry(dataset, e) for e in self.client.ls(dataset, inner)]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        dataset, inner = self._split(path)
        if not dataset:
            return _directory("")
        with _as_os_errors(path):
            return _entry(dataset, self.client.stat(dataset, inner))

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path).get("mtime", 0.0), tz=UTC)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ReservoirFile:
        if mode != "rb":
            raise _read_only(path, f"open a file with mode {mode!r}, only 'rb'")
        dataset, inner = self._split(path)
        with _as_os_errors(path):
            return self.client.open(dataset, inner)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes [start, end) of the file; negative offsets count from its end."""
        with self._open(path) as f:
            first = 0 if start is None else start if start >= 0 else max(0, f.size + start)
            last = f.size if end is None else end if end >= 0 else f.size + end
            f.seek(first)
            return f.read(max(0, last - first))

    # -- writing: refused ---------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise _read_only(path, "make a directory")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise _read_only(path, "make a directory")

    def rm_file(self, path: str) -> None:
        raise _read_only(path, "remove a file")

    def rmdir(self, path: str) -> None:
        raise _read_only(path, "remove a directory")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        raise _read_only(path2, "copy a file into it")


def _directory(name: str) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory"}


def _entry(dataset: str, stat: FileStat) -> dict[str, Any]:
    name = f"{dataset}/{stat.path}" if stat.path else dataset
    if stat.is_dir:
        return _directory(name)
    return {
        "name": name,
        "size": stat.size,
        "type": "file",
        "version": stat.version,
        "mtime": stat.mtime_ms / 1000,
    }
