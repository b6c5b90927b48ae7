"""What a mounted dataset shows: the origin's tree, bytes, sizes and mtimes, read-only.

All through one real mount of a real mesh, as programs see it: os.walk, open/read,
pread, stat, tar, and every call that would change something.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fuse.conftest import BLOCK_SIZE, ORIGIN_FILES, Mounted, content


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def tree(root: Path) -> tuple[set[str], dict[str, str]]:
    """(directories, {file: sha256}) under `root`, by relative path."""
    dirs: set[str] = set()
    files: dict[str, str] = {}
    for here, dirnames, filenames in os.walk(root):
        rel = Path(here).relative_to(root)
        dirs.update(str(rel / d) for d in dirnames)
        files.update({str(rel / f): sha256(Path(here) / f) for f in filenames})
    return dirs, files


def test_the_tree_and_every_files_sha256_equal_the_origin(mounted: Path, origin: Path) -> None:
    dirs, files = tree(mounted)
    assert (dirs, files) == tree(origin)
    assert set(files) == set(ORIGIN_FILES)
    assert {"a", "a/b", "a/b/c", "model", "many"} == dirs


def test_tar_over_the_mount_reproduces_the_origin_tree(
    mounted: Path, origin: Path, tmp_path: Path
) -> None:
    out = tmp_path / "extracted"
    out.mkdir()
    packed = subprocess.run(
        ["tar", "-cf", "-", "-C", str(mounted), "."], capture_output=True, check=True
    )
    subprocess.run(["tar", "-xf", "-", "-C", str(out)], input=packed.stdout, check=True)
    assert tree(out) == tree(origin)
    for path in ORIGIN_FILES:  # tar keeps mtimes to the second
        assert int((out / path).stat().st_mtime) == int((origin / path).stat().st_mtime)


def test_stat_shows_sizes_mtimes_modes_and_stable_inodes(mounted: Path, origin: Path) -> None:
    inodes = set()
    for path in ORIGIN_FILES:
        seen, real = (mounted / path).stat(), (origin / path).stat()
        assert seen.st_size == real.st_size, path
        assert seen.st_mtime_ns == real.st_mtime_ns // 1_000_000 * 1_000_000, path
        assert stat.S_ISREG(seen.st_mode) and stat.S_IMODE(seen.st_mode) == 0o444, path
        assert seen.st_ino == (mounted / path).stat().st_ino
        inodes.add(seen.st_ino)
    assert len(inodes) == len(ORIGIN_FILES)
    for directory in ("", "a", "a/b/c", "many"):
        seen = (mounted / directory).stat()
        assert stat.S_ISDIR(seen.st_mode) and stat.S_IMODE(seen.st_mode) == 0o555
    assert sorted(os.listdir(mounted / "a")) == ["b", "notes with space.txt"]
    assert len(os.listdir(mounted / "many")) == 300


def test_a_second_read_returns_the_same_bytes(mounted: Path) -> None:
    path = mounted / "model/weights.bin"
    first = path.read_bytes()
    second = path.read_bytes()  # from the kernel's page cache: the version is the same
    assert first == second == content("model/weights.bin")
    assert (mounted / "empty.bin").read_bytes() == b""
    assert (mounted / "one-block.bin").read_bytes() == content("one-block.bin")


def test_reads_at_any_offset_match_the_origin(mounted: Path) -> None:
    data = content("model/weights.bin")
    fd = os.open(mounted / "model/weights.bin", os.O_RDONLY)
    try:
        for offset, size in [
            (0, 1),
            (BLOCK_SIZE - 7, 100),  # across a block boundary
            (len(data) - 10, 100),  # past the end: the tail only
            (len(data), 10),  # at the end: nothing
            (2 * BLOCK_SIZE + 12345, 2 * BLOCK_SIZE),
            (17, 300_000),
        ]:
            assert os.pread(fd, size, offset) == data[offset : offset + size], offset
    finally:
        os.close(fd)


def test_files_read_in_parallel_read_right(mounted: Path) -> None:
    paths = ["model/weights.bin", "one-block.bin", "a/b/c/deep.txt"] * 3
    with ThreadPoolExecutor(len(paths)) as pool:
        got = list(pool.map(lambda p: (mounted / p).read_bytes(), paths))
    assert got == [content(p) for p in paths]


def test_statfs_reports_the_datasets_size_and_files(mounted: Path) -> None:
    fs = os.statvfs(mounted)
    assert fs.f_files == len(ORIGIN_FILES)
    assert fs.f_blocks * fs.f_frsize >= sum(ORIGIN_FILES.values())
    assert fs.f_bavail == 0
    assert fs.f_flag & os.ST_RDONLY


def _open(path: Path, flags: int) -> None:
    os.close(os.open(path, flags, 0o644))


# Every call that would change the tree, with the file or directory it aims at.
WRITES: dict[str, Callable[[Path], object]] = {
    "write": lambda m: _open(m / "one-block.bin", os.O_WRONLY),
    "read-write": lambda m: _open(m / "one-block.bin", os.O_RDWR),
    "append": lambda m: _open(m / "one-block.bin", os.O_WRONLY | os.O_APPEND),
    "create": lambda m: _open(m / "new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    "create-in-subdir": lambda m: _open(m / "a/new.txt", os.O_WRONLY | os.O_CREAT),
    "truncate-on-open": lambda m: _open(m / "one-block.bin", os.O_WRONLY | os.O_TRUNC),
    "truncate": lambda m: os.truncate(m / "one-block.bin", 0),
    "mkdir": lambda m: os.mkdir(m / "newdir"),
    "rmdir": lambda m: os.rmdir(m / "a/b/c"),
    "unlink": lambda m: os.unlink(m / "empty.bin"),
    "rename": lambda m: os.rename(m / "empty.bin", m / "renamed.bin"),
    "rename-dir": lambda m: os.rename(m / "a", m / "z"),
    "chmod": lambda m: os.chmod(m / "empty.bin", 0o777),
    "chown": lambda m: os.chown(m / "empty.bin", 1234, 1234),
    "utime": lambda m: os.utime(m / "empty.bin", (0, 0)),
    "symlink": lambda m: os.symlink("empty.bin", m / "link"),
    "hard-link": lambda m: os.link(m / "empty.bin", m / "hard"),
    "mknod": lambda m: os.mkfifo(m / "fifo"),
    "setxattr": lambda m: os.setxattr(m / "empty.bin", "user.k", b"v"),
    "removexattr": lambda m: os.removexattr(m / "empty.bin", "user.k"),
}


@pytest.mark.parametrize("operation", list(WRITES))
def test_every_write_fails_with_erofs(mounted: Path, operation: str) -> None:
    with pytest.raises(OSError) as refused:
        WRITES[operation](mounted)
    assert refused.value.errno == errno.EROFS, refused.value
    assert (mounted / "empty.bin").exists() and not (mounted / "new.txt").exists()


def test_missing_paths_are_enoent(mounted: Path) -> None:
    for missing in ("nope", "a/nope", "a/b/c/deep.txt/below", "many/entry-999"):
        with pytest.raises(OSError) as err:
            (mounted / missing).stat()
        assert err.value.errno in (errno.ENOENT, errno.ENOTDIR), missing


def test_a_sub_path_mounts_as_the_root(mount: Callable[..., Mounted], mounted: Path) -> None:
    sub = mount("ds/a")
    assert sorted(os.listdir(sub.path)) == ["b", "notes with space.txt"]
    assert (sub.path / "b/c/deep.txt").read_bytes() == content("a/b/c/deep.txt")
    # Inode numbers name the dataset path: the same in every mount.
    assert (sub.path / "b/c/deep.txt").stat().st_ino == (mounted / "a/b/c/deep.txt").stat().st_ino
