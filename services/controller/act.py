"""What a reconcile does to the world, once the planner (`reconcile`) has decided: the
actions of a plan carried out on the master (over gRPC) and on Kubernetes, and the
status written back.

A status write sends only what changed, with removed keys as null (a JSON merge patch
keeps keys it is not told to drop), and stores the object it got back in the
informer's cache as a write of our own: the watch event that echoes it is not a
change, so the controller's own writes never queue a key again.

Secret values read for a mount are given to the redactor before anything can log
them, and every status message is redacted before it is written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from reservoir.client.client import Client
from reservoir.controller import reconcile as planner
from reservoir.controller.informer import Informer
from reservoir.controller.kube import Kube, Obj, status_of
from reservoir.controller.redact import Redactor
from reservoir.controller.resources import FINALIZER, SecretOption
from reservoir.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)


class Actor:
    """Carries out plans for the controller: every change it makes outside its own
    memory goes through here."""

    def __init__(self, kube: Kube, client: Client, informer: Informer, redactor: Redactor) -> None:
        self.kube = kube
        self.client = client
        self.informer = informer
        self.redactor = redactor

    def act(self, plural: str, obj: Obj, action: planner.Action) -> dict[str, Any]:
        """Carry out one action; status fields it produced (a load's job ID)."""
        m = obj["metadata"]
        match action:
            case planner.AddFinalizer() | planner.RemoveFinalizer():
                finalizers = [f for f in m.get("finalizers") or [] if f != FINALIZER]
                if isinstance(action, planner.AddFinalizer):
                    finalizers.append(FINALIZER)
                updated = self.kube.set_finalizers(
                    plural, m["namespace"], m["name"], finalizers, m["resourceVersion"]
                )
                obj["metadata"] = updated["metadata"]
                self.informer.store(plural, "MODIFIED", updated, base=m["resourceVersion"])
                log.info("%s/%s: finalizers %s", m["namespace"], m["name"], finalizers)
            case planner.CreateDataset():
                options = {
                    **action.options,
                    **self._secret_values(m["namespace"], action.secret_options),
                }
                log.info("creating dataset %s over %s on the master", action.name, action.uri)
                with contextlib.suppress(AlreadyExists):  # made by us a moment ago
                    self.client.create_dataset(
                        action.name, action.uri, options, block_size=action.block_size
                    )
            case planner.DeleteDataset():
                log.info("deleting dataset %s on the master", action.name)
                with contextlib.suppress(NotFound):
                    self.client.delete_dataset(action.name)
            case planner.SyncDataset():
                result = self.client.sync_dataset(action.name)
                log.info(
                    "synced %s: %d added, %d changed, %d removed",
                    action.name,
                    result.added,
                    result.changed,
                    result.removed,
                )
            case planner.UpdateCredentials():
                credentials = self._secret_values(m["namespace"], action.secret_options)
                self.client.update_credentials(action.name, credentials)
                log.info("credentials of %s updated from their Secrets", action.name)
            case planner.StartLoad():
                job = self.client.load(action.dataset, action.paths, request_id=action.request_id)
                log.info("load %s of %s started for %s/%s", job.id, action.dataset, *ns(m))
                return {action.record: job.id}
            case planner.EnsureVolume():
                self.kube.ensure_volume(action.pv, action.pvc, action.owner_uid)
            case planner.DeleteVolume():
                self.kube.delete_volume(action.pv, action.namespace, action.pvc, action.owner_uid)
        return {}

    def write_status(self, plural: str, obj: Obj, status: dict[str, Any], attempts: int = 1) -> Obj:
        """Make the stored status `status` (keys it lacks are removed); the object as
        written. `attempts` > 1 for a status that records what the master answered."""
        if "message" in status:
            status["message"] = self.redactor.redact(str(status["message"]))
        old = obj.get("status") or {}
        if status == old:
            return obj  # nothing changed: no write, no watch event, no loop
        patch = {**status, **{k: None for k in old if k not in status}}
        m = obj["metadata"]
        for attempt in range(1, attempts + 1):
            try:
                updated = self.kube.patch_status(plural, m["namespace"], m["name"], patch)
                break
            except (ApiException, HTTPError, OSError) as exc:
                if attempt == attempts or status_of(exc) in (400, 404, 422):
                    raise
                log.warning("%s/%s: writing status: %s (again)", *ns(m), exc)
                time.sleep(0.5 * attempt)
        self.informer.store(plural, "MODIFIED", updated, base=m["resourceVersion"])
        return updated

    def _secret_values(self, namespace: str, refs: tuple[SecretOption, ...]) -> dict[str, str]:
        """The options these references name, their values kept out of every log."""
        values = {}
        for ref in refs:
            values[ref.option] = self.kube.secret_value(namespace, ref.secret, ref.key)
            self.redactor.add(values[ref.option])
        return values


def ns(m: Obj) -> tuple[str, str]:
    """An object's namespace and name, from its metadata, for messages."""
    return m.get("namespace", ""), m.get("name", "")
