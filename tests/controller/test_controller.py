"""`reservoir controller` as it runs in a cluster: a real process, against the HTTP
stand-in of the API server and a real master, worker and etcd (and moto for S3)."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reservoir.errors import NotFound
from reservoir.processes import free_port
from reservoir.v1 import master_pb2 as pb
from tests.controller.apiserver import ApiServer
from tests.controller.conftest import LEASE_DURATION_S, ControllerProcess
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


def status(api: ApiServer, resource: str, ns: str, name: str) -> dict[str, Any]:
    obj = api.get(resource, ns, name)
    return (obj or {}).get("status") or {}


def test_dataset_lifecycle_volume_and_load(
    apiserver: ApiServer, module_mesh: Mesh, start_controller: Start, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    sizes = {"a.bin": 3 << 20, "dir/b.bin": 1 << 20, "dir/c.txt": 1000}
    files(root, sizes)
    health = f"127.0.0.1:{free_port()}"
    controller = start_controller("solo", f"--health-listen={health}")
    apiserver.create(DATASETS, "team-a", dataset("images", f"file://{root}", blockSize="1MiB"))

    wait_until(
        lambda: status(apiserver, DATASETS, "team-a", "images").get("phase") == "Ready",
        30,
        f"the Dataset to be Ready:\n{controller.output()}",
    )
    s = status(apiserver, DATASETS, "team-a", "images")
    assert s["fileCount"] == 3
    assert s["totalBytes"] == sum(sizes.values())
    assert s["totalSize"] == "4.0 MiB"
    assert s["masterName"] == "team-a-images"
    assert s["conditions"][0]["type"] == "Ready" and s["conditions"][0]["status"] == "True"
    obj = apiserver.get(DATASETS, "team-a", "images")
    assert obj and obj["metadata"]["finalizers"] == [FINALIZER]
    with module_mesh.client() as client:
        on_master = client.dataset("team-a-images")
        assert on_master.mount == f"file://{root}" and on_master.block_size == 1 << 20

    # The volume a pod mounts by naming the claim "images".
    wait_until(lambda: apiserver.get(PVCS, "team-a", "images") is not None, 10, "the claim")
    pv = apiserver.get(PVS, "", "reservoir-team-a-images")
    assert pv is not None
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "fuse.csi.reservoir.dev"
    assert csi["volumeAttributes"] == {"dataset": "team-a-images"}
    assert pv["spec"]["claimRef"] == {"namespace": "team-a", "name": "images"}
    pvc = apiserver.get(PVCS, "team-a", "images")
    assert pvc and pvc["spec"]["volumeName"] == "reservoir-team-a-images"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    # A DataLoad of one directory, then the Dataset's cached figures follow.
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "images", "paths": ["dir"]},
    }
    apiserver.create(DATALOADS, "team-a", load)
    wait_until(
        lambda: status(apiserver, DATALOADS, "team-a", "warm").get("phase") == "Succeeded",
        30,
        f"the DataLoad to succeed:\n{controller.output()}",
    )
    ls = status(apiserver, DATALOADS, "team-a", "warm")
    assert ls["progress"] == "100.0%"
    assert ls["loadedBytes"] == ls["totalBytes"] == sizes["dir/b.bin"] + sizes["dir/c.txt"]
    assert ls["duration"].endswith("s") and ls["jobId"]
    wait_until(
        lambda: (
            status(apiserver, DATASETS, "team-a", "images").get("cachedBytes") == ls["totalBytes"]
        ),
        15,
        "the Dataset's cached bytes",
    )
    assert status(apiserver, DATASETS, "team-a", "images")["cachedPercentage"] == "25.0%"

    # Delete: the finalizer holds the object until the master has forgotten it.
    apiserver.delete(DATASETS, "team-a", "images")
    wait_until(
        lambda: apiserver.get(DATASETS, "team-a", "images") is None,
        20,
        f"the Dataset to go:\n{controller.output()}",
    )
    with module_mesh.client() as client, pytest.raises(NotFound):
        client.dataset("team-a-images")
    assert apiserver.get(PVS, "", "reservoir-team-a-images") is None
    assert apiserver.get(PVCS, "team-a", "images") is None
    assert "Traceback" not in controller.output()
    with urllib.request.urlopen(f"http://{health}/healthz", timeout=5) as answer:
        assert answer.status == 200 and answer.read() == b"ok\n"


def test_credentials_from_a_secret_reach_the_master_but_never_the_log(
    apiserver: ApiServer,
    module_mesh: Mesh,
    start_controller: Start,
    s3_server: MotoServer,
) -> None:
    bucket = s3_server.create_bucket()
    s3_server.put(bucket, "models/m.bin", b"x" * 5000)
    secret_value = "s3cr3t-Value-that-must-not-leak"
    apiserver.create(
        SECRETS,
        "ml",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"secret": base64.b64encode(secret_value.encode()).decode()},
        },
    )
    options = s3_server.options()
    plain = {k: v for k, v in options.items() if k != "secret_access_key"}
    ref = {
        "name": "secret_access_key",
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "secret"}},
    }
    missing = {"name": "session_token", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}
    controller = start_controller("secretive")
    apiserver.create(
        DATASETS,
        "ml",
        dataset("model", f"s3://{bucket}/models", mount={"options": plain, "optionsFrom": [ref]}),
    )
    apiserver.create(
        DATASETS,
        "ml",
        dataset(
            "broken", f"s3://{bucket}/models", mount={"options": plain, "optionsFrom": [missing]}
        ),
    )

    wait_until(
        lambda: status(apiserver, DATASETS, "ml", "model").get("phase") == "Ready",
        30,
        f"the S3 Dataset to be Ready:\n{controller.output()}",
    )
    assert status(apiserver, DATASETS, "ml", "model")["fileCount"] == 1
    with module_mesh.client() as client:
        mount = client._master.call("GetMount", pb.GetMountRequest(dataset="ml-model"))
        assert mount.options["secret_access_key"] == secret_value
        assert client.dataset("ml-model").options["secret_access_key"] == "***"
    # A missing Secret is a Failed Dataset that says which, and nothing on the master.
    wait_until(
        lambda: status(apiserver, DATASETS, "ml", "broken").get("phase") == "Failed",
        15,
        "the Dataset with a missing Secret to fail",
    )
    assert status(apiserver, DATASETS, "ml", "broken")["message"] == "Secret ml/nope does not exist"
    with module_mesh.client() as client, pytest.raises(NotFound):
        client.dataset("ml-broken")

    controller.stop()
    log = controller.output()
    assert "creating dataset ml-model" in log
    assert secret_value not in log
    assert secret_value not in repr(apiserver.objects[(DATASETS, "ml", "model")])


def test_two_replicas_only_the_lease_holder_acts(
    apiserver: ApiServer, module_mesh: Mesh, start_controller: Start, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files(root, {"f": 1000})
    first, second = start_controller("one"), start_controller("two")

    def holder() -> str:
        lease = apiserver.get(LEASES, "reservoir", "reservoir-controller")
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""

    wait_until(lambda: holder() in ("one", "two"), 20, "a Lease holder")
    leader, standby = (first, second) if holder() == "one" else (second, first)
    leader_id, standby_id = holder(), {"one": "two", "two": "one"}[holder()]
    apiserver.create(DATASETS, "team-b", dataset("first", f"file://{root}"))
    wait_until(
        lambda: status(apiserver, DATASETS, "team-b", "first").get("phase") == "Ready",
        30,
        "the Dataset to be Ready",
    )
    assert apiserver.writes_by(f"/{leader_id}"), "the leader wrote"
    assert apiserver.writes_by(f"/{standby_id}") == [], "the standby wrote nothing"

    # The leader dies without handing the Lease back: the standby takes over.
    leader.kill()
    wait_until(lambda: holder() == standby_id, 4 * LEASE_DURATION_S, "the standby to take over")
    apiserver.create(DATASETS, "team-b", dataset("second", f"file://{root}"))
    wait_until(
        lambda: status(apiserver, DATASETS, "team-b", "second").get("phase") == "Ready",
        30,
        f"the second Dataset to be Ready:\n{standby.output()}",
    )
    assert any("team-b/datasets/second" in w.path for w in apiserver.writes_by(f"/{standby_id}"))
    # A clean stop hands the Lease back at once.
    standby.stop()
    assert holder() == ""


def test_the_controller_lists_again_when_its_watch_expires(
    apiserver: ApiServer, start_controller: Start, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files(root, {"f": 10})
    controller = start_controller("watcher")
    apiserver.create(DATASETS, "team-c", dataset("before", f"file://{root}"))
    wait_until(
        lambda: status(apiserver, DATASETS, "team-c", "before").get("phase") == "Ready",
        30,
        "the first Dataset to be Ready",
    )
    assert apiserver.lists[DATASETS] == 1
    apiserver.compact()  # its watches end with 410 Gone
    apiserver.create(DATASETS, "team-c", dataset("after", f"file://{root}"))
    wait_until(
        lambda: status(apiserver, DATASETS, "team-c", "after").get("phase") == "Ready",
        30,
        f"the Dataset made after the compaction to be Ready:\n{controller.output()}",
    )
    assert apiserver.lists[DATASETS] == 2  # listed again, once
    assert "Traceback" not in controller.output()


def test_without_a_kubeconfig_the_controller_says_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("controller", f"--kubeconfig={tmp_path / 'missing'}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no usable Kubernetes configuration" in result.stderr


def test_an_unreachable_master_is_reported_without_failing_the_dataset(
    apiserver: ApiServer, start_controller: Start, tmp_path: Path
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    controller = start_controller("cut-off", f"--master={nobody}")
    apiserver.create(DATASETS, "team-d", dataset("waiting", f"file://{tmp_path}"))
    wait_until(
        lambda: (
            "cannot reach the master"
            in status(apiserver, DATASETS, "team-d", "waiting").get("message", "")
        ),
        30,
        f"the status to say the master is out of reach:\n{controller.output()}",
    )
    assert status(apiserver, DATASETS, "team-d", "waiting")["phase"] == "Pending"
    controller.kill()  # not SIGTERM: it would finish the master call it is retrying first
