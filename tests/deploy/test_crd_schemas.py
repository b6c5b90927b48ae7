"""Our CRDs' schemas: structural (checked offline, and the check held to what a real
kube-apiserver v1.32 refuses), and what the server makes of wrong Datasets and
DataLoads: unknown keys refused by kubectl (strict field validation) or pruned, schema
and CEL rules refused with the server's own messages."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.deploy.helpers import GROUP_VERSION, Obj, delete_namespaces, moved, one, render
from tests.deploy.structural import nodes, structural_errors
from tests.fixtures.kube import ControlPlane


@pytest.fixture(scope="module")
def crds() -> list[Obj]:
    return render("crds")


@pytest.fixture(scope="module")
def examples() -> list[Obj]:
    return render("examples")


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = control_plane.create_namespace("deploy-crd")
    yield name
    delete_namespaces(control_plane, name)


def schema_of(crd: Obj) -> Obj:
    [version] = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


# -- structural, offline ---------------------------------------------------------------


def test_the_shipped_crds_are_structural(crds: list[Obj]) -> None:
    assert sorted(c["spec"]["names"]["kind"] for c in crds) == ["DataLoad", "Dataset"]
    for crd in crds:
        assert structural_errors(schema_of(crd)) == [], crd["metadata"]["name"]


def test_every_key_of_our_resources_is_declared(crds: list[Obj]) -> None:
    """No node keeps unknown fields, so a key the CRD does not declare is refused by
    strict field validation or pruned, never stored (see the server tests below)."""
    for crd in crds:
        for path, node in nodes(schema_of(crd)):
            assert "x-kubernetes-preserve-unknown-fields" not in node, path
            maps = (".options", ".secretVersions")  # maps of strings, keyed by name
            assert "additionalProperties" not in node or path.endswith(maps), path


# -- the check against the server -----------------------------------------------------


def widget_crd(properties: Obj) -> Obj:
    """A CRD of a throwaway group around `properties` (only ever sent as a dry run)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.check.reservoir.dev"},
        "spec": {
            "group": "check.reservoir.dev",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": properties}},
                }
            ],
        },
    }


def spec(**properties: Any) -> Obj:
    return {"spec": {"type": "object", "properties": properties}}


STRING = {"type": "string"}
# (a schema the server refuses, words of its refusal that the offline check shares)
REFUSED: list[tuple[Obj, str]] = [
    (  # what the CRDs once shipped with
        {"spec": {"type": "object", "additionalProperties": False, "properties": {"a": STRING}}},
        "additionalProperties and properties are mutual exclusive",
    ),
    (spec(a={"description": "no type"}), "must not be empty for specified object fields"),
    (
        spec(a={"type": "array", "items": {"minLength": 1}}),
        "must not be empty for specified array items",
    ),
    (
        spec(a={"type": "object", "additionalProperties": {"minLength": 1}}),
        "must not be empty for specified object fields",
    ),
    (spec(a={"type": "string", "anyOf": [{"description": "x"}]}), "must be empty to be structural"),
    (
        spec(a={"x-kubernetes-int-or-string": True, "anyOf": [STRING, {"type": "integer"}]}),
        "must be empty to be structural",
    ),
    (spec(a={"type": "int"}), "Unsupported value"),
    (spec(a={"type": "string", "minLenght": 1}), "unknown field"),
    (spec(a={"type": "array", "uniqueItems": True, "items": STRING}), "uniqueItems cannot be set"),
    (spec(a={"type": "array", "items": [STRING]}), "items must be a schema object and not an"),
    (spec(a={"$ref": "#/definitions/a"}), "$ref is not supported"),
    (
        spec(a={"type": "object", "properties": {"b": STRING}, "patternProperties": {"c": STRING}}),
        "patternProperties is not supported",
    ),
    (
        {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": False}},
        "must be true or undefined",
    ),
    (spec(a={"type": "string", "enum": ["x"], "default": "z"}), "Unsupported value"),
    (spec(a={"type": "string", "pattern": "("}), "must be a valid regular expression"),
    (
        spec(
            a={
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "object", "properties": {"k": STRING}},
            }
        ),
        "must have a default or be a required property",
    ),
    (
        spec(a={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}}),
        "must be atomic as item of a list with x-kubernetes-list-type=set",
    ),
    (
        {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}},
        "must not specify anything other than name and generateName",
    ),
]


@pytest.mark.parametrize(("properties", "words"), REFUSED)
def test_the_check_flags_what_the_server_refuses(
    control_plane: ControlPlane, properties: Obj, words: str
) -> None:
    crd = widget_crd(properties)
    found = structural_errors(schema_of(crd))
    assert any(words in e for e in found), found
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(crd), check=False
    )
    assert refused.returncode == 1, refused.stdout
    assert words in refused.stderr


# (a schema the server takes that cannot work, why the check refuses it)
ACCEPTED_BUT_BROKEN: list[tuple[Obj, str]] = [
    (
        {"spec": {"type": "object", "required": ["b"], "properties": {"a": STRING}}},
        "'b' is not in properties: it is pruned before validation",
    ),
    (
        spec(
            a={"type": "object", "properties": {"c": STRING}, "anyOf": [{"properties": {"b": {}}}]}
        ),
        "must be declared outside the junctor too",
    ),
    (spec(a={"type": "object"}), "keeps none: every key is pruned"),
]


@pytest.mark.parametrize(("properties", "words"), ACCEPTED_BUT_BROKEN)
def test_the_check_goes_further_than_the_server(
    control_plane: ControlPlane, properties: Obj, words: str
) -> None:
    crd = widget_crd(properties)
    found = structural_errors(schema_of(crd))
    assert any(words in e for e in found), found
    control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(crd))


def test_a_required_field_that_is_not_declared_refuses_every_object(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Why the check refuses a schema the server takes: the server prunes `b`, then
    finds it missing."""
    crd = widget_crd(ACCEPTED_BUT_BROKEN[0][0])
    crd["metadata"]["name"] = "gadgets.check.reservoir.dev"
    crd["spec"]["names"] = {"kind": "Gadget", "plural": "gadgets"}
    control_plane.kubectl("create", "-f", "-", input=json.dumps(crd))
    try:
        control_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )
        gadget = {
            "apiVersion": "check.reservoir.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g", "namespace": namespace},
            "spec": {"a": "x", "b": "y"},
        }
        refused = control_plane.kubectl(
            "create", "--validate=false", "-f", "-", input=json.dumps(gadget), check=False
        )
        assert refused.returncode == 1
        assert 'The Gadget "g" is invalid: spec.b: Required value' in refused.stderr
    finally:
        control_plane.kubectl("delete", "crd", crd["metadata"]["name"], "--timeout=120s")


def test_the_server_serves_our_crds_as_structural(control_plane: ControlPlane) -> None:
    for name in ("datasets.data.reservoir.dev", "dataloads.data.reservoir.dev"):
        crd = control_plane.get("crd", "", name)
        assert crd is not None
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}, name


# -- unknown keys ---------------------------------------------------------------------


def dataset(examples: list[Obj], namespace: str, name: str = "llama") -> Obj:
    obj = moved(one(examples, "Dataset", "llama"), namespace)
    obj["metadata"]["name"] = name
    return obj


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda o: o["spec"].update(cacheSize="1Gi"), "spec.cacheSize"),
        (lambda o: o["spec"]["mounts"][0].update(readOnly=True), "spec.mounts[0].readOnly"),
        (
            lambda o: o["spec"]["mounts"][0]["optionsFrom"][0]["valueFrom"].update(optional=True),
            "spec.mounts[0].optionsFrom[0].valueFrom.optional",
        ),
    ],
)
def test_kubectl_refuses_an_unknown_key(
    control_plane: ControlPlane,
    examples: list[Obj],
    namespace: str,
    change: Callable[[Obj], None],
    field: str,
) -> None:
    """kubectl asks for strict field validation (its default, --validate=strict):
    the server refuses a key the schema does not declare, naming it."""
    obj = dataset(examples, namespace)
    change(obj)
    for verb in ("apply", "create"):
        refused = control_plane.kubectl(verb, "-f", "-", input=json.dumps(obj), check=False)
        assert refused.returncode == 1
        assert (
            f'Error from server (BadRequest): error when creating "STDIN": Dataset in version'
            f' "v1alpha1" cannot be handled as a Dataset: strict decoding error: unknown field'
            f' "{field}"'
        ) in refused.stderr
    assert control_plane.get("dataset", namespace, "llama") is None


def create(plane: ControlPlane, path: str, body: Obj) -> tuple[int, list[str], Obj]:
    """POST `body` as a client that asks for no field validation: (status, the
    server's Warning headers, the object it stored)."""
    request = urllib.request.Request(
        plane.server + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {plane.admin_token}",
            "Content-Type": "application/json",
        },
    )
    context = ssl.create_default_context(cafile=str(plane.ca))
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        return answer.status, answer.headers.get_all("Warning") or [], json.loads(answer.read())


def test_an_api_client_without_field_validation_has_unknown_keys_pruned(
    control_plane: ControlPlane, examples: list[Obj], namespace: str
) -> None:
    """The API's own default is Warn: the object is stored without the keys, and the
    answer says which were dropped."""
    obj = dataset(examples, namespace, "pruned")
    obj["spec"]["cacheSize"] = "1Gi"
    obj["spec"]["mounts"][0]["readOnly"] = True
    path = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/datasets"
    status, warnings, stored = create(control_plane, path, obj)
    try:
        assert status == 201
        assert warnings == [
            '299 - "unknown field \\"spec.cacheSize\\""',
            '299 - "unknown field \\"spec.mounts[0].readOnly\\""',
        ]
        read = control_plane.get("dataset", namespace, "pruned")
        assert read is not None
        for spec_ in (stored["spec"], read["spec"]):
            assert "cacheSize" not in spec_ and "readOnly" not in spec_["mounts"][0]
            assert spec_["mounts"][0]["uri"] == obj["spec"]["mounts"][0]["uri"]
    finally:
        control_plane.kubectl("delete", "dataset", "pruned", "-n", namespace)


# -- the schema's and CEL rules, as the server applies them ---------------------------


def options_from(name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": key}}}


def mount(o: Obj) -> Obj:
    return o["spec"]["mounts"][0]  # type: ignore[no-any-return]


WRONG: list[tuple[str, Callable[[Obj], Any], str]] = [
    (
        "Dataset",
        lambda o: o["spec"]["mounts"].append({"uri": "file:///x"}),
        "spec.mounts: Too many: 2: must have at most 1 items",
    ),
    ("Dataset", lambda o: o["spec"].update(mounts=[]), "spec.mounts: Invalid value: 0"),
    (
        "Dataset",
        lambda o: mount(o).update(uri="ftp://host/x"),
        'spec.mounts[0].uri: Invalid value: "ftp://host/x": spec.mounts[0].uri in body should'
        " match",
    ),
    ("Dataset", lambda o: mount(o).pop("uri"), "spec.mounts[0].uri: Required value"),
    (
        "Dataset",
        lambda o: mount(o)["options"].update(anonymous=True),
        'spec.mounts[0].options.anonymous: Invalid value: "boolean": spec.mounts[0].options'
        '.anonymous in body must be of type string: "boolean"',
    ),
    (  # an endpoint from a Secret would send the Secret's value elsewhere
        "Dataset",
        lambda o: mount(o)["optionsFrom"][0].update(name="endpoint"),
        'spec.mounts[0].optionsFrom[0].name: Unsupported value: "endpoint": supported values:'
        ' "access_key_id", "secret_access_key", "session_token"',
    ),
    (
        "Dataset",
        lambda o: mount(o)["optionsFrom"].append(options_from("access_key_id", "other")),
        'spec.mounts[0].optionsFrom[2]: Duplicate value: map[string]interface {}{"name":'
        '"access_key_id"}',
    ),
    (
        "Dataset",
        lambda o: mount(o)["options"].update(secret_access_key="plain"),
        'spec.mounts[0]: Invalid value: "object": an option is set both in options and in'
        " optionsFrom",
    ),
    (
        "Dataset",
        lambda o: o["spec"].update(blockSize="big"),
        'spec.blockSize: Invalid value: "big": spec.blockSize in body should match',
    ),
    (
        "Dataset",
        lambda o: o["spec"].update(blockSize=0),
        "spec.blockSize: Invalid value: 0: spec.blockSize in body should be greater than or"
        " equal to 1",
    ),
    (
        "Dataset",
        lambda o: o["spec"].update(syncIntervalSeconds=-1),
        "spec.syncIntervalSeconds: Invalid value: -1: spec.syncIntervalSeconds in body should"
        " be greater than or equal to 0",
    ),
    ("Dataset", lambda o: o.pop("spec"), "spec: Required value"),
    (
        "DataLoad",
        lambda o: o["spec"].update(policy="Hourly"),
        'spec.policy: Unsupported value: "Hourly": supported values: "Once", "Cron"',
    ),
    (
        "DataLoad",
        lambda o: o["spec"].pop("schedule"),
        'spec: Invalid value: "object": policy Cron needs a schedule',
    ),
    (  # the default policy is Once, which would ignore the schedule
        "DataLoad",
        lambda o: o["spec"].pop("policy"),
        'spec: Invalid value: "object": a schedule needs policy Cron',
    ),
    (
        "DataLoad",
        lambda o: o["spec"].update(schedule="tomorrow"),
        'spec.schedule: Invalid value: "tomorrow": spec.schedule in body should match',
    ),
    ("DataLoad", lambda o: o["spec"].pop("dataset"), "spec.dataset: Required value"),
]


@pytest.mark.parametrize(("kind", "change", "message"), WRONG)
def test_the_server_refuses_wrong_resources(
    control_plane: ControlPlane,
    examples: list[Obj],
    namespace: str,
    kind: str,
    change: Callable[[Obj], Any],
    message: str,
) -> None:
    obj = moved(next(o for o in examples if o["kind"] == kind), namespace)
    change(obj)
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    assert refused.returncode == 1, refused.stdout
    name = obj["metadata"]["name"]
    assert f'The {kind} "{name}" is invalid: ' in refused.stderr
    assert message in refused.stderr


def test_the_examples_as_shipped_pass(
    control_plane: ControlPlane, examples: list[Obj], namespace: str
) -> None:
    ours = [moved(o, namespace) for o in examples if o["apiVersion"] == GROUP_VERSION]
    for obj in ours:
        accepted = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=json.dumps(obj)
        )
        assert accepted.stdout.endswith("created (server dry run)\n")


def test_the_status_takes_only_known_phases(
    control_plane: ControlPlane, examples: list[Obj], namespace: str
) -> None:
    """A status written through the status subresource (as the controller does) is
    checked against the schema too."""
    obj = dataset(examples, namespace, "status")
    control_plane.kubectl("create", "-f", "-", input=json.dumps(obj))
    try:
        patch = ["patch", "dataset", "status", "-n", namespace, "--subresource=status"]
        refused = control_plane.kubectl(
            *patch, "--type=merge", "-p", '{"status": {"phase": "Done"}}', check=False
        )
        assert refused.returncode == 1
        assert 'status.phase: Unsupported value: "Done": supported values: "Pending",' in (
            refused.stderr
        )
        control_plane.kubectl(*patch, "--type=merge", "-p", '{"status": {"phase": "Ready"}}')
        ready = control_plane.get("dataset", namespace, "status")
        assert ready is not None and ready["status"]["phase"] == "Ready"
    finally:
        control_plane.kubectl("delete", "dataset", "status", "-n", namespace)
