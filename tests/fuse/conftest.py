"""Real FUSE mounts of a real mesh: a dataset over a local directory, mounted by
`reservoir mount` as a user runs it, and always unmounted afterwards.

Fixtures:
- `origin` (module): the directory the dataset is made of (ORIGIN_FILES below).
- `fuse_cluster` (module): one master and two workers with dataset "ds" over it.
- `mount` (function): a factory; `mount(target="ds")` runs `reservoir mount
  TARGET DIR --foreground` and returns a `Mounted` once the mount answers.
- `mounted` (module): one such mount of "ds", shared by the read-only tests.

Every mount made here is unmounted in teardown (fusermount3 -u, else umount -l),
so no mount leaks out of a test, whatever the test did to its process.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reservoir.meta.etcd_server import EtcdServer
from reservoir.mounts import is_mounted
from reservoir.processes import is_running
from tests.fixtures.mesh import Mesh, wait_until, wipe

MiB = 1024 * 1024
BLOCK_SIZE = MiB  # small blocks: a few MiB of files span several of them
# The origin tree: every shape a read path gets wrong first. Contents are made once
# per module from a seeded generator, so a failure names the same bytes each run.
ORIGIN_FILES: dict[str, int] = {
    "empty.bin": 0,
    "one-block.bin": BLOCK_SIZE,
    "model/weights.bin": 3 * BLOCK_SIZE + 4321,  # several blocks and a short tail
    "a/b/c/deep.txt": 1000,
    "a/notes with space.txt": 17,
    "ünïcode-名前.txt": 5,
    # More entries than one readdir reply holds: the listing comes in several calls.
    **{f"many/entry-{i:03d}-{'x' * 40}.txt": i for i in range(300)},
}
# Distinct, known mtimes (ms precision: what a dataset records).
MTIME_BASE_NS = 1_600_000_000_000 * 1_000_000
READY_TIMEOUT = 30.0


def content(path: str) -> bytes:
    """The bytes of origin file `path`: the same every run."""
    return random.Random(path).randbytes(ORIGIN_FILES[path])


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("origin")
    for i, path in enumerate(sorted(ORIGIN_FILES)):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content(path))
        mtime = MTIME_BASE_NS + i * 1_001_000_000  # whole ms, about a second apart
        os.utime(target, ns=(mtime, mtime))
    return root


@pytest.fixture(scope="module")
def fuse_cluster(
    etcd: EtcdServer, origin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """A mesh shared by a module's tests (mounts are cheap, meshes are not)."""
    wipe(etcd.url)
    mesh = Mesh(etcd.url, tmp_path_factory.mktemp("mesh"))
    try:
        mesh.master()
        mesh.worker()
        mesh.worker()
        with mesh.client() as client:
            wait_until(lambda: len(client.workers()) == 2, 30, "two workers to register")
            client.create_dataset("ds", origin.as_uri(), block_size=BLOCK_SIZE)
        yield mesh
    finally:
        mesh.stop()


# -- mounts ------------------------------------------------------------------------


def force_unmount(path: Path) -> None:
    """fusermount3 -u, else a lazy umount: leave nothing mounted at `path`."""
    for command in (["fusermount3", "-u", "-q", str(path)], ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(command, capture_output=True, timeout=30)
    assert not is_mounted(path), f"{path} is still mounted"


def reservoir(*args: str) -> list[str]:
    return [sys.executable, "-m", "reservoir", *args]


@dataclass
class Mounted:
    """A `reservoir mount --foreground` process and its mount point."""

    path: Path
    process: subprocess.Popen[str]

    def unmount(self) -> int:
        """fusermount3 -u, as a user ends a mount; the process's exit status."""
        subprocess.run(["fusermount3", "-u", str(self.path)], check=True, timeout=30)
        return self.process.wait(timeout=30)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()


def start_mount(master: str, target: str, path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RESERVOIR_MASTER": master}
    return subprocess.Popen(
        reservoir("mount", target, str(path), "--foreground", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def wait_ready(process: subprocess.Popen[str], path: Path) -> None:
    """Until the process prints its "mounted" line (it does once the mount answers)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("mounted "):
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"mount at {path} not ready: {line!r}\n{err}")
    assert is_mounted(path)


def _end(process: subprocess.Popen[str], path: Path) -> None:
    force_unmount(path)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        force_unmount(path)  # a killed daemon leaves a dead mount behind


@pytest.fixture
def mount(fuse_cluster: Mesh, tmp_path: Path) -> Iterator[Callable[..., Mounted]]:
    """mount(target="ds", *extra) -> a Mounted at a fresh directory; unmounted after."""
    made: list[Mounted] = []

    def make(target: str = "ds", *extra: str) -> Mounted:
        path = tmp_path / f"mnt-{len(made)}"
        path.mkdir()
        process = start_mount(fuse_cluster.address, target, path, *extra)
        made.append(Mounted(path, process))
        wait_ready(process, path)
        return made[-1]

    yield make
    for m in made:
        _end(m.process, m.path)


@pytest.fixture(scope="module")
def mounted(fuse_cluster: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ "ds" mounted for the whole module: the read-only tests share it."""
    path = tmp_path_factory.mktemp("mnt")
    process = start_mount(fuse_cluster.address, "ds", path)
    try:
        wait_ready(process, path)
        yield path
    finally:
        _end(process, path)


def process_gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie waiting for its reaper counts)."""
    return not is_running(pid)


def wait_gone(pid: int, timeout: float = 30) -> None:
    start = time.monotonic()
    while not process_gone(pid):
        assert time.monotonic() - start < timeout, f"process {pid} still runs"
        time.sleep(0.05)
