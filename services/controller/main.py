"""`reservoir controller`: the loop that keeps Dataset and DataLoad resources and the
master in agreement.

Threads: one per kind lists and watches it into a cache and queues the keys that
changed; the Lease elector campaigns and renews; one worker takes due keys and, while
this replica leads, reconciles them one at a time: observe (the cache, the master),
plan (`reconcile`, pure), act (master over gRPC, Kubernetes), write the status, and
queue the key again when the plan asks. A replica that does not lead keeps its cache
warm and does nothing else; on election it queues every key.

Secret values read for a mount are redacted (`***`) from every log record and every
status message this process writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from reservoir.client import types
from reservoir.client.client import Client
from reservoir.controller import reconcile as r
from reservoir.controller.health import Heartbeat, serve_health
from reservoir.controller.kube import CONFLICT, GONE, Kube, Obj, api_client, status_of
from reservoir.controller.lease import Elector, LeaseConfig
from reservoir.controller.resources import (
    DATALOADS,
    DATASETS,
    FINALIZER,
    DataLoad,
    Dataset,
)
from reservoir.controller.workqueue import WorkQueue
from reservoir.errors import AlreadyExists, NotFound, ReservoirError, Unavailable

log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 300  # the API server ends watches anyway; start a fresh one this often
RETRY_MAX_S = 60.0  # failing actions are retried with doubling delays up to this
CONFLICT_RETRY_S = 0.2


@dataclass(frozen=True)
class ControllerConfig:
    master: str
    namespace: str | None = None  # watch only this namespace; None: all
    kubeconfig: str | None = None
    identity: str = ""  # Lease holder name; default: POD_NAME or host-random
    lease_namespace: str = ""  # default: POD_NAMESPACE, else --namespace, else "default"
    lease_name: str = "reservoir-controller"
    lease_duration_s: float = 15.0
    health_listen: str = ""  # HOST:PORT for /healthz; "" serves none


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{secrets.token_hex(3)}"


class Redactor(logging.Filter):
    """Replaces every known secret value in log records with ***."""

    def __init__(self) -> None:
        super().__init__()
        self.values: set[str] = set()

    def add(self, value: str) -> None:
        if value:
            self.values.add(value)

    def redact(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class Controller:
    def __init__(
        self, kube: Kube, client: Client, lease: LeaseConfig, redactor: Redactor | None = None
    ) -> None:
        self.kube = kube
        self.client = client
        self.queue = WorkQueue()
        self.cache: dict[str, dict[str, Obj]] = {DATASETS: {}, DATALOADS: {}}
        self.redactor = redactor or Redactor()
        self.elector = Elector(kube, lease, on_elected=self._queue_all)
        self.heartbeat = Heartbeat()
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._failures: dict[str, int] = {}

    # -- watching ----------------------------------------------------------------------

    def _queue_all(self) -> None:
        with self._lock:
            keys = [f"{kind}:{k}" for kind, objs in self.cache.items() for k in objs]
        for key in keys:
            self.queue.put(key)

    def _store(self, plural: str, event: str, obj: Obj) -> None:
        m = obj.get("metadata") or {}
        key = f"{m.get('namespace', '')}/{m.get('name', '')}"
        with self._lock:
            if event == "DELETED":
                self.cache[plural].pop(key, None)
            else:
                self.cache[plural][key] = obj
            waiting = (
                [
                    k
                    for k, o in self.cache[DATALOADS].items()
                    if k.startswith(f"{m.get('namespace', '')}/")
                    and (o.get("spec") or {}).get("dataset") == m.get("name")
                ]
                if plural == DATASETS
                else []
            )
        self.queue.put(f"{plural}:{key}")
        for k in waiting:  # loads waiting for this Dataset to be Ready
            self.queue.put(f"{DATALOADS}:{k}")

    def watch(self, plural: str, stop: threading.Event) -> None:
        """List, then watch from there; list again when the watch ends or expires."""
        while not stop.is_set():
            try:
                items, version = self.kube.list(plural)
                with self._lock:
                    self.cache[plural] = {}
                for obj in items:
                    self._store(plural, "ADDED", obj)
                while not stop.is_set():
                    for event, obj in self.kube.watch(plural, version, WATCH_TIMEOUT_S):
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        self._store(plural, event, obj)
                        if stop.is_set():
                            return
            except (ApiException, HTTPError, OSError, ValueError) as exc:
                if status_of(exc) != GONE:
                    log.warning("watching %s: %s", plural, exc)
                    stop.wait(1.0)

    # -- reconciling -------------------------------------------------------------------

    def work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat()
            key = self.queue.get(timeout=0.5)
            if key is None or not self.elector.is_leader():
                continue  # on election every key is queued again
            try:
                self.reconcile(key)
            except Exception:
                log.exception("reconciling %s", key)
                self.queue.put(key, self._backoff(key))

    def _backoff(self, key: str) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        return min(RETRY_MAX_S, 2.0 ** (n - 1))

    def reconcile(self, key: str) -> None:
        plural, _, name = key.partition(":")
        with self._lock:
            obj = self.cache[plural].get(name)
            datasets = [Dataset.of(o) for o in self.cache[DATASETS].values() if _valid(o)]
        if obj is None:
            return
        now = datetime.now(UTC)
        error = self._errors.get(key, "")
        try:
            if plural == DATASETS:
                ds = Dataset.of(obj)
                conflict = r.claimants(datasets).get(ds.meta.key, "")
                plan = r.reconcile_dataset(
                    ds, self._master_dataset(ds.master_name), now, conflict=conflict, error=error
                )
            else:
                load = DataLoad.of(obj)
                with self._lock:
                    target = self.cache[DATASETS].get(f"{load.meta.namespace}/{load.dataset}")
                dataset = Dataset.of(target) if target and _valid(target) else None
                job = self._job(load.status.get("jobId", ""))
                plan = r.reconcile_load(load, dataset, job, now, error=error)
        except ReservoirError as exc:  # a spec the schema let through, the master down
            self._fail(key, plural, obj, exc)
            return

        fragments: dict[str, Any] = {}
        released = False
        try:
            for action in plan.actions:
                fragments.update(self._act(plural, obj, action))
                released = released or isinstance(action, r.RemoveFinalizer)
        except (ReservoirError, ApiException, HTTPError, OSError) as exc:
            if status_of(exc) == CONFLICT:  # our copy was stale: the watch brings the new one
                self.queue.put(key, CONFLICT_RETRY_S)
                return
            self._fail(key, plural, obj, exc)
            return
        if self._errors.pop(key, None) is not None:
            log.info("%s: recovered", key)
        self._failures.pop(key, None)
        if released:
            return  # the object is gone, or about to be
        if plan.status is not None:
            status = {**plan.status, **fragments}
            finished = status.get("phase") in ("Succeeded", "Failed")
            if (
                plural == DATALOADS
                and finished
                and obj.get("status", {}).get("phase") != status["phase"]
            ):
                # The Dataset's cached figures have moved: show them now, not at the next refresh.
                ns = obj["metadata"]["namespace"]
                self.queue.put(f"{DATASETS}:{ns}/{obj['spec']['dataset']}")
            self._write_status(plural, obj, status)
        if plan.master_actions or (plan.actions and plan.requeue_after == 0):
            self.queue.put(key)  # look at the master's answer at once
        elif plan.requeue_after is not None:
            self.queue.put(key, plan.requeue_after)

    def _fail(self, key: str, plural: str, obj: Obj, exc: BaseException) -> None:
        """Show why in the status and retry later. The master out of reach is
        transient: the phase stays; anything else makes the resource Failed, and the
        next attempt plans with the error so that the status keeps saying why."""
        reason = self.redactor.redact(_reason(exc))
        transient = isinstance(exc, Unavailable)
        delay = self._backoff(key)
        log.warning("%s: %s (retry in %.0f s)", key, reason, delay)
        if not transient:
            self._errors[key] = reason
        self.queue.put(key, delay)
        status = dict(obj.get("status") or {})
        if transient:
            status.setdefault("phase", "Pending")
        elif status.get("phase") != "Deleting":
            status["phase"] = "Failed"
        status["message"] = reason
        try:
            self._write_status(plural, obj, status)
        except (ApiException, HTTPError, OSError) as write_error:
            log.warning("%s: writing status: %s", key, write_error)

    def _write_status(self, plural: str, obj: Obj, status: dict[str, Any]) -> None:
        if "message" in status:
            status["message"] = self.redactor.redact(str(status["message"]))
        if status == obj.get("status"):
            return  # nothing changed: no write, no watch event, no loop
        m = obj["metadata"]
        updated = self.kube.patch_status(plural, m["namespace"], m["name"], status)
        self._store(plural, "MODIFIED", updated)

    def _master_dataset(self, name: str) -> types.Dataset | None:
        try:
            return self.client.dataset(name)
        except NotFound:
            return None

    def _job(self, job_id: str) -> types.LoadJob | None:
        if not job_id:
            return None
        try:
            return self.client.load_job(job_id)
        except NotFound:
            return None

    def _act(self, plural: str, obj: Obj, action: r.Action) -> dict[str, Any]:
        """Carry out one action; status fields it produced (a load's job ID)."""
        m = obj["metadata"]
        match action:
            case r.AddFinalizer() | r.RemoveFinalizer():
                finalizers = [f for f in m.get("finalizers") or [] if f != FINALIZER]
                if isinstance(action, r.AddFinalizer):
                    finalizers.append(FINALIZER)
                updated = self.kube.set_finalizers(
                    plural, m["namespace"], m["name"], finalizers, m["resourceVersion"]
                )
                obj["metadata"] = updated["metadata"]
                log.info("%s/%s: finalizers %s", m["namespace"], m["name"], finalizers)
            case r.CreateDataset():
                options = dict(action.options)
                for ref in action.secret_options:
                    value = self.kube.secret_value(m["namespace"], ref.secret, ref.key)
                    self.redactor.add(value)
                    options[ref.option] = value
                log.info("creating dataset %s over %s on the master", action.name, action.uri)
                with contextlib.suppress(AlreadyExists):  # made by us a moment ago
                    self.client.create_dataset(
                        action.name, action.uri, options, block_size=action.block_size
                    )
            case r.DeleteDataset():
                log.info("deleting dataset %s on the master", action.name)
                with contextlib.suppress(NotFound):
                    self.client.delete_dataset(action.name)
            case r.SyncDataset():
                result = self.client.sync_dataset(action.name)
                log.info(
                    "synced %s: %d added, %d changed, %d removed",
                    action.name,
                    result.added,
                    result.changed,
                    result.removed,
                )
            case r.StartLoad():
                job = self.client.load(action.dataset, action.paths)
                log.info("load %s of %s started for %s/%s", job.id, action.dataset, *_ns(m))
                return {action.record: job.id}
            case r.EnsureVolume():
                self.kube.ensure_volume(action.pv, action.pvc)
            case r.DeleteVolume():
                self.kube.delete_volume(action.pv, action.namespace, action.pvc)
        return {}

    # -- running -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        threads = [
            threading.Thread(target=self.watch, args=(DATASETS, stop), daemon=True),
            threading.Thread(target=self.watch, args=(DATALOADS, stop), daemon=True),
            threading.Thread(target=self.elector.run, args=(stop,), daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            self.work(stop)
        finally:
            stop.set()
            threads[2].join(timeout=5)  # hand the Lease back


def _valid(obj: Obj) -> bool:
    try:
        Dataset.of(obj)
        return True
    except (ReservoirError, KeyError, TypeError, ValueError):
        return False


def _ns(m: Obj) -> tuple[str, str]:
    return m.get("namespace", ""), m.get("name", "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"Kubernetes API: {exc.status} {exc.reason}"
    return str(exc)


def serve(config: ControllerConfig) -> int:
    """Run until SIGTERM or SIGINT."""
    redactor = Redactor()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    identity = config.identity or default_identity()
    lease = LeaseConfig(
        namespace=config.lease_namespace
        or os.environ.get("POD_NAMESPACE")
        or config.namespace
        or "default",
        identity=identity,
        name=config.lease_name,
        duration_s=config.lease_duration_s,
        renew_deadline_s=config.lease_duration_s * 2 / 3,
        retry_s=max(0.5, config.lease_duration_s / 6),
    )
    kube = Kube(api_client(config.kubeconfig, f"reservoir-controller/{identity}"), config.namespace)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    where = f"namespace {config.namespace}" if config.namespace else "all namespaces"
    log.info("controller %s: master %s, watching %s", identity, config.master, where)
    with Client(config.master) as client:
        controller = Controller(kube, client, lease, redactor)
        health = (
            serve_health(config.health_listen, controller.heartbeat)
            if config.health_listen
            else None
        )
        try:
            controller.run(stop)
        finally:
            if health:
                health.shutdown()
    log.info("controller %s stopped", identity)
    return 0
