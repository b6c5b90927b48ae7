"""Several masters on one etcd: one leader, standbys that redirect, failover."""

from __future__ import annotations

import grpc
import pytest

from reservoir.rpc.server import LEADER_KEY
from reservoir.v1 import master_pb2, master_pb2_grpc
from tests.fixtures.mesh import LEADER_TTL, Mesh, wait_until


def create_on(address: str, name: str, uri: str) -> master_pb2.CreateDatasetResponse:
    with grpc.insecure_channel(address) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        return stub.CreateDataset(
            master_pb2.CreateDatasetRequest(name=name, mount_uri=uri), timeout=30
        )


@pytest.fixture
def two_masters(mesh: Mesh) -> Mesh:
    mesh.master()
    with mesh.client() as client:  # the first one leads once this write succeeds
        wait_until(lambda: is_leader(mesh.masters[0].address), 15, "a leader")
        client.datasets()
    mesh.master()
    return mesh


def is_leader(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        try:
            stub.DeleteDataset(master_pb2.DeleteDatasetRequest(name="no-such-dataset"), timeout=5)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
    return True


def test_a_standby_refuses_writes_naming_the_leader(two_masters: Mesh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    leader, standby = two_masters.masters
    with pytest.raises(grpc.RpcError) as caught:
        create_on(standby.address, "ds", tmp_path.as_uri())
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"the leader is {leader.address}" in error.details()
    assert (LEADER_KEY, leader.address) in error.trailing_metadata()
    # Reads are served by the standby too.
    create_on(leader.address, "ds", tmp_path.as_uri())
    with grpc.insecure_channel(standby.address) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        got = stub.GetDataset(master_pb2.GetDatasetRequest(name="ds"), timeout=5)
    assert got.dataset.name == "ds"


def test_the_client_follows_the_redirect(two_masters: Mesh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from reservoir.client import Client

    with Client(two_masters.masters[1].address) as client:  # only the standby is named
        created = client.create_dataset("ds", tmp_path.as_uri())
    assert created.phase == "Ready"


def test_a_standby_takes_over_when_the_leader_dies(two_masters: Mesh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    leader, standby = two_masters.masters
    with two_masters.client() as client:
        client.create_dataset("before", tmp_path.as_uri())
        leader.kill()
        took = wait_until(lambda: is_leader(standby.address), LEADER_TTL + 10, "a new leader")
        assert took <= LEADER_TTL + 3
        client.create_dataset("after", tmp_path.as_uri())  # the client finds the new leader
        assert {d.name for d in client.datasets()} == {"before", "after"}


def test_a_clean_stop_hands_over_at_once(two_masters: Mesh) -> None:
    leader, standby = two_masters.masters
    leader.stop()
    took = wait_until(lambda: is_leader(standby.address), 10, "a new leader")
    assert took < LEADER_TTL  # the lease was revoked, not left to expire
