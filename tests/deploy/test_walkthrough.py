"""deploy/README.md's step by step, run as written against a real kube-apiserver
v1.32: the `kubectl` commands of its `sh` blocks and its `$` lines, in order, from
the repository's root, applied for real.

Left out, each with its reason in STEPS: what needs a kubelet, an image or the
Reservoir controller (no pod runs here, so no controller either: Datasets keep an
empty status and no finalizer). The last step, `kubectl delete -k deploy/base`,
deletes only what this test made: the session's API server keeps its CRDs for every
other test, and the `reservoir` namespace with the controller's RBAC when
tests/controller made them for the session. STEPS mirrors the README's commands one
for one, so a changed README fails here until this test is changed with it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    REPO,
    WAIT_S,
    Obj,
    as_list,
    existing,
    key,
    kubectl_at_root,
    render,
)
from tests.fixtures.kube import ControlPlane

README = DEPLOY / "README.md"
RUN = "run"
WATCH = "watch"  # run; a watch never ends, so take its first lines and stop it
MADE_HERE = "run on what this test made"
KUBELET = "skip: needs a kubelet to run the pods (the test's control plane has none)"
STEPS: list[tuple[str, str]] = [
    ("kind create cluster --name reservoir", "skip: the test's control plane is the cluster"),
    (
        "docker build -f deploy/images/Dockerfile -t reservoir:dev .",
        "skip: an image is for pods to run",
    ),
    ("kind load docker-image reservoir:dev --name reservoir", "skip: kind"),
    ("kubectl apply -k deploy/base", RUN),
    ("kubectl -n reservoir rollout status statefulset/etcd", KUBELET),
    ("kubectl -n reservoir rollout status deployment/reservoir-master", KUBELET),
    ("kubectl -n reservoir rollout status daemonset/reservoir-worker", KUBELET),
    ("kubectl -n reservoir rollout status daemonset/reservoir-csi-node", KUBELET),
    ("kubectl -n reservoir rollout status deployment/reservoir-controller", KUBELET),
    ("kubectl apply -k deploy/examples", RUN),
    ("kubectl -n ml get datasets -w", WATCH),
    ("kubectl -n ml get datasets", RUN),
    ("kubectl -n ml get dataloads", RUN),
    ("kubectl -n ml get pvc llama", "skip: the claim is the controller's, which runs in a pod"),
    ("kubectl delete -k deploy/examples", RUN),
    ("kubectl get datasets -A", RUN),
    ("kubectl delete -k deploy/base", MADE_HERE),
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands() -> list[str]:
    """The commands a user of deploy/README.md types: every line of its `sh` blocks
    (comments dropped) and every `$ ` line of its output blocks."""
    commands = []
    for lang, body in FENCE.findall(README.read_text()):
        for line in body.splitlines():
            if lang == "sh" and (words := shlex.split(line, comments=True)):
                commands.append(shlex.join(words))
            elif lang == "" and line.startswith("$ "):
                commands.append(line[2:].strip())
    return commands


def readme_outputs() -> dict[str, list[str]]:
    """What the README shows each `$ ` command print."""
    outputs: dict[str, list[str]] = {}
    for lang, body in FENCE.findall(README.read_text()):
        command = ""
        for line in body.splitlines():
            if lang == "" and line.startswith("$ "):
                command = line[2:].strip()
                outputs[command] = []
            elif command and line:
                outputs[command].append(line)
    return outputs


def columns(header: str) -> list[str]:
    """A kubectl table header's column names (they are two or more spaces apart)."""
    return re.split(r"\s{2,}", header.strip())


def test_the_steps_mirror_the_readme() -> None:
    assert readme_commands() == [command for command, _ in STEPS], (
        "deploy/README.md's commands changed: change STEPS in this file to match"
    )


def first_lines(plane: ControlPlane, args: list[str], count: int) -> list[str]:
    """The first `count` lines that `kubectl ARGS` prints, then it is stopped."""
    process = subprocess.Popen(
        [plane.kubectl_path, f"--kubeconfig={plane.kubeconfig}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopper = threading.Timer(WAIT_S, process.kill)  # a line that never comes
    stopper.start()
    try:
        assert process.stdout is not None
        return [process.stdout.readline().rstrip("\n") for _ in range(count)]
    finally:
        stopper.cancel()
        process.kill()
        process.communicate()


def pods(plane: ControlPlane, namespace: str) -> list[Obj]:
    listed = plane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    return json.loads(listed)["items"]  # type: ignore[no-any-return]


def wait_for_pods(plane: ControlPlane, namespace: str, count: int) -> list[Obj]:
    """The pods that the controller-manager makes for the workloads in `namespace`,
    once there are `count` of them: each was admitted by the API server."""
    deadline = time.monotonic() + WAIT_S
    while len(found := pods(plane, namespace)) < count:
        if time.monotonic() > deadline:
            events = plane.kubectl("get", "events", "-n", namespace).stdout
            pytest.fail(f"{len(found)} pods of {count} in {namespace}:\n{events}")
        time.sleep(0.5)
    return found


def replicas(objs: list[Obj]) -> int:
    return sum(o["spec"]["replicas"] for o in objs if o["kind"] in ("Deployment", "StatefulSet"))


def delete(plane: ControlPlane, objs: list[Obj]) -> None:
    if not objs:
        return
    plane.kubectl(
        "delete", "-f", "-", "--ignore-not-found", f"--timeout={WAIT_S}s",
        input=as_list(objs), timeout=WAIT_S + 30,
    )  # fmt: skip


def test_the_step_by_step_runs_as_written(control_plane: ControlPlane) -> None:
    assert readme_commands() == [command for command, _ in STEPS]
    plane = control_plane
    base, examples = render("base"), render("examples")
    before = existing(plane, base + examples)
    if left := before & {key(o) for o in examples}:
        pytest.fail(f"{sorted(left)} exist already: a test before this one left them")
    made = [o for o in base + examples if key(o) not in before]
    shown = readme_outputs()

    def applied_base(out: str) -> None:
        assert len(out.splitlines()) == len(base)
        names = plane.kubectl("get", "-k", str(DEPLOY / "base"), "-o", "name").stdout
        assert len(names.split()) == len(base)
        admitted = wait_for_pods(plane, "reservoir", replicas(base))  # etcd 3, masters 2, ...
        assert {p["status"]["phase"] for p in admitted} == {"Pending"}  # no node to run on
        failed = plane.kubectl("get", "events", "-n", "reservoir", "--field-selector=type=Warning")
        assert "FailedCreate" not in failed.stdout

    def applied_examples(out: str) -> None:
        assert sorted(out.splitlines()) == [
            "dataload.data.reservoir.dev/llama-nightly created",
            "dataset.data.reservoir.dev/llama created",
            "deployment.apps/llama-inference created",
            "namespace/ml created",
            "secret/s3-credentials created",
        ]
        wait_for_pods(plane, "ml", replicas(examples))

    def table(command: str, cells: list[str]) -> Callable[[str], None]:
        """The README's columns; a row of `cells` and an age (no controller runs here
        to fill the status columns)."""

        def check(out: str) -> None:
            header, *rows = out.splitlines()
            assert columns(header) == columns(shown[command][0])
            assert [row.split()[:-1] for row in rows] == [cells]

        return check

    def deleted_examples(out: str) -> None:
        assert existing(plane, examples) == set()  # kubectl delete waits until they are gone

    def none_left(out: str) -> None:
        assert out == ""

    checks: dict[str, Callable[[str], None]] = {
        "kubectl apply -k deploy/base": applied_base,
        "kubectl apply -k deploy/examples": applied_examples,
        "kubectl -n ml get datasets -w": table("kubectl -n ml get datasets", ["llama"]),
        "kubectl -n ml get datasets": table("kubectl -n ml get datasets", ["llama"]),
        "kubectl -n ml get dataloads": table(
            "kubectl -n ml get dataloads", ["llama-nightly", "llama"]
        ),
        "kubectl delete -k deploy/examples": deleted_examples,
        "kubectl get datasets -A": none_left,
    }
    try:
        for command, how in STEPS:
            args = shlex.split(command)[1:]
            if how == WATCH:
                checks[command]("\n".join(first_lines(plane, args, 2)))
            elif how == RUN:
                result = kubectl_at_root(plane, *args, timeout=WAIT_S + 30)
                assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
                checks[command](result.stdout)
            elif how == MADE_HERE:
                delete(plane, [o for o in base if o in made])
            else:
                assert how.startswith("skip: ")
        # What the README's removal leaves: nothing that this test made.
        assert existing(plane, made) == set()
        assert plane.get("crd", "", "datasets.data.reservoir.dev") is not None
    finally:
        delete(plane, made)
