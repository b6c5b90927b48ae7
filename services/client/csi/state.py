"""What the node plugin has published, kept on disk so that a restarted plugin knows.

One JSON file per volume in `<state dir>/volumes/`, replaced atomically (write a
temporary file, fsync, rename), next to the volume's staging mount point and the
FUSE daemon's log. A file is named by a hash of the volume id, since CSI volume ids
may hold any character.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Target:
    """A published target: the publish arguments it was made with (their
    fingerprint), and whether the plugin created its directory."""

    fingerprint: str
    created_dir: bool


@dataclass
class Volume:
    """One volume on this node: one FUSE mount at `staging`, bound at each target."""

    volume_id: str
    master: str
    dataset: str
    subpath: str
    staging: str
    pid: int = 0
    targets: dict[str, Target] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """NAME[/PATH], as `reservoir mount` takes it."""
        return f"{self.dataset}/{self.subpath}" if self.subpath else self.dataset


class StateDir:
    """The plugin's state directory: per-volume JSON files, staging mounts, logs."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Daemons and mounts are known by their staging path as the kernel shows it:
        # absolute, without symlinks.
        self.root = root.resolve()
        self.volumes = self.root / "volumes"
        self.volumes.mkdir(exist_ok=True)

    def key(self, volume_id: str) -> str:
        return hashlib.sha256(volume_id.encode()).hexdigest()[:24]

    def staging(self, volume_id: str) -> Path:
        return self.volumes / self.key(volume_id) / "mnt"

    def log(self, volume_id: str) -> Path:
        return self.volumes / self.key(volume_id) / "fuse.log"

    def _file(self, volume_id: str) -> Path:
        return self.volumes / f"{self.key(volume_id)}.json"

    def save(self, volume: Volume) -> None:
        path = self._file(volume.volume_id)
        scratch = path.with_suffix(".tmp")
        with open(scratch, "w") as f:
            json.dump(asdict(volume), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(scratch, path)

    def forget(self, volume: Volume) -> None:
        """Remove the volume's file and its (unmounted, empty) folders."""
        self._file(volume.volume_id).unlink(missing_ok=True)
        folder = self.volumes / self.key(volume.volume_id)
        for path in (folder / "mnt", folder / "fuse.log", folder):
            # Not empty or still mounted: leave it for a person to see.
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)

    def load(self) -> list[Volume]:
        volumes = []
        for path in sorted(self.volumes.glob("*.json")):
            raw = json.loads(path.read_text())
            targets = {t: Target(**v) for t, v in raw.pop("targets").items()}
            volumes.append(Volume(**raw, targets=targets))
        return volumes
