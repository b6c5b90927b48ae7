"""The controller's Kubernetes I/O, on the official client: list and watch our custom
resources, patch their status and finalizers, read Secret keys, make and delete the
PersistentVolume and claim of a Dataset, and read and write the leader Lease.

Objects travel as plain JSON dicts (the API server's own shape), never the client's
generated models: the reconcile functions and the tests speak that shape, and Lease
times stay in the MicroTime format the server writes. Nothing here logs a Secret's
value, and errors about Secrets name the Secret and key only.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from reservoir.controller.resources import GROUP, VERSION
from reservoir.errors import FailedPrecondition

Obj = dict[str, Any]

NOT_FOUND = 404
CONFLICT = 409
GONE = 410  # a watch's resourceVersion is too old: list again


def api_client(kubeconfig: str | None, user_agent: str) -> k8s.ApiClient:
    """A client from `kubeconfig`, else the pod's service account, else ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        where = kubeconfig or "in-cluster or ~/.kube/config"
        raise FailedPrecondition(
            f"no usable Kubernetes configuration ({where}): {exc}; give --kubeconfig PATH"
        ) from None
    api = k8s.ApiClient(configuration)
    api.user_agent = user_agent
    return api


def status_of(exc: BaseException) -> int:
    return exc.status if isinstance(exc, ApiException) and exc.status else 0


def _json(response: Any) -> Obj:
    return json.loads(response.data)


class Kube:
    def __init__(self, api: k8s.ApiClient, namespace: str | None = None) -> None:
        """`namespace`: watch only there; None watches every namespace."""
        self.namespace = namespace
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self._coordination = k8s.CoordinationV1Api(api)

    # -- our resources ---------------------------------------------------------------

    def _lister(self, plural: str) -> tuple[Any, tuple[Any, ...]]:
        if self.namespace:
            return self._custom.list_namespaced_custom_object, (
                GROUP,
                VERSION,
                self.namespace,
                plural,
            )
        return self._custom.list_cluster_custom_object, (GROUP, VERSION, plural)

    def list(self, plural: str) -> tuple[list[Obj], str]:
        """Every object of `plural`, and the resourceVersion to watch from."""
        func, args = self._lister(plural)
        answer = func(*args)
        return list(answer.get("items") or []), answer["metadata"].get("resourceVersion", "")

    def watch(
        self, plural: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, Obj]]:
        """(ADDED|MODIFIED|DELETED, object) after `resource_version`, for at most
        `timeout_s`. An expired version raises ApiException 410: list again."""
        func, args = self._lister(plural)
        stream = k8s_watch.Watch().stream(
            func,
            *args,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=False,
        )
        for event in stream:
            obj = event.get("raw_object") or event["object"]
            if event["type"] == "ERROR":
                raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
            yield event["type"], obj

    def patch_status(self, plural: str, namespace: str, name: str, status: Obj) -> Obj:
        return self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}
        )

    def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Obj:
        """Replace the finalizers, only if the object is still at `resource_version`
        (409 otherwise), so a finalizer someone else added in between is not lost."""
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        return self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body
        )

    # -- secrets -----------------------------------------------------------------------

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The value of `key` in Secret `name`; FailedPrecondition naming what is missing."""
        try:
            secret = _json(
                self._core.read_namespaced_secret(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                raise FailedPrecondition(f"Secret {namespace}/{name} does not exist") from None
            raise
        data = secret.get("data") or {}
        if key in data:
            try:
                return base64.b64decode(data[key], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise FailedPrecondition(
                    f"key {key!r} of Secret {namespace}/{name} is not base64 UTF-8 text"
                ) from None
        if key in (secret.get("stringData") or {}):
            return str(secret["stringData"][key])
        raise FailedPrecondition(f"Secret {namespace}/{name} has no key {key!r}")

    # -- volumes -----------------------------------------------------------------------

    def ensure_volume(self, pv: Obj, pvc: Obj) -> None:
        """Create the PV and the claim unless they exist (existing ones are kept: a
        bound volume's spec cannot change)."""
        try:
            self._core.read_persistent_volume(pv["metadata"]["name"], _preload_content=False)
        except ApiException as exc:
            if exc.status != NOT_FOUND:
                raise
            self._create(lambda: self._core.create_persistent_volume(pv, _preload_content=False))
        namespace, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        try:
            self._core.read_namespaced_persistent_volume_claim(
                name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != NOT_FOUND:
                raise
            self._create(
                lambda: self._core.create_namespaced_persistent_volume_claim(
                    namespace, pvc, _preload_content=False
                )
            )

    @staticmethod
    def _create(call: Any) -> None:
        try:
            call()
        except ApiException as exc:
            if exc.status != CONFLICT:  # made meanwhile: as good
                raise

    def delete_volume(self, pv: str, namespace: str, pvc: str) -> None:
        """Delete the claim then the PV; either already gone is fine."""
        for call in (
            lambda: self._core.delete_namespaced_persistent_volume_claim(
                pvc, namespace, _preload_content=False
            ),
            lambda: self._core.delete_persistent_volume(pv, _preload_content=False),
        ):
            try:
                call()
            except ApiException as exc:
                if exc.status != NOT_FOUND:
                    raise

    # -- the leader Lease --------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        try:
            return _json(
                self._coordination.read_namespaced_lease(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        """409 if someone created it first."""
        return _json(
            self._coordination.create_namespaced_lease(namespace, body, _preload_content=False)
        )

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """409 unless body's resourceVersion is still the Lease's: one writer wins."""
        return _json(
            self._coordination.replace_namespaced_lease(
                name, namespace, body, _preload_content=False
            )
        )
