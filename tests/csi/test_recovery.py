"""What a node survives: a FUSE process killed (the pods' mounts work again within
seconds) or stuck (nothing else waits for it), a plugin killed and restarted (the
mounts never stop working), a dataset that cannot be mounted again (never published
empty, tried again less and less often), a call cut by kubelet's deadline (done
once, never half)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from csi.v1 import csi_pb2 as pb

from reservoir.client.csi.mounts import EXIT_TIMEOUT_SECONDS, STOP_PROBE_SECONDS
from reservoir.mounts import is_mounted
from tests.csi.conftest import Plugin, mount_count, publish_request, status, unpublish
from tests.fixtures.mesh import Mesh, wait_until
from tests.fuse.conftest import BLOCK_SIZE, content, force_unmount, process_gone, wait_gone

FILE = "model/weights.bin"
RECOVERY_SECONDS = 10.0
# More calls at once than asyncio's default executor has threads (cpu count + 4).
MANY_CALLS = 16


def reads_back(path: Path) -> bool:
    try:
        return (path / FILE).read_bytes() == content(FILE)
    except OSError:
        return False


def fuse_processes(staging: Path) -> list[int]:
    """Every running process whose arguments name `staging`: the FUSE daemons of it."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(staging).encode() in arguments and not process_gone(int(entry.name)):
                found.append(int(entry.name))
    return found


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
    unpublish(plugin, target, "crashy")
    assert mount_count(target) == 0 and not target.exists()
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
    assert mount_count(target) == 1
    assert "volume=steady adopted with 1 target(s)" in plugin.output()
    stats = plugin.node.NodeGetVolumeStats(
        pb.NodeGetVolumeStatsRequest(volume_id="steady", volume_path=str(target))
    )
    assert stats.usage
    plugin.node.NodePublishVolume(publish_request(target, volume_id="steady", dataset="ds"))
    assert mount_count(target) == 1
    unpublish(plugin, target, "steady")
    assert mount_count(target) == 0 and not target.exists()
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
    assert mount_count(target) == 0 and not target.exists()


def test_a_stuck_fuse_process_holds_up_nothing_else(plugin: Plugin, targets: Path) -> None:
    """Stats of a volume whose daemon is stuck answer abnormal in bounded time, however
    many kubelet asks for, and other volumes are published and unpublished meanwhile."""
    target = targets / "stuck"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="stuck", dataset="ds"))
    pid = plugin.fuse_pid("stuck")
    stats = pb.NodeGetVolumeStatsRequest(volume_id="stuck", volume_path=str(target))
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with ThreadPoolExecutor(MANY_CALLS) as pool:
            calls = [
                pool.submit(plugin.node.NodeGetVolumeStats, stats, timeout=30)
                for _ in range(MANY_CALLS)
            ]
            answers = [call.result() for call in calls]
        took = time.monotonic() - start
        assert all(a.volume_condition.abnormal for a in answers)
        assert "does not answer within 5 s" in answers[0].volume_condition.message
        assert took < 15, f"stats took {took:.1f} s"
        print(f"{MANY_CALLS} stats calls on a stuck mount answered in {took:.1f} s")

        other = targets / "bystander"
        request = publish_request(other, volume_id="bystander", dataset="ds")
        plugin.node.NodePublishVolume(request, timeout=30)
        assert reads_back(other)
        unpublish(plugin, other, "bystander")
        assert mount_count(other) == 0 and not other.exists()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: reads_back(target), RECOVERY_SECONDS, "the target to read again")
    assert not plugin.node.NodeGetVolumeStats(stats, timeout=30).volume_condition.abnormal
    pid = plugin.fuse_pid("stuck")
    unpublish(plugin, target, "stuck")
    assert mount_count(target) == 0 and not target.exists()
    wait_gone(pid)


def test_unpublishing_a_stuck_volume_ends_its_fuse_process(plugin: Plugin, targets: Path) -> None:
    target = targets / "frozen"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="frozen", dataset="ds"))
    pid = plugin.fuse_pid("frozen")
    staging = Path(plugin.state("frozen")["staging"])
    os.kill(pid, signal.SIGSTOP)
    try:
        seen: dict[str, float] = {}  # when the daemon was gone, when the staging was
        watching = threading.Event()

        def watch() -> None:
            while watching.is_set() and len(seen) < 2:
                if "killed" not in seen and process_gone(pid):
                    seen["killed"] = time.monotonic()
                if "unmounted" not in seen and not is_mounted(staging):
                    seen["unmounted"] = time.monotonic()
                time.sleep(0.01)

        watching.set()
        watcher = threading.Thread(target=watch)
        watcher.start()
        start = time.monotonic()
        try:
            unpublish(plugin, target, "frozen")
            took = time.monotonic() - start
            wait_gone(pid, timeout=5)
            time.sleep(0.05)
        finally:
            watching.clear()
            watcher.join()
        assert mount_count(target) == 0 and not target.exists()
        assert plugin.state_file("frozen") is None
        # Killed once its mount does not answer (the stat probe), then unmounted: not
        # unmounted first and killed when it had not exited EXIT_TIMEOUT_SECONDS later.
        # Compared in order, not in time since the call: that also holds a save, two
        # umounts and perhaps the watcher's turn with the volume.
        assert seen["killed"] - seen["unmounted"] < EXIT_TIMEOUT_SECONDS / 2, seen
        assert took < STOP_PROBE_SECONDS + EXIT_TIMEOUT_SECONDS, f"the unpublish took {took:.1f} s"
        print(f"unpublished a stuck volume in {took:.1f} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_volume_that_cannot_be_mounted_again_is_never_published_empty(
    plugin: Plugin, targets: Path, fuse_cluster: Mesh, origin: Path
) -> None:
    with fuse_cluster.client() as client:
        client.create_dataset("doomed", origin.as_uri(), block_size=BLOCK_SIZE)
    first = targets / "first"
    plugin.node.NodePublishVolume(publish_request(first, volume_id="doomed", dataset="doomed"))
    pid = plugin.fuse_pid("doomed")
    with fuse_cluster.client() as client:
        client.delete_dataset("doomed")
    os.kill(pid, signal.SIGKILL)  # its mounts break; the dataset is gone: no remount
    wait_gone(pid)

    second = targets / "second"
    request = publish_request(second, volume_id="doomed", dataset="doomed")
    code, message = status(lambda: plugin.node.NodePublishVolume(request, timeout=60))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "dataset doomed" in message and "mounting it again failed" in message, message
    assert mount_count(second) == 0 and not second.exists()
    # The watcher tries again after 1 s, then 2, then 4: not every second.
    wait_until(
        lambda: "volume=doomed: cannot mount again (will retry in 4 s)" in plugin.output(),
        RECOVERY_SECONDS * 2,
        "the third try",
    )
    tries = r"volume=doomed: cannot mount again \(will retry in (\d+) s\)"
    waits = re.findall(tries, plugin.output())
    assert waits[:3] == ["1", "2", "4"], waits
    unpublish(plugin, first, "doomed")
    assert mount_count(first) == 0 and not first.exists()
    wait_until(lambda: plugin.state_file("doomed") is None, RECOVERY_SECONDS, "the volume to go")


def test_a_publish_cut_by_its_deadline_is_done_once(plugin: Plugin, targets: Path) -> None:
    """Kubelet's deadline cancels the call on the plugin's side; what the publish
    started (a FUSE process, a bind) is finished and recorded, so the retry finds it
    done instead of mounting a second daemon and stacking a second bind."""
    target = targets / "hasty"
    request = publish_request(target, volume_id="hasty", dataset="ds")
    code, _ = status(lambda: plugin.node.NodePublishVolume(request, timeout=0.2))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    plugin.node.NodePublishVolume(request, timeout=60)
    assert reads_back(target)
    staging = Path(plugin.state("hasty")["staging"])
    pid = plugin.fuse_pid("hasty")
    assert fuse_processes(staging) == [pid]
    assert mount_count(staging) == 1 and mount_count(target) == 1
    assert plugin.published("hasty") == {str(target)}

    with contextlib.suppress(grpc.RpcError):  # cut or not: the retry finds it done
        plugin.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id="hasty", target_path=str(target)),
            timeout=0.05,
        )
    unpublish(plugin, target, "hasty")
    assert mount_count(target) == 0 and not target.exists(), "the plugin created it"
    wait_gone(pid)
    assert fuse_processes(staging) == [] and mount_count(staging) == 0
    assert plugin.state_file("hasty") is None


def test_a_volume_left_without_targets_is_stopped(plugin: Plugin, targets: Path) -> None:
    """An unpublish saves the state before it stops the FUSE process; a plugin that
    dies between the two (or a stop that fails) leaves a volume without targets, and
    the watcher stops it."""
    target = targets / "last"
    plugin.node.NodePublishVolume(publish_request(target, volume_id="leftover", dataset="ds"))
    pid = plugin.fuse_pid("leftover")
    plugin.kill()
    force_unmount(target)  # the unpublish got this far: unmounted and saved
    target.rmdir()
    saved = plugin.state_file("leftover")
    assert saved is not None
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "targets": {}}))
    plugin.start()
    wait_gone(pid, timeout=RECOVERY_SECONDS)
    wait_until(lambda: plugin.state_file("leftover") is None, RECOVERY_SECONDS, "its state to go")
    assert "volume=leftover unmounted ds" in plugin.output()
