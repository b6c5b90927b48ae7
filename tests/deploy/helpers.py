"""What the deploy/ tests share: rendering the kustomizations as a user's kubectl
does, and the namespaces that the shipped manifests name."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import ControlPlane

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GROUP_VERSION = "data.reservoir.dev/v1alpha1"
WAIT_S = 120  # deleting a namespace takes seconds; a busy 2-core machine is slower

Obj = dict[str, Any]


def render(directory: str) -> list[Obj]:
    """`kubectl kustomize deploy/DIRECTORY`: the objects `kubectl apply -k` sends."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kubectl_at_root(
    plane: ControlPlane, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kubectl ARGS` run from the repository's root, as deploy/README.md has a user
    type it (paths such as `-k deploy/base` are relative), as the admin."""
    return subprocess.run(
        [plane.kubectl_path, f"--kubeconfig={plane.kubeconfig}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    [found] = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def as_list(objs: list[Obj]) -> str:
    """`objs` as one v1 List, for `kubectl ... -f -`."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})


def moved(obj: Obj, namespace: str) -> Obj:
    """A copy of `obj` in `namespace`: for tests that must not use the shipped
    namespaces, which other tests of the session create and delete."""
    copy: Obj = json.loads(json.dumps(obj))
    copy["metadata"]["namespace"] = namespace
    return copy


def pod_of(workload: Obj, namespace: str) -> Obj:
    """The pod a workload's controller would create from its template (a
    StatefulSet's with the claims of its first replica)."""
    template = workload["spec"]["template"]
    spec = json.loads(json.dumps(template["spec"]))
    name = workload["metadata"]["name"]
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        source = {"claimName": f"{claim['metadata']['name']}-{name}-0"}
        spec.setdefault("volumes", []).append(
            {"name": claim["metadata"]["name"], "persistentVolumeClaim": source}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": spec,
    }


def wait_for_default_service_account(plane: ControlPlane, namespace: str) -> None:
    """The controller-manager makes `default` in a new namespace a moment later; a
    pod that names no service account is refused until it exists."""
    deadline = time.monotonic() + WAIT_S
    while plane.get("serviceaccount", namespace, "default") is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no service account default in {namespace} after {WAIT_S} s")
        time.sleep(0.2)


def delete_namespaces(plane: ControlPlane, *names: str, wait: bool = False) -> None:
    """Delete `names`; with `wait`, until they are gone, so that a later test may
    create them again (a namespace being deleted refuses new objects)."""
    plane.kubectl(
        "delete", "namespace", *names, "--ignore-not-found", f"--wait={str(wait).lower()}",
        f"--timeout={WAIT_S}s", timeout=WAIT_S + 30,
    )  # fmt: skip


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def existing(plane: ControlPlane, objs: list[Obj]) -> set[tuple[str, str, str]]:
    """Which of `objs` the server has (by kind, namespace and name)."""
    found = plane.kubectl(
        "get", "-f", "-", "--ignore-not-found", "-o", "json", input=as_list(objs)
    ).stdout
    return {key(o) for o in json.loads(found)["items"]} if found.strip() else set()


@contextmanager
def shipped_namespaces(plane: ControlPlane, objs: list[Obj]) -> Iterator[None]:
    """The Namespace objects among `objs`, created for real as shipped (their labels
    included) unless they exist, and deleted afterwards if they were made here.

    A server-side dry run creates nothing, so every object of a dry run in a namespace
    the same dry run "creates" is refused with `namespaces "NAME" not found`; with the
    namespace there, each is checked in full (schema, defaulting, admission). One may
    exist already: tests/controller applies `reservoir` as shipped for the session."""
    namespaces = [o for o in objs if o["kind"] == "Namespace"]
    there = existing(plane, namespaces)
    made = [n for n in namespaces if key(n) not in there]
    if made:
        plane.kubectl("apply", "-f", "-", input=as_list(made))
    try:
        yield
    finally:
        if made:
            delete_namespaces(plane, *(n["metadata"]["name"] for n in made), wait=True)
