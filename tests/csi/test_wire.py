"""csi.v1 as generated is the specification's wire contract: what kubelet sends
decodes here field by field (names and numbers from the CSI spec, v1.9)."""

from __future__ import annotations

import pytest
from csi.v1 import csi_pb2 as pb

# (message, field, number) from the specification's csi.proto.
SPEC_FIELDS = [
    ("GetPluginInfoResponse", "name", 1),
    ("GetPluginInfoResponse", "vendor_version", 2),
    ("GetPluginInfoResponse", "manifest", 3),
    ("ProbeResponse", "ready", 1),
    ("NodePublishVolumeRequest", "volume_id", 1),
    ("NodePublishVolumeRequest", "publish_context", 2),
    ("NodePublishVolumeRequest", "staging_target_path", 3),
    ("NodePublishVolumeRequest", "target_path", 4),
    ("NodePublishVolumeRequest", "volume_capability", 5),
    ("NodePublishVolumeRequest", "readonly", 6),
    ("NodePublishVolumeRequest", "secrets", 7),
    ("NodePublishVolumeRequest", "volume_context", 8),
    ("NodeUnpublishVolumeRequest", "target_path", 2),
    ("NodeGetVolumeStatsRequest", "volume_path", 2),
    ("NodeGetVolumeStatsResponse", "volume_condition", 2),
    ("VolumeUsage", "available", 1),
    ("VolumeUsage", "total", 2),
    ("VolumeUsage", "used", 3),
    ("VolumeUsage", "unit", 4),
    ("VolumeCapability", "block", 1),
    ("VolumeCapability", "mount", 2),
    ("VolumeCapability", "access_mode", 3),
    ("NodeGetInfoResponse", "node_id", 1),
    ("NodeGetInfoResponse", "max_volumes_per_node", 2),
    ("NodeGetInfoResponse", "accessible_topology", 3),
    ("CreateVolumeRequest", "mutable_parameters", 8),
    ("ControllerModifyVolumeRequest", "mutable_parameters", 3),
]
SPEC_SERVICES = {
    "Identity": {"GetPluginInfo", "GetPluginCapabilities", "Probe"},
    "Node": {
        "NodeStageVolume",
        "NodeUnstageVolume",
        "NodePublishVolume",
        "NodeUnpublishVolume",
        "NodeGetVolumeStats",
        "NodeExpandVolume",
        "NodeGetCapabilities",
        "NodeGetInfo",
    },
}


@pytest.mark.parametrize(("message", "field", "number"), SPEC_FIELDS)
def test_fields_carry_the_specs_numbers(message: str, field: str, number: int) -> None:
    assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == number


def test_package_services_and_enums_are_the_specs() -> None:
    assert pb.DESCRIPTOR.package == "csi.v1"
    for service, methods in SPEC_SERVICES.items():
        assert set(pb.DESCRIPTOR.services_by_name[service].methods_by_name) == methods
    assert pb.NodeServiceCapability.RPC.GET_VOLUME_STATS == 2
    assert pb.VolumeCapability.AccessMode.MULTI_NODE_READER_ONLY == 3
    assert pb.ControllerServiceCapability.RPC.MODIFY_VOLUME == 14
    assert pb.csi_secret.number == 1059
