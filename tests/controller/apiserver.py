"""A stand-in for kube-apiserver at the HTTP level, kept only for faults that a real
API server cannot be made to produce on demand: its watches ending with 410 Gone
after a compaction, one chosen write answered 500, a request that hangs, every watch
failing while lists work. Everything else the controller does is tested against the
real kube-apiserver (tests/fixtures/kube.py).

It serves the REST paths the controller uses, with the semantics it relies on, over
real HTTP in a thread:

- GET of a collection (cluster-wide or in a namespace), with `?watch=true` a chunked
  stream of JSON event lines from `resourceVersion` on; GET of one object;
- POST (create; 409 if it exists), PUT (replace; 409 on a stale resourceVersion),
  PATCH (JSON merge patch; a `metadata.resourceVersion` in it must match, else 409;
  `/status` changes only the status, the main path never does);
- DELETE: with finalizers it sets `deletionTimestamp`; the object goes when the last
  finalizer is removed, as the real server does;
- DELETE with `preconditions.uid` in its body: 409 if the object's UID differs;
- `compact()`: open and stale watches get `410 Gone`, as after etcd compaction;
- `stall(path_part, seconds)`: the next request whose path contains `path_part`
  gets no answer for that long, as a hung connection; `fail(path_part, code, skip)`:
  the request after the next `skip` ones gets an error `code` instead;
  `watch_error = code`: every watch gets that error while lists still work.

Objects carry uid, resourceVersion (one counter), generation and creationTimestamp.
Every write is recorded with the client's User-Agent and its body, so a test can tell
which controller replica did what, and how often.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (resource, namespace, name); resource "apis/g/v/plural"


@dataclass(frozen=True)
class Write:
    method: str
    path: str
    agent: str
    body: Any = None


@dataclass
class Fault:
    path_part: str
    stall_s: float = 0.0
    code: int = 0  # for writes only
    skip: int = 0


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge(result.get(k), v)
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(path: str) -> tuple[str, str, str, str]:
    """(resource, namespace, name, subresource) of a REST path."""
    parts = [p for p in path.split("/") if p]
    if parts[0] == "api":
        prefix, rest = parts[:2], parts[2:]
    else:
        prefix, rest = parts[:3], parts[3:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = (
        rest[0],
        (rest[1] if len(rest) > 1 else ""),
        (rest[2] if len(rest) > 2 else ""),
    )
    return "/".join([*prefix, plural]), namespace, name, sub


class ApiServer:
    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.events: list[tuple[int, str, str, Obj]] = []  # (rv, type, resource, object)
        self.writes: list[Write] = []
        self.lists: dict[str, int] = {}  # LIST calls (not watches) per resource
        self.version = 0
        self.cv = threading.Condition()
        self.stopping = False
        self.compacted = 0  # events up to this version are forgotten: older watches get 410
        self.faults: list[Fault] = []  # each used once, in order
        self.watch_error = 0  # when set, every watch is answered with this code
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}
            ],
            "current-context": "stand-in",
        }
        path.write_text(json.dumps(config))
        return path

    # -- the store (also what tests call directly, as kubectl would) -------------------

    def _emit(self, kind: str, resource: str, obj: Obj) -> None:
        self.events.append((self.version, kind, resource, copy.deepcopy(obj)))
        self.cv.notify_all()

    def _bump(self, obj: Obj) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def create(self, resource: str, namespace: str, obj: Obj) -> tuple[int, Obj]:
        with self.cv:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if namespace:
                meta["namespace"] = namespace
            key = (resource, namespace, meta["name"])
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f"{meta['name']} already exists")
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            self._bump(obj)
            self.objects[key] = obj
            self._emit("ADDED", resource, obj)
            return 201, copy.deepcopy(obj)

    def read(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.cv:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def _store(self, key: Key, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.objects[key]
            self._bump(obj)
            self._emit("DELETED", key[0], obj)
        else:
            self._bump(obj)
            self.objects[key] = obj
            self._emit("MODIFIED", key[0], obj)
        return copy.deepcopy(obj)

    def update(self, key: Key, body: Obj, *, patch: bool, sub: str) -> tuple[int, Obj]:
        with self.cv:
            old = self.objects.get(key)
            if old is None:
                return 404, _status(404, "NotFound", f"{key[2]} not found")
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "the object has been modified")
            if sub == "status":
                new = copy.deepcopy(old)
                new["status"] = (
                    _merge(old.get("status"), body.get("status")) if patch else body.get("status")
                )
            else:
                new = _merge(old, body) if patch else copy.deepcopy(body)
                for field in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                    if field in old["metadata"]:
                        new["metadata"][field] = old["metadata"][field]
                if "status" in old and key[0].startswith("apis/data."):
                    new["status"] = old["status"]  # the status subresource owns it
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            return 200, self._store(key, new)

    def delete(
        self, resource: str, namespace: str, name: str, uid: str | None = None
    ) -> tuple[int, Obj]:
        with self.cv:
            key = (resource, namespace, name)
            obj = self.objects.get(key)
            if obj is None:
                return 404, _status(404, "NotFound", f"{name} not found")
            if uid and obj["metadata"]["uid"] != uid:
                return 409, _status(409, "Conflict", f"precondition failed: UID {uid}")
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("deletionTimestamp", _now())
            return 200, self._store(key, obj)

    def listing(self, resource: str, namespace: str) -> Obj:
        with self.cv:
            items = [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and (not namespace or ns == namespace)
            ]
            return {
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: every open watch ends with
        410 Gone, and clients must list again."""
        with self.cv:
            self.version += 1
            self.compacted = self.version
            self.events.clear()
            self.cv.notify_all()

    def stall(self, path_part: str, seconds: float) -> None:
        with self.cv:
            self.faults.append(Fault(path_part, stall_s=seconds))

    def fail(self, path_part: str, code: int, skip: int = 0) -> None:
        with self.cv:
            self.faults.append(Fault(path_part, code=code, skip=skip))

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.cv:
            for i, fault in enumerate(self.faults):
                if fault.path_part in path and (method != "GET" or not fault.code):
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    del self.faults[i]
                    return fault
        return None

    def writes_by(self, agent_part: str, *, exclude: str = "leases") -> list[Write]:
        return [w for w in self.writes if agent_part in w.agent and exclude not in w.path]


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:  # quiet
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # a client killed, as tests do
            super().handle()

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Obj:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _record(self, body: Obj | None = None) -> None:
        with self.api.cv:
            self.api.writes.append(
                Write(
                    self.command,
                    urlparse(self.path).path,
                    self.headers.get("User-Agent", ""),
                    body,
                )
            )

    def parse_request(self) -> bool:
        ok = super().parse_request()
        fault = self.api._fault(self.command, self.path) if ok else None
        if fault and fault.stall_s:
            time.sleep(fault.stall_s)  # the client gave up long ago, or not
        if fault and fault.code:
            self._body()  # read, so that the connection stays usable
            self._send(fault.code, _status(fault.code, "InternalError", "injected by the test"))
            return False
        return ok

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        resource, namespace, name, _ = _parse(url.path)
        if name:
            obj = self.api.read(resource, namespace, name)
            self._send(200, obj) if obj else self._send(
                404, _status(404, "NotFound", f"{name} not found")
            )
        elif query.get("watch") in ("true", "1") and self.api.watch_error:
            code = self.api.watch_error
            self._send(code, _status(code, "InternalError", "watches fail in this test"))
        elif query.get("watch") in ("true", "1"):
            self._watch(
                resource,
                namespace,
                int(query.get("resourceVersion") or 0),
                float(query.get("timeoutSeconds") or 60),
            )
        else:
            with self.api.cv:
                self.api.lists[resource] = self.api.lists.get(resource, 0) + 1
            self._send(200, self.api.listing(resource, namespace))

    def _watch(self, resource: str, namespace: str, since: int, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        sent = since
        try:
            while True:
                with self.api.cv:
                    if sent < self.api.compacted:
                        gone = _status(410, "Expired", f"too old resource version: {sent}")
                        line = json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        break
                    batch = [
                        (rv, kind, obj)
                        for rv, kind, r, obj in self.api.events
                        if rv > sent
                        and r == resource
                        and (not namespace or obj["metadata"].get("namespace") == namespace)
                    ]
                    if not batch:
                        left = deadline - time.monotonic()
                        if left <= 0 or self.api.stopping:
                            break
                        self.api.cv.wait(min(left, 0.2))
                        continue
                for rv, kind, obj in batch:
                    line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    sent = rv
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        resource, namespace, _, _ = _parse(urlparse(self.path).path)
        self._send(*self.api.create(resource, namespace, body))

    def do_PUT(self) -> None:
        body = self._body()
        self._record(body)
        resource, namespace, name, sub = _parse(urlparse(self.path).path)
        self._send(*self.api.update((resource, namespace, name), body, patch=False, sub=sub))

    def do_PATCH(self) -> None:
        body = self._body()
        self._record(body)
        if "merge-patch" not in (self.headers.get("Content-Type") or ""):
            self._send(415, _status(415, "UnsupportedMediaType", "only merge patches here"))
            return
        resource, namespace, name, sub = _parse(urlparse(self.path).path)
        self._send(*self.api.update((resource, namespace, name), body, patch=True, sub=sub))

    def do_DELETE(self) -> None:
        body = self._body()
        self._record(body)
        resource, namespace, name, _ = _parse(urlparse(self.path).path)
        uid = (body.get("preconditions") or {}).get("uid")
        self._send(*self.api.delete(resource, namespace, name, uid))
