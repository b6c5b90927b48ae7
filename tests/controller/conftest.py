"""Fixtures for the controller: the session's real control plane (tests/fixtures/kube)
with the controller's own ServiceAccount and RBAC from deploy/base, a fresh namespace
per test, a mesh (one master, one worker on the session's etcd) shared by a module,
`reservoir controller` processes pointed at both, and the same controller run in this
process (`in_process`) where a test needs to drive its clock or its timeouts. The
HTTP stand-in of the API server (`standin`) serves only the faults a real server
cannot be made to produce on demand."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reservoir.client import Client
from reservoir.controller.kube import Kube, api_client
from reservoir.controller.lease import LeaseConfig
from reservoir.controller.main import Controller
from reservoir.meta.etcd_server import EtcdServer
from reservoir.processes import stop
from tests.controller.apiserver import ApiServer
from tests.fixtures.kube import REPO, ControlPlane
from tests.fixtures.mesh import Mesh, wipe

LEASE_DURATION_S = 3  # short, so a takeover fits in a test
# Where deploy/base puts the controller's ServiceAccount and its Lease Role.
SYSTEM_NAMESPACE = "reservoir"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture
def standin() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def controller_kubeconfig(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The controller's identity as deploy/base makes it: its namespace, ServiceAccount,
    roles and bindings applied as shipped, and a token minted for that account. The
    controller runs with nothing more, so a missing permission fails the tests."""
    rendered = control_plane.kubectl("kustomize", str(REPO / "deploy" / "base")).stdout
    wanted = [
        doc
        for doc in yaml_documents(rendered)
        if doc["kind"] == "Namespace"
        or (
            doc["kind"] in RBAC_KINDS and doc["metadata"]["name"].startswith("reservoir-controller")
        )
    ]
    assert {d["kind"] for d in wanted} == {"Namespace", *RBAC_KINDS}, wanted
    control_plane.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": wanted}))
    path = tmp_path_factory.mktemp("controller") / "kubeconfig"
    return control_plane.token_kubeconfig(SYSTEM_NAMESPACE, "reservoir-controller", path)


def yaml_documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of this test's own; afterwards our finalizers are dropped (no
    controller runs to release them) and the namespace is deleted."""
    name = control_plane.create_namespace("t")
    yield name
    for kind in ("datasets", "dataloads"):
        listed = control_plane.kubectl("get", kind, "-n", name, "-o", "name", check=False)
        for obj in listed.stdout.split():
            control_plane.kubectl(
                "patch",
                obj,
                "-n",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


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
    controller_kubeconfig: Path, namespace: str, module_mesh: Mesh, tmp_path: Path
) -> Iterator[Callable[..., ControllerProcess]]:
    """Start `reservoir controller --identity ID [EXTRA...]` as its ServiceAccount,
    watching the test's namespace, against the mesh."""
    started: list[ControllerProcess] = []

    def start(identity: str, *extra: str) -> ControllerProcess:
        args = [
            f"--kubeconfig={controller_kubeconfig}",
            f"--namespace={namespace}",
            f"--master={module_mesh.address}",
            f"--identity={identity}",
            f"--lease-namespace={SYSTEM_NAMESPACE}",
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


def run_in_process(
    kubeconfig: str, namespace: str | None, master: str
) -> Iterator[Callable[..., Controller]]:
    running: list[tuple[threading.Event, threading.Thread, Client]] = []

    def start(clock: Callable[[], datetime] | None = None, timeout_s: float = 30.0) -> Controller:
        kube = Kube(api_client(kubeconfig, "reservoir-controller/inproc"), namespace, timeout_s)
        client = Client(master)
        lease = LeaseConfig(
            SYSTEM_NAMESPACE, "inproc", duration_s=3, renew_deadline_s=2, retry_s=0.5
        )
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


@pytest.fixture
def in_process(
    controller_kubeconfig: Path, namespace: str, module_mesh: Mesh
) -> Iterator[Callable[..., Controller]]:
    """Start a Controller on threads of this process, as its ServiceAccount, watching
    the test's namespace: `in_process(clock=, timeout_s=)`."""
    yield from run_in_process(str(controller_kubeconfig), namespace, module_mesh.address)


@pytest.fixture
def in_process_standin(
    standin: ApiServer, module_mesh: Mesh, tmp_path: Path
) -> Iterator[Callable[..., Controller]]:
    """`in_process` against the stand-in, for the faults only it can produce."""
    kubeconfig = str(standin.kubeconfig(tmp_path / "kubeconfig"))
    yield from run_in_process(kubeconfig, None, module_mesh.address)
