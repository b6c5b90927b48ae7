"""Reads through the client library and the CLI against a whole mesh of real
processes, with the origin's served bytes counted on the origin's side."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import fsspec
import pytest

from reservoir.client import Client, FailedPrecondition, ReaderConfig
from tests.fixtures.counting_proxy import CountingProxy
from tests.fixtures.mesh import Mesh, run_cli, wait_until
from tests.fixtures.s3 import MotoServer
from tests.worker.test_read_path import locations

MiB = 1024 * 1024
FILES = {
    "empty.bin": b"",
    "small.txt": b"id,label\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(2000)),
    "exactly-one-block.bin": os.urandom(MiB),
    "model/weights.bin": os.urandom(6 * MiB + 4321),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cluster(mesh: Mesh, s3_server: MotoServer, s3_bucket: str, origin_proxy: CountingProxy) -> Mesh:
    for path, data in FILES.items():
        s3_server.put(s3_bucket, path, data)
    mesh.master()
    for _ in range(3):
        mesh.worker()
    with mesh.client() as client:
        wait_until(lambda: len(client.workers()) == 3, 30, "workers")
        options = {**s3_server.options(), "endpoint": origin_proxy.endpoint}
        client.create_dataset("ds", f"s3://{s3_bucket}", options, block_size=MiB)
    origin_proxy.reset()
    return mesh


def test_every_file_reads_back_identical(cluster: Mesh, origin_proxy: CountingProxy) -> None:
    with cluster.client() as client:
        for path, data in FILES.items():
            with client.open("ds", path) as f:
                assert f.size == len(data)
                assert sha(f.read()) == sha(data), path
        assert origin_proxy.body_bytes == sum(len(d) for d in FILES.values())
        assert [p for _, _, files in client.walk("ds") for p in files] != []


def test_random_seeks_and_reads_match_a_local_copy(cluster: Mesh) -> None:
    data = FILES["model/weights.bin"]
    rng = random.Random(7)
    with cluster.client() as client, client.open("ds", "model/weights.bin") as f:
        for _ in range(200):
            offset = rng.randrange(0, len(data) + 100)
            size = rng.choice([1, 17, 4096, 300_000, 2 * MiB])
            f.seek(offset)
            got = f.read(size)
            assert got == data[offset : offset + size]
            assert f.tell() == offset + len(got)


def test_eight_concurrent_readers_read_the_origin_once(
    cluster: Mesh, origin_proxy: CountingProxy
) -> None:
    data = FILES["model/weights.bin"]
    env = {**os.environ, "RESERVOIR_MASTER": cluster.address}
    readers = [
        subprocess.Popen(
            [sys.executable, "-m", "reservoir", "cat", "ds/model/weights.bin"],
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(8)
    ]
    outputs = [r.communicate(timeout=120)[0] for r in readers]
    assert [r.returncode for r in readers] == [0] * 8
    assert all(sha(out) == sha(data) for out in outputs)
    assert origin_proxy.body_bytes <= 1.05 * len(data)
    with cluster.client() as client:
        wait_until(
            lambda: client.dataset("ds").origin_bytes_read == origin_proxy.body_bytes,
            10,
            "the workers' origin counts",
        )


def test_a_worker_killed_mid_read_does_not_change_the_bytes(cluster: Mesh) -> None:
    data = FILES["model/weights.bin"]
    small_steps = ReaderConfig(segment_size=256 * 1024, window=1, threads=1)
    with (
        cluster.client() as client,
        client.open("ds", "model/weights.bin", config=small_steps) as f,
    ):
        first = f.read(MiB + 100)
        by_address = {w.address: w for w in cluster.workers}
        victim = by_address[locations(cluster, "model/weights.bin").blocks[-1].fillers[0]]
        victim.kill()
        rest = f.read()
    assert sha(first + rest) == sha(data)


def test_a_changed_origin_object_is_a_failed_precondition(
    cluster: Mesh, s3_server: MotoServer, s3_bucket: str
) -> None:
    s3_server.put(s3_bucket, "small.txt", b"changed")
    with cluster.client() as client:
        with pytest.raises(FailedPrecondition, match="reservoir dataset sync"):
            client.read("ds", "small.txt")
        client.sync_dataset("ds")
        assert client.read("ds", "small.txt") == b"changed"


def test_load_caches_the_dataset_and_the_job_outlives_the_command(
    cluster: Mesh, origin_proxy: CountingProxy
) -> None:
    loaded = run_cli("--json", "load", "ds", "--wait", master=cluster.address, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    job = json.loads(loaded.stdout)
    total = sum(len(d) for d in FILES.values())
    assert (job["state"], job["loaded_bytes"], job["total_bytes"]) == ("Succeeded", total, total)
    assert job["total_blocks"] == 0 + 1 + 1 + 7
    again = run_cli("job", job["id"], master=cluster.address)
    assert again.returncode == 0 and "Succeeded" in again.stdout
    assert origin_proxy.body_bytes == total
    with cluster.client() as client:
        wait_until(lambda: client.dataset("ds").cached_percent == 100.0, 10, "block reports")
        origin_proxy.reset()
        assert sha(client.read("ds", "model/weights.bin")) == sha(FILES["model/weights.bin"])
    assert origin_proxy.body_bytes == 0


def test_load_of_a_path_and_bad_paths(cluster: Mesh) -> None:
    with cluster.client() as client:
        job = client.wait_for_load(client.load("ds", ["model"]).id)
        assert (job.state, job.total_bytes) == ("Succeeded", len(FILES["model/weights.bin"]))
    plain = run_cli("load", "ds/small.txt", "--wait", master=cluster.address, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert "Succeeded (1/1 blocks" in plain.stdout
    assert "Succeeded" not in plain.stderr  # progress there (not a terminal); the result once
    missing = run_cli("load", "ds", "no/such/dir", master=cluster.address)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
    unknown = run_cli("job", "nope", master=cluster.address)
    assert unknown.returncode == 1 and "no load job 'nope'" in unknown.stderr


def test_a_repeated_start_with_the_same_request_id_answers_the_first_job(cluster: Mesh) -> None:
    with cluster.client() as client:
        first = client.load("ds", ["model"], request_id="warm/2026-11-22T06:00:00Z")
        again = client.load("ds", ["model"], request_id="warm/2026-11-22T06:00:00Z")
        assert (again.id, again.started_ms) == (first.id, first.started_ms)
        other = client.load("ds", ["model"], request_id="warm/2026-11-22T07:00:00Z")
        assert other.id != first.id
        assert client.load("ds", ["model"]).id not in (first.id, other.id)
        for job in (first, other):
            assert client.wait_for_load(job.id).state == "Succeeded"


def test_fsspec_and_pandas_read_reservoir_urls(
    cluster: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESERVOIR_MASTER", cluster.address)
    with fsspec.open("reservoir://ds/small.txt", "rb") as f:
        assert f.read() == FILES["small.txt"]
    import pandas  # in the dev extra

    frame = pandas.read_csv("reservoir://ds/small.txt")
    assert list(frame.columns) == ["id", "label"] and len(frame) == 2000


def test_the_workers_command_shows_tiers_in_use(cluster: Mesh) -> None:
    with Client(cluster.address) as client:
        client.read("ds", "model/weights.bin")
        wait_until(
            lambda: (
                sum(t.used_bytes for w in client.workers() for t in w.tiers if t.name == "MEM") > 0
            ),
            15,
            "heartbeats with use",
        )
    shown = run_cli("workers", master=cluster.address)
    assert "MEM (used/capacity)" in shown.stdout
