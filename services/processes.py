"""Helpers for the processes Reservoir starts on one machine (`reservoir up`, tests)."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


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


def die_with_parent() -> None:
    """For Popen's preexec_fn: SIGTERM the child when its parent dies, even by SIGKILL,
    so that no process of a local cluster outlives the command that started it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
