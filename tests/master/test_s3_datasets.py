"""Datasets over an S3-protocol server (moto, as a separate process)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from reservoir.client import Client, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from reservoir.processes import free_port
from reservoir.v1 import master_pb2 as pb
from tests.fixtures.mesh import Mesh, run_cli, wait_until
from tests.fixtures.s3 import MotoServer


def etcd_revision(url: str) -> int:
    import etcd3aio

    async def revision() -> int:
        async with etcd3aio.Etcd3Client([url.split("://")[-1]]) as etcd:
            assert etcd.kv is not None
            return int((await etcd.kv.get("/reservoir/")).header.revision)

    return asyncio.run(revision())


@pytest.fixture
def client(mesh: Mesh) -> Client:
    mesh.master()
    return mesh.client()


def test_ten_thousand_objects_are_recorded_in_batches(
    client: Client, mesh: Mesh, s3_server: MotoServer, s3_bucket: str
) -> None:
    objects = {f"shards/{i // 1000:02d}/part-{i:05d}.bin": b"%d" % i for i in range(10_000)}
    s3_server.put_many(s3_bucket, objects)
    before = etcd_revision(mesh.etcd_url)
    d = client.create_dataset("big", f"s3://{s3_bucket}/shards", s3_server.options())
    writes = etcd_revision(mesh.etcd_url) - before
    assert d.file_count == 10_000
    assert d.total_bytes == sum(len(b) for b in objects.values())
    # One etcd revision per transaction: 10,000 files in ~80 batches, not 10,000 puts.
    assert writes <= 10_000 // 128 + 10, writes
    assert len(client.ls("big", "03")) == 1000
    assert client.stat("big", "09/part-09999.bin").size == 4


def test_sync_follows_the_bucket(client: Client, s3_server: MotoServer, s3_bucket: str) -> None:
    s3_server.put(s3_bucket, "a.txt", b"a")
    s3_server.put(s3_bucket, "b.txt", b"b")
    client.create_dataset("ds", f"s3://{s3_bucket}", s3_server.options())
    s3_server.put(s3_bucket, "c.txt", b"c")
    s3_server.put(s3_bucket, "a.txt", b"a, changed")
    s3_server.delete(s3_bucket, "b.txt")
    result = client.sync_dataset("ds")
    assert (result.added, result.changed, result.removed) == (1, 1, 1)
    assert {e.path: e.size for e in client.ls("ds")} == {"a.txt": 10, "c.txt": 1}


def test_secrets_are_never_shown(mesh: Mesh, s3_server: MotoServer, s3_bucket: str) -> None:
    mesh.master()
    secret = s3_server.options()["secret_access_key"] + "-not-shown"
    options = {**s3_server.options(), "secret_access_key": secret}
    args = [f"--option={k}={v}" for k, v in options.items()]
    created = run_cli(
        "dataset", "create", "ds", f"--mount=s3://{s3_bucket}", *args, master=mesh.address
    )
    assert created.returncode == 0, created.stderr
    for command in (
        ["dataset", "get", "ds"],
        ["--json", "dataset", "get", "ds"],
        ["dataset", "list"],
    ):
        shown = run_cli(*command, master=mesh.address)
        assert shown.returncode == 0, shown.stderr
        assert secret not in shown.stdout + shown.stderr
    got = json.loads(run_cli("--json", "dataset", "get", "ds", master=mesh.address).stdout)
    assert got["options"]["secret_access_key"] == "***"
    assert got["options"]["endpoint"] == s3_server.endpoint


def test_refused_credentials_name_the_endpoint(client: Client, s3_auth_server: MotoServer) -> None:
    with pytest.raises(FailedPrecondition, match=s3_auth_server.endpoint):
        client.create_dataset("ds", "s3://some-bucket", s3_auth_server.options())


def test_an_unreachable_endpoint_fails_in_bounded_time(client: Client) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(Unavailable, match=endpoint):
        client.create_dataset("ds", "s3://bucket", {"endpoint": endpoint, "anonymous": "true"})
    assert time.monotonic() - start < 30


def test_a_missing_bucket_is_a_failed_precondition(client: Client, s3_server: MotoServer) -> None:
    with pytest.raises(FailedPrecondition, match="no-such-bucket"):
        client.create_dataset("ds", "s3://no-such-bucket", s3_server.options())


def test_rotated_credentials_replace_the_old_and_keep_the_cache(
    cluster: Mesh, s3_server: MotoServer, s3_bucket: str
) -> None:
    s3_server.put(s3_bucket, "m/a.bin", b"a" * 100_000)
    with cluster.client() as client:
        client.create_dataset("rotating", f"s3://{s3_bucket}/m", s3_server.options())
        assert client.read("rotating", "a.bin") == b"a" * 100_000
        # The worker reports the block to the master after the read.
        wait_until(
            lambda: client.dataset("rotating").cached_bytes == 100_000, 15, "the block report"
        )
        before = client.dataset("rotating")

        after = client.update_credentials("rotating", {"secret_access_key": "new-secret"})
        assert after.options["secret_access_key"] == "***"
        assert (after.file_count, after.cached_bytes) == (before.file_count, before.cached_bytes)
        # What workers read the origin with from now on.
        mount = client._master.call("GetMount", pb.GetMountRequest(dataset="rotating"))
        assert mount.options["secret_access_key"] == "new-secret"
        assert mount.options["endpoint"] == s3_server.endpoint  # the rest is kept

        with pytest.raises(InvalidArgument, match=r"only credentials .* not \['endpoint'\]"):
            client.update_credentials("rotating", {"endpoint": "http://169.254.169.254"})
        with pytest.raises(NotFound, match="nope"):
            client.update_credentials("nope", {"secret_access_key": "x"})
