"""The controller when things go wrong, on the real API server: its acting replica
killed mid-create, specs the schema accepts but nothing can serve, a Secret that
comes late, a master out of reach while a Dataset is deleted or many are waiting."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

from reservoir.client import Client
from reservoir.errors import NotFound
from reservoir.processes import free_port
from tests.controller.test_controller import (
    DATALOADS,
    DATASETS,
    PVCS,
    PVS,
    SECRETS,
    Start,
    dataset,
    files,
    lease_holder,
    phase,
    status,
)
from tests.controller.test_safety import status_writes
from tests.fixtures.kube import ControlPlane
from tests.fixtures.mesh import Mesh, wait_until
from tests.fixtures.s3 import MotoServer


def events(api: ControlPlane, ns: str, name: str) -> list[dict[str, str]]:
    listed = api.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return [
        {"type": e["type"], "reason": e["reason"], "message": e["message"]}
        for e in json.loads(listed.stdout)["items"]
    ]


def test_killing_the_acting_replica_mid_create_converges_with_one_of_everything(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    root = tmp_path / "data"
    files(root, {f"d{i % 30}/f{i}": 100 for i in range(3000)})  # a listing that takes a while
    one, two = start_controller("one"), start_controller("two")
    wait_until(lambda: lease_holder(api) in ("one", "two"), 20, "a Lease holder")
    leader, standby = (one, two) if lease_holder(api) == "one" else (two, one)
    api.create(DATASETS, ns, dataset("big", f"file://{root}", preload=True))

    with Client(module_mesh.address) as client:

        def on_master() -> bool:
            try:
                client.dataset(f"{ns}-big")
                return True
            except NotFound:
                return False

        wait_until(on_master, 30, "the master's dataset to appear", interval=0.02)
        leader.kill()  # mid-create: listing, preload not started
        wait_until(
            lambda: (
                phase(api, DATASETS, ns, "big") == "Ready"
                and status(api, DATASETS, ns, "big").get("preloadJob")
            ),
            60,
            f"the standby to finish the create and preload:\n{standby.output()}",
        )
        s = status(api, DATASETS, ns, "big")
        assert s["fileCount"] == 3000
        wait_until(lambda: client.load_job(s["preloadJob"]).state == "Succeeded", 60, "the preload")
        wait_until(
            lambda: status(api, DATASETS, ns, "big").get("cachedPercentage") == "100.0%",
            30,
            f"every byte cached: {status(api, DATASETS, ns, 'big')}",
        )
        assert [d.name for d in client.datasets() if d.name.startswith(ns)] == [f"{ns}-big"]
    started = re.findall(r"load (\S+) of \S+ started for", leader.output() + standby.output())
    assert len(set(started)) <= 1 and s["preloadJob"] in [*started, s["preloadJob"]]
    assert api.read(PVCS, ns, "big") is not None
    assert api.read(PVS, "", f"reservoir-{ns}-big") is not None


def test_specs_nothing_can_serve_say_why_in_status_and_one_event_without_a_hot_loop(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    s3_server: MotoServer,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    bucket = s3_server.create_bucket()
    s3_server.put(bucket, "p/m.bin", b"x" * 5000)
    creds = {"name": "secret_access_key", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}}
    plain = {k: v for k, v in s3_server.options().items() if k != "secret_access_key"}
    s3 = {"options": plain, "optionsFrom": [creds]}
    controller = start_controller("judge")
    api.create(DATASETS, ns, dataset("nowhere", f"file://{tmp_path / 'missing'}"))
    api.create(DATASETS, ns, dataset("no-secret", f"s3://{bucket}/p", mount=s3))
    wait_until(
        lambda: (
            phase(api, DATASETS, ns, "nowhere") == "Failed"
            and phase(api, DATASETS, ns, "no-secret") == "Failed"
        ),
        30,
        f"both to fail:\n{controller.output()}",
    )
    refused = status(api, DATASETS, ns, "nowhere")["message"]
    assert str(tmp_path / "missing") in refused  # the master's own words
    assert status(api, DATASETS, ns, "no-secret")["message"] == f"Secret {ns}/c does not exist"

    # The same failure, retried with backoff (1, 2, 4 s, ...): no new status, one event.
    before = len(status_writes(api, ns, "datasets", "nowhere"))
    time.sleep(8)
    assert len(status_writes(api, ns, "datasets", "nowhere")) - before <= 1
    assert events(api, ns, "nowhere") == [
        {"type": "Warning", "reason": "Failed", "message": refused}
    ]

    # The Secret appears without its key, then with it: Ready, no restart.
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}, "data": {}}
    api.create(SECRETS, ns, secret)
    wait_until(
        lambda: (
            status(api, DATASETS, ns, "no-secret").get("message") == f"Secret {ns}/c has no key 'k'"
        ),
        20,
        f"the missing key to be named: {status(api, DATASETS, ns, 'no-secret')}",
    )
    assert len(events(api, ns, "no-secret")) == 2
    value = base64.b64encode(s3_server.options()["secret_access_key"].encode()).decode()
    api.kubectl("patch", "secret", "c", "-n", ns, "-p", json.dumps({"data": {"k": value}}))
    wait_until(
        lambda: phase(api, DATASETS, ns, "no-secret") == "Ready",
        30,
        f"the Secret to be read again: {status(api, DATASETS, ns, 'no-secret')}",
    )
    assert status(api, DATASETS, ns, "no-secret")["message"] == ""
    assert "Forbidden" not in controller.output()


def test_deleting_while_the_master_is_out_of_reach_shows_deleting(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    files(tmp_path / "data", {"f": 100})
    first = start_controller("first")
    api.create(DATASETS, ns, dataset("held", f"file://{tmp_path / 'data'}"))
    wait_until(lambda: phase(api, DATASETS, ns, "held") == "Ready", 30, "Ready")
    first.stop()

    cut_off = start_controller("cut-off", f"--master=127.0.0.1:{free_port()}")
    api.delete(DATASETS, ns, "held")
    wait_until(
        lambda: (
            phase(api, DATASETS, ns, "held") == "Deleting"
            and "cannot reach the master" in status(api, DATASETS, ns, "held").get("message", "")
        ),
        30,
        f"the status to say Deleting: {status(api, DATASETS, ns, 'held')}",
    )
    cut_off.kill()
    start_controller("back")
    wait_until(lambda: api.read(DATASETS, ns, "held") is None, 30, "the Dataset to go")
    with module_mesh.client() as client:
        assert f"{ns}-held" not in [d.name for d in client.datasets()]


def test_a_master_out_of_reach_holds_up_each_key_not_all_of_them(
    control_plane: ControlPlane, namespace: str, start_controller: Start, tmp_path: Path
) -> None:
    api, ns = control_plane, namespace
    names = [f"d{i}" for i in range(10)]
    controller = start_controller("patient", f"--master=127.0.0.1:{free_port()}")
    for name in names:
        api.create(DATASETS, ns, dataset(name, f"file://{tmp_path}"))
    # Each look at the master takes about 5 s to give up: one at a time, the last of
    # ten would wait about 50 s.
    wait_until(
        lambda: all(
            "cannot reach the master" in status(api, DATASETS, ns, n).get("message", "")
            for n in names
        ),
        30,
        f"every Dataset to say why it waits:\n{controller.output()}",
    )
    controller.kill()


def test_a_once_load_runs_again_for_a_dataset_made_again(
    control_plane: ControlPlane,
    namespace: str,
    module_mesh: Mesh,
    start_controller: Start,
    tmp_path: Path,
) -> None:
    api, ns = control_plane, namespace
    files(tmp_path / "data", {"a": 3000, "b": 5000})
    start_controller("loader")
    spec = dataset("src", f"file://{tmp_path / 'data'}")
    api.create(DATASETS, ns, spec)
    load = {
        "apiVersion": "data.reservoir.dev/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm"},
        "spec": {"dataset": "src"},
    }
    api.create(DATALOADS, ns, load)
    wait_until(lambda: phase(api, DATALOADS, ns, "warm") == "Succeeded", 30, "the first run")
    first = status(api, DATALOADS, ns, "warm")

    api.delete(DATASETS, ns, "src")
    wait_until(lambda: api.read(DATASETS, ns, "src") is None, 30, "the Dataset to go")
    wait_until(lambda: phase(api, DATALOADS, ns, "warm") == "Pending", 15, "the load to wait again")
    assert "progress" not in status(api, DATALOADS, ns, "warm")  # no 100% of nothing
    api.create(DATASETS, ns, spec)
    wait_until(
        lambda: (
            phase(api, DATALOADS, ns, "warm") == "Succeeded"
            and status(api, DATALOADS, ns, "warm")["jobId"] != first["jobId"]
        ),
        30,
        f"a second run: {status(api, DATALOADS, ns, 'warm')}",
    )
    again = status(api, DATALOADS, ns, "warm")
    assert again["loadedBytes"] == again["totalBytes"] == 8000
    assert again["progress"] == "100.0%"
