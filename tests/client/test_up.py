"""`reservoir up`: a whole local cluster in the foreground, and nothing left after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.processes import free_port
from tests.fixtures.mesh import run_cli

UP_TIMEOUT = 90


class Up:
    def __init__(self, data_dir: Path, port: int, workers: int = 2) -> None:
        self.data_dir, self.port = data_dir, port
        self.master = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reservoir",
                "up",
                f"--workers={workers}",
                f"--port={port}",
                f"--data-dir={data_dir}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def wait_up(self) -> None:
        deadline = time.monotonic() + UP_TIMEOUT
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            assert line, f"up exited early: {self.process.wait()} {self.process.stderr.read()}"  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))
            if line.startswith("reservoir is up"):
                return
        raise AssertionError("reservoir up did not come up")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(30)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "up", free_port())
    running.wait_up()
    yield running
    running.stop(signal.SIGKILL)


def test_up_starts_etcd_a_master_and_workers(up: Up) -> None:
    assert up.lines[0].startswith("etcd: http://127.0.0.1:")
    assert f"reservoir is up: master {up.master}" in up.lines
    workers = run_cli("--json", "workers", master=up.master)
    assert workers.returncode == 0, workers.stderr
    assert workers.stdout.count('"worker_id"') == 2


def test_grpcurl_lists_services_by_reflection(up: Up) -> None:
    grpcurl = Path(sys.executable).parent / "grpcurl"
    listed = subprocess.run(
        [str(grpcurl), "-plaintext", up.master, "list"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "reservoir.v1.MasterService",
    }
    described = subprocess.run(
        [str(grpcurl), "-plaintext", up.master, "describe", "reservoir.v1.MasterService"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "rpc CreateDataset" in described.stdout
    worker = json.loads(run_cli("--json", "workers", master=up.master).stdout)[0]["address"]
    listed = subprocess.run(
        [str(grpcurl), "-plaintext", worker, "list"], capture_output=True, text=True, timeout=30
    )
    assert "reservoir.v1.WorkerService" in listed.stdout.split()
    assert "grpc.health.v1.Health" in listed.stdout.split()


def test_a_stop_signal_leaves_nothing_behind_and_state_survives(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # The second round reuses the data directory: no stale lock, etcd's data kept.
        up = Up(tmp_path / "up", free_port(), workers=1)
        up.wait_up()
        if sig == signal.SIGTERM:
            mount = f"--mount={(tmp_path / 'd').as_uri()}"
            assert run_cli("dataset", "create", "kept", mount, master=up.master).returncode == 0
        else:
            assert "kept" in run_cli("dataset", "list", master=up.master).stdout
        assert processes_mentioning(str(up.data_dir))
        assert up.stop(sig) == 0
        assert processes_mentioning(str(up.data_dir)) == []
        assert processes_mentioning(up.master) == []


def test_two_clusters_side_by_side_and_one_per_data_dir(up: Up, tmp_path: Path) -> None:
    other = Up(tmp_path / "other", free_port(), workers=1)
    try:
        other.wait_up()
        (tmp_path / "d").mkdir()
        created = run_cli(
            "dataset", "create", "x", f"--mount={(tmp_path / 'd').as_uri()}", master=other.master
        )
        assert created.returncode == 0, created.stderr
        assert run_cli("dataset", "list", master=up.master).stdout.strip() == "no datasets"
    finally:
        assert other.stop() == 0
    same_dir = subprocess.run(
        [
            sys.executable,
            "-m",
            "reservoir",
            "up",
            f"--port={free_port()}",
            f"--data-dir={up.data_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same_dir.returncode == 1
    assert f"another `reservoir up` is using {up.data_dir}" in same_dir.stderr
    same_port = subprocess.run(
        [
            sys.executable,
            "-m",
            "reservoir",
            "up",
            f"--port={up.port}",
            f"--data-dir={tmp_path / 'x'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same_port.returncode == 1
    assert f"port {up.port} is in use" in same_port.stderr
