"""Fixtures for the controller: the API-server stand-in, a mesh (one master, one
worker on the session's etcd) shared by a module, `reservoir controller` processes
pointed at both, and the same controller run in this process (`in_process`) where a
test needs to drive its clock or its timeouts."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reservoir.client import Client
from reservoir.controller.kube import Kube, api_client
from reservoir.controller.lease import LeaseConfig
from reservoir.controller.main import Controller
from reservoir.meta.etcd_server import EtcdServer
from reservoir.processes import stop
from tests.controller.apiserver import ApiServer
from tests.fixtures.mesh import Mesh, wipe

LEASE_DURATION_S = 3  # short, so a takeover fits in a test


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_mesh(etcd: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """One master and one worker for a whole test module."""
    wipe(etcd.url)
    mesh = Mesh(etcd.url, tmp_path_factory.mktemp("mesh"))
    mesh.master()
    mesh.worker()
    yield mesh
    mesh.stop()


class ControllerProcess:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reservoir", "controller", *args],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> int | None:
        return stop(self.process, timeout=15)


@pytest.fixture
def start_controller(
    apiserver: ApiServer, module_mesh: Mesh, tmp_path: Path
) -> Iterator[Callable[..., ControllerProcess]]:
    """Start `reservoir controller --identity ID [EXTRA...]` against the stand-in and
    the mesh."""
    kubeconfig = apiserver.kubeconfig(tmp_path / "kubeconfig")
    started: list[ControllerProcess] = []

    def start(identity: str, *extra: str) -> ControllerProcess:
        args = [
            f"--kubeconfig={kubeconfig}",
            f"--master={module_mesh.address}",
            f"--identity={identity}",
            "--lease-namespace=reservoir",
            f"--lease-duration={LEASE_DURATION_S}",
            *extra,  # last: they override the above
        ]
        controller = ControllerProcess(args, tmp_path / f"controller-{identity}.log")
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


class Clock:
    """The controller's wall clock, moved on by the test."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def in_process(
    apiserver: ApiServer, module_mesh: Mesh, tmp_path: Path
) -> Iterator[Callable[..., Controller]]:
    """Start a Controller on threads of this process: `in_process(clock=, timeout_s=)`."""
    kubeconfig = str(apiserver.kubeconfig(tmp_path / "kubeconfig"))
    running: list[tuple[threading.Event, threading.Thread, Client]] = []

    def start(clock: Callable[[], datetime] | None = None, timeout_s: float = 30.0) -> Controller:
        kube = Kube(api_client(kubeconfig, "reservoir-controller/inproc"), None, timeout_s)
        client = Client(module_mesh.address)
        lease = LeaseConfig("reservoir", "inproc", duration_s=3, renew_deadline_s=2, retry_s=0.5)
        controller = Controller(kube, client, lease, clock=clock or Clock())
        stop = threading.Event()
        thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread, client))
        return controller

    yield start
    for done, thread, client in running:
        done.set()
        thread.join(timeout=15)
        client.close()
