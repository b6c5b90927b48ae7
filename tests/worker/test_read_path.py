"""The worker read path against real processes: etcd, a master, workers, and an S3
server whose served bytes are counted by a proxy on the origin's side."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, types_pb2, worker_pb2, worker_pb2_grpc
from tests.fixtures.counting_proxy import CountingProxy
from tests.fixtures.mesh import Mesh, ServiceProcess, wait_until
from tests.fixtures.s3 import MotoServer

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def locations(mesh: Mesh, path: str, dataset: str = "ds") -> master_pb2.GetBlockLocationsResponse:
    with MasterClient(mesh.address) as master:
        request = master_pb2.GetBlockLocationsRequest(dataset=dataset, path=path)
        return master.call("GetBlockLocations", request)


def read_block(
    address: str,
    key: types_pb2.BlockKey,
    offset: int = 0,
    length: int = 0,
    cached_only: bool = False,
) -> bytes:
    with grpc.insecure_channel(address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        request = worker_pb2.ReadBlockRequest(
            block=key, offset=offset, length=length, cached_only=cached_only
        )
        return b"".join(r.data for r in stub.ReadBlock(request, timeout=60))


def key(
    where: master_pb2.GetBlockLocationsResponse, index: int, dataset: str = "ds"
) -> types_pb2.BlockKey:
    return types_pb2.BlockKey(
        dataset=dataset, path=where.file.path, version=where.file.version, index=index
    )


def read_file(mesh: Mesh, path: str, via: str | None = None) -> bytes:
    where = locations(mesh, path)
    return b"".join(
        read_block(via or (b.holders or b.fillers)[0], key(where, b.index)) for b in where.blocks
    )


def metric(worker: ServiceProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://{worker.metrics}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = re.escape(name) + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    assert found, f"{name} not in metrics"
    return float(found.group(1))


FILES = {
    "empty.bin": b"",
    "small.txt": os.urandom(1000),
    "one-block.bin": os.urandom(MiB),
    "many/blocks.bin": os.urandom(5 * MiB + 12345),
}


@pytest.fixture
def bucket(s3_server: MotoServer, s3_bucket: str) -> str:
    for path, data in FILES.items():
        s3_server.put(s3_bucket, path, data)
    return s3_bucket


def make_dataset(mesh: Mesh, bucket: str, proxy: CountingProxy, s3: MotoServer) -> None:
    options = {**s3.options(), "endpoint": proxy.endpoint}
    with mesh.client() as client:
        wait_until(lambda: len(client.workers()) == len(mesh.workers), 30, "workers")
        client.create_dataset("ds", f"s3://{bucket}", options, block_size=MiB)
    proxy.reset()


@pytest.fixture
def two(mesh: Mesh, bucket: str, origin_proxy: CountingProxy, s3_server: MotoServer) -> Mesh:
    mesh.master()
    mesh.worker()
    mesh.worker()
    make_dataset(mesh, bucket, origin_proxy, s3_server)
    return mesh


def test_every_file_reads_back_identical_and_the_origin_once(
    two: Mesh, origin_proxy: CountingProxy
) -> None:
    for path, data in FILES.items():
        assert sha(read_file(two, path)) == sha(data), path
    total = sum(len(d) for d in FILES.values())
    assert origin_proxy.body_bytes == total
    for path, data in FILES.items():  # warm: nothing more from the origin
        assert sha(read_file(two, path)) == sha(data), path
    assert origin_proxy.body_bytes == total
    with two.client() as client:
        wait_until(lambda: client.dataset("ds").cached_bytes == total, 10, "block reports")
        shown = client.dataset("ds")
    assert (shown.cached_percent, shown.origin_bytes_read) == (100.0, total)


def test_concurrent_readers_of_a_cold_block_cause_one_fill(
    two: Mesh, origin_proxy: CountingProxy
) -> None:
    data = FILES["many/blocks.bin"]
    with ThreadPoolExecutor(8) as pool:
        copies = list(pool.map(lambda _: read_file(two, "many/blocks.bin"), range(8)))
    assert all(sha(c) == sha(data) for c in copies)
    assert origin_proxy.body_bytes <= 1.05 * len(data)


def test_a_worker_fills_from_the_peer_that_holds_the_block(
    two: Mesh, origin_proxy: CountingProxy
) -> None:
    where = locations(two, "one-block.bin")
    holder = where.blocks[0].fillers[0]
    other = next(w for w in two.workers if w.address != holder)
    assert read_block(holder, key(where, 0)) == FILES["one-block.bin"]
    wait_until(lambda: locations(two, "one-block.bin").blocks[0].holders, 10, "the report")
    origin_proxy.reset()
    assert read_block(other.address, key(where, 0)) == FILES["one-block.bin"]
    assert origin_proxy.body_bytes == 0
    assert metric(other, "reservoir_worker_peer_bytes_total") == MiB
    assert metric(other, 'reservoir_worker_bytes_served_total{source="peer"}') == MiB


def test_ranges_past_the_end_and_bad_requests(two: Mesh) -> None:
    where = locations(two, "small.txt")
    worker = where.blocks[0].fillers[0]
    data = FILES["small.txt"]
    assert read_block(worker, key(where, 0), offset=100, length=50) == data[100:150]
    assert read_block(worker, key(where, 0), offset=990, length=50) == data[990:]
    assert read_block(worker, key(where, 0), offset=5000) == b""
    with pytest.raises(grpc.RpcError) as caught:
        read_block(worker, key(where, 0), offset=2**63, length=2**63)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "overflows" in caught.value.details()
    for bad, message in [
        (types_pb2.BlockKey(dataset="Bad!", path="x", version="v"), "DNS-1123"),
        (types_pb2.BlockKey(dataset="ds", path="../x", version="v"), "leaves the dataset"),
        (types_pb2.BlockKey(dataset="ds", path="small.txt", version=""), "no version"),
        (key(where, 7), "no block 7"),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            read_block(worker, bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert message in caught.value.details()
    other = next(w.address for w in two.workers if w.address != worker)
    with pytest.raises(grpc.RpcError) as caught:
        read_block(other, key(where, 0), cached_only=True)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_changed_origin_object_asks_for_a_sync(
    two: Mesh, s3_server: MotoServer, bucket: str
) -> None:
    where = locations(two, "small.txt")
    s3_server.put(bucket, "small.txt", b"rewritten")
    with pytest.raises(grpc.RpcError) as caught:
        read_block(where.blocks[0].fillers[0], key(where, 0))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "reservoir dataset sync" in caught.value.details()
    with two.client() as client:
        client.sync_dataset("ds")
    assert read_file(two, "small.txt") == b"rewritten"


@pytest.fixture
def one(
    mesh: Mesh,
    bucket: str,
    origin_proxy: CountingProxy,
    s3_server: MotoServer,
    request: pytest.FixtureRequest,
) -> Mesh:
    mem, disk = getattr(request, "param", ("64MiB", "256MiB"))
    mesh.master()
    mesh.worker(mem_quota=mem, disk_quota=disk)
    make_dataset(mesh, bucket, origin_proxy, s3_server)
    return mesh


@pytest.mark.parametrize("one", [("2MiB", "3MiB")], indirect=True)
def test_a_small_quota_evicts_and_keeps_serving_correct_bytes(one: Mesh) -> None:
    data = FILES["many/blocks.bin"]
    for _ in range(2):
        assert sha(read_file(one, "many/blocks.bin")) == sha(data)
    worker = one.workers[0]
    assert metric(worker, 'reservoir_worker_evictions_total{tier="DISK"}') >= 3
    assert metric(worker, 'reservoir_worker_tier_used_bytes{tier="DISK"}') <= 3 * MiB


@pytest.mark.parametrize("one", [("512KiB", "512KiB")], indirect=True)
def test_a_quota_smaller_than_a_block_still_serves(one: Mesh) -> None:
    assert read_file(one, "one-block.bin") == FILES["one-block.bin"]
    assert locations(one, "one-block.bin").blocks[0].holders == []
    assert "fits in no tier" in one.workers[0].output()


def test_a_restarted_worker_serves_its_disk_tier_without_the_origin(
    one: Mesh, origin_proxy: CountingProxy
) -> None:
    data = FILES["many/blocks.bin"]
    assert sha(read_file(one, "many/blocks.bin")) == sha(data)
    worker = one.workers[0]
    worker.stop()
    worker.start()
    with one.client() as client:
        wait_until(lambda: len(client.workers()) == 1, 20, "re-registration")
    wait_until(
        lambda: all(b.holders for b in locations(one, "many/blocks.bin").blocks), 10, "report"
    )
    origin_proxy.reset()
    assert sha(read_file(one, "many/blocks.bin")) == sha(data)
    assert origin_proxy.body_bytes == 0
    assert metric(worker, 'reservoir_worker_bytes_served_total{source="disk"}') == len(data)


@pytest.mark.parametrize("one", [("0", "256MiB")], indirect=True)
def test_a_corrupt_block_file_is_dropped_and_fetched_again(
    one: Mesh, origin_proxy: CountingProxy
) -> None:
    data = FILES["many/blocks.bin"]
    assert sha(read_file(one, "many/blocks.bin")) == sha(data)
    block_files = sorted((one.tmp / "worker-0" / "blocks").rglob("*.blk"))
    assert len(block_files) == 6
    victim = block_files[0]
    raw = bytearray(victim.read_bytes())
    raw[-100] ^= 0xFF  # one bit of data, far from the header
    victim.write_bytes(bytes(raw))
    origin_proxy.reset()
    assert sha(read_file(one, "many/blocks.bin")) == sha(data)
    assert 0 < origin_proxy.body_bytes <= MiB
    assert metric(one.workers[0], "reservoir_worker_corrupt_blocks_total") == 1
