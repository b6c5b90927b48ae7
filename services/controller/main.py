"""`reservoir controller`: the loop that keeps Dataset and DataLoad resources and the
master in agreement.

Threads: one per kind lists and watches it into a cache (`informer`) and queues the
keys that changed; the Lease elector campaigns and renews; WORKERS workers take due
keys and reconcile them side by side, one key by one worker at a time (so a slow
or unreachable master holds up one key, not every other behind it): observe (the
cache, the master), plan (`planner`, pure), act (`act`: the master over gRPC,
Kubernetes), write the status (`act` too), and queue the key again when the plan
asks. Leadership is checked here before each action and status write, not only when a
key is taken. A replica that does not lead keeps its cache warm and does nothing
else; on election it queues every key.

Secret values read for a mount are redacted (`***`) from every log record and every
status message this process writes (`redact`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from reservoir.client import types
from reservoir.client.client import Client
from reservoir.controller import reconcile as planner
from reservoir.controller.act import Actor
from reservoir.controller.health import STALE_S, Heartbeat, serve_health
from reservoir.controller.informer import Informer
from reservoir.controller.kube import CONFLICT, Kube, Obj, SecretMissing, api_client, status_of
from reservoir.controller.lease import Elector, LeaseConfig
from reservoir.controller.redact import Redactor
from reservoir.controller.resources import DATALOADS, DATASETS, DataLoad, Dataset
from reservoir.controller.workqueue import WorkQueue
from reservoir.errors import NotFound, ReservoirError, Unavailable

log = logging.getLogger(__name__)

RETRY_MAX_S = 60.0  # failing actions are retried with doubling delays up to this
SECRET_RETRY_S = 5.0  # a missing Secret (one GET, no master call) is looked for this often
CONFLICT_RETRY_S = 0.2
RECORD_ATTEMPTS = 3  # writes of what the master answered (a job ID) are tried this often
WORKERS = 8  # keys reconciled side by side: threads that mostly wait on the master


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


class NotLeading(Exception):
    """The Lease was lost in the middle of a reconcile: stop acting."""


class Controller:
    def __init__(
        self,
        kube: Kube,
        client: Client,
        lease: LeaseConfig,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.client = client
        self.clock = clock
        self.queue = WorkQueue()
        self.informer = Informer(kube, (DATASETS, DATALOADS), self._changed)
        self.redactor = redactor or Redactor()
        self.actor = Actor(kube, client, self.informer, self.redactor)
        self.heartbeat = Heartbeat()
        self.elector = Elector(
            kube, lease, on_elected=self._queue_all, worker_alive=self.heartbeat.healthy
        )
        self._errors: dict[str, str] = {}
        self._failures: dict[str, int] = {}

    # -- watching ----------------------------------------------------------------------

    def _queue_all(self) -> None:
        for key in self.informer.all_keys():
            self.queue.put(key)

    def _changed(self, plural: str, key: str, own: bool) -> None:
        if not own:
            self.queue.put(f"{plural}:{key}")
        if plural == DATASETS:  # loads waiting for this Dataset to be Ready
            namespace, _, name = key.partition("/")
            with self.informer.lock:
                waiting = [
                    k
                    for k, o in self.informer.cache[DATALOADS].items()
                    if k.startswith(f"{namespace}/")
                    and (o.get("spec") or {}).get("dataset") == name
                ]
            for k in waiting:
                self.queue.put(f"{DATALOADS}:{k}")

    def problems(self) -> list[str]:
        """What /healthz reports as wrong; empty when healthy."""
        found = []
        if not self.heartbeat.healthy():
            found.append(f"stuck: the work loop has not turned for {STALE_S:.0f} s")
        if not self.informer.healthy():
            found.append("watches of the API server are failing")
        return found

    # -- reconciling -------------------------------------------------------------------

    def work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat()
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                if self.elector.is_leader():  # else: on election every key is queued again
                    self.reconcile(key)
            except Exception:
                log.exception("reconciling %s", key)
                self.queue.put(key, self._backoff(key))
            finally:
                self.queue.done(key)

    def _backoff(self, key: str) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        return min(RETRY_MAX_S, 2.0 ** (n - 1))

    def _lead(self) -> None:
        if not self.elector.is_leader():
            raise NotLeading

    def reconcile(self, key: str) -> None:
        plural, _, name = key.partition(":")
        cached = self.informer.get(plural, name)
        if cached is None:
            return
        obj = dict(cached)  # our copy: actions update its metadata and status
        with self.informer.lock:
            objs = self.informer.cache[DATASETS].values()
            datasets = [Dataset.of(o) for o in objs if _valid(o)]
        now = self.clock()
        error = self._errors.get(key, "")
        try:
            if plural == DATASETS:
                ds = Dataset.of(obj)
                conflict = planner.claimants(datasets).get(ds.meta.key, "")
                plan = planner.reconcile_dataset(
                    ds,
                    self._master_dataset(ds.master_name),
                    now,
                    conflict=conflict,
                    error=error,
                    secret_versions=self._secret_versions(ds),
                )
            else:
                load = DataLoad.of(obj)
                target = self.informer.get(DATASETS, f"{load.meta.namespace}/{load.dataset}")
                dataset = Dataset.of(target) if target and _valid(target) else None
                job = self._job(load.status.get("jobId", ""))
                plan = planner.reconcile_load(load, dataset, job, now, error=error)
        except ReservoirError as exc:  # a spec the schema let through, the master down
            self._fail(key, plural, obj, exc)
            return

        fragments: dict[str, Any] = {}
        released = False
        try:
            if plan.intent is not None:  # recorded before the master is asked
                self._lead()
                obj = self.actor.write_status(plural, obj, plan.intent)
            for action in plan.actions:
                self._lead()
                self.heartbeat.beat()
                fragments.update(self.actor.act(plural, obj, action))
                released = released or isinstance(action, planner.RemoveFinalizer)
            if not fragments:  # nothing the master answered that must be kept
                self._lead()
        except NotLeading:
            log.info("%s: no longer leading, stopped", key)
            return
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
            self.actor.write_status(plural, obj, status, RECORD_ATTEMPTS if fragments else 1)
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
        if isinstance(exc, SecretMissing):
            delay = min(delay, SECRET_RETRY_S)
        log.warning("%s: %s (retry in %.0f s)", key, reason, delay)
        new = self._errors.get(key) != reason
        if not transient:
            self._errors[key] = reason
        self.queue.put(key, delay)
        status = dict(obj.get("status") or {})
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            status["phase"] = "Deleting"  # held by the finalizer until the master answers
        elif transient:
            status.setdefault("phase", "Pending")
        else:
            status["phase"] = "Failed"
        status["message"] = reason
        if plural == DATASETS and not transient:
            status["conditions"] = planner.condition(
                status.get("conditions"), planner.READY, False, "Failed", reason, self.clock()
            )
        if not self.elector.is_leader():
            return
        try:
            self.actor.write_status(plural, obj, status)
            if new and not transient:  # once per new reason: no event storm on retries
                self.kube.record_event(obj, "Warning", "Failed", reason)
        except (ApiException, HTTPError, OSError) as write_error:
            log.warning("%s: writing status: %s", key, write_error)

    def _master_dataset(self, name: str) -> types.Dataset | None:
        try:
            return self.client.dataset(name)
        except NotFound:
            return None

    def _secret_versions(self, ds: Dataset) -> dict[str, str] | None:
        """Each named Secret's resourceVersion, read before any value is: a change
        after this is seen on the next reconcile. None when there is nothing to read."""
        if ds.meta.deleting or not ds.mount.secret_options:
            return None
        names = sorted({ref.secret for ref in ds.mount.secret_options})
        return {name: self.kube.secret_version(ds.meta.namespace, name) for name in names}

    def _job(self, job_id: str) -> types.LoadJob | None:
        if not job_id:
            return None
        try:
            return self.client.load_job(job_id)
        except NotFound:
            return None

    # -- running -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        elector = threading.Thread(target=self.elector.run, args=(stop,), daemon=True)
        threads = [
            threading.Thread(target=self.informer.run, args=(DATASETS, stop), daemon=True),
            threading.Thread(target=self.informer.run, args=(DATALOADS, stop), daemon=True),
            elector,
            *(
                threading.Thread(target=self.work, args=(stop,), daemon=True)
                for _ in range(WORKERS - 1)
            ),
        ]
        for t in threads:
            t.start()
        try:
            self.work(stop)
        finally:
            stop.set()
            elector.join(timeout=5)  # hand the Lease back


def _valid(obj: Obj) -> bool:
    try:
        Dataset.of(obj)
        return True
    except (ReservoirError, KeyError, TypeError, ValueError):
        return False


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
            serve_health(config.health_listen, controller.problems)
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
