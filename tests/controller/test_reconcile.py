"""The controller's decisions, as pure functions: no cluster, no master."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest

from reservoir import paths
from reservoir.client import types
from reservoir.controller import reconcile as planner
from reservoir.controller.cron import Schedule
from reservoir.controller.lease import Decision, decide
from reservoir.controller.redact import Redactor
from reservoir.controller.resources import FINALIZER, DataLoad, Dataset, master_name
from reservoir.controller.workqueue import WorkQueue
from reservoir.errors import InvalidArgument

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
MS = int(NOW.timestamp() * 1000)


def ds_obj(name: str = "images", ns: str = "team", **spec: Any) -> dict[str, Any]:
    meta = spec.pop("meta", {})
    status = spec.pop("status", {})
    mount = {"uri": "s3://bucket/images", "options": {"region": "eu"}, **spec.pop("mount", {})}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "u-1",
            "generation": 2,
            "resourceVersion": "7",
            "creationTimestamp": "2026-03-04T05:00:00Z",
            **meta,
        },
        "spec": {"mounts": [mount], **spec},
        "status": status,
    }


def on_master(**fields: Any) -> types.Dataset:
    values: dict[str, Any] = dict(
        name="team-images",
        mount="s3://bucket/images",
        phase="Ready",
        block_size=64 << 20,
        file_count=3,
        total_bytes=4 << 20,
        cached_bytes=1 << 20,
        origin_bytes_read=1 << 20,
        created_ms=MS - 60_000,
        synced_ms=MS - 60_000,
        options={"region": "eu"},
    )
    values.update(fields)
    return types.Dataset(**values)


def job(**fields: Any) -> types.LoadJob:
    values: dict[str, Any] = dict(
        id="j1",
        dataset="team-images",
        paths=[],
        state="Running",
        total_blocks=4,
        loaded_blocks=1,
        total_bytes=4000,
        loaded_bytes=1000,
        started_ms=MS - 75_000,
        finished_ms=0,
    )
    values.update(fields)
    return types.LoadJob(**values)


def kinds(plan: planner.Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


# -- names -----------------------------------------------------------------------------


def test_master_names_are_labels_and_distinct() -> None:
    assert master_name("team", "images") == "team-images"
    long = master_name("a" * 40, "b" * 40)
    dotted = master_name("team", "llama.v3")
    for name in (long, dotted):
        paths.check_name(name)
        assert len(name) <= 63
    assert dotted.startswith("team-llama-v3-") and dotted != master_name("team", "llama-v3")
    assert master_name("a" * 40, "b" * 41) != long


def test_an_older_dataset_keeps_a_colliding_master_name() -> None:
    older = Dataset.of(ds_obj("b-c", "a"))
    newer = Dataset.of(ds_obj("c", "a-b", meta={"creationTimestamp": "2026-03-04T05:01:00Z"}))
    assert older.master_name == newer.master_name == "a-b-c"
    assert planner.claimants([newer, older]) == {"a-b/c": "a/b-c"}
    plan = planner.reconcile_dataset(newer, None, NOW, conflict="a/b-c")
    assert plan.actions == () and plan.status and plan.status["phase"] == "Failed"
    assert "taken by Dataset a/b-c" in plan.status["message"]


# -- datasets ------------------------------------------------------------------------


def test_a_new_dataset_gets_the_finalizer_first_then_is_created_with_secret_references() -> None:
    ref = {"name": "secret_access_key", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ds = Dataset.of(ds_obj(mount={"optionsFrom": [ref]}, blockSize="1MiB", preload=True))
    plan = planner.reconcile_dataset(ds, None, NOW)
    assert kinds(plan) == ["AddFinalizer", "CreateDataset", "StartLoad"]
    create = plan.actions[1]
    assert isinstance(create, planner.CreateDataset)
    assert create.name == "team-images" and create.block_size == 1 << 20
    assert create.options == {"region": "eu"}  # the secret stays a reference
    assert create.secret_options[0].secret == "s" and create.secret_options[0].key == "k"
    assert plan.status and plan.status["phase"] == "Pending"
    assert plan.actions[2] == planner.StartLoad("team-images", (), "preloadJob", "u-1/preload")


def test_a_ready_dataset_shows_the_masters_figures_and_has_a_volume() -> None:
    ds = Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]}))
    plan = planner.reconcile_dataset(ds, on_master(), NOW)
    assert kinds(plan) == ["EnsureVolume"]
    s = plan.status
    assert s is not None
    assert (s["phase"], s["fileCount"], s["totalSize"], s["cached"], s["cachedPercentage"]) == (
        "Ready",
        3,
        "4.0 MiB",
        "1.0 MiB",
        "25.0%",
    )
    assert s["observedGeneration"] == 2 and s["lastSyncTime"] == "2026-03-04T05:05:07Z"
    assert plan.requeue_after == planner.STATUS_INTERVAL_S
    # The condition's transition time moves only when its status does.
    again = planner.reconcile_dataset(
        Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]}, status=s)),
        on_master(),
        NOW + timedelta(minutes=5),
    )
    assert again.status and again.status["conditions"] == s["conditions"]


@pytest.mark.parametrize("version", ["1.33.0", "1.35.0"])
def test_the_volume_is_a_valid_static_pv_and_claim(version: str) -> None:
    volume = planner.volume(Dataset.of(ds_obj()))
    for obj in (volume.pv, volume.pvc):
        kubernetes_validate.validate(obj, version, strict=True)
    assert volume.pv["spec"]["csi"]["volumeHandle"] == "team-images"
    assert volume.pvc["spec"]["volumeName"] == volume.pv["metadata"]["name"]


def test_a_changed_mount_recreates_and_sync_follows_the_interval() -> None:
    ds = Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]}, syncIntervalSeconds=120))
    moved = planner.reconcile_dataset(ds, on_master(mount="s3://bucket/old"), NOW)
    assert kinds(moved) == ["DeleteDataset", "CreateDataset"]
    assert moved.status and "mount changed" in moved.status["message"]
    seen = Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]}, status={"observedGeneration": 2}))
    assert kinds(planner.reconcile_dataset(seen, on_master(mount="s3://bucket/old"), NOW)) == [
        "EnsureVolume"
    ]  # no spec change since it was last seen: never a delete-create loop
    assert kinds(planner.reconcile_dataset(ds, on_master(), NOW)) == ["EnsureVolume"]
    stale = on_master(synced_ms=MS - 121_000)
    assert kinds(planner.reconcile_dataset(ds, stale, NOW)) == ["SyncDataset", "EnsureVolume"]


def test_deleting_removes_the_master_dataset_then_the_volume_then_the_finalizer() -> None:
    deleting = {"finalizers": [FINALIZER], "deletionTimestamp": "2026-03-04T05:06:00Z"}
    ds = Dataset.of(ds_obj(meta=deleting))
    plan = planner.reconcile_dataset(ds, on_master(), NOW)
    assert kinds(plan) == ["DeleteDataset", "DeleteVolume", "RemoveFinalizer"]
    assert plan.status and plan.status["phase"] == "Deleting"
    gone = planner.reconcile_dataset(ds, None, NOW)
    assert kinds(gone) == ["DeleteVolume", "RemoveFinalizer"]
    released = Dataset.of(ds_obj(meta={"deletionTimestamp": "2026-03-04T05:06:00Z"}))
    assert planner.reconcile_dataset(released, on_master(), NOW) == planner.Plan()


def test_an_error_is_shown_and_retried() -> None:
    ds = Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]}))
    plan = planner.reconcile_dataset(ds, None, NOW, error="Secret team/s does not exist")
    assert kinds(plan) == ["CreateDataset"]
    assert plan.status and plan.status["phase"] == "Failed"
    assert plan.status["message"] == "Secret team/s does not exist"
    assert plan.status["conditions"][0]["status"] == "False"


def test_a_spec_the_schema_cannot_judge_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a size"):
        Dataset.of(ds_obj(blockSize="lots"))


def test_options_from_secrets_are_credentials_only_but_never_block_a_delete() -> None:
    ref = {"secretKeyRef": {"name": "creds", "key": "url"}}
    endpoint = {"optionsFrom": [{"name": "endpoint", "valueFrom": ref}]}
    old = Dataset.of(ds_obj(mount=endpoint, meta={"finalizers": [FINALIZER]}))
    with pytest.raises(InvalidArgument, match=r"optionsFrom takes only credentials .* 'endpoint'"):
        planner.reconcile_dataset(old, None, NOW)
    ok = Dataset.of(ds_obj(mount={"optionsFrom": [{"name": "access_key_id", "valueFrom": ref}]}))
    assert [o.option for o in ok.mount.secret_options] == ["access_key_id"]
    # One made before the rule is still deleted: master dataset, volume, finalizer.
    deleting = {"finalizers": [FINALIZER], "deletionTimestamp": "2026-03-04T05:06:00Z"}
    gone = Dataset.of(ds_obj(mount=endpoint, meta=deleting))
    plan = planner.reconcile_dataset(gone, on_master(), NOW)
    assert kinds(plan) == ["DeleteDataset", "DeleteVolume", "RemoveFinalizer"]


# -- loads ---------------------------------------------------------------------------


def load_obj(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {
        "metadata": {
            "name": "warm",
            "namespace": "team",
            "generation": 1,
            "creationTimestamp": "2026-03-04T05:00:00Z",
            "uid": "l-1",
        },
        "spec": {"dataset": "images", **spec},
        "status": status,
    }


READY_DS = Dataset.of(ds_obj(status={"phase": "Ready"}))


def test_a_load_waits_for_its_dataset_then_starts_once() -> None:
    load = DataLoad.of(load_obj(paths=["dir"]))
    waiting = planner.reconcile_load(load, None, None, NOW)
    assert waiting.actions == () and waiting.status and waiting.status["phase"] == "Pending"
    pending = Dataset.of(ds_obj(status={"phase": "Pending"}))
    assert planner.reconcile_load(load, pending, None, NOW).actions == ()
    plan = planner.reconcile_load(load, READY_DS, None, NOW)
    # Keyed by the run: a start repeated after a lost answer gets the same job.
    run = f"l-1/{plan.status['startTime']}"
    assert plan.actions == (planner.StartLoad("team-images", ("dir",), "jobId", run),)
    assert plan.status and plan.status["phase"] == "Running"
    # The start is recorded before the master is asked.
    assert plan.intent and plan.intent["phase"] == "Starting"
    assert plan.intent["startTime"] == plan.status["startTime"] == "2026-03-04T05:06:07Z"


def test_a_recorded_start_without_a_job_id_is_started_again_for_the_same_run() -> None:
    recorded = {"phase": "Starting", "startTime": "2026-03-04T05:06:07Z"}
    later = NOW.replace(minute=7)
    once = DataLoad.of(load_obj(status=recorded))
    plan = planner.reconcile_load(once, READY_DS, None, later)
    assert [type(a).__name__ for a in plan.actions] == ["StartLoad"]
    assert plan.status and plan.status["startTime"] == "2026-03-04T05:06:07Z"
    # A Cron run whose schedule time is recorded is not skipped for the next one.
    cron = DataLoad.of(
        load_obj(
            policy="Cron",
            schedule="*/10 * * * *",
            status={**recorded, "lastScheduleTime": "2026-03-04T05:06:07Z"},
        )
    )
    plan = planner.reconcile_load(cron, READY_DS, None, later)
    assert [type(a).__name__ for a in plan.actions] == ["StartLoad"]
    assert plan.status and plan.status["lastScheduleTime"] == "2026-03-04T05:06:07Z"


def written(status: dict[str, Any]) -> dict[str, Any]:
    """The stored status after the controller writes `status` (it replaces the old)."""
    return {k: v for k, v in status.items() if v is not None}


def test_a_failed_start_of_a_later_cron_run_is_started_again() -> None:
    first_done = job(state="Succeeded", loaded_bytes=4000, finished_ms=MS - 5000)
    status = {
        "phase": "Succeeded",
        "jobId": "j1",
        "startTime": "2026-03-04T05:10:30Z",
        "lastScheduleTime": "2026-03-04T05:10:30Z",
        "completionTime": "2026-03-04T05:11:00Z",
    }
    spec = {"policy": "Cron", "schedule": "*/10 * * * *"}

    def plan_at(t: datetime) -> planner.Plan:
        load = DataLoad.of(load_obj(**spec, status=status))
        seen = first_done if status.get("jobId") == "j1" else None  # as the caller looks up
        return planner.reconcile_load(load, READY_DS, seen, t)

    run2 = plan_at(NOW.replace(minute=20, second=5))
    assert kinds(run2) == ["StartLoad"] and run2.intent and run2.status
    # Nothing of run 1 stays in what is written for run 2.
    assert "jobId" not in written(run2.intent)
    assert "jobId" not in written(run2.status)
    status = written(run2.intent)  # recorded; then the master call fails
    again = plan_at(NOW.replace(minute=20, second=9))
    assert kinds(again) == ["StartLoad"]
    assert again.actions[0] == run2.actions[0]  # the same run's request_id
    assert again.status and again.status["startTime"] == "2026-03-04T05:20:05Z"


def test_a_running_load_reports_progress_and_duration_then_ends() -> None:
    load = DataLoad.of(load_obj(status={"jobId": "j1"}))
    running = planner.reconcile_load(load, READY_DS, job(), NOW)
    assert running.actions == ()
    assert running.status and running.status["progress"] == "25.0%"
    assert running.status["duration"] == "1m15s" and running.status["phase"] == "Running"
    done = job(state="Succeeded", loaded_bytes=4000, finished_ms=MS - 5000)
    ended = planner.reconcile_load(load, READY_DS, done, NOW)
    assert ended.actions == () and ended.requeue_after is None
    assert ended.status and (ended.status["phase"], ended.status["progress"]) == (
        "Succeeded",
        "100.0%",
    )
    assert ended.status["duration"] == "1m10s"
    forgotten = planner.reconcile_load(load, READY_DS, None, NOW)
    assert forgotten.status and forgotten.status["phase"] == "Failed"


def test_a_cron_load_runs_when_due() -> None:
    load = DataLoad.of(load_obj(policy="Cron", schedule="*/10 * * * *"))
    due = planner.reconcile_load(load, READY_DS, None, NOW)  # created 05:00, first run 05:10 > now
    assert due.actions == () and due.status
    assert due.status["nextScheduleTime"] == "2026-03-04T05:10:00Z"
    later = NOW.replace(minute=10, second=30)
    run = planner.reconcile_load(load, READY_DS, None, later)
    assert len(run.actions) == 1 and run.status
    assert run.status["lastScheduleTime"] == "2026-03-04T05:10:30Z"
    bad = DataLoad.of(load_obj(policy="Cron", schedule="61 * * * *"))
    failed = planner.reconcile_load(bad, READY_DS, None, NOW)
    assert failed.status and failed.status["phase"] == "Failed"
    assert "61 * * * *" in failed.status["message"]


# -- cron, lease, queue, redaction ---------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/15 * * * *", "2026-03-04T05:06:07", "2026-03-04T05:15:00"),
        ("0 3 * * *", "2026-03-04T05:06:07", "2026-03-05T03:00:00"),
        ("@hourly", "2026-03-04T05:00:00", "2026-03-04T06:00:00"),
        ("30 2 * * 1-5", "2026-03-06T03:00:00", "2026-03-09T02:30:00"),  # Fri -> Mon
        ("0 0 13 * 5", "2026-03-14T00:00:00", "2026-03-20T00:00:00"),  # 13th or a Friday
        ("0 0 1 1,7 *", "2026-03-04T00:00:00", "2026-07-01T00:00:00"),
    ],
)
def test_cron_schedules(schedule: str, after: str, expected: str) -> None:
    t = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Schedule.parse(schedule).next_after(t) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize("schedule", ["* * * *", "60 * * * *", "*/0 * * * *", "a b c d e"])
def test_bad_cron_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(InvalidArgument):
        Schedule.parse(schedule)


def test_a_schedule_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="never fires"):
        Schedule.parse("0 0 30 2 *").next_after(NOW)


def test_lease_decisions() -> None:
    held = {"spec": {"holderIdentity": "other"}}
    assert decide(None, "me", expired=False) is Decision.CREATE
    assert decide({"spec": {"holderIdentity": "me"}}, "me", expired=False) is Decision.RENEW
    assert decide(held, "me", expired=False) is Decision.WAIT
    assert decide(held, "me", expired=True) is Decision.TAKE
    assert decide({"spec": {"holderIdentity": ""}}, "me", expired=False) is Decision.TAKE


def test_the_work_queue_holds_a_key_once_at_its_earliest_time() -> None:
    queue = WorkQueue()
    queue.put("a", 60)
    queue.put("b")
    queue.put("a")
    queue.put("b", 60)
    assert {queue.get(0.1), queue.get(0.1)} == {"a", "b"}
    assert queue.get(0.05) is None
    queue.put("c", 0.05)
    assert queue.get(1.0) == "c"


def test_a_key_taken_by_one_worker_is_not_given_to_another_until_done() -> None:
    queue = WorkQueue()
    queue.put("slow")
    assert queue.get(0.1) == "slow"
    queue.put("slow")  # changed while its worker is still on it
    queue.put("other")
    assert queue.get(0.1) == "other"  # other keys do not wait behind it
    assert queue.get(0.05) is None  # "slow" is due but held
    queue.done("other")
    queue.done("slow")
    assert queue.get(0.1) == "slow"  # the put made meanwhile is not lost


def test_cached_percentage_is_rounded_down_and_nothing_is_not_everything() -> None:
    assert planner.percent(15_000_010, 15_000_018) == "99.9%"
    assert planner.percent(15_000_018, 15_000_018) == "100.0%"
    assert planner.percent(0, 0) == "0.0%"
    empty = planner.reconcile_dataset(
        Dataset.of(ds_obj(meta={"finalizers": [FINALIZER]})),
        on_master(phase="Pending", total_bytes=0, cached_bytes=0, file_count=0),
        NOW,
    )
    assert empty.status and empty.status["cachedPercentage"] == "0.0%"
    done = planner.load_status(
        DataLoad.of(load_obj()), job(state="Succeeded", total_bytes=0, loaded_bytes=0), NOW
    )
    assert done["progress"] == "100.0%"  # a load of nothing has loaded all of it


def test_a_preload_is_started_from_what_is_observed_not_only_when_creating() -> None:
    # The controller died between creating the master's dataset and starting its
    # preload: the next reconcile sees a Ready dataset, preload asked, no job recorded.
    ds = Dataset.of(ds_obj(preload=True, meta={"finalizers": [FINALIZER]}))
    plan = planner.reconcile_dataset(ds, on_master(), NOW)
    starts = [a for a in plan.actions if isinstance(a, planner.StartLoad)]
    assert starts == [planner.StartLoad("team-images", (), "preloadJob", "u-1/preload")]
    # Recorded: not started again. Still listing: not yet.
    started = Dataset.of(
        ds_obj(preload=True, meta={"finalizers": [FINALIZER]}, status={"preloadJob": "j1"})
    )
    assert "StartLoad" not in kinds(planner.reconcile_dataset(started, on_master(), NOW))
    assert "StartLoad" not in kinds(planner.reconcile_dataset(ds, on_master(phase="Pending"), NOW))


def test_a_once_load_of_a_dataset_deleted_and_made_again_runs_again() -> None:
    done = {
        "phase": "Succeeded",
        "jobId": "j1",
        "datasetUID": "u-1",
        "progress": "100.0%",
        "startTime": "2026-03-04T05:00:00Z",
    }
    load = DataLoad.of(load_obj(status=done))
    finished = job(state="Succeeded", loaded_bytes=4000, finished_ms=MS - 1000)
    # While the Dataset is gone: waiting, with no figures of the run on the old one.
    gone = planner.reconcile_load(load, None, finished, NOW)
    assert gone.status and gone.status["phase"] == "Pending"
    assert "progress" not in gone.status and "loadedBytes" not in gone.status
    # The same Dataset: done. A new one of that name (another UID): a new run.
    assert planner.reconcile_load(load, READY_DS, finished, NOW).actions == ()
    again = Dataset.of(ds_obj(status={"phase": "Ready"}, meta={"uid": "u-2"}))
    plan = planner.reconcile_load(load, again, finished, NOW)
    assert kinds(plan) == ["StartLoad"]
    assert plan.status and plan.status["datasetUID"] == "u-2"
    assert plan.status["jobId"] is None and plan.status["progress"] == "0.0%"


def test_a_changed_secret_is_given_to_the_master_once_and_only_when_ready() -> None:
    ref = {"name": "secret_access_key", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}}
    obj = ds_obj(mount={"optionsFrom": [ref]}, meta={"finalizers": [FINALIZER]})
    first = planner.reconcile_dataset(Dataset.of(obj), None, NOW, secret_versions={"c": "5"})
    assert first.status and first.status["secretVersions"] == {"c": "5"}  # as created

    obj["status"] = {"secretVersions": {"c": "5"}, "observedGeneration": 2}
    same = planner.reconcile_dataset(Dataset.of(obj), on_master(), NOW, secret_versions={"c": "5"})
    assert "UpdateCredentials" not in kinds(same)
    changed = planner.reconcile_dataset(
        Dataset.of(obj), on_master(), NOW, secret_versions={"c": "9"}
    )
    update = planner.UpdateCredentials("team-images", Dataset.of(obj).mount.secret_options)
    assert update in changed.actions
    assert changed.status and changed.status["secretVersions"] == {"c": "9"}
    listing = planner.reconcile_dataset(
        Dataset.of(obj), on_master(phase="Pending"), NOW, secret_versions={"c": "9"}
    )
    assert "UpdateCredentials" not in kinds(listing)  # later: a listing would undo it
    assert listing.status and listing.status["secretVersions"] == {"c": "5"}


def test_secret_values_are_redacted_from_log_records(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor()
    redactor.add("hunter2")
    logger = logging.getLogger("test.redaction")
    logger.addFilter(redactor)
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("options %s", {"secret_access_key": "hunter2"})
    assert "hunter2" not in caplog.text and "***" in caplog.text
    redactor.add("hunter2-and-more")  # the longer secret is hidden whole
    assert redactor.redact("a hunter2-and-more b") == "a *** b"
