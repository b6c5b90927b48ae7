"""The client's read path against doubles of the master and workers on real sockets:
bytes, seeks, read-ahead, retries across workers, and the errors a caller sees."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reservoir import cli
from reservoir.client import Client
from reservoir.client.reader import ReaderConfig, ReservoirFile
from reservoir.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from reservoir.processes import free_port
from reservoir.rpc.channels import WorkerChannels
from tests.client.doubles import Fault, Mesh

KiB = 1024
BLOCK = 1024 * KiB
# Small pieces so that a few MiB exercise many segments, blocks and calls.
CONFIG = ReaderConfig(
    segment_size=256 * KiB, window=4, threads=3, random_min=32 * KiB, rpc_timeout=5.0
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    mesh = Mesh(block_size=BLOCK)
    yield mesh
    mesh.stop()


@pytest.fixture
def client(mesh: Mesh) -> Iterator[Client]:
    with Client(mesh.master_address) as client:
        yield client


def open_(client: Client, path: str, config: ReaderConfig = CONFIG) -> ReservoirFile:
    return client.open("ds", path, config=config)


# -- bytes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, 256 * KiB, BLOCK, BLOCK + 1, 3 * BLOCK + 12345],
    ids=["empty", "1B", "small", "segment", "block", "block+1", "blocks+tail"],
)
def test_whole_file_bytes_equal_the_origin(mesh: Mesh, client: Client, size: int) -> None:
    mesh.worker()
    mesh.worker()
    data = mesh.store.add("ds", "dir/file.bin", payload(size, seed=size))
    with open_(client, "dir/file.bin") as f:
        assert (f.size, f.version, f.name) == (size, "v1", "reservoir://ds/dir/file.bin")
        assert sha(f.read()) == sha(data)
        assert f.read() == b""
    assert sha(client.read("ds", "dir/file.bin")) == sha(data)  # default config


def test_chunked_sequential_reads_and_readinto(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    data = mesh.store.add("ds", "f", payload(2 * BLOCK + 777))
    for step in (1000, 64 * KiB, 300 * KiB):
        with open_(client, "f") as f:
            parts = []
            while chunk := f.read(step):
                parts.append(chunk)
            assert sha(b"".join(parts)) == sha(data)
        with open_(client, "f") as f:
            buffer = bytearray(step)
            out = io.BytesIO()
            while n := f.readinto(buffer):
                out.write(buffer[:n])
            assert sha(out.getvalue()) == sha(data)


def test_block_size_not_a_multiple_of_the_segment(mesh: Mesh) -> None:
    mesh.worker()
    data = mesh.store.add("ds", "f", payload(3 * BLOCK + 5))
    odd = ReaderConfig(segment_size=300 * KiB, window=3, threads=2, random_min=10 * KiB)
    with Client(mesh.master_address) as client, client.open("ds", "f", config=odd) as f:
        assert sha(f.read()) == sha(data)
    # No call crossed a block: offsets and lengths stay inside one block.
    assert all(off + length <= BLOCK for _, _, off, length in mesh.workers[0].requests)


def test_random_seeks_and_reads_match_a_local_copy(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.worker()
    data = mesh.store.add("ds", "f", payload(3 * BLOCK + 4321))
    local = io.BytesIO(data)
    rnd = random.Random(42)
    with open_(client, "f") as f:
        for _ in range(400):
            op = rnd.random()
            if op < 0.35:
                target = rnd.choice([0, len(data), rnd.randrange(len(data) + 100)])
                whence = rnd.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
                offset = {
                    io.SEEK_SET: target,
                    io.SEEK_CUR: target - local.tell(),
                    io.SEEK_END: target - len(data),
                }[whence]
                assert f.seek(offset, whence) == local.seek(offset, whence)
            elif op < 0.75:
                n = rnd.choice([-1, 0, 1, 17, 4096, 100_000, 600 * KiB, 2 * BLOCK])
                assert f.read(n) == local.read(n)
            elif op < 0.9:
                buffer = bytearray(rnd.randrange(1, 200_000))
                expected = bytearray(len(buffer))
                assert f.readinto(buffer) == local.readinto(expected)
                assert buffer == expected
            else:
                n = rnd.randrange(1, 50_000)
                got = f.read1(n)
                assert got == local.read(len(got)) and len(got) <= n
                assert got or local.tell() >= len(data)
            assert f.tell() == local.tell()


def test_readline_and_iteration(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    lines = [f"line {i} {'x' * (i % 300)}\n".encode() for i in range(20_000)]
    data = mesh.store.add("ds", "t.txt", b"".join(lines) + b"no newline at the end")
    with open_(client, "t.txt") as f:
        assert f.readline() == lines[0]
        assert f.readline(3) == lines[1][:3]
        assert f.readline() == lines[1][3:]
        rest = list(f)
    assert rest == [*lines[2:], b"no newline at the end"]
    with open_(client, "t.txt") as f, io.TextIOWrapper(f, encoding="utf-8") as text:
        assert text.read() == data.decode()


# -- positions and bad input ------------------------------------------------------


def test_eof_and_seeking_past_it(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", b"0123456789")
    with open_(client, "f") as f:
        assert f.seek(-3, io.SEEK_END) == 7
        assert f.read(100) == b"789"
        assert f.read(100) == b"" and f.read() == b""
        assert f.seek(50) == 50 and f.tell() == 50
        assert f.read() == b"" and f.readinto(bytearray(4)) == 0
        assert f.seek(-48, io.SEEK_CUR) == 2 and f.read(2) == b"23"
        assert f.readable() and f.seekable() and not f.writable()


def test_negative_seek_is_invalid_argument_not_value_error(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", b"abc")
    with open_(client, "f") as f:
        for offset, whence in [(-1, io.SEEK_SET), (-4, io.SEEK_END), (-1, io.SEEK_CUR)]:
            with pytest.raises(InvalidArgument) as caught:
                f.seek(offset, whence)
            assert not isinstance(caught.value, ValueError)
        with pytest.raises(InvalidArgument):
            f.seek(0, 7)
        assert f.tell() == 0 and f.read() == b"abc"


def test_closed_file_and_unknown_file(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", b"abc")
    f = open_(client, "f")
    f.close()
    f.close()  # twice is fine
    with pytest.raises(ValueError, match="closed file"):
        f.read()
    with pytest.raises(NotFound, match="no such file"):
        open_(client, "missing")
    with pytest.raises(InvalidArgument, match="leaves the dataset's root"):
        open_(client, "../f")


# -- read-ahead and memory --------------------------------------------------------


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


CHUNK = 64 * KiB  # what a FakeWorker sends per message
# What streams may hold ahead of the reader: the window, and a chunk each past it.
STREAMED = CONFIG.window * CONFIG.segment_size + CONFIG.threads * CHUNK


def test_sequential_reads_stream_one_call_per_block(mesh: Mesh, client: Client) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(4 * BLOCK))
    whole = [("f", index, 0, BLOCK) for index in range(4)]
    with open_(client, "f") as f:
        parts = [f.read(64 * KiB) for _ in range(12)]  # three segments of block 0
        # The read-ahead has grown to a block: the next block's call is open.
        wait_for(lambda: len(worker.requests) >= 2)
        assert worker.requests == whole[:2]
        assert f._held() <= STREAMED
        while f.tell() < BLOCK + 64 * KiB:  # into block 1: block 2 starts, not block 3
            parts.append(f.read(64 * KiB))
        wait_for(lambda: len(worker.requests) >= 3)
        time.sleep(0.1)
        assert worker.requests == whole[:3]
        while chunk := f.read(100 * KiB):
            parts.append(chunk)
            assert f._held() <= STREAMED
            assert len(f._pieces) <= 3  # this block's stream, the next, a finished one
    assert sha(b"".join(parts)) == sha(data)
    assert worker.requests == whole


def test_read_ahead_beyond_the_calls_open_asks_workers_to_cache(mesh: Mesh) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(3 * BLOCK))
    config = ReaderConfig(segment_size=256 * KiB, window=4, threads=1, random_min=32 * KiB)
    with Client(mesh.master_address) as client, client.open("ds", "f", config=config) as f:
        parts = [f.read(64 * KiB) for _ in range(12)]  # three segments of block 0
        # The read-ahead reaches block 1: its worker is asked to cache it (a cold
        # block's fill starts), but its bytes are not streamed yet.
        wait_for(lambda: worker.cache_requests == [("f", 1)])
        assert worker.requests == [("f", 0, 0, BLOCK)]
        parts.append(f.read())
    assert sha(b"".join(parts)) == sha(data)
    assert worker.requests == [("f", index, 0, BLOCK) for index in range(3)]
    assert worker.cache_requests == [("f", 1), ("f", 2)]  # one each, never block 0


def test_the_reader_takes_chunks_as_they_arrive(mesh: Mesh, client: Client) -> None:
    worker, _ = mesh.worker()
    worker.fault = Fault(stall=0.05, after=1 << 40)  # a block takes 16 x 50 ms
    data = mesh.store.add("ds", "f", payload(BLOCK))
    with open_(client, "f") as f:
        began = time.monotonic()
        assert f.read(CHUNK) == data[:CHUNK]
        assert time.monotonic() - began < 0.5  # not the whole block's 0.8 s
        assert f.read() == data[CHUNK:]
    assert worker.requests == [("f", 0, 0, BLOCK)]


def test_a_header_read_does_not_pull_the_whole_window(mesh: Mesh, client: Client) -> None:
    worker, _ = mesh.worker()
    mesh.store.add("ds", "f", payload(4 * BLOCK))
    with open_(client, "f") as f:
        f.read(100)
        time.sleep(0.2)
        assert worker.requests == [("f", 0, 0, BLOCK)]  # one stream, for this block
        # It stops receiving a segment (and a chunk) ahead of the reader.
        assert f._held() <= CONFIG.segment_size + CHUNK


def test_between_reads_the_read_ahead_is_received(mesh: Mesh, client: Client) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(4 * BLOCK))
    segment = CONFIG.segment_size
    with open_(client, "f") as f:
        assert f.read(100) == data[:100]
        # While the caller is away, the prefetch thread receives up to the limit...
        wait_for(lambda: f._held() >= segment - 100)
        time.sleep(0.1)
        assert f._held() <= segment + CHUNK
        # ... where the next read finds it, and receives the rest itself.
        assert f.read(2 * segment) == data[100 : 100 + 2 * segment]
        assert [r for r in worker.requests if r[1] == 0] == [("f", 0, 0, BLOCK)]
    wait_for(lambda: f._prefetcher is None)  # closed: the thread has ended


def test_a_paused_reader_outlives_the_call_deadline(mesh: Mesh) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(2 * BLOCK))
    config = ReaderConfig(segment_size=128 * KiB, window=1, threads=1, rpc_timeout=0.3)
    with Client(mesh.master_address) as client, client.open("ds", "f", config=config) as f:
        head = f.read(100)
        time.sleep(0.8)  # the stream waits for the reader past its deadline
        assert sha(head + f.read()) == sha(data)
        assert f._suspects == {}  # the worker was not counted as failed
    # It went on at the same worker from the byte reached, without the master.
    assert len(worker.requests) >= 3 and worker.requests[1][:2] == ("f", 0)
    assert 0 < worker.requests[1][2] < BLOCK
    assert mesh.master.locate_calls == 1


def test_random_reads_fetch_only_what_they_need(mesh: Mesh, client: Client) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(4 * BLOCK))
    with open_(client, "f") as f:
        f.seek(-8, io.SEEK_END)  # a parquet footer, then its metadata
        assert f.read(8) == data[-8:]
        f.seek(BLOCK + 1000)
        assert f.read(100) == data[BLOCK + 1000 : BLOCK + 1100]
        f.seek(2 * BLOCK + 5)
        assert f.read(100_000) == data[2 * BLOCK + 5 : 2 * BLOCK + 100_005]
        time.sleep(0.2)
        assert sorted(worker.requests) == [
            ("f", 1, 1000, CONFIG.random_min),
            ("f", 2, 5, 100_000),
            ("f", 3, BLOCK - 8, 8),
        ]
        f.seek(BLOCK + 1100)  # nearby: already here, no call
        assert f.read(1000) == data[BLOCK + 1100 : BLOCK + 2100]
        assert len(worker.requests) == 3


def test_a_seek_away_stops_the_streams_and_sequential_reads_resume_them(
    mesh: Mesh, client: Client
) -> None:
    worker, _ = mesh.worker()
    data = mesh.store.add("ds", "f", payload(4 * BLOCK))
    with open_(client, "f") as f:
        assert f.read(600 * KiB) == data[: 600 * KiB]
        streams = [p for p in f._pieces.values() if not p.keep]
        assert streams
        f.seek(3 * BLOCK + 10)  # away: a random read
        assert f.read(10) == data[3 * BLOCK + 10 : 3 * BLOCK + 20]
        assert all(p.abandoned for p in streams)
        assert all(p.keep for p in f._pieces.values())
        requests = len(worker.requests)
        # Going on from there is sequential again: one stream to the block's end.
        assert f.read(200 * KiB) == data[3 * BLOCK + 20 : 3 * BLOCK + 20 + 200 * KiB]
        assert worker.requests[requests:] == [
            ("f", 3, 10 + CONFIG.random_min, BLOCK - 10 - CONFIG.random_min)
        ]
        # A seek forward into bytes the stream holds goes on streaming: no call.
        wait_for(
            lambda: f._pieces and max(p.received for p in f._pieces.values()) > f.tell() + 100 * KiB
        )
        f.seek(50 * KiB, io.SEEK_CUR)
        assert f.read(10 * KiB) == data[f.tell() - 10 * KiB : f.tell()]
        assert len(worker.requests) == requests + 1


def test_memory_is_bounded_by_the_window(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", payload(6 * BLOCK))
    rnd = random.Random(7)
    bound = (2 * CONFIG.window + 2) * CONFIG.segment_size + (CONFIG.window + 2) * CHUNK
    with open_(client, "f") as f:
        for _ in range(200):
            if rnd.random() < 0.3:
                f.seek(rnd.randrange(f.size))
            f.read(rnd.randrange(1, 300 * KiB))
            assert len(f._pieces) <= CONFIG.window + 2
            assert f._held() <= bound


def test_closing_stops_the_streams(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", payload(4 * BLOCK))
    f = open_(client, "f")
    f.read(100)  # a call is open, and the prefetch thread receives it
    pieces = list(f._pieces.values())
    assert pieces and f._prefetcher is not None
    f.close()
    assert all(p.abandoned for p in pieces)
    wait_for(lambda: all(p.done and p.call is None for p in pieces))  # calls ended
    wait_for(lambda: f._prefetcher is None)


# -- failures ---------------------------------------------------------------------


def holders_first(mesh: Mesh, holders: list[str], fillers: list[str]) -> None:
    mesh.master.placement = lambda path, index, calls: (holders, fillers)


def test_a_worker_failing_mid_stream_is_resumed_on_the_next(mesh: Mesh, client: Client) -> None:
    bad, bad_address = mesh.worker()
    good, good_address = mesh.worker()
    holders_first(mesh, [bad_address], [good_address])
    bad.fault = Fault(grpc.StatusCode.UNAVAILABLE, after=128 * KiB)
    data = mesh.store.add("ds", "f", payload(3 * BLOCK + 999))
    with open_(client, "f") as f:
        assert sha(f.read()) == sha(data)
    # The next worker was asked only for the bytes the first one had not sent.
    assert ("f", 0, 128 * KiB, BLOCK - 128 * KiB) in good.requests
    assert good.bytes_asked() < len(data)
    assert mesh.master.locate_calls == 1


def test_a_killed_worker_is_replaced_during_the_read(mesh: Mesh, client: Client) -> None:
    slow, slow_address = mesh.worker()
    good, good_address = mesh.worker()
    holders_first(mesh, [slow_address], [good_address])
    slow.fault = Fault(stall=0.02, after=1 << 40)  # streams, slowly
    data = mesh.store.add("ds", "f", payload(2 * BLOCK))
    with open_(client, "f") as f:
        head = f.read(100 * KiB)  # read-ahead is now streaming from the slow worker
        mesh.kill(slow_address)
        assert sha(head + f.read()) == sha(data)
    assert slow.requests and good.requests, "the read started on one worker, ended on the other"


@pytest.mark.parametrize(
    "fault",
    [
        Fault(grpc.StatusCode.NOT_FOUND),
        Fault(grpc.StatusCode.INTERNAL, after=64 * KiB),
        Fault(short=True, after=64 * KiB),
        Fault(stall=1.0, after=1 << 40),  # past the call's deadline
    ],
    ids=["not-found", "internal", "short-stream", "deadline"],
)
def test_worker_faults_fall_through_to_the_next(mesh: Mesh, fault: Fault) -> None:
    bad, bad_address = mesh.worker()
    _, good_address = mesh.worker()
    holders_first(mesh, [bad_address], [good_address])
    bad.fault = fault
    data = mesh.store.add("ds", "f", payload(BLOCK + 4321))
    config = ReaderConfig(segment_size=256 * KiB, window=2, threads=2, rpc_timeout=0.5)
    with Client(mesh.master_address) as client, client.open("ds", "f", config=config) as f:
        assert sha(f.read()) == sha(data)


def test_a_dead_worker_is_tried_last_for_later_pieces(mesh: Mesh, client: Client) -> None:
    _, good_address = mesh.worker()
    dead_address = f"127.0.0.1:{free_port()}"  # nobody listens
    holders_first(mesh, [dead_address], [good_address])
    data = mesh.store.add("ds", "f", payload(4 * BLOCK))
    with open_(client, "f") as f:
        assert sha(f.read()) == sha(data)
        assert f._candidates(3) == [good_address, dead_address]


def test_all_candidates_failing_is_unavailable_naming_them(mesh: Mesh, client: Client) -> None:
    a, a_address = mesh.worker()
    b, b_address = mesh.worker()
    a.fault = Fault(grpc.StatusCode.UNAVAILABLE)
    b.fault = Fault(grpc.StatusCode.UNAVAILABLE, after=64 * KiB)
    mesh.store.add("ds", "f", payload(BLOCK))
    with open_(client, "f") as f:
        with pytest.raises(Unavailable) as caught:
            f.read()
        assert f.tell() == 0  # a failed read moves nothing
    message = str(caught.value)
    assert a_address in message and b_address in message and "ds/f" in message
    assert mesh.master.locate_calls == 2  # at open, and once more before giving up


def test_fresh_locations_from_the_master_rescue_the_read(mesh: Mesh, client: Client) -> None:
    _, good_address = mesh.worker()
    dead_address = f"127.0.0.1:{free_port()}"
    # At open the master knows only a dead worker; asked again, it names a live one.
    mesh.master.placement = lambda path, index, calls: (
        ([dead_address], []) if calls == 1 else ([], [good_address])
    )
    data = mesh.store.add("ds", "f", payload(2 * BLOCK + 10))
    with open_(client, "f") as f:
        assert sha(f.read()) == sha(data)
    assert mesh.master.locate_calls == 2  # once for all the pieces that failed


def test_no_live_worker_is_unavailable(mesh: Mesh, client: Client) -> None:
    mesh.store.add("ds", "f", b"abc")
    with open_(client, "f") as f, pytest.raises(Unavailable, match="no live worker"):
        f.read()


def test_failed_precondition_passes_through_at_once(mesh: Mesh, client: Client) -> None:
    _, a_address = mesh.worker()
    b, b_address = mesh.worker()
    holders_first(mesh, [a_address], [b_address])
    mesh.store.add("ds", "f", payload(BLOCK))
    with open_(client, "f") as f:
        mesh.store.add("ds", "f", payload(BLOCK, seed=1), version="v2")  # changed at origin
        with pytest.raises(FailedPrecondition, match="reservoir dataset sync"):
            f.read(10)
    assert b.requests == []  # no other worker was asked


def test_a_file_changed_at_the_master_is_failed_precondition(mesh: Mesh, client: Client) -> None:
    a, _ = mesh.worker()
    a.fault = Fault(grpc.StatusCode.UNAVAILABLE)
    mesh.store.add("ds", "f", payload(BLOCK))
    with open_(client, "f") as f:
        mesh.store.add("ds", "f", payload(BLOCK, seed=1), version="v2")  # a sync happened
        with pytest.raises(FailedPrecondition, match="changed while it was read"):
            f.read()


def test_concurrent_readers_of_one_file(mesh: Mesh, client: Client) -> None:
    for _ in range(3):
        mesh.worker()
    data = mesh.store.add("ds", "f", payload(3 * BLOCK + 1))
    digests: list[str] = []

    def read() -> None:
        with open_(client, "f") as f:
            digests.append(sha(f.read()))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert digests == [sha(data)] * 6


def test_a_forked_child_reads_on_with_its_own_threads(mesh: Mesh, client: Client) -> None:
    mesh.worker()
    data = mesh.store.add("ds", "f", payload(3 * BLOCK))
    with open_(client, "f") as f:
        assert f.read(100_000) == data[:100_000]  # the parent's threads are at work
        pid = os.fork()
        if pid == 0:  # the child: a data loader's worker, say
            os._exit(0 if f.read() == data[100_000:] else 3)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(done[1]) == 0
        assert f.read() == data[100_000:]


def test_worker_channels_are_shared_per_address() -> None:
    channels = WorkerChannels()
    assert channels.stub("127.0.0.1:1") is channels.stub("127.0.0.1:1")
    assert channels.stub("127.0.0.1:1") is not channels.stub("127.0.0.1:2")
    channels.close()


def test_reader_config_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="window"):
        ReaderConfig(window=0)


# -- the client's walk ------------------------------------------------------------


def test_walk_is_like_os_walk(mesh: Mesh, client: Client) -> None:
    for path in ["a.txt", "sub/b.txt", "sub/deep/c.txt", "sub/deep/d.txt", "z/e.txt"]:
        mesh.store.add("ds", path, b"x")
    walked = list(client.walk("ds"))
    assert walked == [
        ("", ["sub", "z"], ["a.txt"]),
        ("sub", ["deep"], ["b.txt"]),
        ("sub/deep", [], ["c.txt", "d.txt"]),
        ("z", [], ["e.txt"]),
    ]
    pruned = []
    for dirpath, dirnames, _ in client.walk("ds", "/sub/"):
        pruned.append(dirpath)
        dirnames.clear()
    assert pruned == ["sub"]
    assert list(client.walk("ds", "a.txt")) == []
    with pytest.raises(NotFound):
        list(client.walk("ds", "nope"))


# -- the command line: cat and get --------------------------------------------------


def test_cat_writes_the_bytes_to_stdout(
    mesh: Mesh, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    mesh.worker()
    data = mesh.store.add("ds", "dir/f.bin", payload(BLOCK + 5) + b"\0\r\n\xff")
    assert cli.main(["--master", mesh.master_address, "cat", "ds/dir/f.bin"]) == 0
    out, err = capfdbinary.readouterr()
    assert sha(out) == sha(data) and err == b""


def test_get_to_a_file_and_into_a_directory(
    mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh.worker()
    data = mesh.store.add("ds", "dir/f.bin", payload(2 * BLOCK + 3))
    dest = tmp_path / "copy.bin"
    assert cli.main(["--master", mesh.master_address, "get", "ds/dir/f.bin", str(dest)]) == 0
    assert sha(dest.read_bytes()) == sha(data)
    out, err = capsys.readouterr()
    assert out.startswith(f"ds/dir/f.bin -> {dest}: 2.0 MiB") and err == ""  # no bar: no tty
    assert cli.main(["--master", mesh.master_address, "get", "ds/dir/f.bin", str(tmp_path)]) == 0
    assert sha((tmp_path / "f.bin").read_bytes()) == sha(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "f.bin"]


def test_a_failed_get_leaves_no_partial_file(
    mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker, _ = mesh.worker()
    worker.fault = Fault(grpc.StatusCode.UNAVAILABLE, after=64 * KiB)
    mesh.store.add("ds", "f", payload(2 * BLOCK))
    dest = tmp_path / "f"
    assert cli.main(["--master", mesh.master_address, "get", "ds/f", str(dest)]) == 1
    assert list(tmp_path.iterdir()) == []
    _, err = capsys.readouterr()
    assert err.startswith("reservoir: cannot read reservoir://ds/f") and err.count("\n") == 1
    missing_dir = tmp_path / "no" / "such"
    assert cli.main(["--master", mesh.master_address, "get", "ds/f", str(missing_dir)]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_get_shows_a_progress_bar_on_a_terminal(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh.worker()
    mesh.store.add("ds", "f", payload(BLOCK))
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert cli.main(["--master", mesh.master_address, "get", "ds/f", str(tmp_path / "f")]) == 0
    _, err = capsys.readouterr()
    assert "100.0%" in err and "1.0 MiB / 1.0 MiB" in err
