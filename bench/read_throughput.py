"""Read throughput of Reservoir against the bare transports under it, in the same run.

    python bench/read_throughput.py [--size 256MiB] [--runs 3] [--quick]

What is measured (GB/s, 1 GB = 10^9 bytes; each figure is the median of --runs runs,
with the min-max spread; ratios are taken between medians):

1. Warm: a sequential read of one file through `reservoir.client` (open, then
   `readinto` of a reused 8 MiB buffer to the end) once every block is cached in the
   workers' memory, against a bare grpcio stream of the same bytes: a separate
   grpc.aio server process (bench/bare_stream_server.py) that serves WorkerService.
   ReadBlock from memory in 1 MiB messages as a worker does, read by a synchronous
   grpcio stub (the client's 64 MiB message options) one ReadBlock call per block, in
   order, each message copied into an 8 MiB buffer. Target: Reservoir >= 80% of it.
2. Cold: the whole file read through Reservoir under a fresh dataset name (nothing
   cached: the workers fill every block from S3 while streaming it), against a direct
   GET of the same object from the same S3 server, streamed and copied into an 8 MiB
   buffer. Both obstore and boto3 are measured; the faster is the baseline. Target:
   Reservoir >= 90% of it. Also reported: bytes read from the origin / file size.

Why the baselines are fair: each moves the same bytes over the same loopback between
separate processes and ends with them in the caller's buffer, as the Reservoir read
does; each is warmed up first (connections open, server code hot, the object in the
page cache) and checked once against the file's sha256. The bare server does no more
per message than a worker must (slice, wrap, send), the bare client no more than a
reader must (receive, copy), so the gap is Reservoir's own cost: interceptors, block
store, fills, read-ahead threads. Warm runs alternate which read goes first; after a
cold read the benchmark waits until the workers have stored and reported its blocks
(memory and disk tiers, as `reservoir up` configures them), so that work does not
slow the next measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import harness
import numpy as np
import obstore
from harness import Figure, Reader, Sink, gbps, timed
from obstore.store import S3Store

from reservoir.client import Client
from reservoir.rpc.server import CHANNEL_OPTIONS
from reservoir.units import format_size, parse_size
from reservoir.v1 import types_pb2, worker_pb2, worker_pb2_grpc

MiB = 1024 * 1024
BUFFER = harness.BUFFER
BLOCK = 64 * MiB  # Reservoir's default block size
BUCKET, PREFIX, NAME = "reservoir-bench", "data", "file.bin"
KEY = f"{PREFIX}/{NAME}"
SETTLE_TIMEOUT = 120.0
RESULTS = Path(__file__).resolve().parent / "results"


def through_reservoir(client: Client, dataset: str) -> Reader:
    def read(sink: Sink) -> None:
        with client.open(dataset, NAME) as f:
            while n := f.readinto(sink.buffer):
                sink.landed(n)

    return read


def bare_stream(stub: worker_pb2_grpc.WorkerServiceStub, size: int) -> Reader:
    def messages() -> Iterator[bytes]:
        for index in range(-(-size // BLOCK)):
            key = types_pb2.BlockKey(dataset="bare", path=NAME, index=index)
            for message in stub.ReadBlock(worker_pb2.ReadBlockRequest(block=key)):
                yield message.data

    return lambda sink: sink.put(messages())


def direct_get(kind: str, store: S3Store, s3: Any) -> Reader:
    if kind == "obstore":
        return lambda sink: sink.put(obstore.get(store, KEY).stream(min_chunk_size=BUFFER))
    return lambda sink: sink.put(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].iter_chunks(BUFFER))


def settle(client: Client, dataset: str, size: int) -> float:
    """Wait until the workers have stored and reported every block; origin bytes / size."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (info := client.dataset(dataset)).cached_bytes < size:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{dataset}: {info.cached_bytes} of {size} bytes cached")
        time.sleep(0.1)
    return info.origin_bytes_read / size


def measure(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    size, runs = args.size, args.runs
    data = np.random.default_rng(args.seed).bytes(size)
    sha = hashlib.sha256(data).hexdigest()
    (work / NAME).write_bytes(data)
    say("starting the S3 server, the bare stream server and `reservoir up` ...")
    s3server = harness.start_s3(stack, work, BUCKET)
    s3 = harness.s3_client(s3server.endpoint)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)
    del data
    bare = harness.start_bare_server(stack, work, work / NAME, BLOCK)
    channel = stack.enter_context(grpc.insecure_channel(bare, options=CHANNEL_OPTIONS))
    stub = worker_pb2_grpc.WorkerServiceStub(channel)
    client = stack.enter_context(Client(harness.start_reservoir(stack, work, args.workers)))
    opts, mount = s3server.options(), f"s3://{BUCKET}/{PREFIX}"
    store = S3Store(BUCKET, config=opts, client_options={"allow_http": True})  # type: ignore[arg-type]

    say("warm: filling the cache, then a checked read of each (not timed) ...")
    client.create_dataset("warm", mount, opts, block_size=BLOCK)
    timed(through_reservoir(client, "warm"), size, sha)  # a cold read, checked
    settle(client, "warm", size)
    readers = {"reservoir": through_reservoir(client, "warm"), "bare": bare_stream(stub, size)}
    for read in readers.values():
        timed(read, size, sha)
    warm: dict[str, list[float]] = {name: [] for name in readers}
    for i in range(runs):
        for name in sorted(readers, reverse=i % 2 == 1):  # alternate which goes first
            warm[name].append(timed(readers[name], size))
        progress(f"warm run {i + 1}", size, warm)

    say("cold: a fresh dataset per run, and direct GETs ...")
    directs = {kind: direct_get(kind, store, s3) for kind in ("obstore", "boto3")}
    for read in directs.values():
        timed(read, size, sha)
    cold: dict[str, list[float]] = {name: [] for name in [*directs, "reservoir"]}
    origin: list[float] = []
    for i in range(runs):
        for name, read in directs.items():
            cold[name].append(timed(read, size))
        client.create_dataset(f"cold-{i}", mount, opts, block_size=BLOCK)
        cold["reservoir"].append(timed(through_reservoir(client, f"cold-{i}"), size))
        origin.append(settle(client, f"cold-{i}", size))
        progress(f"cold run {i + 1}", size, cold)

    figures = {f"warm_{k}": gbps(size, v) for k, v in warm.items()}
    figures |= {f"cold_{k}": gbps(size, v) for k, v in cold.items()}
    figures["origin_bytes_per_file_byte"] = Figure(tuple(origin))
    direct = max(directs, key=lambda k: figures[f"cold_{k}"].median)
    return {
        "cores": os.cpu_count(), "size": size, "runs": runs, "workers": args.workers,
        "s3_server": s3server.kind, "s3_note": s3server.note, "direct_get": direct,
        "warm_ratio": figures["warm_reservoir"].median / figures["warm_bare"].median,
        "cold_ratio": figures["cold_reservoir"].median / figures[f"cold_{direct}"].median,
        "figures": figures,
    }  # fmt: skip


def table(r: dict[str, Any]) -> str:
    f: dict[str, Figure] = r["figures"]
    direct = r["direct_get"]
    other = "boto3" if direct == "obstore" else "obstore"
    note = f" ({r['s3_note']})" if r["s3_note"] else ""
    runs = f"{r['runs']} run" + ("s" if r["runs"] > 1 else "")

    def verdict(ratio: float, target: float) -> str:
        return f"{ratio:.0%} | >= {target:.0%}: {'met' if ratio >= target else 'MISSED'}"

    return "\n".join([
        f"Read throughput: {r['cores']} cores, file {format_size(r['size'])}, {runs}, "
        f"{r['workers']} workers, S3 server {r['s3_server']}{note}.",
        "GB/s (10^9 B/s): median (min-max) of the runs; ratios of the medians.",
        "",
        "| read | Reservoir GB/s | baseline | baseline GB/s | ratio | target |",
        "|---|---|---|---|---|---|",
        f"| warm, sequential | {f['warm_reservoir'].show()} | bare grpcio stream | "
        f"{f['warm_bare'].show()} | {verdict(r['warm_ratio'], 0.8)} |",
        f"| cold, whole file | {f['cold_reservoir'].show()} | direct S3 GET ({direct}) | "
        f"{f[f'cold_{direct}'].show()} | {verdict(r['cold_ratio'], 0.9)} |",
        "",
        f"Cold read through Reservoir: origin bytes / file size = "
        f"{f['origin_bytes_per_file_byte'].show(3)}.",
        f"Direct GET with {other}: {f[f'cold_{other}'].show()} GB/s ({direct} was faster).",
    ])  # fmt: skip


def progress(label: str, size: int, seconds: dict[str, list[float]]) -> None:
    say(
        f"  {label}: " + ", ".join(f"{k} {size / v[-1] / 1e9:.2f} GB/s" for k, v in seconds.items())
    )


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, help="file size (default 256MiB; 64MiB quick)")
    parser.add_argument("--runs", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="64MiB, 1 run: under a minute")
    parser.add_argument("--workers", type=int, default=2, help="workers of `reservoir up`")
    parser.add_argument("--seed", type=int, default=20240601, help="of the generated file")
    args = parser.parse_args()
    args.size = args.size or (64 * MiB if args.quick else 256 * MiB)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1 or args.workers < 1:
        parser.error("--runs and --workers must be at least 1")
    harness.stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="reservoir-bench-") as tmp, ExitStack() as stack:
        try:
            result = measure(args, Path(tmp), stack)
        except KeyboardInterrupt:
            say("interrupted: stopping everything the benchmark started")
            return 130
    text = table(result)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "read_throughput.md").write_text(text + "\n")
    result["figures"] = {k: v.as_json() for k, v in result["figures"].items()}
    (RESULTS / "read_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
