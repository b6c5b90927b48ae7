"""The controller's Kubernetes I/O, on the official client: list and watch our custom
resources, patch their status and finalizers, read Secret keys, make and delete the
PersistentVolume and claim of a Dataset, and read and write the leader Lease.

Every call has a client-side timeout (`request_timeout_s`; a watch: its server-side
timeout plus that), so a stalled connection fails and is retried instead of hanging
the worker or the elector for good.

Objects travel as plain JSON dicts (the API server's own shape), never the client's
generated models: the reconcile functions and the tests speak that shape, and Lease
times stay in the MicroTime format the server writes. Nothing here logs a Secret's
value, and errors about Secrets name the Secret and key only.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from reservoir.controller.resources import GROUP, VERSION, volume_labels
from reservoir.errors import AlreadyExists, FailedPrecondition

if TYPE_CHECKING:
    import urllib3

Obj = dict[str, Any]

# _BODY: a body is given as the API's JSON (a dict) where the client's annotations
# ask for its model (V1Lease...): the client's calls are pydantic `validate_call`s,
# which make the model of the dict (hence the `type: ignore[arg-type]` of each).

NOT_FOUND = 404
CONFLICT = 409
GONE = 410  # a watch's resourceVersion is too old: list again
REQUEST_TIMEOUT_S = 30.0


class SecretMissing(FailedPrecondition):
    """A Secret or key a Dataset names is not there (yet): looked for again soon,
    since Secrets are often applied after the resources that use them."""


def api_client(kubeconfig: str | None, user_agent: str) -> k8s.ApiClient:
    """A client from `kubeconfig`, else the pod's service account, else ~/.kube/config."""
    configuration = k8s.Configuration()
    # kubernetes.config has no annotations (the client's API and models do): hence
    # the ignores of the three calls below.
    try:
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
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


def _json(response: object) -> Obj:
    """The JSON body of a call made with `_preload_content=False`: the client
    annotates every call with its model's type, but such a call returns the raw
    urllib3 response."""
    body: Obj = json.loads(cast("urllib3.BaseHTTPResponse", response).data)
    return body


def owned_by(obj: Obj, uid: str) -> bool:
    """Whether `obj` has an ownerReference to the object of this UID."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("uid") == uid for ref in refs)


def labelled(obj: Obj, labels: dict[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


class Kube:
    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        """`namespace`: watch only there; None watches every namespace."""
        self.namespace = namespace
        self.timeout = request_timeout_s
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self._coordination = k8s.CoordinationV1Api(api)

    # -- our resources ---------------------------------------------------------------

    def _lister(self, plural: str) -> tuple[Callable[..., object], tuple[str, ...]]:
        if self.namespace:
            return self._custom.list_namespaced_custom_object, (
                GROUP,
                VERSION,
                self.namespace,
                plural,
            )
        return self._custom.list_cluster_custom_object, (GROUP, VERSION, plural)

    # `builtins.list` in this class's annotations: there, `list` is this method.
    def list(self, plural: str) -> tuple[builtins.list[Obj], str]:
        """Every object of `plural`, and the resourceVersion to watch from."""
        func, args = self._lister(plural)
        # A custom object list: the client gives the API's JSON (type `object`).
        answer = cast(Obj, func(*args, _request_timeout=self.timeout))
        return list(answer.get("items") or []), answer["metadata"].get("resourceVersion", "")

    def watch(
        self, plural: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, Obj]]:
        """(ADDED|MODIFIED|DELETED, object) after `resource_version`, for at most
        `timeout_s`. An expired version raises ApiException 410: list again."""
        func, args = self._lister(plural)
        # kubernetes.watch has no annotations: its events are the API's JSON.
        stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
            func,
            *args,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=False,
            _request_timeout=timeout_s + self.timeout,
        )
        for event in stream:
            obj = event.get("raw_object") or event["object"]
            if event["type"] == "ERROR":
                raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
            yield event["type"], obj

    def patch_status(self, plural: str, namespace: str, name: str, status: Obj) -> Obj:
        """A JSON merge patch of the status: a key given as None is removed."""
        answer = self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _request_timeout=self.timeout,
        )
        return cast(Obj, answer)  # a custom object: the API's JSON (type `object`)

    def set_finalizers(
        self,
        plural: str,
        namespace: str,
        name: str,
        finalizers: builtins.list[str],
        resource_version: str,
    ) -> Obj:
        """Replace the finalizers, only if the object is still at `resource_version`
        (409 otherwise), so a finalizer someone else added in between is not lost."""
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        answer = self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body, _request_timeout=self.timeout
        )
        return cast(Obj, answer)  # a custom object: the API's JSON (type `object`)

    def record_event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event about `obj`, as `kubectl describe` and `get events` show."""
        m = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{m['name']}.", "namespace": m["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": m["name"],
                "namespace": m["namespace"],
                "uid": m.get("uid", ""),
                "resourceVersion": m.get("resourceVersion", ""),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "reservoir-controller"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._core.create_namespaced_event(
            m["namespace"],
            event,  # type: ignore[arg-type]  # the client makes the model of it: see _BODY
            _preload_content=False,
            _request_timeout=self.timeout,
        )

    # -- secrets -----------------------------------------------------------------------

    def secret_version(self, namespace: str, name: str) -> str:
        """Secret `name`'s resourceVersion: it changes with every write of it. "" if
        there is no such Secret."""
        secret = self._read(lambda **kw: self._core.read_namespaced_secret(name, namespace, **kw))
        return str(secret["metadata"]["resourceVersion"]) if secret else ""

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The value of `key` in Secret `name`; FailedPrecondition naming what is missing."""
        try:
            secret = _json(
                self._core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self.timeout
                )
            )
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                raise SecretMissing(f"Secret {namespace}/{name} does not exist") from None
            raise
        data = secret.get("data") or {}
        if key in data:
            try:
                return base64.b64decode(data[key], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise SecretMissing(
                    f"key {key!r} of Secret {namespace}/{name} is not base64 UTF-8 text"
                ) from None
        if key in (secret.get("stringData") or {}):
            return str(secret["stringData"][key])
        raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")

    # -- volumes -----------------------------------------------------------------------

    def _read(self, call: Callable[..., object]) -> Obj | None:
        try:
            return _json(call(_preload_content=False, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def ensure_volume(self, pv: Obj, pvc: Obj, owner_uid: str) -> None:
        """Create the PV and the claim unless they exist. An existing one is kept (a
        bound volume's spec cannot change) only if it is ours: the PV labelled for this
        Dataset, the claim owned by its UID. One of that name that is not ours is
        someone else's: AlreadyExists, and nothing is created or adopted."""
        pv_name = pv["metadata"]["name"]
        namespace, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        old_pv = self._read(lambda **kw: self._core.read_persistent_volume(pv_name, **kw))
        old_pvc = self._read(
            lambda **kw: self._core.read_namespaced_persistent_volume_claim(name, namespace, **kw)
        )
        if old_pvc is not None and not owned_by(old_pvc, owner_uid):
            raise AlreadyExists(
                f"PersistentVolumeClaim {namespace}/{name} already exists and is not this"
                " Dataset's: rename or delete one of them"
            )
        if old_pv is not None and not labelled(old_pv, pv["metadata"]["labels"]):
            raise AlreadyExists(
                f"PersistentVolume {pv_name} already exists and is not this Dataset's:"
                " rename or delete one of them"
            )
        if old_pv is None:
            self._create(
                lambda: self._core.create_persistent_volume(
                    pv,  # type: ignore[arg-type]  # the client makes the model of it: see _BODY
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        if old_pvc is None:
            self._create(
                lambda: self._core.create_namespaced_persistent_volume_claim(
                    namespace,
                    pvc,  # type: ignore[arg-type]  # the client makes the model of it: see _BODY
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )

    @staticmethod
    def _create(call: Callable[[], object]) -> None:
        try:
            call()
        except ApiException as exc:
            if exc.status != CONFLICT:  # made meanwhile: the next ensure checks whose
                raise

    def delete_volume(self, pv: str, namespace: str, pvc: str, owner_uid: str) -> None:
        """Delete the claim, then the PV, each only if it is ours (the claim owned by
        `owner_uid`, the PV labelled for the Dataset), with the UID read as a
        precondition so that one replaced meanwhile is left alone. Either already
        gone is fine."""
        claim = self._read(
            lambda **kw: self._core.read_namespaced_persistent_volume_claim(pvc, namespace, **kw)
        )
        if claim is not None and owned_by(claim, owner_uid):
            self._delete(
                lambda **kw: self._core.delete_namespaced_persistent_volume_claim(
                    pvc, namespace, **kw
                ),
                claim,
            )
        volume = self._read(lambda **kw: self._core.read_persistent_volume(pv, **kw))
        if volume is not None and labelled(volume, volume_labels(namespace, pvc)):
            self._delete(lambda **kw: self._core.delete_persistent_volume(pv, **kw), volume)

    def _delete(self, call: Callable[..., object], obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        try:
            call(
                body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid)),
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            if exc.status not in (NOT_FOUND, CONFLICT):  # gone, or replaced: not ours
                raise

    # -- the leader Lease --------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        try:
            return _json(
                self._coordination.read_namespaced_lease(
                    name, namespace, _preload_content=False, _request_timeout=self.timeout
                )
            )
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        """409 if someone created it first."""
        return _json(
            self._coordination.create_namespaced_lease(
                namespace,
                body,  # type: ignore[arg-type]  # the client makes the model of it: see _BODY
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        )

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """409 unless body's resourceVersion is still the Lease's: one writer wins."""
        return _json(
            self._coordination.replace_namespaced_lease(
                name,
                namespace,
                body,  # type: ignore[arg-type]  # the client makes the model of it: see _BODY
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        )
