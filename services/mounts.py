"""The mount table as the kernel shows it, for the code and tests that mount things.

/proc/self/mounts escapes space, tab, newline and backslash in its fields as octal
(`\\040`); this module decodes them, so that a path compares equal to the one that
was mounted. It reads the table, never the mount points: a stat of a mount whose
FUSE daemon is dead or stuck fails or hangs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

_ESCAPE = re.compile(rb"\\([0-7]{3})")


class Mount(NamedTuple):
    source: str
    path: Path
    fstype: str  # "fuse.reservoir" for a Reservoir FUSE mount and every bind of it


def _decode(field: bytes) -> str:
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), field))


def mount_points(table: str = "/proc/self/mounts") -> list[Mount]:
    """Every mount in this mount namespace, in the kernel's order (a mount stacked
    on another comes after it)."""
    with open(table, "rb") as f:
        rows = [line.split() for line in f]
    return [Mount(_decode(r[0]), Path(_decode(r[1])), _decode(r[2])) for r in rows]


def mounts_at(path: Path) -> list[Mount]:
    """The mounts stacked at `path`, lowest first: [] when it is no mount point (a
    dead FUSE mount counts, which os.path.ismount cannot tell: its stat fails)."""
    return [m for m in mount_points() if m.path == path]


def is_mounted(path: Path) -> bool:
    return bool(mounts_at(path))
