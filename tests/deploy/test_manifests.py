"""deploy/, offline: what `kubectl kustomize` renders is valid Kubernetes (strict, for
the versions after the one the tests' API server runs: test_server.py checks v1.32 for
real), the examples are valid against our CRDs' schemas, and the parts a cluster
depends on are where they must be."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from reservoir.controller import reconcile as planner
from reservoir.controller.resources import Dataset
from tests.deploy.helpers import DEPLOY, Obj, one, render

VERSIONS = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]
OURS = {"data.reservoir.dev/v1alpha1", "monitoring.coreos.com/v1"}


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render("base")


@pytest.fixture(scope="module")
def examples() -> list[Obj]:
    return render("examples")


def crd_schema(base: list[Obj], kind: str) -> Obj:
    crd = next(
        o
        for o in base
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["names"]["kind"] == kind
    )
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def crd_errors(base: list[Obj], obj: Obj) -> list[str]:
    """What the API server's schema check would refuse (OpenAPI v3 as JSON Schema).
    Not unknown keys (no `additionalProperties: false`: see test_crd_schemas.py), CEL
    rules or list-map keys: the server checks those, in test_crd_schemas.py."""
    validator = jsonschema.Draft7Validator(crd_schema(base, obj["kind"]))
    return [e.message for e in validator.iter_errors(obj)]


def containers(obj: Obj) -> Iterator[Obj]:
    yield from obj["spec"]["template"]["spec"]["containers"]


# -- validity ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_base_and_examples_are_valid_kubernetes(
    base: list[Obj], examples: list[Obj], version: str
) -> None:
    checked = 0
    for obj in [*base, *examples, *render("monitoring")]:
        if obj["apiVersion"] in OURS:
            continue  # custom resources: checked against the CRDs below
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked == len(base) + 3  # the examples' Namespace, Secret and Deployment


def test_strict_validation_catches_an_unknown_field(base: list[Obj]) -> None:
    broken = copy.deepcopy(one(base, "DaemonSet", "reservoir-csi-node"))
    broken["spec"]["template"]["spec"]["containers"][0]["mountPropogation"] = "Bidirectional"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_examples_are_valid_against_our_crds(base: list[Obj], examples: list[Obj]) -> None:
    ours = [o for o in examples if o["apiVersion"] == "data.reservoir.dev/v1alpha1"]
    assert sorted(o["kind"] for o in ours) == ["DataLoad", "Dataset"]
    for obj in ours:
        assert crd_errors(base, obj) == []
    Dataset.of(one(examples, "Dataset", "llama"))  # and the controller reads it


@pytest.mark.parametrize(
    ("kind", "change", "complaint"),
    [
        ("Dataset", lambda o: o["spec"]["mounts"].append({"uri": "file:///x"}), "too long"),
        ("Dataset", lambda o: o["spec"]["mounts"][0].update(uri="ftp://host/x"), "does not match"),
        ("Dataset", lambda o: o["spec"].update(blockSize="big"), "does not match"),
        ("Dataset", lambda o: o["spec"].update(blockSize=0), "less than the minimum of 1"),
        ("Dataset", lambda o: o["spec"]["mounts"][0].pop("uri"), "'uri' is a required"),
        (
            "Dataset",
            lambda o: o["spec"]["mounts"][0]["optionsFrom"][0].update(name="password"),
            "is not one of",
        ),
        (  # an endpoint from a Secret would send the Secret's value elsewhere
            "Dataset",
            lambda o: o["spec"]["mounts"][0]["optionsFrom"][0].update(name="endpoint"),
            "'endpoint' is not one of",
        ),
        ("DataLoad", lambda o: o["spec"].update(policy="Hourly"), "is not one of"),
        ("DataLoad", lambda o: o["spec"].update(schedule="tomorrow"), "does not match"),
        ("DataLoad", lambda o: o["spec"].pop("dataset"), "'dataset' is a required"),
        ("DataLoad", lambda o: o.update(status={"phase": "Done"}), "is not one of"),
    ],
)
def test_wrong_resources_fail_validation(
    base: list[Obj], examples: list[Obj], kind: str, change: Any, complaint: str
) -> None:
    obj = copy.deepcopy(next(o for o in examples if o["kind"] == kind))
    change(obj)
    errors = crd_errors(base, obj)
    assert any(complaint in e for e in errors), errors


# -- what the cluster relies on ------------------------------------------------------


def test_crds_have_status_and_the_printer_columns(base: list[Obj]) -> None:
    columns = {}
    for crd in (o for o in base if o["kind"] == "CustomResourceDefinition"):
        [version] = crd["spec"]["versions"]
        assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
        kind = crd["spec"]["names"]["kind"]
        columns[kind] = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    assert columns == {
        "Dataset": ["TOTAL SIZE", "CACHED", "CACHED%", "FILES", "PHASE", "AGE"],
        "DataLoad": ["DATASET", "PHASE", "PROGRESS", "DURATION", "AGE"],
    }
    phases = crd_schema(base, "Dataset")["properties"]["status"]["properties"]["phase"]
    assert phases["enum"] == ["Pending", "Ready", "Failed", "Deleting"]


def test_short_names_and_category(base: list[Obj]) -> None:
    names = {
        o["spec"]["names"]["kind"]: o["spec"]["names"]
        for o in base
        if o["kind"] == "CustomResourceDefinition"
    }
    assert names["Dataset"]["shortNames"] == ["rds"]  # not ds, DaemonSet's
    assert names["DataLoad"]["shortNames"] == ["rdl"]
    assert all(n["categories"] == ["reservoir"] for n in names.values())


def test_the_namespace_admits_privileged_pods(base: list[Obj]) -> None:
    """The CSI node plugin is privileged and the workers use a hostPath: under a
    cluster-wide baseline policy their pods would be refused (test_server.py)."""
    labels = one(base, "Namespace", "reservoir")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "privileged"


def test_etcd_masters_and_workers(base: list[Obj]) -> None:
    etcd = one(base, "StatefulSet", "etcd")
    assert etcd["spec"]["replicas"] == 3
    assert one(base, "PodDisruptionBudget", "etcd")["spec"]["minAvailable"] == 2
    assert etcd["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    master = one(base, "Deployment", "reservoir-master")
    assert master["spec"]["replicas"] == 2
    [args] = [c["args"] for c in containers(master)]
    assert any(a.startswith("--etcd=") and a.count("etcd-") == 3 for a in args)
    worker = one(base, "DaemonSet", "reservoir-worker")
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    [c] = containers(worker)
    assert "--mem-quota=$((MEMORY_LIMIT_MIB * 3 / 4))MiB" in c["args"][0]
    limit = next(e for e in c["env"] if e["name"] == "MEMORY_LIMIT_MIB")
    assert limit["valueFrom"]["resourceFieldRef"]["resource"] == "limits.memory"
    assert "--disk-quota=$(DISK_QUOTA)" in c["args"][0]


def test_the_csi_node_plugin_and_driver(base: list[Obj]) -> None:
    driver = one(base, "CSIDriver", "fuse.csi.reservoir.dev")
    assert driver["spec"]["attachRequired"] is False
    assert driver["spec"]["podInfoOnMount"] is True
    node = one(base, "DaemonSet", "reservoir-csi-node")
    by_name = {c["name"]: c for c in containers(node)}
    assert set(by_name) == {"csi", "node-driver-registrar"}
    csi = by_name["csi"]
    assert csi["securityContext"]["privileged"] is True
    kubelet = next(m for m in csi["volumeMounts"] if m["mountPath"] == "/var/lib/kubelet")
    assert kubelet["mountPropagation"] == "Bidirectional"
    # grpc.health.v1 on the socket, not CSI Probe (which fails while the master is away).
    assert csi["livenessProbe"]["exec"]["command"] == [
        "reservoir",
        "health",
        "unix:///csi/csi.sock",
    ]
    assert "--endpoint=unix:///csi/csi.sock" in csi["args"]
    assert "--node-id=$(NODE_NAME)" in csi["args"]
    registrar = by_name["node-driver-registrar"]["args"]
    path = "--kubelet-registration-path=/var/lib/kubelet/plugins/fuse.csi.reservoir.dev/csi.sock"
    assert path in registrar
    volumes = {v["name"]: v for v in node["spec"]["template"]["spec"]["volumes"]}
    assert volumes["fuse-device"]["hostPath"]["path"] == "/dev/fuse"


def test_the_controller_has_least_privilege(base: list[Obj]) -> None:
    rules = one(base, "ClusterRole", "reservoir-controller")["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    lease = one(base, "Role", "reservoir-controller-lease")
    assert lease["metadata"]["namespace"] == "reservoir"
    controller = one(base, "Deployment", "reservoir-controller")
    assert controller["spec"]["replicas"] == 2
    pod = controller["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--health-listen=0.0.0.0:8081" in container["args"]
    assert pod["serviceAccountName"] == "reservoir-controller"
    assert pod["securityContext"]["runAsNonRoot"] is True
    binding = one(base, "ClusterRoleBinding", "reservoir-controller")
    assert binding["subjects"][0]["namespace"] == "reservoir"


def test_every_namespaced_object_lands_in_the_reservoir_namespace(base: list[Obj]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole"}
    cluster_scoped |= {"ClusterRoleBinding", "CSIDriver"}
    for obj in base:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == "reservoir", obj["metadata"]["name"]


def test_the_inference_example_mounts_the_datasets_claim(examples: list[Obj]) -> None:
    dataset = one(examples, "Dataset", "llama")
    deployment = one(examples, "Deployment", "llama-inference")
    [volume] = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == dataset["metadata"]["name"]
    # A mount the CSI plugin repairs on the node reaches the container only so.
    [mounted] = [m for c in containers(deployment) for m in c["volumeMounts"]]
    assert mounted["mountPropagation"] == "HostToContainer"
    # The claim the controller makes for it names the PV it makes, in that namespace.
    made = planner.volume(Dataset.of(dataset))
    assert made.pvc["metadata"]["name"] == "llama"
    assert made.pvc["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    secret = one(examples, "Secret", "s3-credentials")
    for ref in dataset["spec"]["mounts"][0]["optionsFrom"]:
        assert ref["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def test_the_service_monitor_finds_the_workers_metrics(base: list[Obj]) -> None:
    [monitor] = render("monitoring")
    service = one(base, "Service", "reservoir-worker")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_one_image_for_every_service() -> None:
    dockerfile = (DEPLOY / "images" / "Dockerfile").read_text()
    # tini as PID 1 reaps the FUSE daemons the CSI plugin leaves to it.
    assert 'ENTRYPOINT ["tini", "--", "reservoir"]' in dockerfile
    assert "FROM python:3.11-slim" in dockerfile and "fuse3" in dockerfile
    images = {
        c["image"]
        for obj in render("base")
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
        for c in containers(obj)
    }
    assert "reservoir:dev" in images
    assert not any(i.endswith(":latest") or ":" not in i for i in images), images
