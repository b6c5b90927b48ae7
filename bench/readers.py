"""N reader processes that start together: the pods of a benchmark.

    python bench/readers.py < SPEC_JSON_LINE, then `go`

One launcher imports what the readers need, then forks N children (separate
processes, as pods are; forking after the imports keeps 32 Python start-ups out of
the run time, and no gRPC channel or obstore runtime exists before the fork). Each
child gets ready, then waits on a pipe. The launcher prints `ready`, waits for `go`
on stdin, releases all children at once (one write of N bytes), and prints one JSON
line per child: its monotonic start and end times, the bytes it read, their sha256
(hashed as they arrive, unless the spec says "digest": false), or, for metadata
kinds, the operations done.

Kinds (spec["kind"]):
- direct: ranged GETs of `block` bytes with obstore, the current block and `ahead`
  more in flight, as Reservoir's client streams one block while the next one's
  worker fills it from the origin;
- library: `reservoir.client` open + readinto of an 8 MiB buffer to the end;
- path: open + readinto of a file (a FUSE mount, or a local copy); `drop` first
  drops the file's pages from the kernel's page cache (posix_fadvise DONTNEED);
- bare: the bare grpcio stream (bench/bare_stream_server.py), one call per block,
  block i from server i mod the number of servers (one per worker), each message's
  data decoded as a view (reservoir.rpc.block_stream, as the library does);
- stat, ls, health: metadata calls to the master for `seconds` (health:
  grpc.health.v1 Check, the cheapest call the same server answers: the floor).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BUFFER = 8 * 1024 * 1024  # what a streaming reader hands to readinto


def read_direct(spec: dict[str, Any], sha: Any) -> int:
    import obstore
    from obstore.store import S3Store

    options = spec["options"]
    store = S3Store(spec["bucket"], config=options, client_options={"allow_http": True})
    size, block = spec["size"], spec["block"]
    starts = list(range(0, size, block))

    def get(start: int) -> Any:
        return obstore.get_range(store, spec["key"], start=start, end=min(start + block, size))

    total = 0
    with ThreadPoolExecutor(spec["ahead"] + 1) as pool:
        pending = [pool.submit(get, s) for s in starts[: spec["ahead"] + 1]]
        following = spec["ahead"] + 1
        while pending:
            data = pending.pop(0).result()
            if following < len(starts):
                pending.append(pool.submit(get, starts[following]))
                following += 1
            sha.update(data)
            total += len(memoryview(data))
    return total


def read_library(spec: dict[str, Any], sha: Any) -> int:
    from reservoir.client import Client

    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    total = 0
    with Client(spec["master"]) as client, client.open(spec["dataset"], spec["path"]) as f:
        while n := f.readinto(buffer):
            sha.update(view[:n])
            total += n
    return total


def read_path(spec: dict[str, Any], sha: Any) -> int:
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    total = 0
    with open(spec["path"], "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            sha.update(view[:n])
            total += n
    return total


def read_bare(spec: dict[str, Any], sha: Any) -> int:
    import grpc

    from reservoir.rpc import block_stream
    from reservoir.rpc.server import CHANNEL_OPTIONS
    from reservoir.v1 import types_pb2, worker_pb2

    total = 0
    channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in spec["addresses"]]
    calls = [block_stream.read_block(channel) for channel in channels]  # data as views
    buffer = bytearray(BUFFER)
    for index in range(-(-spec["size"] // spec["block"])):
        key = types_pb2.BlockKey(dataset="bare", path="file", index=index)
        call = calls[index % len(calls)]  # blocks spread over the servers, as over workers
        for data in call(worker_pb2.ReadBlockRequest(block=key)):
            n = len(data)
            buffer[:n] = data  # land it in the caller's buffer, as readinto does
            sha.update(memoryview(buffer)[:n])
            total += n
    for channel in channels:
        channel.close()
    return total


def metadata(spec: dict[str, Any], ready: Callable[[], None]) -> int:
    """Calls of `kind` for `seconds` after `ready()` (the release); their count."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from reservoir.client import Client

    rng = random.Random(os.getpid())
    client = Client(spec["master"])
    client.stat(spec["dataset"], spec["files"][0])  # connect before the clock starts
    channel = grpc.insecure_channel(spec["master"])
    health = health_pb2_grpc.HealthStub(channel)
    health.Check(health_pb2.HealthCheckRequest())
    ready()
    ops, stop_at = 0, time.monotonic() + spec["seconds"]
    while time.monotonic() < stop_at:
        if spec["kind"] == "stat":
            client.stat(spec["dataset"], rng.choice(spec["files"]))
        elif spec["kind"] == "ls":
            client.ls(spec["dataset"], rng.choice(spec["dirs"]))
        else:
            health.Check(health_pb2.HealthCheckRequest())
        ops += 1
    return ops


class NoDigest:
    """For timed reads of bytes checked before: sha256 runs at ~1.6 GB/s on a core
    here, below a page-cache read, so hashing would measure the hash."""

    def update(self, data: object) -> None:
        pass


READERS = {"direct": read_direct, "library": read_library, "path": read_path, "bare": read_bare}


def child(spec: dict[str, Any], ready_w: int, go_r: int, out_w: int) -> None:
    result: dict[str, Any] = {}
    start = 0.0

    def released() -> None:
        nonlocal start
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        start = time.monotonic()

    try:
        if spec["kind"] in READERS:
            if spec.get("drop"):
                fd = os.open(spec["path"], os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            digest = spec.get("digest", True)
            sha = hashlib.sha256() if digest else NoDigest()
            released()
            result["bytes"] = READERS[spec["kind"]](spec, sha)
            if digest:
                result["sha256"] = sha.hexdigest()
        else:
            result["ops"] = metadata(spec, released)
        result |= {"start": start, "end": time.monotonic()}
    except BaseException as exc:  # reported to the benchmark, which fails loudly
        if not start:
            os.write(ready_w, b"r")
        # Short enough for one atomic pipe write (PIPE_BUF, 4 KiB) among N children.
        error = f"{type(exc).__name__}: {exc}"[:500]
        result = {"error": error, "trace": traceback.format_exc()[-3000:]}
    os.write(out_w, (json.dumps(result) + "\n").encode())


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    from reservoir.processes import die_with_parent, tune_allocator

    tune_allocator()  # as the `reservoir` command does for itself
    if spec["kind"] == "direct":
        import obstore  # noqa: F401  (imported before the fork; its runtime starts after)
    else:
        import grpc  # noqa: F401

        import reservoir.client  # noqa: F401
    n = spec["n"]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                die_with_parent()  # a launcher killed outright takes its readers along
                child(spec, ready_w, go_r, out_w)
            finally:
                os._exit(0)
        pids.append(pid)
    for _ in range(n):
        os.read(ready_r, 1)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    os.write(go_w, b"g" * n)
    lines: list[str] = []
    with os.fdopen(out_r) as results:
        os.close(out_w)
        os.close(ready_w)
        while len(lines) < n and (line := results.readline()):
            lines.append(line)
    for pid in pids:
        os.waitpid(pid, 0)
    for line in lines:
        sys.stdout.write(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
