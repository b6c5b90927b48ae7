"""`reservoir up`: a whole cluster on this machine, in the foreground.

It starts an etcd of its own (unless given one), one master and N workers as child
processes, waits until every one answers its health check and the workers have
registered, and then prints the line scripts wait for. On SIGINT or SIGTERM, or
when a child dies, it stops all it started, workers first and etcd last. Children
also die with it if it is killed outright (PR_SET_PDEATHSIG), and the lock on the
data directory is an flock, which the kernel releases with the process: nothing
stale is left behind either way.
"""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reservoir.client.client import Client
from reservoir.errors import FailedPrecondition, ReservoirError, Unavailable
from reservoir.meta.etcd_server import EtcdServer
from reservoir.processes import dying_with_parent, free_port, port_is_free
from reservoir.rpc.health import is_serving

HOST = "127.0.0.1"
# A cold start of Python, grpc and etcd on a loaded 2-core machine takes seconds.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class UpConfig:
    data_dir: Path
    workers: int = 2
    port: int = 19700
    etcd: str = ""  # an etcd to use instead of starting one
    mem_quota: int = 1024**3
    disk_quota: int = 10 * 1024**3


@dataclass
class Child:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    with open(data_dir / "up.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(
                f"another `reservoir up` is using {data_dir}: stop it or pick --data-dir"
            ) from None
        yield


def _spawn(name: str, address: str, args: list[str], logs: Path) -> Child:
    log = logs / f"{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            dying_with_parent([sys.executable, "-m", "reservoir", *args]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            # Ctrl-C in the terminal reaches `up` only; it stops the children in order.
            start_new_session=True,
        )
    return Child(name, address, process, log)


def _stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    for child in reversed(children):
        try:
            child.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _wait_ready(children: list[Child], master: str, worker_addresses: set[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for child in children:
        while not is_serving(child.address):
            _check_alive(children)
            if time.monotonic() > deadline:
                raise Unavailable(f"{child.name} did not start; see {child.log}")
            time.sleep(0.1)
    with Client(master) as client:
        while {w.address for w in client.workers()} < worker_addresses:
            _check_alive(children)
            if time.monotonic() > deadline:
                raise Unavailable("workers did not register with the master; see their logs")
            time.sleep(0.2)


def _check_alive(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            raise Unavailable(
                f"{child.name} exited with code {child.process.returncode}; see {child.log}"
            )


def up(config: UpConfig, say: Callable[[str], None], stderr: IO[str] = sys.stderr) -> int:
    """Run the cluster until a stop signal (exit 0) or a child's death (exit 1)."""
    if not port_is_free(HOST, config.port):
        raise FailedPrecondition(f"port {config.port} is in use: pick another with --port")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    logs = config.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with _lock(config.data_dir):
        etcd = None if config.etcd else EtcdServer(config.data_dir / "etcd", log=logs / "etcd.log")
        children: list[Child] = []
        try:
            etcd_url = etcd.start().url if etcd else config.etcd
            say(f"etcd: {etcd_url}")
            master = f"{HOST}:{config.port}"
            children.append(
                _spawn("master", master, ["master", "--listen", master, "--etcd", etcd_url], logs)
            )
            for i in range(config.workers):
                address = f"{HOST}:{free_port()}"
                args = [
                    "worker",
                    f"--master={master}",
                    f"--listen={address}",
                    f"--cache-dir={config.data_dir / f'worker-{i}'}",
                    f"--mem-quota={config.mem_quota}",
                    f"--disk-quota={config.disk_quota}",
                    f"--metrics-listen={HOST}:{free_port()}",
                ]
                children.append(_spawn(f"worker-{i}", address, args, logs))
            _wait_ready(children, master, {c.address for c in children[1:]})
            say(f"reservoir is up: master {master}")
            say(f"logs in {logs}; stop with Ctrl-C")
            while not stop:
                _check_alive(children)
                time.sleep(0.2)
            return 0
        except ReservoirError as exc:
            if stop:  # interrupted while starting: not an error
                return 0
            print(f"reservoir: {exc}", file=stderr)
            return 1
        finally:
            with suppress(Exception):
                _stop(children)
            if etcd:
                etcd.stop()
