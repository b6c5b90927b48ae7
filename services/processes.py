"""Helpers for the processes Reservoir starts on one machine (`reservoir up`, tests)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SETPRIV = shutil.which("setpriv") is not None
# mallopt(3) parameters, from <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM when its parent dies, even by SIGKILL: no
    process of a local cluster outlives the command that started it.

    setpriv(1) (util-linux) sets PR_SET_PDEATHSIG and execs the command. Not a Popen
    preexec_fn: once a process holds gRPC channels, a child forked for a preexec_fn
    runs gRPC's at-fork hooks, and its poller can die on the fds Popen closes (seen:
    "epoll_wait error: Bad file descriptor", the child gone before exec). Without
    setpriv, the command runs as it is.
    """
    return ["setpriv", "--pdeathsig", "TERM", "--", *argv] if _SETPRIV else list(argv)


def die_with_parent() -> None:
    """In a child forked without exec (os.fork): SIGTERM it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def is_running(pid: int) -> bool:
    """Whether `pid` runs: one that has exited and waits for its reaper (a zombie)
    has ended, though kill(pid, 0) still finds it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> int | None:
    """SIGTERM `process`, SIGKILL it if it lingers past `timeout`; its exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def tune_allocator() -> None:
    """Keep glibc from returning freed 1 MiB message buffers to the kernel.

    Streaming blocks allocates and frees a 1 MiB buffer per gRPC message. By default
    glibc serves those with mmap and unmaps them on free, so every message costs
    hundreds of page faults: measured 20k-87k faults per 256 MiB read in a client and
    ~280k in a worker, and about 20% of warm read throughput. Serving them from the
    heap and keeping a 256 MiB pad makes the memory reused instead. Larger buffers
    (whole blocks) are still mapped and returned as before. The `reservoir` command
    and `Client()` call this; RESERVOIR_TUNE_MALLOC=0 leaves the allocator alone.
    """
    if os.environ.get("RESERVOIR_TUNE_MALLOC") == "0":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
        libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
