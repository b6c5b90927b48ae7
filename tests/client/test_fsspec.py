"""`reservoir://` through fsspec (and pandas), found by its entry point, against doubles
of the master and a worker on real sockets."""

from __future__ import annotations

import errno
import hashlib
import io
import pickle
import random
from collections.abc import Iterator

import fsspec
import pytest

from reservoir.client.fsspec import ReservoirFileSystem
from reservoir.client.reader import ReservoirFile
from tests.client.doubles import Mesh

BLOCK = 1024 * 1024
CSV = b"name,size\nalpha,1\nbeta,22\ngamma,333\n"


@pytest.fixture
def mesh(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mesh]:
    mesh = Mesh(block_size=BLOCK)
    mesh.worker()
    mesh.store.add("ds", "tables/t.csv", CSV)
    mesh.store.add("ds", "tables/more/u.csv", CSV)
    mesh.store.add("ds", "big.bin", random.Random(1).randbytes(3 * BLOCK + 17))
    mesh.store.add("other", "x", b"x")
    monkeypatch.setenv("RESERVOIR_MASTER", mesh.master_address)
    yield mesh
    ReservoirFileSystem.clear_instance_cache()
    mesh.stop()


@pytest.fixture
def fs(mesh: Mesh) -> ReservoirFileSystem:
    filesystem = fsspec.filesystem("reservoir")
    assert isinstance(filesystem, ReservoirFileSystem)
    return filesystem


def test_the_entry_point_registers_the_protocol() -> None:
    assert fsspec.get_filesystem_class("reservoir") is ReservoirFileSystem


def test_fsspec_open_reads_the_bytes(mesh: Mesh) -> None:
    data = mesh.store.files[("ds", "big.bin")].data
    with fsspec.open("reservoir://ds/big.bin") as f:
        assert isinstance(f, ReservoirFile)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    with fsspec.open("reservoir://ds/tables/t.csv", "rt") as text:
        assert text.readlines()[1:] == ["alpha,1\n", "beta,22\n", "gamma,333\n"]


def test_the_master_can_be_a_storage_option(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESERVOIR_MASTER", "127.0.0.1:1")  # nobody there
    with fsspec.open("reservoir://ds/tables/t.csv", master=mesh.master_address) as f:
        assert f.read() == CSV


def test_instances_follow_the_master_in_the_environment(mesh: Mesh) -> None:
    assert fsspec.filesystem("reservoir").master == mesh.master_address
    other = Mesh(block_size=BLOCK)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RESERVOIR_MASTER", other.master_address)
            assert fsspec.filesystem("reservoir").master == other.master_address
    finally:
        other.stop()


def test_a_file_system_pickles_with_its_master(fs: ReservoirFileSystem) -> None:
    # Data loaders started by spawn get the file system pickled.
    copy = pickle.loads(pickle.dumps(fs))
    assert copy.master == fs.master and copy.cat_file("ds/tables/t.csv") == CSV


def test_ls_and_info(fs: ReservoirFileSystem) -> None:
    assert fs.ls("reservoir://", detail=False) == ["ds", "other"]
    assert fs.ls("reservoir://ds", detail=False) == ["ds/big.bin", "ds/tables"]
    listed = fs.ls("ds/tables/")
    assert [(e["name"], e["type"], e["size"]) for e in listed] == [
        ("ds/tables/more", "directory", 0),
        ("ds/tables/t.csv", "file", len(CSV)),
    ]
    info = fs.info("reservoir://ds/tables/t.csv")
    assert (info["name"], info["type"], info["size"], info["version"]) == (
        "ds/tables/t.csv",
        "file",
        len(CSV),
        "v1",
    )
    assert fs.info("ds")["type"] == "directory"
    assert fs.info("")["type"] == "directory"
    assert fs.isdir("ds/tables") and fs.isfile("ds/big.bin") and fs.exists("ds/tables/t.csv")
    assert not fs.exists("ds/nope")
    assert fs.modified("ds/big.bin").year == 2023
    assert fs.find("reservoir://ds/tables") == ["ds/tables/more/u.csv", "ds/tables/t.csv"]


def test_missing_paths_are_file_not_found(fs: ReservoirFileSystem) -> None:
    for call in (lambda: fs.info("ds/nope"), lambda: fs.ls("ds/nope"), lambda: fs.open("ds/n")):
        with pytest.raises(FileNotFoundError):
            call()


def test_cat_file_and_ranges(fs: ReservoirFileSystem, mesh: Mesh) -> None:
    data = mesh.store.files[("ds", "big.bin")].data
    assert fs.cat_file("reservoir://ds/big.bin") == data
    assert fs.cat_file("ds/big.bin", start=BLOCK - 5, end=BLOCK + 5) == data[BLOCK - 5 : BLOCK + 5]
    assert fs.cat_file("ds/big.bin", start=-10) == data[-10:]
    assert fs.cat_file("ds/big.bin", start=5, end=-5) == data[5:-5]
    assert fs.cat_file("ds/big.bin", start=len(data) + 10) == b""
    assert fs.cat("ds/tables/t.csv") == CSV


def test_the_file_system_is_read_only(fs: ReservoirFileSystem) -> None:
    for mode in ("wb", "ab", "w"):
        with pytest.raises(OSError, match="read-only") as caught:
            fs.open("ds/new", mode)
        assert caught.value.errno == errno.EROFS
    for call in (
        lambda: fs.mkdir("ds/d"),
        lambda: fs.rm("ds/big.bin"),
        lambda: fs.pipe("ds/x", b""),
    ):
        with pytest.raises(OSError, match="read-only"):
            call()


def test_pandas_read_csv(mesh: Mesh) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv("reservoir://ds/tables/t.csv")
    assert frame.to_dict("list") == {"name": ["alpha", "beta", "gamma"], "size": [1, 22, 333]}
    expected = pandas.read_csv(io.BytesIO(CSV))
    assert frame.equals(expected)
