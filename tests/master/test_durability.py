"""Nothing lives only in a master's memory; etcd outages are survived."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reservoir.client import Client, Unavailable
from reservoir.master import keys
from reservoir.meta import EtcdKV
from reservoir.meta.etcd_server import EtcdServer
from reservoir.v1 import master_pb2, master_pb2_grpc
from tests.fixtures.mesh import Mesh, wait_until
from tests.master.test_datasets import etcd_keys
from tests.master.test_leadership import is_leader

Phase = master_pb2.DatasetPhase
Stub = master_pb2_grpc.MasterServiceStub


def test_a_master_restart_loses_nothing(cluster: Mesh, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(b"x" * 1000)
    master = cluster.masters[0]
    with cluster.client() as client:
        created = client.create_dataset("ds", (tmp_path / "d").as_uri())
        listing = client.ls("ds")
        master.kill()
        master.start()
        assert client.dataset("ds") == created
        assert client.ls("ds") == listing
        # The workers' registrations live in etcd too.
        assert len(client.workers()) == 2


def test_etcd_down_is_unavailable_and_the_master_recovers(tmp_path: Path) -> None:
    etcd = EtcdServer(tmp_path / "etcd", log=tmp_path / "etcd.log").start()
    mesh = Mesh(etcd.url, tmp_path)
    try:
        mesh.master()
        with Client(mesh.address) as client:
            wait_until(lambda: _answers(client), 15, "the master to answer")
            etcd.stop()
            start = time.monotonic()
            with pytest.raises(Unavailable, match=f"etcd at {etcd.url}"):
                client.datasets()
            assert time.monotonic() - start < 30
            etcd.start()
            wait_until(lambda: _answers(client), 30, "the master to serve again")
            (tmp_path / "d").mkdir()
            assert client.create_dataset("ds", (tmp_path / "d").as_uri()).phase == "Ready"
    finally:
        mesh.stop()
        etcd.stop()


def _answers(client: Client) -> bool:
    try:
        client.datasets()
    except Unavailable:
        return False
    return True


def test_the_next_leader_completes_what_a_dead_leader_left_half_done(
    cluster: Mesh, tmp_path: Path
) -> None:
    # As a master that died after reserving the names leaves them: "half" and
    # "broken" (whose directory has gone since) PENDING, with no files recorded yet,
    # and "gone" DELETING.
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f.bin").write_bytes(b"x" * 1000)
    uri = (tmp_path / "d").as_uri()
    with cluster.client() as client:
        client.create_dataset("gone", uri)
    left = {
        "half": (uri, Phase.DATASET_PHASE_PENDING),
        "broken": ((tmp_path / "nowhere").as_uri(), Phase.DATASET_PHASE_PENDING),
        "gone": (uri, Phase.DATASET_PHASE_DELETING),
    }

    async def leave_half_done() -> None:
        kv = EtcdKV(cluster.etcd_url)
        try:
            writes = {
                keys.dataset(name): master_pb2.Dataset(
                    name=name, mount_uri=mount, block_size=1 << 20, phase=phase, created_unix_ms=1
                ).SerializeToString()
                for name, (mount, phase) in left.items()
            }
            await kv.commit(writes)
        finally:
            await kv.close()

    master = cluster.masters[0]
    master.kill()
    asyncio.run(leave_half_done())
    master.start()
    with cluster.client() as client:
        wait_until(lambda: client.dataset("half").phase == "Ready", 30, "'half' to be Ready")
        assert client.dataset("half").file_count == 1
        assert client.stat("half", "sub/f.bin").size == 1000
        wait_until(lambda: "gone" not in {d.name for d in client.datasets()}, 30, "'gone' to go")
        # Listed for good in vain: FAILED with the reason, not retried for ever.
        wait_until(lambda: client.dataset("broken").phase == "Failed", 30, "'broken' to fail")
        assert "nowhere does not exist" in client.dataset("broken").message


# Enough small files that the first listing takes a noticeable time (0.2 s or so,
# most of it writing the file keys to etcd): a client can be cut off in the middle.
MANY_FILES = 5000


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(MANY_FILES):
        (root / f"d{i % 50:02d}").mkdir(exist_ok=True)
        (root / f"d{i % 50:02d}" / f"f{i:05d}.txt").write_bytes(b"x")
    return root


@pytest.fixture
def leader(mesh: Mesh) -> Iterator[Stub]:
    """A stub of a master that leads (and so takes writes) already."""
    master = mesh.master()
    wait_until(lambda: is_leader(master.address), 15, "the master to lead")
    with grpc.insecure_channel(master.address) as channel:
        yield master_pb2_grpc.MasterServiceStub(channel)


def _phase(stub: Stub, name: str) -> int | None:
    """The dataset's phase, None while it does not exist."""
    try:
        answer = stub.GetDataset(master_pb2.GetDatasetRequest(name=name), timeout=5)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return int(answer.dataset.phase)


def _appears(stub: Stub, name: str) -> None:
    wait_until(lambda: _phase(stub, name) is not None, 30, f"{name!r} to appear", 0.002)


def _completes(stub: Stub, name: str) -> None:
    wait_until(lambda: _phase(stub, name) == Phase.DATASET_PHASE_READY, 30, f"{name!r} to be Ready")
    answer = stub.GetDataset(master_pb2.GetDatasetRequest(name=name), timeout=5)
    assert answer.dataset.file_count == MANY_FILES


def test_a_create_whose_client_is_killed_still_completes(
    mesh: Mesh, leader: Stub, many_files: Path
) -> None:
    # Issue 10: `reservoir dataset create` killed -9 as soon as its dataset appears.
    for n in range(3):
        name = f"killed-{n}"
        create = ["dataset", "create", name, f"--mount={many_files.as_uri()}"]
        cli = subprocess.Popen(
            [sys.executable, "-m", "reservoir", f"--master={mesh.address}", *create],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _appears(leader, name)
            assert cli.poll() is None, "the create ended before it could be cut short"
        finally:
            cli.kill()
            cli.wait()
        _completes(leader, name)


def test_a_create_cancelled_by_its_client_still_completes(leader: Stub, many_files: Path) -> None:
    cut = 0
    for n in range(3):
        name = f"cancelled-{n}"
        request = master_pb2.CreateDatasetRequest(name=name, mount_uri=many_files.as_uri())
        call = leader.CreateDataset.future(request, timeout=600)
        _appears(leader, name)
        cut += call.cancel()  # False only if the answer came first (a stalled test)
        _completes(leader, name)
    assert cut, "no create could be cancelled before it answered"


def test_a_delete_during_the_first_listing_leaves_nothing(
    mesh: Mesh, leader: Stub, many_files: Path
) -> None:
    # The listing stops before the delete removes the dataset: its last writes
    # would otherwise bring the dataset back, Ready.
    request = master_pb2.CreateDatasetRequest(name="ds", mount_uri=many_files.as_uri())
    call = leader.CreateDataset.future(request, timeout=600)
    _appears(leader, "ds")
    leader.DeleteDataset(master_pb2.DeleteDatasetRequest(name="ds"), timeout=30)
    assert call.code() in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
    time.sleep(0.5)
    assert _phase(leader, "ds") is None
    assert etcd_keys(mesh.etcd_url, keys.files("ds")) == []


def test_a_sync_during_the_first_listing_answers_with_its_outcome(
    leader: Stub, many_files: Path
) -> None:
    request = master_pb2.CreateDatasetRequest(name="ds", mount_uri=many_files.as_uri())
    call = leader.CreateDataset.future(request, timeout=600)
    _appears(leader, "ds")
    synced = leader.SyncDataset(master_pb2.SyncDatasetRequest(name="ds"), timeout=60)
    created = call.result()
    for dataset in (synced.dataset, created.dataset):
        assert (dataset.phase, dataset.file_count) == (Phase.DATASET_PHASE_READY, MANY_FILES)
    # That listing (whose files were all new), or a second one after it.
    assert (synced.added, synced.changed, synced.removed) in ((MANY_FILES, 0, 0), (0, 0, 0))
