"""The CSI node plugin as kubelet meets it: a real `reservoir csi` process on a Unix
socket, a gRPC client with the csi.v1 stubs, real FUSE and bind mounts of a real mesh.

Fixtures:
- `origin`, `fuse_cluster` (module): the tree and the mesh of tests/fuse (dataset "ds").
- `plugin` (module): the plugin, with stubs for Identity, Node and Controller.
- `targets` (function): a folder for target paths; every mount left under it is
  unmounted afterwards.
At the end of the module everything mounted under its temporary folders is unmounted
and every FUSE process the plugin started has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from csi.v1 import csi_pb2 as pb
from csi.v1 import csi_pb2_grpc

from reservoir import mounts
from reservoir.processes import stop
from tests.fixtures.mesh import Mesh
from tests.fuse.conftest import force_unmount, fuse_cluster, origin, process_gone, wait_gone

__all__ = ["fuse_cluster", "origin"]  # fixtures shared with tests/fuse

READY_TIMEOUT = 30.0
Mode = pb.VolumeCapability.AccessMode


def capability(mode: int = Mode.MULTI_NODE_READER_ONLY, block: bool = False) -> pb.VolumeCapability:
    if block:
        return pb.VolumeCapability(
            block=pb.VolumeCapability.BlockVolume(), access_mode=Mode(mode=mode)
        )
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(), access_mode=Mode(mode=mode))


def unpublish(plugin: Plugin, target: Path, volume_id: str = "ds") -> None:
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)), timeout=60
    )


def publish_request(
    target: Path, volume_id: str = "ds", readonly: bool = True, **context: str
) -> pb.NodePublishVolumeRequest:
    return pb.NodePublishVolumeRequest(
        volume_id=volume_id,
        target_path=str(target),
        volume_capability=capability(),
        readonly=readonly,
        volume_context=context,
    )


def status(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as failed:
        call()
    error: grpc.Call = failed.value  # type: ignore[assignment]
    assert error.details(), "every error has a message"
    return error.code(), error.details()


def mount_count(path: Path) -> int:
    """How many mounts sit at `path` (stacked binds count each)."""
    return len(mounts.mounts_at(path))


def mounts_under(root: Path) -> list[Path]:
    points = [m.path for m in mounts.mount_points()]
    return [p for p in points if p == root or root in p.parents]


class Plugin:
    """One `reservoir csi` process; `start` again after `kill` to restart it."""

    def __init__(self, root: Path, master: str, node_id: str = "node-1") -> None:
        self.root = root
        self.master = master
        self.node_id = node_id
        self.socket = root / "csi.sock"
        self.state_dir = root / "state"
        self.log = root / "plugin.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> Plugin:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reservoir",
                    "csi",
                    f"--endpoint=unix://{self.socket}",
                    f"--node-id={self.node_id}",
                    f"--state-dir={self.state_dir}",
                    f"--master={self.master}",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert self.process.poll() is None, f"the plugin exited:\n{self.output()}"
            try:
                self.identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=1)
                return self
            except grpc.RpcError:
                assert time.monotonic() < deadline, f"the plugin did not serve:\n{self.output()}"
                time.sleep(0.1)

    @property
    def identity(self) -> csi_pb2_grpc.IdentityStub:
        return csi_pb2_grpc.IdentityStub(self.channel)

    @property
    def node(self) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channel)

    @property
    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channel)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.close()

    def stop(self) -> int | None:
        self.close()
        return stop(self.process)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def state_file(self, volume_id: str) -> Path | None:
        """The plugin's saved state of the volume, if any."""
        for path in (self.state_dir / "volumes").glob("*.json"):
            if json.loads(path.read_text())["volume_id"] == volume_id:
                return path
        return None

    def state(self, volume_id: str) -> dict[str, Any]:
        path = self.state_file(volume_id)
        assert path is not None, f"volume {volume_id} is not in the plugin's state"
        return dict(json.loads(path.read_text()))

    def fuse_pid(self, volume_id: str) -> int:
        """The pid of the volume's FUSE process, from the plugin's state."""
        return int(self.state(volume_id)["pid"])

    def published(self, volume_id: str) -> set[str]:
        """The targets the plugin's state lists for the volume."""
        path = self.state_file(volume_id)
        return set(json.loads(path.read_text())["targets"]) if path else set()

    def all_targets(self) -> list[tuple[str, str]]:
        """(volume id, target) of every target in the plugin's state."""
        states = [json.loads(p.read_text()) for p in (self.state_dir / "volumes").glob("*.json")]
        return [(s["volume_id"], t) for s in states for t in s["targets"]]

    def fuse_pids(self) -> list[int]:
        states = (self.state_dir / "volumes").glob("*.json")
        return [int(json.loads(p.read_text())["pid"]) for p in states]


def clean_up(root: Path) -> None:
    """Unmount everything under `root`, deepest first."""
    for point in sorted(mounts_under(root), key=lambda p: len(p.parts), reverse=True):
        force_unmount(point)


@pytest.fixture(scope="module")
def plugin(fuse_cluster: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    root = tmp_path_factory.mktemp("csi")
    running = Plugin(root, fuse_cluster.address).start()
    try:
        yield running
    finally:
        pids = running.fuse_pids() if (running.state_dir / "volumes").exists() else []
        running.stop()
        clean_up(root)  # the staging mounts: their FUSE processes end
        for pid in pids:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid)


@pytest.fixture
def targets(plugin: Plugin, tmp_path: Path) -> Iterator[Path]:
    """A folder for target paths (the CO creates a target's parent, never the target)."""
    yield tmp_path
    # What a failed test left published: unpublished as kubelet would, else the
    # watcher binds again what clean_up unmounts behind its back.
    if plugin.channel is not None:
        for volume_id, target in plugin.all_targets():
            if Path(target).is_relative_to(tmp_path):
                with contextlib.suppress(grpc.RpcError):
                    plugin.node.NodeUnpublishVolume(
                        pb.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target),
                        timeout=60,
                    )
    clean_up(tmp_path)
