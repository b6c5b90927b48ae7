"""What the controller must never do, found in review: rewrite a status in a loop,
take or delete a claim that is not its Dataset's, hang on a stalled API call, or
hold the Lease while its work loop is stuck. The controller runs in this process
(real threads, the HTTP stand-in, a real master) so that a test can drive its clock
and its timeouts."""

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
from tests.controller.test_controller import DATALOADS, DATASETS, PVCS, PVS, dataset, files, status
from tests.fixtures.mesh import Mesh, wait_until

Start = Callable[..., Controller]


def ready(api: ApiServer, ns: str, name: str, controller: Controller) -> None:
    wait_until(
        lambda: status(api, DATASETS, ns, name).get("phase") == "Ready",
        30,
        f"Dataset {ns}/{name} to be Ready: {status(api, DATASETS, ns, name)}",
    )


def status_writes(api: ApiServer, ns: str, plural: str, name: str) -> list[dict[str, Any]]:
    path = f"/apis/data.reservoir.dev/v1alpha1/namespaces/{ns}/{plural}/{name}/status"
    return [w.body["status"] for w in list(api.writes) if w.path == path]


def test_a_cron_load_runs_twice_with_few_status_writes_and_each_runs_completion_time(
    apiserver: ApiServer, module_mesh: Mesh, in_process: Start, tmp_path: Path
) -> None:
    files(tmp_path / "data", {"a": 3000, "b": 5000})
    clock = Clock()
    controller = in_process(clock=clock)
    apiserver.create(DATASETS, "cron", dataset("nightly", f"file://{tmp_path / 'data'}"))
    ready(apiserver, "cron", "nightly", controller)
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "nightly", "policy": "Cron", "schedule": "* * * * *"},
    }
    apiserver.create(DATALOADS, "cron", load)
    wait_until(
        lambda: "nextScheduleTime" in status(apiserver, DATALOADS, "cron", "warm"),
        10,
        "the first run to be scheduled",
    )

    jobs = []
    for _ in range(2):
        before = status(apiserver, DATALOADS, "cron", "warm").get("jobId")
        # To 30 s past the next minute: that minute's run is due, the next is 30 s away.
        now = clock()
        clock.offset += now.replace(second=30, microsecond=0) + timedelta(minutes=1) - now
        controller.queue.put("dataloads:cron/warm")  # its timer is in real time
        wait_until(
            lambda b=before: (
                (s := status(apiserver, DATALOADS, "cron", "warm")).get("phase") == "Succeeded"
                and s.get("jobId") != b
            ),
            15,
            f"a run to succeed: {status(apiserver, DATALOADS, 'cron', 'warm')}",
        )
        s = status(apiserver, DATALOADS, "cron", "warm")
        with module_mesh.client() as client:
            job = client.load_job(s["jobId"])
        assert s["completionTime"] == _time(_from_ms(job.finished_ms))
        assert s["loadedBytes"] == 8000 and s["progress"] == "100.0%"
        jobs.append(s["jobId"])
    assert len(set(jobs)) == 2

    time.sleep(2)  # a loop would write thousands of times meanwhile
    writes = status_writes(apiserver, "cron", "dataloads", "warm")
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
    apiserver: ApiServer, in_process: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files(tmp_path / "data", {"f": 4000})
    controller = in_process()
    apiserver.create(DATASETS, "once", dataset("src", f"file://{tmp_path / 'data'}"))
    ready(apiserver, "once", "src", controller)
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
    phases = [w.get("phase") for w in status_writes(apiserver, "once", "dataloads", "warm")]
    assert phases[:2] == ["Starting", "Running"]  # the start recorded before the master is asked


def test_a_claim_that_is_not_the_datasets_is_neither_used_nor_deleted(
    apiserver: ApiServer, in_process: Start, tmp_path: Path
) -> None:
    files(tmp_path / "data", {"f": 10})
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "images"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    _, theirs = apiserver.create(PVCS, "team-x", claim)
    controller = in_process()
    apiserver.create(DATASETS, "team-x", dataset("images", f"file://{tmp_path / 'data'}"))
    wait_until(
        lambda: status(apiserver, DATASETS, "team-x", "images").get("phase") == "Failed",
        20,
        f"the Dataset to fail: {status(apiserver, DATASETS, 'team-x', 'images')}",
    )
    s = status(apiserver, DATASETS, "team-x", "images")
    assert s["message"] == (
        "PersistentVolumeClaim team-x/images already exists and is not this Dataset's:"
        " rename or delete one of them"
    )
    [ready_condition] = s["conditions"]
    assert ready_condition["status"] == "False" and ready_condition["message"] == s["message"]
    assert apiserver.get(PVS, "", "reservoir-team-x-images") is None  # nothing made
    assert apiserver.get(PVCS, "team-x", "images") == theirs  # nor adopted

    apiserver.delete(DATASETS, "team-x", "images")
    wait_until(lambda: apiserver.get(DATASETS, "team-x", "images") is None, 20, "the Dataset to go")
    assert apiserver.get(PVCS, "team-x", "images") == theirs  # nor deleted
    assert not [w for w in apiserver.writes if "persistentvolumeclaims" in w.path]
    assert controller.problems() == []


def test_a_stalled_api_call_times_out_and_the_controller_goes_on(
    apiserver: ApiServer, in_process: Start, tmp_path: Path
) -> None:
    files(tmp_path / "data", {"f": 10})
    apiserver.stall("/persistentvolumeclaims/", 60)  # the first look for the claim hangs
    controller = in_process(timeout_s=1.0)
    apiserver.create(DATASETS, "team-y", dataset("slow", f"file://{tmp_path / 'data'}"))
    ready(apiserver, "team-y", "slow", controller)
    wait_until(lambda: apiserver.get(PVCS, "team-y", "slow") is not None, 15, "the claim")
    assert not apiserver.faults, "the stall was met"


def test_a_replica_whose_work_loop_is_stuck_stops_renewing_the_lease(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    kube = Kube(api_client(str(apiserver.kubeconfig(tmp_path / "kc")), "elector"), None, 5.0)
    alive = True
    # The deadline counts from before the Lease is written: long enough that a slow
    # write on a loaded machine still leaves us leading when step() returns.
    config = LeaseConfig("reservoir", "me", duration_s=4.0, renew_deadline_s=3.0, retry_s=0.2)
    elector = Elector(kube, config, worker_alive=lambda: alive)
    assert elector.step() and elector.is_leader()
    renewed = apiserver.get("apis/coordination.k8s.io/v1/leases", "reservoir", config.name)
    alive = False
    time.sleep(3.1)  # past the renew deadline, within the Lease's duration
    assert not elector.step() and not elector.is_leader()
    lease = apiserver.get("apis/coordination.k8s.io/v1/leases", "reservoir", config.name)
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
    monkeypatch: pytest.MonkeyPatch, apiserver: ApiServer, tmp_path: Path
) -> None:
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
