"""A published dataset is the origin's tree, byte for byte, read-only, shared by
targets through one FUSE process that ends with the last target."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from csi.v1 import csi_pb2 as pb

from tests.csi.conftest import Plugin, mount_count, publish_request
from tests.fuse.conftest import ORIGIN_FILES, content, process_gone, wait_gone


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path) with the sha256 of its bytes, and
    every directory (with "")."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root) + "/"] = ""
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.file_digest(f, "sha256").hexdigest()
    return found


def test_identity_and_capabilities(plugin: Plugin) -> None:
    info = plugin.identity.GetPluginInfo(pb.GetPluginInfoRequest())
    assert info.name == "fuse.csi.reservoir.dev"
    assert info.vendor_version
    plugin.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest())
    probe = plugin.identity.Probe(pb.ProbeRequest())
    assert probe.HasField("ready") and probe.ready.value is True
    assert plugin.node.NodeGetInfo(pb.NodeGetInfoRequest()).node_id == "node-1"
    kinds = {
        c.rpc.type
        for c in plugin.node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest()).capabilities
    }
    assert pb.NodeServiceCapability.RPC.GET_VOLUME_STATS in kinds
    caps = plugin.controller.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest())
    assert [c.rpc.type for c in caps.capabilities] == [pb.ControllerServiceCapability.RPC.UNKNOWN]


def test_the_published_tree_is_the_origin(plugin: Plugin, origin: Path, targets: Path) -> None:
    target = targets / "pod-a"
    plugin.node.NodePublishVolume(publish_request(target))
    try:
        assert tree(target) == tree(origin)
        with pytest.raises(OSError, match="Read-only file system"):
            (target / "new.txt").write_bytes(b"x")
        stats = plugin.node.NodeGetVolumeStats(
            pb.NodeGetVolumeStatsRequest(volume_id="ds", volume_path=str(target))
        )
        (by_bytes,) = [u for u in stats.usage if u.unit == pb.VolumeUsage.BYTES]
        # The dataset's size, rounded up to the mount's block size, all of it used.
        total = sum(ORIGIN_FILES.values())
        assert total <= by_bytes.total < total + 1024 * 1024
        assert by_bytes.used == by_bytes.total and by_bytes.available == 0
        assert not stats.volume_condition.abnormal
    finally:
        plugin.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id="ds", target_path=str(target))
        )
    assert not target.exists()


def test_tar_over_the_target_reproduces_the_origin(
    plugin: Plugin, origin: Path, targets: Path
) -> None:
    target, copy = targets / "pod-tar", targets / "copy"
    copy.mkdir()
    plugin.node.NodePublishVolume(publish_request(target))
    try:
        subprocess.run(f"tar -C '{target}' -cf - . | tar -C '{copy}' -xf -", shell=True, check=True)
    finally:
        plugin.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id="ds", target_path=str(target))
        )
    assert tree(copy) == tree(origin)
    path = "model/weights.bin"
    # tar keeps whole seconds of the mtime the dataset recorded.
    assert int((copy / path).stat().st_mtime) == int((origin / path).stat().st_mtime)


def test_volume_context_names_the_dataset_and_a_sub_path(plugin: Plugin, targets: Path) -> None:
    target = targets / "pod-sub"
    request = publish_request(target, volume_id="pv-models", dataset="ds", subPath="a/b")
    plugin.node.NodePublishVolume(request)
    try:
        assert os.listdir(target) == ["c"]
        assert (target / "c/deep.txt").read_bytes() == content("a/b/c/deep.txt")
    finally:
        plugin.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id="pv-models", target_path=str(target))
        )


def test_targets_share_one_fuse_process_that_ends_with_the_last(
    plugin: Plugin, targets: Path
) -> None:
    first, second = targets / "pod-1", targets / "pod-2"
    plugin.node.NodePublishVolume(publish_request(first, volume_id="shared", dataset="ds"))
    plugin.node.NodePublishVolume(publish_request(second, volume_id="shared", dataset="ds"))
    pid = plugin.fuse_pid("shared")
    assert plugin.fuse_pids().count(pid) == 1
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id="shared", target_path=str(first))
    )
    assert not first.exists() and not process_gone(pid)
    assert (second / "a/b/c/deep.txt").read_bytes() == content("a/b/c/deep.txt")
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id="shared", target_path=str(second))
    )
    assert not second.exists() and mount_count(second) == 0
    wait_gone(pid, timeout=15)


def test_other_controller_calls_are_unimplemented(plugin: Plugin) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        plugin.controller.CreateVolume(pb.CreateVolumeRequest(name="v"))
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert failed.value.details()  # type: ignore[attr-defined]
