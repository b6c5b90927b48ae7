"""What the node plugin asks of the kernel: FUSE processes, bind mounts, unmounts.

A FUSE process is `reservoir mount` in the background: it returns once the mount
answers, and the daemon it leaves runs in a session of its own. Outside a container
the daemon outlives a plugin restart; on Kubernetes it dies with the plugin's
container (one PID namespace), its mounts answer ENOTCONN, and the restarted plugin
mounts again and binds again (volumes.py).

A mount whose daemon is stuck blocks whatever touches it, so nothing here runs
without a time limit: every command has a timeout, `umount` does not canonicalize
the path (which would stat it), and a stat or statvfs runs in a thread of its own
that the caller stops waiting for (a stuck daemon's end, SIGKILL, releases it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from reservoir.errors import ReservoirError, Unavailable
from reservoir.mounts import is_mounted
from reservoir.processes import is_running

T = TypeVar("T")

# How long an unmounted FUSE daemon gets to exit before it is killed.
EXIT_TIMEOUT_SECONDS = 10.0
# `reservoir mount` waits up to 60 s for a slow master; a little more here.
MOUNT_TIMEOUT_SECONDS = 90.0
# mount --bind, remount, umount: quick unless something hangs in the kernel.
COMMAND_TIMEOUT_SECONDS = 30.0
# A FUSE mount whose root takes longer than this to stat is stuck. The kernel answers
# from its attribute cache (a minute) and the daemon may then ask the master, whose
# calls give up after 30 s: longer than that, the daemon itself does not answer.
STAT_TIMEOUT_SECONDS = 45.0
# NodeGetVolumeStats: a volume that cannot say its size within this long is reported
# abnormal (kubelet asks about once a minute; it must not wait on a stuck daemon).
STATS_TIMEOUT_SECONDS = 5.0
# A daemon being stopped that does not answer a stat within this long is killed
# first: its mount is going away, so a slow one loses nothing.
STOP_PROBE_SECONDS = 5.0
# Each recovery of a volume stacks one bind on its targets; more than this many
# layers means something else keeps mounting there.
MAX_STACKED = 64
# What a mount whose daemon has died answers.
DEAD_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
_MOUNTED = re.compile(r"\(pid (\d+)\)")


def start_fuse(master: str, source: str, staging: Path, log: Path) -> int:
    """Mount `source` (NAME[/PATH]) read-only at `staging`; the daemon's pid."""
    staging.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "reservoir",
        "mount",
        source,
        str(staging),
        f"--master={master}",
        "--allow-other",  # the pods' users are not root
        f"--log={log}",
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=MOUNT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(f"mounting {source} took over {MOUNT_TIMEOUT_SECONDS:.0f} s") from None
    found = _MOUNTED.search(done.stdout)
    if done.returncode != 0 or not found:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise Unavailable(f"cannot mount {source}: {why[0].removeprefix('reservoir: ')}")
    return int(found[1])


def bind_read_only(staging: Path, target: Path) -> None:
    """Bind `staging` at `target`, then make that bind read-only (a bind mount
    takes its flags from the remount, not from the first call)."""
    _run("mount", "--bind", str(staging), str(target))
    try:
        _run("mount", "-o", "remount,bind,ro", str(target))
    except ReservoirError:
        unmount(target)
        raise


def unmount(path: Path) -> None:
    """Unmount everything at `path` (recovery stacks binds there); lazily what is
    busy, broken or does not unmount in time."""
    for _ in range(MAX_STACKED):
        if not is_mounted(path):
            return
        try:
            done = _command("umount", "--no-canonicalize", str(path))
            failed = done.returncode != 0
        except ReservoirError:
            failed = True
        if failed and is_mounted(path):
            _run("umount", "--no-canonicalize", "--lazy", str(path))
    raise ReservoirError(f"{path} is still mounted after {MAX_STACKED} unmounts")


def stop_fuse(staging: Path, pid: int) -> None:
    """End the FUSE process of `staging`: kill it first if its mount does not answer
    (stuck), unmount, then kill it if it lingers."""
    running = bool(pid) and serves(pid, staging)
    # statfs, not stat: the kernel answers a stat from its cache, a statfs never.
    if running and is_mounted(staging) and _hangs(os.statvfs, staging, STOP_PROBE_SECONDS):
        kill(pid)
    unmount(staging)
    deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
    while running and serves(pid, staging):
        if time.monotonic() > deadline:
            kill(pid)
            break
        time.sleep(0.05)


def answers(path: Path, timeout: float = STAT_TIMEOUT_SECONDS) -> bool:
    """Whether the mount at `path` serves a stat within `timeout`: false on ENOTCONN
    (its daemon died) and when the stat hangs (its daemon is stuck)."""
    try:
        _bounded(os.stat, path, timeout)
    except TimeoutError:
        return False
    except OSError as exc:
        if exc.errno not in DEAD_ERRNOS:
            raise
        return False
    return True


_statvfs_pending: dict[Path, asyncio.Future[os.statvfs_result]] = {}


async def statvfs(path: Path) -> os.statvfs_result:
    """os.statvfs of a mount that may be stuck: TimeoutError after
    STATS_TIMEOUT_SECONDS. It runs in a thread of its own, not an executor's (a
    stuck call would hold the executor's thread for good); calls for one path while
    one is pending wait for that one, so a stuck mount holds one thread however
    often kubelet asks."""
    pending = _statvfs_pending.get(path)
    if pending is None:
        loop = asyncio.get_running_loop()
        pending = _statvfs_pending[path] = loop.create_future()
        pending.add_done_callback(lambda f: (_statvfs_pending.pop(path, None), f.exception()))
        _spawn(os.statvfs, path, lambda *outcome: _settle_soon(loop, pending, *outcome))
    return await asyncio.wait_for(asyncio.shield(pending), STATS_TIMEOUT_SECONDS)


def serves(pid: int, staging: Path) -> bool:
    """Whether `pid` runs and is the FUSE daemon of `staging` (not a zombie, and not
    another process that was given the pid of a dead daemon)."""
    if not is_running(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(staging).encode() in f.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False


def kill(pid: int) -> None:
    """SIGKILL `pid`, which may have ended meanwhile."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _spawn(
    call: Callable[[Path], T], path: Path, done: Callable[[T | None, OSError | None], None]
) -> None:
    """Run call(path) in a daemon thread; done(result, error) when it returns."""

    def run() -> None:
        try:
            result = call(path)
        except OSError as exc:
            done(None, exc)
        else:
            done(result, None)

    threading.Thread(target=run, name=f"{call.__name__} {path}", daemon=True).start()


def _hangs(call: Callable[[Path], object], path: Path, timeout: float) -> bool:
    """Whether call(path) takes over `timeout` (failing in time is an answer)."""
    try:
        _bounded(call, path, timeout)
    except TimeoutError:
        return True
    except OSError:
        pass
    return False


def _bounded(call: Callable[[Path], T], path: Path, timeout: float) -> T:
    """call(path) in a thread of its own; TimeoutError if it takes over `timeout`."""
    outcome: list[tuple[T | None, OSError | None]] = []
    finished = threading.Event()

    def done(result: T | None, error: OSError | None) -> None:
        outcome.append((result, error))
        finished.set()

    _spawn(call, path, done)
    if not finished.wait(timeout):
        raise TimeoutError(f"{path} did not answer within {timeout:.0f} s")
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[return-value]


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[T],
    result: T | None,
    error: OSError | None,
) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
        loop.call_soon_threadsafe(settle)


def _command(*command: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise ReservoirError(
            f"{' '.join(command)}: no answer within {COMMAND_TIMEOUT_SECONDS:.0f} s"
        ) from None


def _run(*command: str) -> None:
    done = _command(*command)
    if done.returncode != 0:
        raise ReservoirError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
