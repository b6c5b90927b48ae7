"""Helpers for the benchmarks in bench/: the processes they start, and their figures.

Every process starts in its own session and process group (so Ctrl-C in the terminal
reaches the benchmark only, which then stops them from its `finally`), and dies with
the benchmark if that is killed outright (PR_SET_PDEATHSIG, through setpriv). `stop`
sends SIGTERM to the process group, then SIGKILL if it has not exited in time. `reservoir up` stops
its own children (etcd, master, workers) on SIGTERM, and they die with it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import grpc
from botocore.config import Config

from reservoir.processes import dying_with_parent, free_port

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0  # reservoir up starts etcd, a master and workers on 2 cores
STOP_TIMEOUT = 15.0
S3_KEY = S3_SECRET = "S3RVER"  # what s3rver accepts; moto accepts anything


def spawn(stack: ExitStack, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start `argv` with output to `log`; `stack` stops it on the way out."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            dying_with_parent(argv),  # children die with the benchmark
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(stop, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT; at most once."""
    if process.poll() is not None:
        return  # reaped: its group id may belong to someone else by now
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the leader is not reaped yet: still our group
        try:
            process.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {START_TIMEOUT:.0f} s; see {log}")
        time.sleep(0.1)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` runs and stops what we started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


# -- the servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    kind: str  # "s3rver" or "moto"
    endpoint: str
    note: str = ""  # why a fallback was used

    def options(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "access_key_id": S3_KEY,
            "secret_access_key": S3_SECRET,
            "region": "us-east-1",
        }


def s3_client(endpoint: str) -> Any:
    """A boto3 client for the benchmark's S3 server (fails fast while it starts)."""
    config = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=60)
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
        region_name="us-east-1", config=config,
    )  # fmt: skip


def start_s3(stack: ExitStack, work: Path, bucket: str) -> S3Server:
    """s3rver (npm) serving `bucket`; moto if s3rver cannot start (the note says why)."""
    s3rver = ROOT / "node_modules" / ".bin" / "s3rver"
    note = ""
    if s3rver.exists():
        port, log = free_port(), work / "s3rver.log"
        argv = [str(s3rver), "-d", str(work / "s3rver"), "-a", HOST, "-p", str(port)]
        process = spawn(stack, [*argv, "--silent", "--configure-bucket", bucket], log)
        server = S3Server("s3rver", f"http://{HOST}:{port}")
        try:
            wait_for(lambda: answers(s3_client(server.endpoint), bucket), process, "s3rver", log)
            return server
        except RuntimeError as exc:
            stop(process)
            note = f"s3rver failed ({exc}); fell back to moto"
    else:
        note = "s3rver not installed (run `npm install`); fell back to moto"
    port, log = free_port(), work / "moto.log"
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    process = spawn(stack, argv, log)
    server = S3Server("moto", f"http://{HOST}:{port}", note)
    wait_for(lambda: answers(s3_client(server.endpoint), None), process, "moto", log)
    s3_client(server.endpoint).create_bucket(Bucket=bucket)
    return server


def answers(s3: Any, bucket: str | None) -> bool:
    try:
        if bucket:
            s3.head_bucket(Bucket=bucket)
        else:
            s3.list_buckets()
        return True
    except Exception:
        return False


def start_reservoir(stack: ExitStack, work: Path, workers: int) -> str:
    """`reservoir up` with `workers` workers; the master's address."""
    port, log = free_port(), work / "up.log"
    reservoir = Path(sys.executable).with_name("reservoir")
    argv = [str(reservoir), "up", "--workers", str(workers), "--port", str(port)]
    process = spawn(stack, [*argv, "--data-dir", str(work / "up")], log)
    wait_for(lambda: "reservoir is up" in log.read_text(), process, "reservoir up", log)
    return f"{HOST}:{port}"


def start_bare_server(stack: ExitStack, work: Path, data_file: Path, block_size: int) -> str:
    """bench/bare_stream_server.py serving `data_file`; its address."""
    port, log = free_port(), work / "bare.log"
    script = Path(__file__).with_name("bare_stream_server.py")
    argv = [sys.executable, str(script), "--file", str(data_file), "--port", str(port)]
    process = spawn(stack, [*argv, "--block-size", str(block_size)], log)
    address = f"{HOST}:{port}"
    wait_for(lambda: _grpc_ready(address), process, "the bare stream server", log)
    return address


def _grpc_ready(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=0.5)
            return True
        except grpc.FutureTimeoutError:
            return False


# -- measuring ----------------------------------------------------------------------------

BUFFER = 8 * 1024 * 1024  # what a streaming reader hands to readinto


class Sink:
    """Where a reader's bytes land: one reused buffer, as with readinto."""

    def __init__(self, digest: bool) -> None:
        self.buffer = bytearray(BUFFER)
        self.bytes = 0
        self.sha = hashlib.sha256() if digest else None

    def landed(self, n: int) -> None:
        self.bytes += n
        if self.sha:
            self.sha.update(memoryview(self.buffer)[:n])

    def put(self, chunks: Iterable[Any]) -> None:
        """Copy each chunk in (in BUFFER-sized pieces if it is larger)."""
        view = memoryview(self.buffer)
        for chunk in chunks:
            data = memoryview(chunk).cast("B")
            for at in range(0, len(data), BUFFER):
                piece = data[at : at + BUFFER]
                view[: len(piece)] = piece
                self.landed(len(piece))


Reader = Callable[[Sink], None]


def timed(read: Reader, size: int, sha: str | None = None) -> float:
    """Seconds `read` takes; checks the byte count, and the bytes if `sha` is given."""
    sink = Sink(digest=sha is not None)
    start = time.perf_counter()
    read(sink)
    seconds = time.perf_counter() - start
    if sink.bytes != size or (sink.sha and sink.sha.hexdigest() != sha):
        raise RuntimeError(f"read {sink.bytes} of {size} bytes, or the bytes differ")
    return seconds


def gbps(size: int, seconds: Sequence[float]) -> Figure:
    """Throughputs in GB/s (10^9 bytes per second) of reads of `size` bytes."""
    return Figure(tuple(size / s / 1e9 for s in seconds))


@dataclass(frozen=True)
class Figure:
    """Repeated measurements of one quantity."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def show(self, digits: int = 2) -> str:
        low, high = min(self.samples), max(self.samples)
        spread = f" ({low:.{digits}f}-{high:.{digits}f})" if len(self.samples) > 1 else ""
        return f"{self.median:.{digits}f}{spread}"

    def as_json(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": list(self.samples),
        }


# -- reader processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Storm:
    """What N readers released together did: times from the first one's start."""

    first: float  # seconds until the first reader held the whole file
    last: float  # ... the last one
    results: tuple[dict[str, Any], ...]


def run_readers(
    spec: dict[str, Any], n: int, sha: str | None = None, before: Callable[[], None] | None = None
) -> Storm:
    """N reader processes (bench/readers.py) released at once; `before` runs just before
    the release. Fails loudly if a reader failed, read a wrong count or wrong bytes."""
    script = Path(__file__).with_name("readers.py")
    launcher = subprocess.Popen(
        dying_with_parent([sys.executable, str(script)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert launcher.stdin and launcher.stdout
        launcher.stdin.write(json.dumps({**spec, "n": n}) + "\n")
        launcher.stdin.flush()
        if launcher.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {spec['kind']} readers did not start")
        if before:
            before()
        launcher.stdin.write("go\n")
        launcher.stdin.flush()
        results = [json.loads(line) for line in launcher.stdout]
        launcher.wait(STOP_TIMEOUT)
    finally:
        stop(launcher)
    errors = [r for r in results if "error" in r]
    if errors or len(results) != n:
        detail = errors[0]["trace"] if errors else f"{len(results)} of {n} readers answered"
        raise RuntimeError(f"{spec['kind']} readers failed: {detail}")
    for r in results:
        wrong_sha = sha and "sha256" in r and r["sha256"] != sha
        if "bytes" in r and (r["bytes"] != spec.get("size") or wrong_sha):
            raise RuntimeError(
                f"a {spec['kind']} reader read {r['bytes']} bytes of {spec.get('size')}, "
                f"sha256 {r.get('sha256')} where the file's is {sha}: WRONG BYTES"
            )
    start = min(r["start"] for r in results)
    ends = [r["end"] - start for r in results]
    return Storm(min(ends), max(ends), tuple(results))
