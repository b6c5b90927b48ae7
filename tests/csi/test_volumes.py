"""The plugin's bookkeeping in process, where the socket cannot show it."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from reservoir.client.csi.state import StateDir
from reservoir.client.csi.volumes import Volumes


def test_a_lock_lives_only_while_a_call_uses_it(tmp_path: Path) -> None:
    """Kubelet names a new target path for every pod: a lock per path kept for
    ever would grow without end."""
    volumes = Volumes(StateDir(tmp_path / "state"))

    async def calls() -> None:
        targets = [tmp_path / f"pod-{i}" for i in range(50)]
        await asyncio.gather(*(volumes.unpublish("v", t) for t in targets for _ in range(3)))

    try:
        asyncio.run(calls())
    finally:
        volumes.close()
    gc.collect()
    assert len(volumes._target_locks) == 0 and len(volumes._volume_locks) == 0


def test_a_state_dir_behind_a_symlink_names_staging_as_the_kernel_does(tmp_path: Path) -> None:
    """The mount table shows canonical paths: a staging path through a symlink would
    never be found mounted, and each check would mount the volume again."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    state = StateDir(tmp_path / "link" / "state")
    assert state.staging("v").is_relative_to(real / "state")
