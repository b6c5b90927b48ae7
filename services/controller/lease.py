"""Leader election on a coordination.k8s.io/v1 Lease, so that two controller replicas
never both act: only the holder reconciles; the other watches and waits.

As client-go's leaderelection does, a candidate judges expiry by its own clock: a
Lease whose record has not changed for `duration_s` since this process last saw it
change is free, whatever time the holder wrote into it (clocks of nodes differ).
Writes carry the resourceVersion read, so of two candidates only one wins (409 for
the other). The holder considers itself leader only while its last renewal is younger
than `renew_deadline_s` (< duration), so it stops acting before anyone can take over.
A replica whose work loop is stuck (`worker_alive` false) neither renews nor takes
the Lease, so a standby takes over instead of a hung leader holding it forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from reservoir.controller.kube import Kube

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    identity: str
    name: str = "reservoir-controller"
    duration_s: float = 15.0  # client-go's default
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0


def _micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Decision(Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # ours
    TAKE = "take"  # free or expired
    WAIT = "wait"  # someone else's, still fresh


def decide(lease: dict[str, Any] | None, identity: str, expired: bool) -> Decision:
    if lease is None:
        return Decision.CREATE
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    if holder == identity:
        return Decision.RENEW
    if not holder or expired:
        return Decision.TAKE
    return Decision.WAIT


class Elector:
    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        on_elected: Callable[[], None] = lambda: None,
        worker_alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self._kube = kube
        self._config = config
        self._on_elected = on_elected
        self._worker_alive = worker_alive
        self._renewed = float("-inf")  # monotonic time of our last successful write
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self._lease: dict[str, Any] | None = None

    def is_leader(self) -> bool:
        return time.monotonic() - self._renewed < self._config.renew_deadline_s

    def _body(self, lease: dict[str, Any] | None, taking: bool) -> dict[str, Any]:
        c = self._config
        now = _micro_time(time.time())
        spec = dict((lease or {}).get("spec") or {})
        if taking or lease is None:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(
            holderIdentity=c.identity,
            leaseDurationSeconds=max(1, round(c.duration_s)),
            renewTime=now,
        )
        metadata: dict[str, Any] = {"name": c.name, "namespace": c.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def step(self) -> bool:
        """One round: read the Lease, take or renew it if we may. True if we lead."""
        c = self._config
        lease = self._kube.get_lease(c.namespace, c.name)
        spec = (lease or {}).get("spec") or {}
        record = (spec.get("holderIdentity") or "", spec.get("renewTime") or "")
        now = time.monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or c.duration_s)
        action = decide(lease, c.identity, expired=now - self._seen_at >= duration)
        if action is Decision.WAIT:
            return self.is_leader()
        if not self._worker_alive():
            log.warning("the work loop is stuck: not holding Lease %s/%s", c.namespace, c.name)
            return self.is_leader()
        was_leader = self.is_leader()
        try:
            if action is Decision.CREATE:
                self._kube.create_lease(c.namespace, self._body(None, True))
            else:
                take = action is Decision.TAKE
                self._kube.replace_lease(c.namespace, c.name, self._body(lease, take))
        except ApiException as exc:
            if exc.status == 409:  # another candidate wrote first
                return self.is_leader()
            raise
        self._renewed = now
        if not was_leader:
            log.info("leading as %s (Lease %s/%s)", c.identity, c.namespace, c.name)
            self._on_elected()
        return True

    def run(self, stop: threading.Event) -> None:
        """Campaign and renew until `stop`; then hand the Lease back if we hold it."""
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the elector must keep campaigning
                log.warning("lease %s: %s", self._config.name, exc)
            stop.wait(self._config.retry_s)
        self.release()

    def release(self) -> None:
        """Let a standby take over at once instead of after the lease duration."""
        if not self.is_leader():
            return
        c = self._config
        self._renewed = float("-inf")
        try:
            lease = self._kube.get_lease(c.namespace, c.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == c.identity:
                body = self._body(lease, False)
                body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
                self._kube.replace_lease(c.namespace, c.name, body)
                log.info("released Lease %s/%s", c.namespace, c.name)
        except (ApiException, HTTPError, OSError) as exc:
            log.warning("releasing lease %s: %s", c.name, exc)
