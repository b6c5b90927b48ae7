"""A mount's life: ready when it answers, ended cleanly by umount or a signal, and
nothing mounted when it cannot start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.mesh import Mesh, run_cli
from tests.fuse.conftest import (
    Mounted,
    content,
    force_unmount,
    is_mounted,
    process_gone,
    wait_gone,
)


def test_fusermount_u_ends_the_process_with_exit_0(mount: Callable[..., Mounted]) -> None:
    m = mount()
    assert (m.path / "one-block.bin").read_bytes() == content("one-block.bin")
    with open(m.path / "model/weights.bin", "rb") as f:
        f.read(100)
    assert m.unmount() == 0, m.stderr()
    assert not is_mounted(m.path)
    assert os.listdir(m.path) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_unmounts_and_exits_0(mount: Callable[..., Mounted], signum: int) -> None:
    m = mount()
    assert os.listdir(m.path)
    m.process.send_signal(signum)
    assert m.process.wait(timeout=30) == 0, m.stderr()
    assert not is_mounted(m.path)
    assert os.listdir(m.path) == []


def test_in_the_background_it_returns_once_the_mount_answers(
    fuse_cluster: Mesh, tmp_path: Path
) -> None:
    path = tmp_path / "mnt"
    path.mkdir()
    pid = 0
    try:
        done = run_cli("mount", "ds", str(path), master=fuse_cluster.address)
        assert done.returncode == 0, done.stderr
        found = re.fullmatch(r"mounted ds at (\S+) \(pid (\d+)\)\n", done.stdout)
        assert found and found[1] == str(path), done.stdout
        pid = int(found[2])
        # No waiting: the mount answers as soon as the command has returned.
        assert "one-block.bin" in os.listdir(path)
        assert (path / "a/b/c/deep.txt").read_bytes() == content("a/b/c/deep.txt")
        subprocess.run(["fusermount3", "-u", str(path)], check=True, timeout=30)
        wait_gone(pid)
        assert os.listdir(path) == []
    finally:
        force_unmount(path)
        if pid and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reservoir: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
def test_an_unknown_dataset_exits_1_with_one_line_and_mounts_nothing(
    fuse_cluster: Mesh, tmp_path: Path, foreground: bool
) -> None:
    path = tmp_path / "mnt"
    path.mkdir()
    try:
        args = ["mount", "no-such-dataset", str(path), *(["--foreground"] if foreground else [])]
        result = run_cli(*args, master=fuse_cluster.address)
        _assert_one_line_error(result, "no-such-dataset")
        assert result.stdout == ""
        assert not is_mounted(path)
    finally:
        force_unmount(path)


def test_a_sub_path_that_is_a_file_or_missing_mounts_nothing(
    fuse_cluster: Mesh, tmp_path: Path
) -> None:
    path = tmp_path / "mnt"
    path.mkdir()
    try:
        for target in ("ds/one-block.bin", "ds/no/such/dir"):
            result = run_cli("mount", target, str(path), master=fuse_cluster.address)
            _assert_one_line_error(result)
            assert not is_mounted(path)
    finally:
        force_unmount(path)


def test_a_missing_mountpoint_or_a_file_exits_1_with_a_clear_message(
    fuse_cluster: Mesh, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    result = run_cli("mount", "ds", str(missing), master=fuse_cluster.address)
    _assert_one_line_error(result, str(missing), "does not exist")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for extra in ([], ["--foreground"]):
        result = run_cli("mount", "ds", str(a_file), *extra, master=fuse_cluster.address)
        _assert_one_line_error(result, str(a_file), "not a directory")
    assert not missing.exists()
