"""What the node plugin asks of the kernel: FUSE processes, bind mounts, unmounts.

Blocking calls, each short; the plugin runs them in threads. A FUSE process is
`reservoir mount` in the background: it returns once the mount answers, and the
daemon it leaves runs in a session of its own, so it outlives the plugin (a plugin
restart does not break the pods' mounts).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from reservoir.errors import ReservoirError, Unavailable

# How long an unmounted FUSE daemon gets to exit before it is killed.
EXIT_TIMEOUT_SECONDS = 10.0
# `reservoir mount` waits up to 60 s for a slow master; a little more here.
MOUNT_TIMEOUT_SECONDS = 90.0
# A FUSE mount whose root takes longer than this to stat is stuck. The kernel answers
# from its attribute cache (a minute) and the daemon may then ask the master, whose
# calls give up after 30 s: longer than that, the daemon itself does not answer.
STAT_TIMEOUT_SECONDS = 45.0
# Each recovery of a volume stacks one bind on its targets; more than this many
# layers means something else keeps mounting there.
MAX_STACKED = 64
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
    busy or broken."""
    for _ in range(MAX_STACKED):
        if not is_mounted(path):
            return
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if done.returncode != 0 and is_mounted(path):
            _run("umount", "-l", str(path))
    raise ReservoirError(f"{path} is still mounted after {MAX_STACKED} unmounts")


def stop_fuse(staging: Path, pid: int) -> None:
    """Unmount the staging mount (its daemon then exits); kill a daemon that lingers."""
    unmount(staging)
    deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
    while pid and serves(pid, staging):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def is_mounted(path: Path) -> bool:
    """Whether `path` is a mount point, a broken FUSE mount included (whose stat
    fails, so os.path.ismount cannot tell)."""
    want = str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == want for line in mounts)


def answers(path: Path, timeout: float = STAT_TIMEOUT_SECONDS) -> bool:
    """Whether the mount at `path` serves a stat within `timeout`: false on ENOTCONN
    (its daemon died) and when the stat hangs (its daemon is stuck). The stat runs
    in a thread of its own, which a stuck daemon's end (SIGKILL) releases."""
    failed: list[OSError] = []

    def stat() -> None:
        try:
            os.stat(path)
        except OSError as exc:
            failed.append(exc)

    probe = threading.Thread(target=stat, name=f"stat {path}", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        return False
    if failed and failed[0].errno not in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO):
        raise failed[0]
    return not failed


def serves(pid: int, staging: Path) -> bool:
    """Whether `pid` runs and is the FUSE daemon of `staging` (not a zombie, and not
    another process that was given the pid of a dead daemon)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(staging).encode() in f.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReservoirError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
