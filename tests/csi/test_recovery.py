"""What a node survives: a FUSE process killed (the pods' mounts work again within
seconds), and a plugin killed and restarted (the mounts never stop working)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from csi.v1 import csi_pb2 as pb

from tests.csi.conftest import Plugin, mounts_at, publish_request
from tests.fixtures.mesh import wait_until
from tests.fuse.conftest import content, wait_gone

FILE = "model/weights.bin"
RECOVERY_SECONDS = 10.0


def reads_back(path: Path) -> bool:
    try:
        return (path / FILE).read_bytes() == content(FILE)
    except OSError:
        return False


def shared_kubelet_dir(root: Path) -> Path:
    """A folder like /var/lib/kubelet/pods: a shared mount, so what the plugin
    mounts under it propagates (kubelet's, with the plugin's Bidirectional)."""
    kubelet = root / "kubelet"
    kubelet.mkdir()
    subprocess.run(["mount", "--bind", str(kubelet), str(kubelet)], check=True)
    subprocess.run(["mount", "--make-rshared", str(kubelet)], check=True)
    (kubelet / "pod-uid").mkdir()
    return kubelet


def container_view(target: Path, root: Path) -> Path:
    """What a container runtime does with a volume mount of HostToContainer
    propagation: a bind of the target, a slave of it."""
    view = root / "container-rootfs-data"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(target), str(view)], check=True)
    subprocess.run(["mount", "--make-rslave", str(view)], check=True)
    return view


def test_a_killed_fuse_process_is_replaced_and_the_pod_reads_again(
    plugin: Plugin, targets: Path
) -> None:
    target = shared_kubelet_dir(targets) / "pod-uid" / "volume"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="crashy", dataset="ds"))
    pod = container_view(target, targets)
    assert reads_back(pod)
    pid = plugin.fuse_pid("crashy")

    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    took = wait_until(lambda: reads_back(pod), RECOVERY_SECONDS, "the pod's view to read again")
    assert reads_back(target)
    assert plugin.fuse_pid("crashy") != pid
    log = plugin.output()
    assert f"volume=crashy target={target} recovered" in log, log
    print(f"recovered in {took:.1f} s")
    stats = plugin.node.NodeGetVolumeStats(
        pb.NodeGetVolumeStatsRequest(volume_id="crashy", volume_path=str(target))
    )
    assert not stats.volume_condition.abnormal

    new_pid = plugin.fuse_pid("crashy")
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id="crashy", target_path=str(target))
    )
    assert mounts_at(target) == 0 and not target.exists()
    wait_gone(new_pid)


def test_a_plugin_restart_keeps_the_mounts_working(plugin: Plugin, targets: Path) -> None:
    target = targets / "survivor"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="steady", dataset="ds"))
    pid = plugin.fuse_pid("steady")
    with open(target / FILE, "rb") as opened:  # a pod reading across the restart
        head = opened.read(1000)
        plugin.kill()
        assert reads_back(target), "the mount broke with the plugin"
        plugin.start()
        assert head + opened.read() == content(FILE)
    assert plugin.fuse_pid("steady") == pid, "the restarted plugin adopts the FUSE process"
    assert mounts_at(target) == 1
    assert "volume=steady adopted with 1 target(s)" in plugin.output()
    stats = plugin.node.NodeGetVolumeStats(
        pb.NodeGetVolumeStatsRequest(volume_id="steady", volume_path=str(target))
    )
    assert stats.usage
    plugin.node.NodePublishVolume(publish_request(target, volume_id="steady", dataset="ds"))
    assert mounts_at(target) == 1
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id="steady", target_path=str(target))
    )
    assert mounts_at(target) == 0 and not target.exists()
    wait_gone(pid)


def test_a_restarted_plugin_repairs_what_died_while_it_was_away(
    plugin: Plugin, targets: Path
) -> None:
    target = targets / "orphan"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="orphan", dataset="ds"))
    pid = plugin.fuse_pid("orphan")
    plugin.kill()
    os.kill(pid, signal.SIGKILL)  # the node's FUSE process dies while no plugin runs
    wait_gone(pid)
    assert not reads_back(target)
    plugin.start()
    wait_until(lambda: reads_back(target), RECOVERY_SECONDS, "the target to read again")
    assert f"volume=orphan target={target} recovered" in plugin.output()
    plugin.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id="orphan", target_path=str(target))
    )
    assert mounts_at(target) == 0 and not target.exists()
