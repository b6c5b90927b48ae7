"""What the controller must never do, found in review: rewrite a status in a loop,
take or delete a claim that is not its Dataset's, hang on a stalled API call, or
hold the Lease while its work loop is stuck. The controller runs in this process
(real threads, a real master) so that a test can drive its clock and its timeouts,
against the real API server; the stand-in serves the faults only it can produce (a
write answered 500, a hung request, failing watches)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reservoir.controller import informer as informer_module
from reservoir.controller.kube import Kube, api_client
from reservoir.controller.lease import Elector, LeaseConfig
from reservoir.controller.main import Controller
from reservoir.controller.reconcile import _from_ms, _time
from tests.controller.apiserver import ApiServer
from tests.controller.conftest import Clock
from tests.controller.test_controller import (
    DATALOADS,
    DATASETS,
    PVCS,
    PVS,
    Api,
    dataset,
    files,
    status,
)
from tests.fixtures.kube import ControlPlane
from tests.fixtures.mesh import Mesh, wait_until

Start = Callable[..., Controller]


def ready(api: Api, ns: str, name: str) -> None:
    wait_until(
        lambda: status(api, DATASETS, ns, name).get("phase") == "Ready",
        30,
        f"Dataset {ns}/{name} to be Ready: {status(api, DATASETS, ns, name)}",
    )


def status_writes(api: ControlPlane, ns: str, plural: str, name: str) -> list[dict[str, Any]]:
    """The statuses written to `plural/name`, in order (from the API server's audit)."""
    path = f"/apis/data.reservoir.dev/v1alpha1/namespaces/{ns}/{plural}/{name}/status"
    return [
        e["requestObject"]["status"]
        for e in api.audit()
        if e["requestURI"].split("?")[0] == path and e["verb"] == "patch"
    ]


def test_a_cron_load_runs_twice_with_few_status_writes_and_each_runs_completion_time(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    in_process: Start,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    files(tmp_path / "data", {"a": 3000, "b": 5000})
    clock = Clock()
    controller = in_process(clock=clock)
    api.create(DATASETS, ns, dataset("nightly", f"file://{tmp_path / 'data'}"))
    ready(api, ns, "nightly")
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "nightly", "policy": "Cron", "schedule": "* * * * *"},
    }
    api.create(DATALOADS, ns, load)
    wait_until(
        lambda: "nextScheduleTime" in status(api, DATALOADS, ns, "warm"),
        10,
        "the first run to be scheduled",
    )

    jobs = []
    for _ in range(2):
        before = status(api, DATALOADS, ns, "warm").get("jobId")
        # To 30 s past the next minute: that minute's run is due, the next is 30 s away.
        now = clock()
        clock.offset += now.replace(second=30, microsecond=0) + timedelta(minutes=1) - now
        controller.queue.put(f"dataloads:{ns}/warm")  # its timer is in real time
        wait_until(
            lambda b=before: (
                (s := status(api, DATALOADS, ns, "warm")).get("phase") == "Succeeded"
                and s.get("jobId") != b
            ),
            15,
            f"a run to succeed: {status(api, DATALOADS, ns, 'warm')}",
        )
        s = status(api, DATALOADS, ns, "warm")
        with module_mesh.client() as client:
            job = client.load_job(s["jobId"])
        assert s["completionTime"] == _time(_from_ms(job.finished_ms))
        assert s["loadedBytes"] == 8000 and s["progress"] == "100.0%"
        jobs.append(s["jobId"])
    assert len(set(jobs)) == 2

    time.sleep(2)  # a loop would write thousands of times meanwhile
    writes = status_writes(api, ns, "dataloads", "warm")
    # A running job's duration changes each second, so each 1 s poll writes once: a
    # slow machine writes more, never thousands. A write that repeats the one before
    # it changed nothing: the loop this test guards against.
    assert len(writes) <= 40, writes
    repeated = [a for a, b in itertools.pairwise(writes) if a == b]
    assert not repeated, repeated
    for w in writes:  # a run in progress never shows the last run's completion
        if w.get("phase") in ("Starting", "Running"):
            assert w.get("completionTime") is None, w
    assert [w.get("phase") for w in writes].count("Starting") == 2


def test_a_failed_write_of_the_job_id_is_retried_and_starts_no_second_load(
    standin: ApiServer,
    in_process_standin: Start,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apiserver = standin  # a real server cannot be made to fail one chosen write
    files(tmp_path / "data", {"f": 4000})
    in_process_standin()
    apiserver.create(DATASETS, "once", dataset("src", f"file://{tmp_path / 'data'}"))
    ready(apiserver, "once", "src")
    # The first status write records the start; the second, with the job ID, fails once.
    apiserver.fail("/namespaces/once/dataloads/warm/status", 500, skip=1)
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "src"},
    }
    with caplog.at_level(logging.INFO, logger="reservoir.controller"):
        apiserver.create(DATALOADS, "once", load)
        wait_until(
            lambda: status(apiserver, DATALOADS, "once", "warm").get("phase") == "Succeeded",
            15,
            f"the load to succeed: {status(apiserver, DATALOADS, 'once', 'warm')}",
        )
    assert not apiserver.faults, "the write failed once"
    started = [r for r in caplog.records if "started for once/warm" in r.getMessage()]
    assert len(started) == 1
    path = "/apis/data.reservoir.dev/v1alpha1/namespaces/once/dataloads/warm/status"
    phases = [w.body["status"].get("phase") for w in apiserver.writes if w.path == path]
    assert phases[:2] == ["Starting", "Running"]  # the start recorded before the master is asked


def test_a_claim_that_is_not_the_datasets_is_neither_used_nor_deleted(
    control_plane: ControlPlane, namespace: str, in_process: Start, tmp_path: Path
) -> None:
    api, ns = control_plane, namespace
    files(tmp_path / "data", {"f": 10})
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "images"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    theirs = api.create(PVCS, ns, claim)["metadata"]["uid"]
    controller = in_process()
    api.create(DATASETS, ns, dataset("images", f"file://{tmp_path / 'data'}"))
    wait_until(
        lambda: status(api, DATASETS, ns, "images").get("phase") == "Failed",
        20,
        f"the Dataset to fail: {status(api, DATASETS, ns, 'images')}",
    )
    s = status(api, DATASETS, ns, "images")
    assert s["message"] == (
        f"PersistentVolumeClaim {ns}/images already exists and is not this Dataset's:"
        " rename or delete one of them"
    )
    [ready_condition] = s["conditions"]
    assert ready_condition["status"] == "False" and ready_condition["message"] == s["message"]
    assert api.read(PVS, "", f"reservoir-{ns}-images") is None  # nothing made
    claim_now = api.read(PVCS, ns, "images")
    assert claim_now and claim_now["metadata"]["uid"] == theirs  # nor adopted
    assert not claim_now["metadata"].get("ownerReferences")

    api.delete(DATASETS, ns, "images")
    wait_until(lambda: api.read(DATASETS, ns, "images") is None, 20, "the Dataset to go")
    claim_now = api.read(PVCS, ns, "images")
    assert claim_now and claim_now["metadata"]["uid"] == theirs  # nor deleted
    ours = api.writes_by("reservoir-controller/inproc")
    assert not [
        e
        for e in ours
        if e["objectRef"]["resource"] == "persistentvolumeclaims"
        and e["objectRef"].get("namespace") == ns
    ]
    assert controller.problems() == []


def test_a_stalled_api_call_times_out_and_the_controller_goes_on(
    standin: ApiServer, in_process_standin: Start, tmp_path: Path
) -> None:
    apiserver = standin  # a real server cannot be made to hang one chosen request
    files(tmp_path / "data", {"f": 10})
    apiserver.stall("/persistentvolumeclaims/", 60)  # the first look for the claim hangs
    in_process_standin(timeout_s=1.0)
    apiserver.create(DATASETS, "team-y", dataset("slow", f"file://{tmp_path / 'data'}"))
    ready(apiserver, "team-y", "slow")
    wait_until(lambda: apiserver.read(PVCS, "team-y", "slow") is not None, 15, "the claim")
    assert not apiserver.faults, "the stall was met"


def test_a_replica_whose_work_loop_is_stuck_stops_renewing_the_lease(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = Kube(api_client(str(control_plane.kubeconfig), "elector"), None, 5.0)
    alive = True
    # The deadline counts from before the Lease is written: long enough that a slow
    # write on a loaded machine still leaves us leading when step() returns.
    config = LeaseConfig(namespace, "me", duration_s=4.0, renew_deadline_s=3.0, retry_s=0.2)
    elector = Elector(kube, config, worker_alive=lambda: alive)
    assert elector.step() and elector.is_leader()
    leases = "apis/coordination.k8s.io/v1/leases"
    renewed = control_plane.read(leases, namespace, config.name)
    assert renewed and renewed["spec"]["holderIdentity"] == "me"
    alive = False
    time.sleep(3.1)  # past the renew deadline, within the Lease's duration
    assert not elector.step() and not elector.is_leader()
    lease = control_plane.read(leases, namespace, config.name)
    assert lease == renewed  # not renewed: a standby may take it


def test_a_failing_watch_shows_in_healthz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(informer_module, "WATCH_STALE_S", 0.5)
    nobody = ApiServer()  # never started: its port refuses
    nobody.httpd.server_close()
    kube = Kube(api_client(str(nobody.kubeconfig(tmp_path / "kc")), "watch"), None, 1.0)
    informer = informer_module.Informer(kube, (DATASETS.rsplit("/", 1)[1],), lambda *_: None)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=("datasets", stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: not informer.healthy(), 10, "the informer to report the failure")
        assert thread.is_alive()  # it keeps trying
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_watch_that_fails_while_lists_work_shows_in_healthz(
    monkeypatch: pytest.MonkeyPatch, standin: ApiServer, tmp_path: Path
) -> None:
    apiserver = standin  # a real server cannot be made to fail watches alone
    # Longer than the first retry delay (1 s): a relist must not reset the failure.
    monkeypatch.setattr(informer_module, "WATCH_STALE_S", 2.5)
    apiserver.watch_error = 500
    kube = Kube(api_client(str(apiserver.kubeconfig(tmp_path / "kc")), "watch"), None, 2.0)
    informer = informer_module.Informer(kube, ("datasets",), lambda *_: None)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=("datasets", stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: not informer.healthy(), 10, "the informer to report the failure")
        assert apiserver.lists.get(DATASETS, 0) >= 2  # listing worked all along
        apiserver.watch_error = 0  # the watch recovers: its next event makes it healthy
        made = iter(range(1000))

        def event_then_healthy() -> bool:  # an event the next watch (not a list) brings
            apiserver.create(DATASETS, "team", dataset(f"d{next(made)}", "file:///nowhere"))
            return informer.healthy()

        wait_until(event_then_healthy, 15, "the informer to recover")
    finally:
        stop.set()
        thread.join(timeout=10)
