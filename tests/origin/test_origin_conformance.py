"""The `Origin` contract, run against every backend: a local directory and S3 (moto).

A new backend is one more branch in the `backend` fixture.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from reservoir.errors import FailedPrecondition, InvalidArgument, NotFound
from reservoir.origin import ObjectInfo, Origin, open_origin
from tests.fixtures.s3 import MotoServer

MIB = 1 << 20


@dataclass
class Backend:
    """A mount root to fill, and the origin that reads it."""

    name: str
    uri: str
    options: dict[str, str]
    write: Callable[[str, bytes], None]  # a file under the mount root
    write_many: Callable[[Mapping[str, bytes]], None]
    write_beside: Callable[[str, bytes], None]  # a file next to the root, outside it

    def open(self) -> Origin:
        return open_origin(self.uri, self.options)


def _local(tmp_path: Path) -> Backend:
    root = tmp_path / "data"
    root.mkdir()

    def write_at(base: Path, path: str, body: bytes) -> None:
        target = base / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)

    def write_many(objects: Mapping[str, bytes]) -> None:
        for path, body in objects.items():
            write_at(root, path, body)

    return Backend(
        name="local",
        uri=root.as_uri(),
        options={},
        write=lambda path, body: write_at(root, path, body),
        write_many=write_many,
        write_beside=lambda path, body: write_at(tmp_path, path, body),
    )


def _s3(server: MotoServer) -> Backend:
    bucket = server.create_bucket()
    return Backend(
        name="s3",
        uri=f"s3://{bucket}/data",
        options=server.options(),
        write=lambda path, body: server.put(bucket, f"data/{path}", body),
        write_many=lambda objects: server.put_many(
            bucket, {f"data/{path}": body for path, body in objects.items()}
        ),
        write_beside=lambda path, body: server.put(bucket, path, body),
    )


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return _local(tmp_path)
    return _s3(request.getfixturevalue("s3_server"))


def listing(origin: Origin) -> dict[str, ObjectInfo]:
    async def collect() -> dict[str, ObjectInfo]:
        return {info.path: info async for info in origin.list()}

    return asyncio.run(collect())


def head(origin: Origin, path: str) -> ObjectInfo:
    return asyncio.run(origin.head(path))


def read(origin: Origin, path: str, start: int, end: int, version: str) -> bytes:
    async def collect() -> bytes:
        return b"".join(
            [chunk async for chunk in origin.get_range(path, start, end, version=version)]
        )

    return asyncio.run(collect())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TREE = {
    "top.txt": b"top level\n",
    "dir/a.bin": os.urandom(3000),
    "dir/sub/b": b"x",
    "dir/sub/deeper/c.dat": os.urandom(70_000),
    "other dir/ünï cödé.txt": b"names with spaces and non-ASCII",
}


def test_lists_a_nested_tree_exactly(backend: Backend) -> None:
    backend.write_many(TREE)
    found = listing(backend.open())
    assert {path: info.size for path, info in found.items()} == {
        path: len(body) for path, body in TREE.items()
    }
    now_ms = time.time() * 1000
    for info in found.values():
        assert info.version
        assert abs(info.mtime_ms - now_ms) < 3_600_000, "mtime is milliseconds since the epoch"


def test_head_agrees_with_list(backend: Backend) -> None:
    backend.write_many(TREE)
    origin = backend.open()
    found = listing(origin)
    for path in TREE:
        assert head(origin, path) == found[path]
    assert head(origin, "/dir//sub/./b") == found["dir/sub/b"], "paths are normalised"


def test_empty_file(backend: Backend) -> None:
    backend.write("empty", b"")
    backend.write("dir/also-empty", b"")
    origin = backend.open()
    found = listing(origin)
    assert {path: info.size for path, info in found.items()} == {"empty": 0, "dir/also-empty": 0}
    info = head(origin, "empty")
    assert info.size == 0
    assert read(origin, "empty", 0, 0, info.version) == b""
    assert read(origin, "empty", 0, 10, info.version) == b""


def test_missing_paths_are_not_found(backend: Backend) -> None:
    backend.write("dir/file", b"abc")
    origin = backend.open()
    version = head(origin, "dir/file").version
    for path in ("missing", "dir/missing", "dir/file/below", "dir", ""):
        with pytest.raises(NotFound):
            head(origin, path)
    with pytest.raises(NotFound):
        read(origin, "missing", 0, 3, version)


def test_get_range_returns_the_exact_bytes(backend: Backend) -> None:
    body = os.urandom(3 * MIB + 123)  # several chunks, and not a multiple of one
    backend.write("blob", body)
    origin = backend.open()
    version = head(origin, "blob").version
    size = len(body)
    ranges = [
        (0, size),
        (0, 1),
        (MIB - 1, 2 * MIB + 5),
        (size - 10, size),
        (size - 3, size + 100),  # past the end: what there is
        (12345, 12345),  # zero-length
        (size, size + 10),  # at the end: nothing
    ]
    for start, end in ranges:
        got = read(origin, "blob", start, end, version)
        assert sha(got) == sha(body[start:end]), (start, end)
    with pytest.raises(InvalidArgument):
        read(origin, "blob", 10, 5, version)
    with pytest.raises(InvalidArgument):
        read(origin, "blob", -1, 5, version)


def test_a_changed_file_is_not_read_at_its_old_version(backend: Backend) -> None:
    backend.write("model.bin", b"version one")
    origin = backend.open()
    old = head(origin, "model.bin").version
    backend.write("model.bin", b"version two, longer")
    new = head(origin, "model.bin").version
    assert new != old
    for start, end in ((0, 5), (0, 0)):
        with pytest.raises(FailedPrecondition) as failure:
            read(origin, "model.bin", start, end, old)
        message = str(failure.value)
        assert "model.bin" in message
        assert "changed" in message
        assert "reservoir dataset sync" in message
    assert read(origin, "model.bin", 0, 100, new) == b"version two, longer"


def test_lists_ten_thousand_files(backend: Backend) -> None:
    objects = {f"many/{i // 100:03d}/{i:05d}.bin": str(i).encode() for i in range(10_000)}
    backend.write_many(objects)
    started = time.monotonic()
    found = listing(backend.open())
    elapsed = time.monotonic() - started
    assert {path: info.size for path, info in found.items()} == {
        path: len(body) for path, body in objects.items()
    }
    assert elapsed < 30, f"listing 10,000 files took {elapsed:.1f} s"


def test_the_root_is_a_directory_not_a_name_prefix(backend: Backend) -> None:
    backend.write("inside.txt", b"in")
    backend.write_beside("data2/outside.txt", b"out")
    backend.write_beside("data.txt", b"out")
    backend.write_beside("datafile", b"out")
    origin = backend.open()
    assert set(listing(origin)) == {"inside.txt"}
    for path in ("../data2/outside.txt", "../data.txt"):
        with pytest.raises(InvalidArgument):
            head(origin, path)
