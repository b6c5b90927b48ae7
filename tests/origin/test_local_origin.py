"""What only the local-directory backend has to get right: staying inside its root."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from reservoir.errors import FailedPrecondition, InvalidArgument, NotFound
from reservoir.origin import ObjectInfo, open_origin
from reservoir.origin.local import LocalOrigin

SECRET = b"the rest of the machine"


def listing(origin: LocalOrigin) -> dict[str, ObjectInfo]:
    async def collect() -> dict[str, ObjectInfo]:
        return {info.path: info async for info in origin.list()}

    return asyncio.run(collect())


def head(origin: LocalOrigin, path: str) -> ObjectInfo:
    return asyncio.run(origin.head(path))


def read(origin: LocalOrigin, path: str, version: str, start: int = 0, end: int = 1 << 30) -> bytes:
    async def collect() -> bytes:
        return b"".join(
            [chunk async for chunk in origin.get_range(path, start, end, version=version)]
        )

    return asyncio.run(collect())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """tmp/root holds the dataset; tmp/secret.txt and tmp/outside/ must stay unreachable."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "more-secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "inside.txt").write_bytes(b"inside")
    (root / "sub" / "file.txt").write_bytes(b"in a sub-directory")
    return root


def test_dot_dot_absolute_and_nul_paths_never_escape(root: Path) -> None:
    origin = LocalOrigin(root)
    version = head(origin, "inside.txt").version
    for path in ("../secret.txt", "sub/../../secret.txt", "../root/../secret.txt", ".."):
        with pytest.raises(InvalidArgument):
            head(origin, path)
        with pytest.raises(InvalidArgument):
            read(origin, path, version)
    with pytest.raises(InvalidArgument):
        head(origin, "inside.txt\x00.png")
    # A leading "/" means the dataset's root, as in a chroot: never the machine's "/".
    with pytest.raises(NotFound):
        head(origin, str(root.parent / "secret.txt"))
    with pytest.raises(NotFound):
        head(origin, "/etc/passwd")
    assert head(origin, "/inside.txt").path == "inside.txt"
    assert read(origin, "/sub/../inside.txt", version) == b"inside"


def test_symlinks_out_of_the_root_are_neither_listed_nor_read(root: Path, tmp_path: Path) -> None:
    (root / "to-secret").symlink_to(tmp_path / "secret.txt")
    (root / "relative-to-secret").symlink_to("../secret.txt")
    (root / "to-outside-dir").symlink_to(tmp_path / "outside")
    (root / "sub" / "up-two").symlink_to("../..")
    (root / "to-etc-passwd").symlink_to("/etc/passwd")
    (root / "dangling").symlink_to(root / "no-such-file")
    origin = LocalOrigin(root)
    assert set(listing(origin)) == {"inside.txt", "sub/file.txt"}
    secret_version = f"{(tmp_path / 'secret.txt').stat().st_mtime_ns}-{len(SECRET)}"
    for path in (
        "to-secret",
        "relative-to-secret",
        "to-outside-dir/more-secret.txt",
        "sub/up-two/secret.txt",
        "to-etc-passwd",
        "dangling",
    ):
        with pytest.raises(NotFound):
            head(origin, path)
        with pytest.raises(NotFound):
            read(origin, path, secret_version)


def test_symlinks_inside_the_root_are_followed(root: Path) -> None:
    (root / "alias.txt").symlink_to("inside.txt")
    (root / "sub-alias").symlink_to(root / "sub")
    (root / "sub" / "loop").symlink_to("..")  # back to the root: a cycle, inside the root
    origin = LocalOrigin(root)
    found = listing(origin)
    assert found["alias.txt"].size == len(b"inside")
    assert found["sub-alias/file.txt"].size == len(b"in a sub-directory")
    # A link to one of its own ancestors is a cycle: the walk does not enter it.
    assert not any("loop" in path for path in found)
    assert set(found) == {"inside.txt", "alias.txt", "sub/file.txt", "sub-alias/file.txt"}
    assert read(origin, "alias.txt", found["alias.txt"].version) == b"inside"
    assert head(origin, "sub-alias/file.txt") == found["sub-alias/file.txt"]


def test_a_missing_root_or_a_file_as_root_fails_naming_it(tmp_path: Path) -> None:
    missing = LocalOrigin(tmp_path / "nope")
    with pytest.raises(FailedPrecondition, match=r"nope.*does not exist"):
        listing(missing)
    with pytest.raises(FailedPrecondition, match=r"nope.*does not exist"):
        head(missing, "a")
    (tmp_path / "plain-file").write_bytes(b"x")
    with pytest.raises(FailedPrecondition, match=r"plain-file.*is not a directory"):
        listing(LocalOrigin(tmp_path / "plain-file"))


def test_only_regular_files_are_listed(root: Path) -> None:
    os.mkfifo(root / "a-fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "a-socket"))
        origin = LocalOrigin(root)
        assert set(listing(origin)) == {"inside.txt", "sub/file.txt"}
        with pytest.raises(NotFound):
            head(origin, "a-fifo")
        with pytest.raises(NotFound):
            head(origin, "sub")


def test_names_that_are_not_utf8_are_skipped(root: Path) -> None:
    with open(os.fsencode(root) + b"/bad-\xff-name", "wb") as out:
        out.write(b"x")
    assert set(listing(LocalOrigin(root))) == {"inside.txt", "sub/file.txt"}


def test_version_is_mtime_and_size(root: Path) -> None:
    origin = LocalOrigin(root)
    info = head(origin, "inside.txt")
    st = (root / "inside.txt").stat()
    assert info.version == f"{st.st_mtime_ns}-{st.st_size}"
    assert info.mtime_ms == st.st_mtime_ns // 1_000_000
    # Same size, new mtime: still a change.
    os.utime(root / "inside.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(FailedPrecondition, match="changed"):
        read(origin, "inside.txt", info.version)


def test_a_file_that_changes_during_a_read_fails_the_read(root: Path) -> None:
    big = root / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    origin = LocalOrigin(root)
    version = head(origin, "big.bin").version

    def append(data: bytes) -> None:
        with open(big, "ab") as out:
            out.write(data)

    async def read_while_appending() -> int:
        received = 0
        async for chunk in origin.get_range("big.bin", 0, 3 << 20, version=version):
            if received == 0:
                await asyncio.to_thread(append, b"appended")
            received += len(chunk)
        return received

    with pytest.raises(FailedPrecondition, match="changed"):
        asyncio.run(read_while_appending())


def test_open_origin_gives_a_local_origin(root: Path) -> None:
    origin = open_origin(root.as_uri(), {})
    assert isinstance(origin, LocalOrigin)
    assert origin.uri == root.as_uri()
    assert set(listing(origin)) == {"inside.txt", "sub/file.txt"}
