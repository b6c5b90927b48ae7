"""`reservoir controller` as it runs in a cluster: a real process with its own
ServiceAccount and RBAC, against a real kube-apiserver and controller-manager and a
real master, worker and etcd (and moto for S3)."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reservoir.errors import NotFound
from reservoir.processes import free_port
from reservoir.v1 import master_pb2 as pb
from tests.controller.apiserver import ApiServer
from tests.controller.conftest import LEASE_DURATION_S, SYSTEM_NAMESPACE, ControllerProcess
from tests.fixtures.kube import ControlPlane
from tests.fixtures.mesh import Mesh, run_cli, wait_until
from tests.fixtures.s3 import MotoServer

DATASETS = "apis/data.reservoir.dev/v1alpha1/datasets"
DATALOADS = "apis/data.reservoir.dev/v1alpha1/dataloads"
PVS = "api/v1/persistentvolumes"
PVCS = "api/v1/persistentvolumeclaims"
SECRETS = "api/v1/secrets"
LEASES = "apis/coordination.k8s.io/v1/leases"
FINALIZER = "data.reservoir.dev/master-dataset"

Start = Callable[..., ControllerProcess]
Api = ControlPlane | ApiServer  # the real server; the stand-in for faults only


def dataset(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"mounts": [{"uri": uri, **spec.pop("mount", {})}], **spec},
    }


def files(root: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Write files of these sizes under root; their sha256."""
    digests = {}
    for i, (path, size) in enumerate(sizes.items()):
        data = bytes((i + j) % 251 for j in range(size))
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        digests[path] = hashlib.sha256(data).hexdigest()
    return digests


def status(api: Api, resource: str, ns: str, name: str) -> dict[str, Any]:
    obj = api.read(resource, ns, name)
    return (obj or {}).get("status") or {}


def phase(api: Api, resource: str, ns: str, name: str) -> str:
    return str(status(api, resource, ns, name).get("phase", ""))


def test_dataset_lifecycle_volume_and_load(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    root = tmp_path / "data"
    sizes = {"a.bin": 3 << 20, "dir/b.bin": 1 << 20, "dir/c.txt": 1000}
    files(root, sizes)
    health = f"127.0.0.1:{free_port()}"
    controller = start_controller("solo", f"--health-listen={health}")
    api.create(DATASETS, ns, dataset("images", f"file://{root}", blockSize="1MiB"))

    wait_until(
        lambda: phase(api, DATASETS, ns, "images") == "Ready",
        30,
        f"the Dataset to be Ready:\n{controller.output()}",
    )
    s = status(api, DATASETS, ns, "images")
    assert s["fileCount"] == 3
    assert s["totalBytes"] == sum(sizes.values())
    assert s["totalSize"] == "4.0 MiB"
    assert s["masterName"] == f"{ns}-images"
    assert s["cachedPercentage"] == "0.0%"
    assert s["conditions"][0]["type"] == "Ready" and s["conditions"][0]["status"] == "True"
    obj = api.read(DATASETS, ns, "images")
    assert obj and obj["metadata"]["finalizers"] == [FINALIZER]
    with module_mesh.client() as client:
        on_master = client.dataset(f"{ns}-images")
        assert on_master.mount == f"file://{root}" and on_master.block_size == 1 << 20
    # The status went through the status subresource, written by the controller alone.
    status_writes = [
        e
        for e in api.writes_by("reservoir-controller/solo")
        if e["objectRef"].get("namespace") == ns and e["objectRef"].get("subresource") == "status"
    ]
    assert status_writes and all(e["responseStatus"]["code"] == 200 for e in status_writes)

    # The volume a pod mounts by naming the claim "images", bound by the PV controller.
    pv_name = f"reservoir-{ns}-images"
    wait_until(
        lambda: (api.read(PVCS, ns, "images") or {}).get("status", {}).get("phase") == "Bound",
        30,
        f"the claim to be Bound: {api.read(PVCS, ns, 'images')}",
    )
    pv = api.read(PVS, "", pv_name)
    assert pv is not None and pv["status"]["phase"] == "Bound"
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "fuse.csi.reservoir.dev"
    assert csi["volumeAttributes"] == {"dataset": f"{ns}-images"}
    assert pv["spec"]["claimRef"]["namespace"] == ns
    assert pv["spec"]["claimRef"]["name"] == "images"
    pvc = api.read(PVCS, ns, "images")
    assert pvc and pvc["spec"]["volumeName"] == pv_name
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    # A DataLoad of one directory, then the Dataset's cached figures follow.
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "images", "paths": ["dir"]},
    }
    api.create(DATALOADS, ns, load)
    wait_until(
        lambda: phase(api, DATALOADS, ns, "warm") == "Succeeded",
        30,
        f"the DataLoad to succeed:\n{controller.output()}",
    )
    ls = status(api, DATALOADS, ns, "warm")
    assert ls["progress"] == "100.0%"
    assert ls["loadedBytes"] == ls["totalBytes"] == sizes["dir/b.bin"] + sizes["dir/c.txt"]
    assert ls["duration"].endswith("s") and ls["jobId"]
    wait_until(
        lambda: status(api, DATASETS, ns, "images").get("cachedBytes") == ls["totalBytes"],
        15,
        "the Dataset's cached bytes",
    )
    assert status(api, DATASETS, ns, "images")["cachedPercentage"] == "25.0%"

    # The columns a user sees, with the real values.
    wide = api.kubectl("get", "datasets", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "TOTAL", "SIZE", "CACHED", "CACHED%", "FILES", "PHASE", "AGE",
    ]  # fmt: skip
    assert wide[1].split()[:7] == ["images", "4.0", "MiB", "1.0", "MiB", "25.0%", "3"]
    assert wide[1].split()[7] == "Ready"
    loads = api.kubectl("get", "dataloads", "-n", ns).stdout.splitlines()
    assert loads[0].split() == ["NAME", "DATASET", "PHASE", "PROGRESS", "DURATION", "AGE"]
    assert loads[1].split()[:4] == ["warm", "images", "Succeeded", "100.0%"]

    # Delete: the finalizer holds the object until the master has forgotten it; the
    # claim and its volume go with it.
    api.delete(DATASETS, ns, "images")
    wait_until(
        lambda: api.read(DATASETS, ns, "images") is None,
        30,
        f"the Dataset to go:\n{controller.output()}",
    )
    with module_mesh.client() as client, pytest.raises(NotFound):
        client.dataset(f"{ns}-images")
    wait_until(
        lambda: api.read(PVS, "", pv_name) is None and api.read(PVCS, ns, "images") is None,
        30,
        f"the claim and volume to go: {api.read(PVCS, ns, 'images')} {api.read(PVS, '', pv_name)}",
    )
    assert "Traceback" not in controller.output()
    assert "Forbidden" not in controller.output()
    with urllib.request.urlopen(f"http://{health}/healthz", timeout=5) as answer:
        assert answer.status == 200 and answer.read() == b"ok\n"


def test_credentials_from_a_secret_reach_the_master_but_never_the_log(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    s3_server: MotoServer,
) -> None:
    api, ns = control_plane, namespace
    bucket = s3_server.create_bucket()
    s3_server.put(bucket, "models/m.bin", b"x" * 5000)
    secret_value = "s3cr3t-Value-that-must-not-leak"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"secret": base64.b64encode(secret_value.encode()).decode()},
    }
    api.create(SECRETS, ns, secret)
    options = s3_server.options()
    plain = {k: v for k, v in options.items() if k != "secret_access_key"}
    ref = {
        "name": "secret_access_key",
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "secret"}},
    }
    missing = {"name": "session_token", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}
    controller = start_controller("secretive")
    api.create(
        DATASETS,
        ns,
        dataset("model", f"s3://{bucket}/models", mount={"options": plain, "optionsFrom": [ref]}),
    )
    api.create(
        DATASETS,
        ns,
        dataset(
            "broken", f"s3://{bucket}/models", mount={"options": plain, "optionsFrom": [missing]}
        ),
    )

    wait_until(
        lambda: phase(api, DATASETS, ns, "model") == "Ready",
        30,
        f"the S3 Dataset to be Ready:\n{controller.output()}",
    )
    assert status(api, DATASETS, ns, "model")["fileCount"] == 1
    with module_mesh.client() as client:
        mount = client._master.call("GetMount", pb.GetMountRequest(dataset=f"{ns}-model"))
        assert mount.options["secret_access_key"] == secret_value
        assert client.dataset(f"{ns}-model").options["secret_access_key"] == "***"
    # A missing Secret is a Failed Dataset that says which, and nothing on the master.
    wait_until(
        lambda: phase(api, DATASETS, ns, "broken") == "Failed",
        15,
        "the Dataset with a missing Secret to fail",
    )
    assert status(api, DATASETS, ns, "broken")["message"] == f"Secret {ns}/nope does not exist"
    with module_mesh.client() as client, pytest.raises(NotFound):
        client.dataset(f"{ns}-broken")

    # The Secret's value is rotated: the master gets it, and keeps the tree and cache.
    before = status(api, DATASETS, ns, "model")
    rotated = "r0tated-Value-that-must-not-leak-either"
    data = {"data": {"secret": base64.b64encode(rotated.encode()).decode()}}
    api.kubectl("patch", "secret", "creds", "-n", ns, "-p", json.dumps(data))

    def master_has(value: str) -> bool:
        with module_mesh.client() as client:
            request = pb.GetMountRequest(dataset=f"{ns}-model")
            return client._master.call("GetMount", request).options["secret_access_key"] == value

    wait_until(lambda: master_has(rotated), 30, f"the rotated key:\n{controller.output()}")
    secret_now = api.read(SECRETS, ns, "creds")
    assert secret_now
    wait_until(
        lambda: (
            status(api, DATASETS, ns, "model").get("secretVersions")
            == {"creds": secret_now["metadata"]["resourceVersion"]}
        ),
        15,
        "the Secret's new version in the status",
    )
    after = status(api, DATASETS, ns, "model")
    assert after["phase"] == "Ready" and after["fileCount"] == before["fileCount"]

    controller.stop()
    log = controller.output()
    assert f"creating dataset {ns}-model" in log
    assert f"credentials of {ns}-model updated" in log
    assert secret_value not in log and rotated not in log
    assert secret_value not in json.dumps(api.read(DATASETS, ns, "model"))
    assert rotated not in json.dumps(api.read(DATASETS, ns, "model"))
    assert "Forbidden" not in log


def lease_holder(api: ControlPlane) -> str:
    lease = api.read(LEASES, SYSTEM_NAMESPACE, "reservoir-controller")
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_two_replicas_only_the_lease_holder_acts(
    control_plane: ControlPlane, namespace: str, start_controller: Start, tmp_path: Path
) -> None:
    api, ns = control_plane, namespace
    root = tmp_path / "data"
    files(root, {"f": 1000})
    first, second = start_controller("one"), start_controller("two")
    wait_until(lambda: lease_holder(api) in ("one", "two"), 20, "a Lease holder")
    leader, standby = (first, second) if lease_holder(api) == "one" else (second, first)
    leader_id, standby_id = lease_holder(api), {"one": "two", "two": "one"}[lease_holder(api)]

    def writes_here(identity: str) -> list[str]:
        return [
            e["requestURI"]
            for e in api.writes_by(f"reservoir-controller/{identity}")
            if f"/namespaces/{ns}/" in e["requestURI"]
        ]

    api.create(DATASETS, ns, dataset("first", f"file://{root}"))
    wait_until(lambda: phase(api, DATASETS, ns, "first") == "Ready", 30, "the Dataset to be Ready")
    assert writes_here(leader_id), "the leader wrote"
    assert writes_here(standby_id) == [], "the standby wrote nothing"

    # The leader dies without handing the Lease back: the standby takes over.
    leader.kill()
    wait_until(
        lambda: lease_holder(api) == standby_id, 4 * LEASE_DURATION_S, "the standby to take over"
    )
    api.create(DATASETS, ns, dataset("second", f"file://{root}"))
    wait_until(
        lambda: phase(api, DATASETS, ns, "second") == "Ready",
        30,
        f"the second Dataset to be Ready:\n{standby.output()}",
    )
    assert any("/datasets/second" in uri for uri in writes_here(standby_id))
    # A clean stop hands the Lease back at once.
    standby.stop()
    assert lease_holder(api) == ""


def test_the_controller_lists_again_when_its_watch_expires(
    standin: ApiServer, in_process_standin: Callable[..., Any], tmp_path: Path
) -> None:
    """The stand-in: a real server's watch cache cannot be made to expire on demand."""
    root = tmp_path / "data"
    files(root, {"f": 10})
    in_process_standin()
    standin.create(DATASETS, "team-c", dataset("before", f"file://{root}"))
    wait_until(
        lambda: phase(standin, DATASETS, "team-c", "before") == "Ready",
        30,
        "the first Dataset to be Ready",
    )
    assert standin.lists[DATASETS] == 1
    standin.compact()  # its watches end with 410 Gone
    standin.create(DATASETS, "team-c", dataset("after", f"file://{root}"))
    wait_until(
        lambda: phase(standin, DATASETS, "team-c", "after") == "Ready",
        30,
        "the Dataset made after the compaction to be Ready",
    )
    assert standin.lists[DATASETS] == 2  # listed again, once


def test_without_a_kubeconfig_the_controller_says_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("controller", f"--kubeconfig={tmp_path / 'missing'}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no usable Kubernetes configuration" in result.stderr


def test_an_unreachable_master_is_reported_without_failing_the_dataset(
    control_plane: ControlPlane, namespace: str, start_controller: Start, tmp_path: Path
) -> None:
    api, ns = control_plane, namespace
    nobody = f"127.0.0.1:{free_port()}"
    controller = start_controller("cut-off", f"--master={nobody}")
    api.create(DATASETS, ns, dataset("waiting", f"file://{tmp_path}"))
    wait_until(
        lambda: (
            "cannot reach the master" in status(api, DATASETS, ns, "waiting").get("message", "")
        ),
        30,
        f"the status to say the master is out of reach:\n{controller.output()}",
    )
    assert phase(api, DATASETS, ns, "waiting") == "Pending"
    controller.kill()  # not SIGTERM: it would finish the master call it is retrying first
