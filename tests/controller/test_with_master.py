"""The reconcile functions against a real master, worker and etcd, without Kubernetes:
the resource is a dict this test updates as the API server would, and the master
actions are carried out with the client library, so every plan meets real answers."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reservoir.client import Client
from reservoir.controller import reconcile as planner
from reservoir.controller.resources import FINALIZER, DataLoad, Dataset
from reservoir.errors import FailedPrecondition, NotFound
from tests.fixtures.mesh import Mesh


def master_answer(client: Client, name: str) -> Any:
    try:
        return client.dataset(name)
    except NotFound:
        return None


def carry_out(client: Client, obj: dict[str, Any], plan: planner.Plan) -> dict[str, Any]:
    """What the controller does with a plan, minus Kubernetes: finalizers on the dict,
    master actions through the client. The status fields the actions produced."""
    produced: dict[str, Any] = {}
    finalizers = obj["metadata"].setdefault("finalizers", [])
    for action in plan.actions:
        match action:
            case planner.AddFinalizer():
                finalizers.append(FINALIZER)
            case planner.RemoveFinalizer():
                finalizers.remove(FINALIZER)
            case planner.CreateDataset():
                assert not action.secret_options
                client.create_dataset(
                    action.name, action.uri, action.options, block_size=action.block_size
                )
            case planner.DeleteDataset():
                with contextlib.suppress(NotFound):
                    client.delete_dataset(action.name)
            case planner.SyncDataset():
                client.sync_dataset(action.name)
            case planner.StartLoad():
                job = client.load(action.dataset, action.paths, request_id=action.request_id)
                produced[action.record] = job.id
    return produced


def settle_dataset(client: Client, obj: dict[str, Any], rounds: int = 5) -> list[str]:
    """Reconcile until only the volume is left to ensure; the actions taken."""
    taken: list[str] = []
    for _ in range(rounds):
        ds = Dataset.of(obj)
        plan = planner.reconcile_dataset(
            ds, master_answer(client, ds.master_name), datetime.now(UTC)
        )
        produced = carry_out(client, obj, plan)
        if plan.status is not None:
            obj["status"] = {**plan.status, **produced}
        names = [type(a).__name__ for a in plan.actions]
        if names in ([], ["EnsureVolume"]):
            return taken
        taken += names
    raise AssertionError(f"no steady state after {rounds} rounds: {taken}")


def test_create_status_load_progress_and_delete(module_mesh: Mesh, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.bin").write_bytes(b"a" * (2 << 20))
    (root / "b.bin").write_bytes(b"b" * 1000)
    obj: dict[str, Any] = {
        "metadata": {
            "name": "corpus",
            "namespace": "research",
            "uid": "u",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"mounts": [{"uri": f"file://{root}"}], "blockSize": "1MiB", "preload": True},
    }
    with module_mesh.client() as client:
        assert settle_dataset(client, obj) == ["AddFinalizer", "CreateDataset", "StartLoad"]
        s = obj["status"]
        assert (s["phase"], s["fileCount"], s["totalBytes"]) == ("Ready", 2, (2 << 20) + 1000)
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        preload = client.wait_for_load(s["preloadJob"])
        assert preload.state == "Succeeded"

        # The Dataset is Ready: a DataLoad starts, then its progress reaches 100%.
        load_obj: dict[str, Any] = {
            "metadata": {"name": "warm", "namespace": "research", "generation": 1},
            "spec": {"dataset": "corpus", "paths": ["sub"]},
        }
        ready = Dataset.of(obj)
        plan = planner.reconcile_load(DataLoad.of(load_obj), ready, None, datetime.now(UTC))
        load_obj["status"] = {**(plan.status or {}), **carry_out(client, load_obj, plan)}
        job_id = load_obj["status"]["jobId"]
        deadline = time.monotonic() + 30
        while load_obj["status"]["phase"] == "Running":
            assert time.monotonic() < deadline, load_obj["status"]
            job = client.load_job(job_id)
            plan = planner.reconcile_load(DataLoad.of(load_obj), ready, job, datetime.now(UTC))
            assert plan.actions == ()
            load_obj["status"] = plan.status
            time.sleep(0.1)
        assert load_obj["status"]["phase"] == "Succeeded"
        assert load_obj["status"]["progress"] == "100.0%"
        assert load_obj["status"]["totalBytes"] == 2 << 20

        # Everything is cached now (preload + load), and the status says so.
        settle_dataset(client, obj)
        assert obj["status"]["cachedPercentage"] == "100.0%"
        assert obj["status"]["cached"] == obj["status"]["totalSize"] == "2.0 MiB"

        # Deleted: the master forgets it, then the finalizer goes.
        obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:10:00Z"
        assert settle_dataset(client, obj) == ["DeleteDataset", "DeleteVolume", "RemoveFinalizer"]
        assert obj["metadata"]["finalizers"] == []
        with pytest.raises(NotFound):
            client.dataset("research-corpus")


def test_a_bad_mount_fails_with_the_masters_reason(module_mesh: Mesh, tmp_path: Path) -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "gone", "namespace": "research", "generation": 1},
        "spec": {"mounts": [{"uri": f"file://{tmp_path}/missing"}]},
    }
    ds = Dataset.of(obj)
    plan = planner.reconcile_dataset(ds, None, datetime.now(UTC))
    with module_mesh.client() as client:
        with pytest.raises(FailedPrecondition) as caught:
            carry_out(client, obj, plan)
        error = str(caught.value)
        assert "missing" in error
        failed = planner.reconcile_dataset(Dataset.of(obj), None, datetime.now(UTC), error=error)
        assert failed.status and failed.status["phase"] == "Failed"
        assert failed.status["message"] == error


def test_a_dataset_is_synced_when_its_interval_has_passed(
    module_mesh: Mesh, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "one").write_bytes(b"1" * 100)
    obj: dict[str, Any] = {
        "metadata": {"name": "growing", "namespace": "research", "generation": 1},
        "spec": {"mounts": [{"uri": f"file://{root}"}], "syncIntervalSeconds": 1},
    }
    with module_mesh.client() as client:
        settle_dataset(client, obj)
        assert obj["status"]["fileCount"] == 1
        (root / "two").write_bytes(b"2" * 200)
        time.sleep(1.1)
        ds = Dataset.of(obj)
        plan = planner.reconcile_dataset(
            ds, master_answer(client, ds.master_name), datetime.now(UTC)
        )
        assert [type(a).__name__ for a in plan.actions] == ["SyncDataset", "EnsureVolume"]
        carry_out(client, obj, plan)
        settle_dataset(client, obj)
        assert (obj["status"]["fileCount"], obj["status"]["totalBytes"]) == (2, 300)
        client.delete_dataset(ds.master_name)
