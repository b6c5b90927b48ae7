"""deploy/ against a real kube-apiserver v1.32 (tests/fixtures/kube.py): every
manifest passes server-side validation and admission (`kubectl apply
--dry-run=server`), the ServiceMonitor against the Prometheus operator's own CRD, Pod
Security admits the privileged CSI plugin only where the namespace allows it, and our
short names are ours alone."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    GROUP_VERSION,
    Obj,
    as_list,
    delete_namespaces,
    kubectl_at_root,
    moved,
    one,
    pod_of,
    render,
    shipped_namespaces,
    wait_for_default_service_account,
)
from tests.fixtures.kube import ControlPlane

OPERATOR_CRD = Path(__file__).parent / "prometheus-operator"
OPERATOR_CRD /= "monitoring.coreos.com_servicemonitors.yaml"
NO_SERVICE_MONITOR = (
    'error: resource mapping not found for name: "reservoir-worker" namespace: "reservoir"'
    ' from "deploy/monitoring": no matches for kind "ServiceMonitor" in version'
    ' "monitoring.coreos.com/v1"\nensure CRDs are installed first'
)


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render("base")


def dry_run(plane: ControlPlane, directory: str) -> tuple[int, list[str], str]:
    """`kubectl apply --dry-run=server -k deploy/DIRECTORY`, as a user types it from the
    repository's root: (exit code, lines of stdout, stderr)."""
    result = kubectl_at_root(plane, "apply", "--dry-run=server", "-k", f"deploy/{directory}")
    return result.returncode, result.stdout.splitlines(), result.stderr


def test_base_and_examples_pass_server_side_validation(control_plane: ControlPlane) -> None:
    """With their namespaces created for real first (helpers.shipped_namespaces says
    why), every object of deploy/base and deploy/examples is accepted by the server
    in a dry run, without a warning (no deprecated API, no Pod Security warning)."""
    base, examples = render("base"), render("examples")
    with shipped_namespaces(control_plane, base + examples):
        for directory, objs in (("base", base), ("examples", examples)):
            code, lines, stderr = dry_run(control_plane, directory)
            assert (code, stderr) == (0, ""), "\n".join(lines) + stderr
            assert len(lines) == len(objs)
            assert all(line.endswith(" (server dry run)") for line in lines), lines


# -- the ServiceMonitor ---------------------------------------------------------------


def test_the_service_monitor_needs_the_prometheus_operator(control_plane: ControlPlane) -> None:
    """Without the operator's CRDs the server has no ServiceMonitor kind: kubectl
    refuses before sending anything, in the words deploy/README.md quotes. With the
    operator's own CRD (v0.93.0, vendored unchanged under prometheus-operator/), the
    ServiceMonitor passes the server's validation, and a wrong one does not."""
    code, lines, stderr = dry_run(control_plane, "monitoring")
    assert (code, lines) == (1, [])
    assert stderr.strip() == NO_SERVICE_MONITOR
    readme = (DEPLOY / "README.md").read_text()
    assert 'no matches for kind "ServiceMonitor"' in readme

    control_plane.kubectl("create", "-f", str(OPERATOR_CRD))
    try:
        control_plane.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        )
        with shipped_namespaces(control_plane, render("base")):
            code, lines, stderr = dry_run(control_plane, "monitoring")
            assert (code, stderr) == (0, "")
            assert lines == [
                "servicemonitor.monitoring.coreos.com/reservoir-worker created (server dry run)"
            ]
            [monitor] = render("monitoring")
            monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
            wrong = control_plane.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=json.dumps(monitor), check=False
            )
            assert wrong.returncode == 1
            assert (
                'The ServiceMonitor "reservoir-worker" is invalid: spec.endpoints[0].interval:'
                ' Invalid value: "15 seconds"'
            ) in wrong.stderr
    finally:
        control_plane.kubectl(
            "delete", "crd", "servicemonitors.monitoring.coreos.com", "--timeout=120s"
        )


# -- Pod Security ---------------------------------------------------------------------


@pytest.fixture
def baseline_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace as on a cluster whose Pod Security admission enforces baseline."""
    name = control_plane.create_namespace("deploy-baseline")
    control_plane.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=baseline")
    yield name
    delete_namespaces(control_plane, name)


@pytest.fixture
def shipped_labels_namespace(control_plane: ControlPlane, base: list[Obj]) -> Iterator[str]:
    """A namespace with deploy/base/namespace.yaml's labels under a name of its own."""
    namespace = json.loads(json.dumps(one(base, "Namespace", "reservoir")))
    name = control_plane.create_namespace("deploy-shipped")
    namespace["metadata"]["name"] = name
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    yield name
    delete_namespaces(control_plane, name)


def workloads(base: list[Obj]) -> list[Obj]:
    return [o for o in base if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def into(plane: ControlPlane, base: list[Obj], namespace: str) -> None:
    """The base's service accounts, for real: a pod naming a missing one is refused
    before Pod Security looks at it."""
    accounts = [moved(o, namespace) for o in base if o["kind"] == "ServiceAccount"]
    plane.kubectl("apply", "-f", "-", input=as_list(accounts))
    wait_for_default_service_account(plane, namespace)


def test_baseline_refuses_the_csi_plugins_pods_and_warns_of_its_daemonset(
    control_plane: ControlPlane, base: list[Obj], baseline_namespace: str
) -> None:
    """What v1.32 does under enforce=baseline: a workload (only a pod template) is
    admitted with a warning, the pods made from it are refused, so the DaemonSet
    would exist and never run a pod. The workers' hostPath cache is refused too."""
    ns = baseline_namespace
    into(control_plane, base, ns)
    csi = moved(one(base, "DaemonSet", "reservoir-csi-node"), ns)
    admitted = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(csi))
    assert admitted.stdout == "daemonset.apps/reservoir-csi-node created (server dry run)\n"
    assert admitted.stderr.startswith(
        'Warning: would violate PodSecurity "baseline:latest": hostPath volumes (volumes'
        ' "socket-dir", "registration-dir", "kubelet-dir", "fuse-device", "state-dir"),'
        ' privileged (container "csi" must not set securityContext.privileged=true)'
    ), admitted.stderr

    refused = {}
    for workload in workloads(base):
        pod = pod_of(workload, ns)
        result = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )
        if result.returncode:
            refused[pod["metadata"]["name"]] = result.stderr
    assert sorted(refused) == ["reservoir-csi-node", "reservoir-worker"]
    assert (
        'pods "reservoir-csi-node" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volumes "socket-dir", "registration-dir", "kubelet-dir",'
        ' "fuse-device", "state-dir"), privileged (container "csi" must not set'
        " securityContext.privileged=true)"
    ) in refused["reservoir-csi-node"]
    assert (
        'pods "reservoir-worker" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volume "cache")'
    ) in refused["reservoir-worker"]


def test_the_shipped_namespace_admits_every_pod_of_the_base(
    control_plane: ControlPlane, base: list[Obj], shipped_labels_namespace: str
) -> None:
    labels = one(base, "Namespace", "reservoir")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    ns = shipped_labels_namespace
    into(control_plane, base, ns)
    for workload in workloads(base):
        for obj in (moved(workload, ns), pod_of(workload, ns)):
            result = control_plane.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=json.dumps(obj)
            )
            assert result.stdout.endswith(" created (server dry run)\n")
            assert result.stderr == "", result.stderr  # no Pod Security warning either


# -- short names ----------------------------------------------------------------------


def api_resources(plane: ControlPlane) -> list[dict[str, str]]:
    """`kubectl api-resources` as rows (it has no -o json): the columns are cut where
    the header's words start."""
    lines = plane.kubectl("api-resources").stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_our_short_names_are_ours_alone(control_plane: ControlPlane) -> None:
    rows = api_resources(control_plane)
    ours = {r["NAME"]: r["SHORTNAMES"] for r in rows if r["APIVERSION"] == GROUP_VERSION}
    assert ours == {"dataloads": "rdl", "datasets": "rds"}
    others = [r for r in rows if r["APIVERSION"] != GROUP_VERSION]
    assert {r["KIND"] for r in others} >= {"DaemonSet", "Deployment", "StatefulSet", "Pod"}
    taken = {s for r in others for s in r["SHORTNAMES"].split(",") if s}
    taken |= {r["NAME"] for r in others} | {r["KIND"].lower() for r in others}
    assert "ds" in taken  # DaemonSet's, which Dataset once took
    assert not {"rdl", "rds"} & taken


def test_kubectl_finds_datasets_and_dataloads_by_their_short_names(
    control_plane: ControlPlane,
) -> None:
    examples = render("examples")
    ns = control_plane.create_namespace("deploy-short")
    try:
        ours = [moved(o, ns) for o in examples if o["apiVersion"] == GROUP_VERSION]
        control_plane.kubectl("apply", "-f", "-", input=as_list(ours))
        for short, long, name in (
            ("rds", "datasets", "llama"),
            ("rdl", "dataloads", "llama-nightly"),
        ):
            by_short = control_plane.kubectl("get", short, "-n", ns, "-o", "name").stdout
            assert by_short == f"{long[:-1]}.data.reservoir.dev/{name}\n"
            [header, row] = control_plane.kubectl("get", short, "-n", ns).stdout.splitlines()
            [same, _] = control_plane.kubectl("get", long, "-n", ns).stdout.splitlines()
            assert header == same and row.split()[0] == name
        listed = control_plane.kubectl("get", "reservoir", "-n", ns, "-o", "name").stdout
        assert sorted(listed.split()) == [
            "dataload.data.reservoir.dev/llama-nightly",
            "dataset.data.reservoir.dev/llama",
        ]
    finally:
        delete_namespaces(control_plane, ns)
