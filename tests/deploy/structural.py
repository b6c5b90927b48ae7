"""An offline check that a CRD's openAPIV3Schema is a structural schema, as
apiextensions.k8s.io/v1 requires (https://kubernetes.io/docs/tasks/extend-kubernetes/
custom-resources/custom-resource-definitions/#specifying-a-structural-schema).

It exists because kubectl's client-side checks and JSON Schema validators accept
schemas that a real kube-apiserver refuses (the CRDs once shipped with
`additionalProperties: false` beside `properties`). Where the server refuses, the
message here carries the server's own words (tests/deploy/test_crd_schemas.py holds
both to that); two rules go further than the server, for schemas it accepts that
cannot work: a `required` field that `properties` does not declare (pruned before
validation, so no object passes) and a field given only inside anyOf/allOf/oneOf/not
(pruned too, so the rule never applies).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Node = dict[str, Any]

TYPES = ("array", "boolean", "integer", "number", "object", "string")
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# What JSONSchemaProps of apiextensions.k8s.io/v1 has; anything else is a typo the
# server's strict decoding refuses ("unknown field").
KNOWN = {
    "$schema", "$ref", "id", "description", "type", "format", "title", "default",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf", "enum",
    "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf",
    "not", "properties", "additionalProperties", "patternProperties", "dependencies",
    "additionalItems", "definitions", "externalDocs", "example", "nullable",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
    "x-kubernetes-map-type", "x-kubernetes-validations",
}  # fmt: skip
UNSUPPORTED = ("$ref", "$schema", "id", "patternProperties", "dependencies")
UNSUPPORTED_TOO = ("additionalItems", "definitions")
# Inside a junctor these would make the schema ambiguous (what type, which default?).
NOT_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")
EXCLUSIVE = "additionalProperties and properties are mutual exclusive"  # sic, the server's
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "array": (list,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "string": (str,),
}


def structural_errors(schema: Node) -> list[str]:
    """Every reason `schema` (a CRD version's openAPIV3Schema) is not a structural
    schema that the API server takes and that can work, as "PATH: REASON"."""
    errors = list(_node(schema, "$", typed=True))
    metadata = (schema.get("properties") or {}).get("metadata")
    if isinstance(metadata, dict):
        errors += _metadata(metadata)
    return errors


def _node(node: Any, path: str, typed: bool) -> Iterator[str]:
    """The errors of one schema node and those under it; `typed`: it is a field, an
    item or the root, which must say its type."""
    if not isinstance(node, dict):
        yield f"{path}: a schema must be an object, not {node!r}"
        return
    for key in sorted(set(node) - KNOWN):
        yield f"{path}: unknown field {key!r}"
    for key in UNSUPPORTED + UNSUPPORTED_TOO:
        if key in node:
            yield f"{path}: {key} is not supported"
    if node.get("uniqueItems") is True:
        yield f"{path}: uniqueItems cannot be set to true"
    if node.get("x-kubernetes-preserve-unknown-fields", True) is not True:
        yield f"{path}.x-kubernetes-preserve-unknown-fields: must be true or undefined"
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    open_ended = node.get("x-kubernetes-preserve-unknown-fields") is True
    kind = node.get("type")
    if kind is not None and kind not in TYPES:
        yield f"{path}.type: Unsupported value: {kind!r}"
    if typed and not kind and not int_or_string and not open_ended:
        where = "array items" if path.endswith(".items") else "object fields"
        yield f"{path}.type: must not be empty for specified {where}"
    if int_or_string:
        if kind:
            yield f"{path}.type: must be empty for x-kubernetes-int-or-string"
        if "anyOf" in node and node["anyOf"] != INT_OR_STRING:
            yield f"{path}.anyOf: must be empty to be structural (or exactly {INT_OR_STRING})"
    properties = node.get("properties")
    if properties is not None and "additionalProperties" in node:
        yield f"{path}.additionalProperties: {EXCLUSIVE}"
    declares_nothing = properties is None and "additionalProperties" not in node
    is_metadata = path == "$.properties.metadata"  # the server's own: see _metadata
    if kind == "object" and declares_nothing and not open_ended and not is_metadata:
        yield f"{path}: an object that declares no field keeps none: every key is pruned"
    for name in node.get("required") or []:
        declares = properties is not None or "additionalProperties" not in node
        if declares and not open_ended and name not in (properties or {}):
            yield (
                f"{path}.required: {name!r} is not in properties: it is pruned before"
                " validation, so no object passes"
            )
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            yield f"{path}.pattern: must be a valid regular expression ({exc})"
    yield from _default(node, path)
    yield from _list_type(node, path)
    for name, child in (properties or {}).items():
        yield from _node(child, f"{path}.properties.{name}", typed=True)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _node(extra, f"{path}.additionalProperties", typed=True)
    items = node.get("items")
    if isinstance(items, list):
        yield f"{path}.items: items must be a schema object and not an array"
    elif items is not None:
        yield from _node(items, f"{path}.items", typed=True)
    for junctor, inner in _junctors(node, path):
        yield from _in_junctor(inner, junctor, node, int_or_string)


def _junctors(node: Node, path: str) -> Iterator[tuple[str, Any]]:
    for key in JUNCTORS:
        value = node.get(key)
        if key == "not" and value is not None:
            yield f"{path}.not", value
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                yield f"{path}.{key}[{i}]", inner


def _in_junctor(inner: Any, path: str, outside: Node, int_or_string: bool) -> Iterator[str]:
    """A schema inside a junctor may only restrict values of what the schema around
    it declares: the rest is pruned before validation."""
    if not isinstance(inner, dict):
        yield f"{path}: a schema must be an object, not {inner!r}"
        return
    for key in NOT_IN_JUNCTORS:
        if key in inner and not (int_or_string and key == "type" and inner in INT_OR_STRING):
            yield f"{path}.{key}: must be empty to be structural"
    declared = outside.get("properties") or {}
    for name, child in (inner.get("properties") or {}).items():
        if name not in declared:
            yield f"{path}.properties.{name}: must be declared outside the junctor too"
        else:
            yield from _in_junctor(child, f"{path}.properties.{name}", declared[name], False)
    if "items" in inner:
        if "items" not in outside:
            yield f"{path}.items: must be declared outside the junctor too"
        elif isinstance(inner["items"], dict):
            yield from _in_junctor(inner["items"], f"{path}.items", outside["items"], False)
    for junctor, nested in _junctors(inner, path):
        yield from _in_junctor(nested, junctor, outside, int_or_string)


def _default(node: Node, path: str) -> Iterator[str]:
    if "default" not in node:
        return
    value = node["default"]
    kind = node.get("type")
    if kind in PYTHON_TYPES:
        wrong_bool = isinstance(value, bool) and kind != "boolean"
        if wrong_bool or not isinstance(value, PYTHON_TYPES[kind]):
            yield f"{path}.default: Invalid value: {value!r} must be of type {kind}"
    if "enum" in node and value not in node["enum"]:
        yield f"{path}.default: Unsupported value: {value!r}: supported values: {node['enum']}"


def _list_type(node: Node, path: str) -> Iterator[str]:
    list_type = node.get("x-kubernetes-list-type")
    if list_type is None:
        if "x-kubernetes-list-map-keys" in node:
            yield f"{path}: x-kubernetes-list-map-keys needs x-kubernetes-list-type map"
        return
    if list_type not in ("atomic", "set", "map"):
        yield f"{path}.x-kubernetes-list-type: Unsupported value: {list_type!r}"
    if node.get("type") != "array":
        yield f"{path}.x-kubernetes-list-type: only on arrays"
    items: Node = node["items"] if isinstance(node.get("items"), dict) else {}
    composite = items.get("type") in ("object", "array")
    if list_type == "set" and composite and items.get("x-kubernetes-map-type") != "atomic":
        yield f"{path}.items: must be atomic as item of a list with x-kubernetes-list-type=set"
    if list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys") or []
        if not keys:
            yield f"{path}.x-kubernetes-list-map-keys: must not be empty if list-type is map"
        if items.get("type") != "object":
            yield f"{path}.items.type: must be object if list-type is map"
        fields = items.get("properties") or {}
        for key in keys:
            if key not in fields:
                yield f"{path}.items.properties.{key}: a map key must be declared"
            elif key not in (items.get("required") or []) and "default" not in fields[key]:
                yield (
                    f"{path}.items.properties.{key}.default: this property is in"
                    " x-kubernetes-list-map-keys, so it must have a default or be a"
                    " required property"
                )


def _metadata(metadata: Node) -> list[str]:
    """At the root, metadata may say it is an object and restrict name and
    generateName, nothing else: the server owns the rest of ObjectMeta."""
    errors = []
    if set(metadata) - {"type", "properties"}:
        errors.append(
            "$.properties.metadata: must not specify anything other than name and"
            f" generateName (it has {sorted(set(metadata) - {'type', 'properties'})})"
        )
    for name in metadata.get("properties") or {}:
        if name not in ("name", "generateName"):
            errors.append(
                "$.properties.metadata: must not specify anything other than name and"
                f" generateName (it has {name!r})"
            )
    return errors


def nodes(schema: Node, path: str = "$") -> Iterator[tuple[str, Node]]:
    """Every schema node under `schema` (junctors included), with its path."""
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from nodes(child, f"{path}.properties.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.additionalProperties")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}.items")
    for junctor, inner in _junctors(schema, path):
        if isinstance(inner, dict):
            yield from nodes(inner, junctor)
