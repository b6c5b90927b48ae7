"""Nothing lives only in a master's memory; etcd outages are survived."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reservoir.client import Client, Unavailable
from reservoir.master import keys
from reservoir.meta import EtcdKV
from reservoir.meta.etcd_server import EtcdServer
from reservoir.v1 import master_pb2
from tests.fixtures.mesh import Mesh, wait_until

Phase = master_pb2.DatasetPhase


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
    # As a master that died after reserving the names leaves them: "half" PENDING,
    # with no files recorded yet, and "gone" DELETING.
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f.bin").write_bytes(b"x" * 1000)
    uri = (tmp_path / "d").as_uri()
    with cluster.client() as client:
        client.create_dataset("gone", uri)
    phases = {"half": Phase.DATASET_PHASE_PENDING, "gone": Phase.DATASET_PHASE_DELETING}

    async def leave_half_done() -> None:
        kv = EtcdKV(cluster.etcd_url)
        try:
            writes = {
                keys.dataset(name): master_pb2.Dataset(
                    name=name, mount_uri=uri, block_size=1 << 20, phase=phase, created_unix_ms=1
                ).SerializeToString()
                for name, phase in phases.items()
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
        wait_until(lambda: [d.name for d in client.datasets()] == ["half"], 30, "'gone' to go")
