"""Typed views of the Dataset and DataLoad custom resources (data.reservoir.dev/v1alpha1).

The API server has already checked each object against the CRD's schema; these views
only read it, apply defaults and name things. A spec the schema cannot judge (a block
size that does not parse, a bad cron schedule) raises InvalidArgument, which the
controller writes into the resource's status.

Master-side names: Kubernetes Datasets are namespaced, the master's are not, so
Dataset `NAME` in namespace `NS` is the master's dataset `NS-NAME` when that is a
DNS-1123 label of at most 63 characters. Otherwise (too long, or dots in NAME) it is
the first 54 characters of it, made a label, then `-` and 8 hex digits of the SHA-256
of `NS/NAME`, so distinct resources stay distinct.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reservoir import paths
from reservoir.errors import InvalidArgument
from reservoir.origin.open import CREDENTIAL_OPTIONS
from reservoir.units import parse_size

GROUP = "data.reservoir.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DATASETS = "datasets"
DATALOADS = "dataloads"
# Holds a Dataset until the master has forgotten it and its volume is gone.
FINALIZER = f"{GROUP}/master-dataset"
CSI_DRIVER = "fuse.csi.reservoir.dev"
# Labels on the PersistentVolume and claim made for a Dataset: who they belong to.
LABEL_DATASET = f"{GROUP}/dataset"
LABEL_NAMESPACE = f"{GROUP}/namespace"
# The only options a Dataset may take from a Secret are CREDENTIAL_OPTIONS. Anything
# else (an endpoint above all) would let a Dataset's author send a Secret of the
# namespace to a server of their choosing. The CRD's schema holds the same list.

_HASHED_STEM = 54  # 54 + "-" + 8 hex digits = 63, the longest label
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")

Obj = Mapping[str, Any]


def master_name(namespace: str, name: str) -> str:
    """The master's name for Dataset `name` in `namespace` (see the module's note)."""
    candidate = f"{namespace}-{name}"
    try:
        paths.check_name(candidate)
        return candidate
    except InvalidArgument:
        pass
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    stem = _NOT_LABEL.sub("-", candidate)[:_HASHED_STEM].strip("-")
    return f"{stem}-{digest}"


def volume_labels(namespace: str, name: str) -> dict[str, str]:
    """The labels that mark the PersistentVolume made for Dataset `namespace/name`."""
    return {LABEL_DATASET: name, LABEL_NAMESPACE: namespace}


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time of the API server ("2026-01-02T03:04:05Z"), aware, or None."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SecretOption:
    """A mount option whose value is the `key` of Secret `secret` (same namespace)."""

    option: str
    secret: str
    key: str


@dataclass(frozen=True)
class Mount:
    uri: str
    options: dict[str, str] = field(default_factory=dict)
    secret_options: tuple[SecretOption, ...] = ()

    def check_credentials_only(self) -> None:
        """Refuse Secret options that are not credentials. Checked only when the
        Secrets are about to be read (creating the master's dataset), not when the
        view is made: a Dataset from before this rule must still be deletable."""
        for o in self.secret_options:
            if o.option not in CREDENTIAL_OPTIONS:
                allowed = ", ".join(sorted(CREDENTIAL_OPTIONS))
                raise InvalidArgument(
                    f"optionsFrom takes only credentials ({allowed}), not {o.option!r}:"
                    " put it in options"
                )


@dataclass(frozen=True)
class Meta:
    """What the controller needs of `metadata`."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    created: datetime | None
    deleting: bool
    finalizers: tuple[str, ...]

    @classmethod
    def of(cls, obj: Obj) -> Meta:
        m = obj.get("metadata") or {}
        return cls(
            namespace=m.get("namespace", ""),
            name=m.get("name", ""),
            uid=m.get("uid", ""),
            generation=int(m.get("generation") or 0),
            resource_version=str(m.get("resourceVersion", "")),
            created=parse_time(m.get("creationTimestamp")),
            deleting=bool(m.get("deletionTimestamp")),
            finalizers=tuple(m.get("finalizers") or ()),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Dataset:
    meta: Meta
    mount: Mount
    block_size: int  # 0: the master's default
    preload: bool
    sync_interval_s: int  # 0: never sync on a timer
    status: dict[str, Any]

    @property
    def master_name(self) -> str:
        return master_name(self.meta.namespace, self.meta.name)

    @classmethod
    def of(cls, obj: Obj) -> Dataset:
        spec = obj.get("spec") or {}
        status = dict(obj.get("status") or {})
        meta = Meta.of(obj)
        mounts = spec.get("mounts") or []
        if len(mounts) != 1:
            raise InvalidArgument(f"a Dataset has exactly one mount, {meta.key} has {len(mounts)}")
        m = mounts[0]
        secret_options = tuple(
            SecretOption(
                option=o["name"],
                secret=o["valueFrom"]["secretKeyRef"]["name"],
                key=o["valueFrom"]["secretKeyRef"]["key"],
            )
            for o in m.get("optionsFrom") or []
        )
        block = spec.get("blockSize", 0)
        return cls(
            meta=meta,
            mount=Mount(m["uri"], dict(m.get("options") or {}), secret_options),
            block_size=parse_size(str(block)) if block else 0,
            preload=bool(spec.get("preload", False)),
            sync_interval_s=int(spec.get("syncIntervalSeconds", 0)),
            status=status,
        )


ONCE = "Once"
CRON = "Cron"


@dataclass(frozen=True)
class DataLoad:
    meta: Meta
    dataset: str  # a Dataset in the same namespace
    paths: tuple[str, ...]
    policy: str  # ONCE or CRON
    schedule: str
    status: dict[str, Any]

    @classmethod
    def of(cls, obj: Obj) -> DataLoad:
        spec = obj.get("spec") or {}
        return cls(
            meta=Meta.of(obj),
            dataset=spec["dataset"],
            paths=tuple(spec.get("paths") or ()),
            policy=spec.get("policy", ONCE),
            schedule=spec.get("schedule", ""),
            status=dict(obj.get("status") or {}),
        )
