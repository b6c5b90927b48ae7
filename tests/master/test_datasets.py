"""Datasets over a local directory: create, read back, sync, delete; bad input."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from reservoir.client import (
    AlreadyExists,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from reservoir.meta import EtcdKV
from tests.fixtures.mesh import Mesh


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


FILES = {
    "README.md": b"# data\n",
    "train/shard-000.bin": os.urandom(300_000),
    "train/shard-001.bin": os.urandom(200_000),
    "train/deep/x.txt": b"x",
    "empty.txt": b"",
}


@pytest.fixture
def client(mesh: Mesh) -> Client:
    mesh.master()
    return mesh.client()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return tree(tmp_path / "origin", FILES)


def etcd_keys(url: str, prefix: str) -> list[str]:
    async def scan() -> list[str]:
        kv = EtcdKV(url)
        try:
            return [k for k, _ in await kv.scan(prefix)]
        finally:
            await kv.close()

    return asyncio.run(scan())


def test_create_records_the_tree(client: Client, origin: Path) -> None:
    d = client.create_dataset("train-data", origin.as_uri())
    assert (d.name, d.phase, d.mount) == ("train-data", "Ready", origin.as_uri())
    assert d.file_count == len(FILES)
    assert d.total_bytes == sum(len(b) for b in FILES.values())
    assert d.block_size == 64 * 1024 * 1024
    assert (d.cached_bytes, d.cached_percent) == (0, 0.0)
    assert client.dataset("train-data") == d
    assert [x.name for x in client.datasets()] == ["train-data"]


def test_ls_and_stat_read_the_recorded_tree(client: Client, origin: Path) -> None:
    client.create_dataset("ds", origin.as_uri())
    root = {(e.path, e.is_dir, e.size) for e in client.ls("ds")}
    assert root == {
        ("README.md", False, 7),
        ("empty.txt", False, 0),
        ("train", True, 0),
    }
    train = {(e.path, e.is_dir) for e in client.ls("ds", "train")}
    assert train == {
        ("train/shard-000.bin", False),
        ("train/shard-001.bin", False),
        ("train/deep", True),
    }
    shard = client.stat("ds", "/train/./shard-000.bin")
    local = (origin / "train/shard-000.bin").stat()
    assert (shard.path, shard.size, shard.is_dir) == ("train/shard-000.bin", 300_000, False)
    assert shard.mtime_ms == local.st_mtime_ns // 1_000_000
    assert shard.version
    assert client.stat("ds", "train/deep").is_dir
    assert client.stat("ds", "").is_dir
    assert [e.path for e in client.ls("ds", "train/deep/x.txt")] == ["train/deep/x.txt"]


def test_sync_records_added_changed_and_removed(client: Client, origin: Path) -> None:
    client.create_dataset("ds", origin.as_uri())
    (origin / "new.bin").write_bytes(b"new")
    (origin / "train/shard-001.bin").write_bytes(b"rewritten, shorter")
    (origin / "README.md").unlink()
    result = client.sync_dataset("ds")
    assert (result.added, result.changed, result.removed) == (1, 1, 1)
    assert result.dataset.file_count == len(FILES)
    assert client.stat("ds", "train/shard-001.bin").size == len(b"rewritten, shorter")
    with pytest.raises(NotFound):
        client.stat("ds", "README.md")
    again = client.sync_dataset("ds")
    assert (again.added, again.changed, again.removed) == (0, 0, 0)


def test_delete_removes_everything_the_dataset_owns(
    client: Client, origin: Path, mesh: Mesh
) -> None:
    client.create_dataset("keep", origin.as_uri())
    client.create_dataset("gone", origin.as_uri())
    assert etcd_keys(mesh.etcd_url, "/reservoir/files/gone/")
    client.delete_dataset("gone")
    assert etcd_keys(mesh.etcd_url, "/reservoir/files/gone/") == []
    assert etcd_keys(mesh.etcd_url, "/reservoir/datasets/gone") == []
    assert len(etcd_keys(mesh.etcd_url, "/reservoir/files/keep/")) == len(FILES)
    with pytest.raises(NotFound, match="dataset 'gone' does not exist"):
        client.dataset("gone")
    with pytest.raises(NotFound):
        client.delete_dataset("gone")


@pytest.mark.parametrize(
    "name", ["Upper", "-dash", "dash-", "under_score", "a" * 64, "", "dot.ted", "spa ce"]
)
def test_names_must_be_dns_labels(client: Client, origin: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="DNS-1123"):
        client.create_dataset(name, origin.as_uri())


def test_an_existing_name_is_refused(client: Client, origin: Path) -> None:
    client.create_dataset("ds", origin.as_uri())
    with pytest.raises(AlreadyExists, match="dataset 'ds' already exists"):
        client.create_dataset("ds", origin.as_uri())


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/x", "scheme"),
        ("file://relative/dir", "names a host"),
        ("file:relative", "absolute"),
        ("s3://", "bucket"),
        ("no-scheme-at-all", "scheme"),
    ],
)
def test_bad_uris_are_invalid(client: Client, uri: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        client.create_dataset("ds", uri)


def test_unknown_options_are_invalid(client: Client, origin: Path) -> None:
    with pytest.raises(InvalidArgument, match="colour"):
        client.create_dataset("ds", "s3://bucket/x", {"colour": "blue"})


def test_a_missing_directory_is_a_failed_precondition(client: Client, tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="nowhere"):
        client.create_dataset("ds", (tmp_path / "nowhere").as_uri())
    with pytest.raises(NotFound):  # nothing half-created is left behind
        client.dataset("ds")


def test_block_size_is_checked(client: Client, origin: Path) -> None:
    with pytest.raises(InvalidArgument, match="block size"):
        client.create_dataset("ds", origin.as_uri(), block_size=100)
    d = client.create_dataset("ds", origin.as_uri(), block_size=1024 * 1024)
    assert d.block_size == 1024 * 1024


def test_unknown_dataset_and_path_are_not_found(client: Client, origin: Path) -> None:
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        client.ls("nope")
    client.create_dataset("ds", origin.as_uri())
    with pytest.raises(NotFound, match="no such file or directory: ds/missing"):
        client.stat("ds", "missing")
    with pytest.raises(NotFound):
        client.ls("ds", "train/missing")


@pytest.mark.parametrize("path", ["../etc/passwd", "train/../../x", "a\x00b"])
def test_paths_never_leave_the_dataset(client: Client, origin: Path, path: str) -> None:
    client.create_dataset("ds", origin.as_uri())
    with pytest.raises(InvalidArgument):
        client.stat("ds", path)


def test_absolute_paths_are_rooted_at_the_dataset(client: Client, origin: Path) -> None:
    client.create_dataset("ds", origin.as_uri())
    assert client.stat("ds", "/README.md").path == "README.md"


def test_symlinks_out_of_the_root_are_not_recorded(
    client: Client, origin: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (origin / "escape.txt").symlink_to(secret)
    (origin / "alias.md").symlink_to(origin / "README.md")
    client.create_dataset("ds", origin.as_uri())
    names = {e.path for e in client.ls("ds")}
    assert "escape.txt" not in names
    assert "alias.md" in names
