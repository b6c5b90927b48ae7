"""Nothing lives only in a master's memory; etcd outages are survived."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reservoir.client import Client, Unavailable
from reservoir.meta.etcd_server import EtcdServer
from tests.fixtures.mesh import Mesh, wait_until


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
