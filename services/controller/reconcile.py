"""What to do about a Dataset or DataLoad: pure functions, no Kubernetes or gRPC I/O.

Each function takes a resource, what the master answered about it and the time, and
returns a `Plan`: actions for the caller to carry out in order (stop at the first
that fails and come back later), the status to write, and when to look again. The
caller (`reservoir.controller.main`) observes, plans, acts and writes the status, so
every decision is here and testable without a cluster.

A Dataset's life:
1. no finalizer yet: add it first, so a delete can never leave a master dataset behind;
2. unknown to the master: create it there (with options taken from Secrets by the
   caller, never put in a plan), start a preload if asked; its spec changed and now
   disagrees with the master on the mount, options or block size: delete and create
   again;
3. known: sync it when its interval has passed; make its PersistentVolume and claim;
   copy the master's figures into the status;
4. being deleted: delete it on the master, then the volume, then drop the finalizer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from reservoir.client import types
from reservoir.controller import cron
from reservoir.controller.resources import (
    API_VERSION,
    CRON,
    CSI_DRIVER,
    FINALIZER,
    DataLoad,
    Dataset,
    SecretOption,
    parse_time,
    volume_labels,
)
from reservoir.errors import InvalidArgument
from reservoir.origin.open import SECRET_OPTIONS
from reservoir.units import format_size

# How often a settled Dataset's status is refreshed: cached bytes change on the
# master without any Kubernetes event, and `kubectl get datasets` should follow.
STATUS_INTERVAL_S = 10.0
# While a dataset is listed or a load runs, look more often: progress moves.
BUSY_INTERVAL_S = 1.0
# A Dataset or DataLoad waiting on something else (the master, its Dataset).
WAIT_INTERVAL_S = 3.0
# PersistentVolumes need a capacity, but a dataset's size is unknown when it is made
# and changes on sync, and a claim's request can never shrink: claim a nominal size
# larger than any dataset, as Fluid does. The real size is in the Dataset's status.
NOMINAL_CAPACITY = "100Pi"
READY = "Ready"
STARTING = "Starting"  # a DataLoad whose start is recorded, its job ID not yet
_NEVER = datetime.max.replace(tzinfo=UTC)


# -- actions -----------------------------------------------------------------------


@dataclass(frozen=True)
class AddFinalizer:
    pass


@dataclass(frozen=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True)
class CreateDataset:
    """Options from Secrets are references here; the caller reads them when acting."""

    name: str
    uri: str
    options: dict[str, str]
    secret_options: tuple[SecretOption, ...]
    block_size: int


@dataclass(frozen=True)
class DeleteDataset:
    name: str


@dataclass(frozen=True)
class SyncDataset:
    name: str


@dataclass(frozen=True)
class UpdateCredentials:
    """A Secret the mount names has changed: the caller reads the values again and
    gives them to the master, which keeps the tree and the cache."""

    name: str
    secret_options: tuple[SecretOption, ...]


@dataclass(frozen=True)
class StartLoad:
    """Its job ID goes into status field `record`. `request_id` names the run, so a
    start that is repeated (its answer lost) gets the job the first one started."""

    dataset: str
    paths: tuple[str, ...]
    record: str
    request_id: str = ""


@dataclass(frozen=True)
class EnsureVolume:
    """Create these if missing (a bound PV and claim are otherwise left alone); ones
    of these names that are not the Dataset's (`owner_uid`) are a conflict."""

    pv: dict[str, Any]
    pvc: dict[str, Any]
    owner_uid: str


@dataclass(frozen=True)
class DeleteVolume:
    """Delete the claim and PV, only those that are the Dataset's (`owner_uid`)."""

    pv: str
    namespace: str
    pvc: str
    owner_uid: str


Action = (
    AddFinalizer
    | RemoveFinalizer
    | CreateDataset
    | DeleteDataset
    | SyncDataset
    | UpdateCredentials
    | StartLoad
    | EnsureVolume
    | DeleteVolume
)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    status: dict[str, Any] | None = None  # None: leave the status alone
    requeue_after: float | None = None  # seconds; None: only on the next event
    # Written before the actions: a load's "Starting" record, so that a start whose
    # job ID was never recorded is seen as such on the next reconcile.
    intent: dict[str, Any] | None = None

    @property
    def master_actions(self) -> tuple[Action, ...]:
        changes = (CreateDataset, DeleteDataset, SyncDataset, UpdateCredentials, StartLoad)
        return tuple(a for a in self.actions if isinstance(a, changes))


# -- helpers -----------------------------------------------------------------------


def _time(t: datetime) -> str:
    """RFC 3339 in UTC, as the API server writes times."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def percent(part: int, whole: int) -> str:
    """Rounded down, so that 100.0% means every byte; nothing of nothing is 0.0%."""
    return f"{part * 1000 // whole / 10:.1f}%" if whole > 0 else "0.0%"


def duration(seconds: float) -> str:
    """12s, 3m4s, 2h5m: as kubectl prints ages."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h{s % 3600 // 60}m"


def condition(
    previous: list[dict[str, Any]] | None,
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions list with `kind` set; its transition time moves only when its
    status does, as Kubernetes conventions ask."""
    status = "True" if ok else "False"
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else _time(now)
    others = [c for c in previous or [] if c.get("type") != kind]
    return [
        *others,
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        },
    ]


# -- datasets ----------------------------------------------------------------------


def volume_name(ds: Dataset) -> str:
    return f"reservoir-{ds.master_name}"


def volume(ds: Dataset) -> EnsureVolume:
    """A static PV bound to the CSI driver, pre-bound to a claim named as the Dataset,
    owned by it (the claim is collected with it; a PV is cluster-scoped, so the
    controller deletes that itself)."""
    labels = volume_labels(ds.meta.namespace, ds.meta.name)
    pv_name = volume_name(ds)
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": labels},
        "spec": {
            "capacity": {"storage": NOMINAL_CAPACITY},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {"namespace": ds.meta.namespace, "name": ds.meta.name},
            "csi": {
                "driver": CSI_DRIVER,
                "volumeHandle": ds.master_name,
                "readOnly": True,
                "volumeAttributes": {"dataset": ds.master_name},
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": ds.meta.name,
            "namespace": ds.meta.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Dataset",
                    "name": ds.meta.name,
                    "uid": ds.meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "resources": {"requests": {"storage": NOMINAL_CAPACITY}},
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "volumeName": pv_name,
        },
    }
    return EnsureVolume(pv, pvc, ds.meta.uid)


def _create(ds: Dataset) -> list[Action]:
    ds.mount.check_credentials_only()  # the caller reads these Secrets
    actions: list[Action] = [
        CreateDataset(
            ds.master_name, ds.mount.uri, ds.mount.options, ds.mount.secret_options, ds.block_size
        )
    ]
    if ds.preload:
        actions.append(_preload(ds))
    return actions


def _preload(ds: Dataset) -> StartLoad:
    return StartLoad(ds.master_name, (), "preloadJob", f"{ds.meta.uid}/preload")


def _differs(ds: Dataset, master: types.Dataset) -> str:
    """Why the master's dataset no longer matches the spec ("" if it does). Secret
    options are redacted by the master, so only plain options are compared."""
    if master.mount != ds.mount.uri:
        return f"mount changed from {master.mount} to {ds.mount.uri}"
    if ds.block_size and master.block_size != ds.block_size:
        return f"block size changed from {master.block_size} to {ds.block_size}"
    plain = {k: v for k, v in master.options.items() if k not in SECRET_OPTIONS}
    from_secrets = {o.option for o in ds.mount.secret_options}
    wanted = {k: v for k, v in ds.mount.options.items() if k not in SECRET_OPTIONS | from_secrets}
    ours = {k: v for k, v in plain.items() if k not in from_secrets}
    if ours != wanted:
        return "mount options changed"
    return ""


def _figures(master: types.Dataset) -> dict[str, Any]:
    return {
        "fileCount": master.file_count,
        "totalBytes": master.total_bytes,
        "totalSize": format_size(master.total_bytes),
        "cachedBytes": master.cached_bytes,
        "cached": format_size(master.cached_bytes),
        "cachedPercentage": percent(master.cached_bytes, master.total_bytes),
        "originBytesRead": master.origin_bytes_read,
    }


def dataset_status(
    ds: Dataset, master: types.Dataset | None, now: datetime, *, phase: str, message: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "masterName": ds.master_name,
        "observedGeneration": ds.meta.generation,
        "message": message,
    }
    if master is not None:
        status.update(_figures(master))
        if master.synced_ms:
            status["lastSyncTime"] = _time(_from_ms(master.synced_ms))
    ok = phase == READY
    reason = {"Ready": "Cached", "Pending": "Listing", "Failed": "Failed"}.get(phase, phase)
    status["conditions"] = condition(
        ds.status.get("conditions"), READY, ok, reason, message or f"dataset is {phase}", now
    )
    return status


def reconcile_dataset(
    ds: Dataset,
    master: types.Dataset | None,
    now: datetime,
    *,
    conflict: str = "",
    error: str = "",
    secret_versions: dict[str, str] | None = None,
) -> Plan:
    """`master`: the master's dataset of this name, None if it has none. `conflict`:
    another Dataset that maps to the same master name. `error`: why the last attempt
    to act failed, shown until an attempt succeeds. `secret_versions`: the
    resourceVersion of each Secret the mount names ("" if missing), observed before
    any action reads them; recorded in the status, and a change is given to the
    master."""
    if ds.meta.deleting:
        if FINALIZER not in ds.meta.finalizers:
            return Plan()  # not ours to hold back any more
        actions: list[Action] = [DeleteDataset(ds.master_name)] if master is not None else []
        actions += [
            DeleteVolume(volume_name(ds), ds.meta.namespace, ds.meta.name, ds.meta.uid),
            RemoveFinalizer(),
        ]
        status = dataset_status(ds, master, now, phase="Deleting", message=error)
        return Plan(tuple(actions), status, WAIT_INTERVAL_S)
    if conflict:
        message = f"master-side name {ds.master_name} is taken by Dataset {conflict}: rename one"
        return Plan((), dataset_status(ds, None, now, phase="Failed", message=message))

    actions = [] if FINALIZER in ds.meta.finalizers else [AddFinalizer()]
    if master is None:
        actions += _create(ds)
        status = dataset_status(
            ds, None, now, phase="Failed" if error else "Pending", message=error
        )
        if secret_versions is not None:
            status["secretVersions"] = secret_versions
        return Plan(tuple(actions), status, WAIT_INTERVAL_S if error else 0)
    spec_changed = ds.status.get("observedGeneration") != ds.meta.generation
    if spec_changed and (change := _differs(ds, master)):
        # Only on a spec change: a difference the master keeps (its own normal form)
        # must never become a loop of deleting and creating.
        actions += [DeleteDataset(ds.master_name), *_create(ds)]
        status = dataset_status(ds, master, now, phase="Pending", message=f"recreating: {change}")
        if secret_versions is not None:
            status["secretVersions"] = secret_versions
        return Plan(tuple(actions), status, 0)
    synced_s = (now.timestamp() * 1000 - master.synced_ms) / 1000
    if ds.sync_interval_s and master.phase == READY and synced_s >= ds.sync_interval_s:
        actions.append(SyncDataset(ds.master_name))
    if ds.preload and master.phase == READY and not ds.status.get("preloadJob"):
        # From what is observed, not only in the plan that creates: a controller that
        # died between the create and the start left a dataset with no preload. The
        # run's key makes the master answer the first start's job if there was one.
        actions.append(_preload(ds))
    recorded = ds.status.get("secretVersions")
    rotated = secret_versions is not None and recorded not in (None, secret_versions)
    if rotated and master.phase == READY:  # else: once it is (a listing would undo it)
        actions.append(UpdateCredentials(ds.master_name, ds.mount.secret_options))
        recorded = secret_versions
    actions.append(volume(ds))
    phase = "Failed" if error else master.phase
    message = error or master.message
    status = dataset_status(ds, master, now, phase=phase, message=message)
    if "preloadJob" in ds.status:
        status["preloadJob"] = ds.status["preloadJob"]
    if (versions := secret_versions if recorded is None else recorded) is not None:
        status["secretVersions"] = versions
    busy = master.phase == "Pending" or error
    interval = BUSY_INTERVAL_S if busy else STATUS_INTERVAL_S
    if ds.sync_interval_s:
        interval = min(interval, max(1.0, ds.sync_interval_s - synced_s))
    return Plan(tuple(actions), status, interval)


def claimants(datasets: list[Dataset]) -> dict[str, str]:
    """For each Dataset key, the key of an older Dataset that maps to the same master
    name (a collision the name mapping cannot rule out: `a-b`/`c` and `a`/`b-c`)."""
    first: dict[str, Dataset] = {}
    for ds in sorted(datasets, key=lambda d: (d.meta.created or _NEVER, d.meta.key)):
        first.setdefault(ds.master_name, ds)
    return {
        ds.meta.key: first[ds.master_name].meta.key
        for ds in datasets
        if first[ds.master_name].meta.key != ds.meta.key
    }


# -- loads -------------------------------------------------------------------------


def load_status(
    load: DataLoad, job: types.LoadJob | None, now: datetime, **extra: Any
) -> dict[str, Any]:
    kept = ("jobId", "datasetUID", "lastScheduleTime", "startTime")
    status: dict[str, Any] = {k: v for k, v in load.status.items() if k in kept}
    status["observedGeneration"] = load.meta.generation
    if job is not None:
        end = job.finished_ms or now.timestamp() * 1000
        status.update(
            phase=job.state,
            progress="100.0%"
            if job.state == "Succeeded" and not job.total_bytes
            else percent(job.loaded_bytes, job.total_bytes),
            duration=duration((end - job.started_ms) / 1000),
            loadedBytes=job.loaded_bytes,
            totalBytes=job.total_bytes,
            message=job.message,
        )
        if job.finished_ms:
            status["completionTime"] = _time(_from_ms(job.finished_ms))
    status.update(extra)
    return status


def _schedule_next(load: DataLoad) -> datetime:
    schedule = cron.Schedule.parse(load.schedule)
    since = parse_time(load.status.get("lastScheduleTime")) or load.meta.created
    if since is None:
        raise InvalidArgument("the DataLoad has no creation time yet")
    return schedule.next_after(since)


def _start(
    load: DataLoad, dataset: Dataset, start: StartLoad, now: datetime, since: str, **extra: Any
) -> Plan:
    """Record the start (phase Starting), start, then show it Running; the caller
    adds the job ID the master answered. The previous run's job ID is dropped (None:
    the merge patch deletes it), so a start of this run that fails shows as Starting
    without a job ID and is retried, not taken for the previous run's result."""
    start = replace(start, request_id=f"{load.meta.uid}/{since}")  # one job per run
    fields = {
        "progress": "0.0%",
        "startTime": since,
        "jobId": None,
        "datasetUID": dataset.meta.uid,
        **extra,
    }
    intent = load_status(load, None, now, phase=STARTING, **fields)
    status = load_status(load, None, now, phase="Running", **fields)
    return Plan((start,), status, BUSY_INTERVAL_S, intent=intent)


def reconcile_load(
    load: DataLoad,
    dataset: Dataset | None,
    job: types.LoadJob | None,
    now: datetime,
    *,
    error: str = "",
) -> Plan:
    """`dataset`: the Dataset the load names, None if there is none. `job`: the
    master's answer for `status.jobId` (None if no job or the master forgot it)."""
    if load.meta.deleting:
        return Plan()
    ran_on = load.status.get("datasetUID", "")
    if dataset is not None and ran_on and ran_on != dataset.meta.uid:
        # The result is of a Dataset since deleted; this one of the name is new.
        forgotten = ("jobId", "datasetUID", "startTime")
        load = replace(load, status={k: v for k, v in load.status.items() if k not in forgotten})
        job = None
    job_id = load.status.get("jobId", "")
    if error:
        return Plan((), load_status(load, job, now, phase="Failed", message=error), WAIT_INTERVAL_S)
    if job_id and job is None:
        message = f"the master no longer knows load job {job_id}"
        return Plan((), load_status(load, None, now, phase="Failed", message=message))
    if job is not None and not job.done:
        return Plan((), load_status(load, job, now), BUSY_INTERVAL_S)

    if dataset is None or dataset.meta.deleting:
        # No figures of the last run: they were of a Dataset that is not there now.
        message = f"waiting for Dataset {load.dataset}"
        return Plan(
            (), load_status(load, None, now, phase="Pending", message=message), WAIT_INTERVAL_S
        )
    if dataset.status.get("phase") != READY:
        message = f"waiting for Dataset {load.dataset} to be Ready"
        return Plan(
            (), load_status(load, job, now, phase="Pending", message=message), WAIT_INTERVAL_S
        )

    start = StartLoad(dataset.master_name, load.paths, "jobId")
    if not job_id and load.status.get("phase") == STARTING:
        # A start was recorded but no job ID: it failed, or its answer was lost. Start
        # again with the same run's key: the master answers the job if there is one.
        return _start(load, dataset, start, now, load.status.get("startTime") or _time(now))
    if load.policy != CRON:
        if job is not None:
            return Plan((), load_status(load, job, now))  # Once, and done
        return _start(load, dataset, start, now, _time(now))

    try:
        due = _schedule_next(load)
    except InvalidArgument as exc:
        return Plan((), load_status(load, job, now, phase="Failed", message=str(exc)))
    if due <= now:
        return _start(load, dataset, start, now, _time(now), lastScheduleTime=_time(now))
    pending = {"phase": "Pending", "message": f"next run at {_time(due)}"} if job is None else {}
    status = load_status(load, job, now, nextScheduleTime=_time(due), **pending)
    return Plan((), status, min((due - now).total_seconds(), 3600.0))
