"""The file-system logic alone, without FUSE: attributes from cached listings, errno
mapping, inode numbers, and when the kernel may keep a file's pages."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from reservoir.client import Client, FileStat
from reservoir.client.fuse.handles import OpenFiles
from reservoir.client.fuse.inodes import InodeTable
from reservoir.client.fuse.tree import ROOT_INODE, DatasetTree, FsError, inode_of
from reservoir.errors import FailedPrecondition, NotFound, Unavailable


@dataclass
class StubFile:
    version: str
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class StubClient:
    """The library calls the tree makes, answered from a dict of files."""

    files: dict[str, FileStat]
    calls: list[str] = field(default_factory=list)
    fail: Exception | None = None

    def ls(self, dataset: str, path: str = "") -> list[FileStat]:
        self.calls.append(f"ls {path}")
        if self.fail:
            raise self.fail
        if path in self.files:
            return [self.files[path]]
        prefix = f"{path}/" if path else ""
        names = {p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)}
        if not names:
            raise NotFound(f"no such path: {path}")
        return [
            self.files.get(prefix + n, FileStat(prefix + n, is_dir=True)) for n in sorted(names)
        ]

    def open(self, dataset: str, path: str) -> StubFile:
        return StubFile(self.files[path].version)


def make(files: dict[str, FileStat], clock: list[float] | None = None) -> tuple[Any, DatasetTree]:
    client = StubClient(files)
    now = clock or [0.0]
    tree = DatasetTree(cast(Client, client), "ds", ttl=60, clock=lambda: now[0])
    return client, tree


FILES = {
    "a/x.bin": FileStat("a/x.bin", False, 10, "v1", 1_700_000_000_123),
    "a/y.bin": FileStat("a/y.bin", False, 20, "v1", 1_700_000_000_456),
    "top.txt": FileStat("top.txt", False, 3, "v1", 1_700_000_000_789),
}


def test_lookups_in_a_directory_cost_one_listing_until_the_ttl() -> None:
    now = [0.0]
    client, tree = make(FILES, now)
    x, y = tree.getattr("/a/x.bin"), tree.getattr("a/y.bin")
    assert (x.size, x.mtime_ns, x.mode & 0o777) == (10, 1_700_000_000_123_000_000, 0o444)
    assert y.size == 20 and not y.is_dir
    assert client.calls == ["ls a"]
    now[0] = 61.0
    tree.getattr("a/x.bin")
    assert client.calls == ["ls a", "ls a"]
    assert tree.getattr("").ino == ROOT_INODE and tree.getattr("a").is_dir


def test_errors_become_errno() -> None:
    client, tree = make(FILES)
    for path, code in [("nope", errno.ENOENT), ("a/nope", errno.ENOENT)]:
        with pytest.raises(FsError) as err:
            tree.getattr(path)
        assert err.value.errno == code
    with pytest.raises(FsError) as err:
        tree.getattr("top.txt/below")
    assert err.value.errno == errno.ENOTDIR
    for library_error, code in [
        (Unavailable("no worker"), errno.EIO),
        (FailedPrecondition("changed"), errno.ESTALE),
    ]:
        client.fail = library_error
        with pytest.raises(FsError) as err:
            tree.readdir("a")
        assert err.value.errno == code


def test_inodes_are_stable_distinct_and_never_the_roots() -> None:
    assert inode_of("a/x.bin") == inode_of("a/x.bin") != inode_of("a/y.bin")
    assert inode_of("") == ROOT_INODE and inode_of("x") != ROOT_INODE
    table = InodeTable()
    table.remember(inode_of("a"), "a")
    table.remember(inode_of("a"), "a")
    table.forget(inode_of("a"), 1)
    assert table.path(inode_of("a")) == "a"
    table.forget(inode_of("a"), 1)
    with pytest.raises(FsError):
        table.path(inode_of("a"))
    assert table.path(ROOT_INODE) == ""


def test_the_page_cache_is_kept_only_for_the_version_it_holds() -> None:
    client, tree = make(dict(FILES))
    files = OpenFiles(cast(Client, client), tree)
    first, h1 = files.open("a/x.bin", os.O_RDONLY)
    _, h2 = files.open("a/x.bin", os.O_RDONLY)
    assert (h1.keep_cache, h2.keep_cache) == (False, True)  # nothing cached at first
    client.files["a/x.bin"] = FileStat("a/x.bin", False, 11, "v2", 1_700_000_001_000)
    _, h3 = files.open("a/x.bin", os.O_RDONLY)
    _, h4 = files.open("a/x.bin", os.O_RDONLY)
    assert (h3.keep_cache, h4.keep_cache) == (False, True)  # a new version drops the old
    files.release(first)
    assert h1.file.closed and len(files) == 3
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(FsError) as err:
            files.open("a/x.bin", flags)
        assert err.value.errno == errno.EROFS
    files.close_all()
    assert h4.file.closed and len(files) == 0
