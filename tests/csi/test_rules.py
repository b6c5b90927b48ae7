"""The rules of the CSI specification, each through the socket as kubelet calls:
the status code, and a message a person can act on."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from csi.v1 import csi_pb2 as pb

from reservoir.processes import free_port
from tests.csi.conftest import (
    Mode,
    Plugin,
    capability,
    mount_count,
    publish_request,
    status,
    unpublish,
)
from tests.fixtures.mesh import run_cli
from tests.fuse.conftest import content


@pytest.mark.parametrize("missing", ["volume_id", "target_path", "volume_capability"])
def test_publish_without_a_required_field_is_invalid(
    plugin: Plugin, targets: Path, missing: str
) -> None:
    request = publish_request(targets / "t")
    request.ClearField(missing)  # type: ignore[arg-type]
    code, message = status(lambda: plugin.node.NodePublishVolume(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert missing in message
    assert not (targets / "t").exists()


@pytest.mark.parametrize("missing", ["volume_id", "target_path"])
def test_unpublish_without_a_required_field_is_invalid(
    plugin: Plugin, targets: Path, missing: str
) -> None:
    request = pb.NodeUnpublishVolumeRequest(volume_id="ds", target_path=str(targets / "t"))
    request.ClearField(missing)  # type: ignore[arg-type]
    code, message = status(lambda: plugin.node.NodeUnpublishVolume(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and missing in message


@pytest.mark.parametrize("missing", ["volume_id", "volume_path"])
def test_stats_without_a_required_field_is_invalid(
    plugin: Plugin, targets: Path, missing: str
) -> None:
    request = pb.NodeGetVolumeStatsRequest(volume_id="ds", volume_path=str(targets))
    request.ClearField(missing)  # type: ignore[arg-type]
    code, message = status(lambda: plugin.node.NodeGetVolumeStats(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and missing in message


def test_publish_again_with_the_same_arguments_mounts_nothing_twice(
    plugin: Plugin, targets: Path
) -> None:
    target = targets / "again"
    plugin.node.NodePublishVolume(publish_request(target))
    pid = plugin.fuse_pid("ds")
    plugin.node.NodePublishVolume(publish_request(target))
    assert mount_count(target) == 1
    assert plugin.fuse_pid("ds") == pid
    unpublish(plugin, target)
    assert mount_count(target) == 0 and not target.exists()


def test_the_same_target_with_other_arguments_already_exists(plugin: Plugin, targets: Path) -> None:
    target = targets / "taken"
    plugin.node.NodePublishVolume(publish_request(target))
    try:
        other = publish_request(target, subPath="a")
        code, message = status(lambda: plugin.node.NodePublishVolume(other))
        assert code == grpc.StatusCode.ALREADY_EXISTS and str(target) in message
        other_volume = publish_request(target, volume_id="other", dataset="ds")
        code, _ = status(lambda: plugin.node.NodePublishVolume(other_volume))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert mount_count(target) == 1
        assert (target / "one-block.bin").read_bytes() == content("one-block.bin")
    finally:
        unpublish(plugin, target)


@pytest.mark.parametrize(
    ("cap", "readonly", "code", "words"),
    [
        (capability(block=True), True, grpc.StatusCode.FAILED_PRECONDITION, "block"),
        (
            capability(Mode.SINGLE_NODE_WRITER),
            False,
            grpc.StatusCode.FAILED_PRECONDITION,
            "read-only",
        ),
        (
            capability(Mode.MULTI_NODE_MULTI_WRITER),
            False,
            grpc.StatusCode.FAILED_PRECONDITION,
            "read-only",
        ),
        (capability(Mode.UNKNOWN), True, grpc.StatusCode.INVALID_ARGUMENT, "access_mode"),
        (
            pb.VolumeCapability(access_mode=Mode(mode=Mode.MULTI_NODE_READER_ONLY)),
            True,
            grpc.StatusCode.INVALID_ARGUMENT,
            "access type",
        ),
    ],
    ids=["block", "single-node-writer", "multi-node-writer", "no-mode", "no-access-type"],
)
def test_a_capability_it_cannot_serve_is_refused(
    plugin: Plugin,
    targets: Path,
    cap: pb.VolumeCapability,
    readonly: bool,
    code: grpc.StatusCode,
    words: str,
) -> None:
    request = publish_request(targets / "t", readonly=readonly)
    request.volume_capability.CopyFrom(cap)
    got, message = status(lambda: plugin.node.NodePublishVolume(request))
    assert got == code and words in message
    assert not (targets / "t").exists()


def test_a_writer_mode_published_readonly_is_served(plugin: Plugin, targets: Path) -> None:
    """What kubelet sends for an inline volume with `readOnly: true`."""
    target = targets / "inline"
    request = publish_request(target, readonly=True)
    request.volume_capability.CopyFrom(capability(Mode.SINGLE_NODE_WRITER))
    plugin.node.NodePublishVolume(request)
    try:
        assert (target / "one-block.bin").read_bytes() == content("one-block.bin")
    finally:
        unpublish(plugin, target)


@pytest.mark.parametrize("context", [{}, {"dataset": "no-such-dataset"}, {"subPath": "nowhere"}])
def test_an_unknown_dataset_is_not_found(
    plugin: Plugin, targets: Path, context: dict[str, str]
) -> None:
    volume_id = "ds" if context else "no-such-volume"
    request = publish_request(targets / "t", volume_id=volume_id, **context)
    code, message = status(lambda: plugin.node.NodePublishVolume(request))
    assert code == grpc.StatusCode.NOT_FOUND, message
    assert not (targets / "t").exists()


def test_unpublish_of_what_is_not_mounted_is_ok(plugin: Plugin, targets: Path) -> None:
    (targets / "empty").mkdir()
    unpublish(plugin, targets / "empty")
    unpublish(plugin, targets / "never-existed")
    target = targets / "twice"
    plugin.node.NodePublishVolume(publish_request(target))
    unpublish(plugin, target)
    unpublish(plugin, target)  # a retry after a lost answer
    assert not target.exists()


def test_unpublish_of_a_bind_the_state_does_not_record_unmounts_it(
    plugin: Plugin, targets: Path
) -> None:
    """A plugin that died between binding a target and saving it leaves a mount that
    no state names: unpublish still unmounts it and removes the folder (kubelet's
    cleanup of a mount point would fail)."""
    recorded = targets / "recorded"
    plugin.node.NodePublishVolume(publish_request(recorded, volume_id="half", dataset="ds"))
    stray = targets / "unrecorded"
    stray.mkdir()
    subprocess.run(["mount", "--bind", plugin.state("half")["staging"], str(stray)], check=True)
    unpublish(plugin, stray, volume_id="half")
    assert mount_count(stray) == 0 and not stray.exists()
    assert f"target={stray}: unmounted a mount the state did not record" in plugin.output()
    assert (recorded / "one-block.bin").read_bytes() == content("one-block.bin")
    unpublish(plugin, recorded, volume_id="half")
    assert mount_count(recorded) == 0 and not recorded.exists()


def test_stats_where_the_volume_is_not_published_is_not_found(
    plugin: Plugin, targets: Path
) -> None:
    request = pb.NodeGetVolumeStatsRequest(volume_id="ds", volume_path=str(targets))
    code, message = status(lambda: plugin.node.NodeGetVolumeStats(request))
    assert code == grpc.StatusCode.NOT_FOUND and str(targets) in message


@pytest.mark.parametrize("volume_id", ["ds", "no-such-volume"])
def test_stats_at_a_relative_path_is_not_found(
    plugin: Plugin, targets: Path, volume_id: str
) -> None:
    """The volume is looked up before the path's form is judged: a path where it is
    not published, relative ones too, is NOT_FOUND as the spec (and csi-sanity)
    has it, whether or not the volume is published elsewhere on the node."""
    target = targets / "t"
    plugin.node.NodePublishVolume(publish_request(target))
    try:
        request = pb.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path="some/path")
        code, message = status(lambda: plugin.node.NodeGetVolumeStats(request))
        assert code == grpc.StatusCode.NOT_FOUND, message
        assert volume_id in message and "some/path" in message
    finally:
        unpublish(plugin, target)


def test_concurrent_calls_for_one_target_are_serialised(plugin: Plugin, targets: Path) -> None:
    target = targets / "busy"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: plugin.node.NodePublishVolume(publish_request(target)), range(8)))
        assert mount_count(target) == 1
        assert (target / "one-block.bin").read_bytes() == content("one-block.bin")
        list(pool.map(lambda _: unpublish(plugin, target), range(8)))
    assert mount_count(target) == 0 and not target.exists()
    # Publish and unpublish racing: whatever the order, never a half-made target.
    with ThreadPoolExecutor(8) as pool:
        calls = [
            (lambda: plugin.node.NodePublishVolume(publish_request(target)))
            if i % 2 == 0
            else (lambda: unpublish(plugin, target))
            for i in range(8)
        ]
        for future in [pool.submit(call) for call in calls]:
            future.result()
    # Whichever came last, what the plugin recorded is what is mounted.
    if str(target) in plugin.published("ds"):
        assert mount_count(target) == 1
        assert (target / "one-block.bin").read_bytes() == content("one-block.bin")
    else:
        assert mount_count(target) == 0 and not target.exists()
    unpublish(plugin, target)
    assert mount_count(target) == 0 and not target.exists()


def test_probe_fails_when_the_master_is_unreachable(tmp_path: Path) -> None:
    lonely = Plugin(tmp_path, f"127.0.0.1:{free_port()}", node_id="node-2").start()
    try:
        code, message = status(lambda: lonely.identity.Probe(pb.ProbeRequest()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "master" in message
        request = publish_request(tmp_path / "t")
        code, _ = status(lambda: lonely.node.NodePublishVolume(request, timeout=60))
        assert code == grpc.StatusCode.UNAVAILABLE
        # The liveness check (deploy/) stays green meanwhile: restarting the plugin's
        # container would kill its FUSE processes and fix nothing.
        health = run_cli("health", f"unix://{lonely.socket}")
        assert health.returncode == 0, health.stderr
    finally:
        assert lonely.stop() == 0, lonely.output()
    health = run_cli("health", f"unix://{lonely.socket}", "--timeout", "1")
    assert health.returncode == 1
    assert health.stderr.count("\n") == 1 and "not serving" in health.stderr, health.stderr


def test_an_endpoint_that_is_not_a_unix_socket_is_bad_usage() -> None:
    done = run_cli("csi", "--endpoint=tcp://127.0.0.1:9000", "--node-id=n")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unix:///" in done.stderr, done.stderr
