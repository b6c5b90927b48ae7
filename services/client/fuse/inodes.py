"""Inode numbers the kernel holds, and the paths they name.

FUSE's low-level protocol names files by inode number: the kernel learns one from
each `lookup` (and each entry of a `readdirplus`), counts it, and later `forget`s
it by that count. The numbers are hashes of the dataset paths (`tree.inode_of`), so
the same file keeps its number across lookups, mounts and nodes; this table only
maps them back to paths while the kernel holds them, and lets go when it does not.
"""

from __future__ import annotations

import errno

from reservoir.client.fuse.tree import ROOT_INODE, FsError


class InodeTable:
    """inode -> (path, lookups). Not thread-safe: the glue calls it from its event loop."""

    def __init__(self) -> None:
        self._paths: dict[int, str] = {ROOT_INODE: ""}
        self._lookups: dict[int, int] = {}

    def path(self, ino: int) -> str:
        try:
            return self._paths[ino]
        except KeyError:
            raise FsError(errno.ESTALE) from None  # the kernel forgot it: a stale handle

    def remember(self, ino: int, path: str) -> None:
        """The kernel now holds one more reference to `ino` (a lookup answered)."""
        if ino == ROOT_INODE:
            return  # the root is never forgotten
        self._paths[ino] = path
        self._lookups[ino] = self._lookups.get(ino, 0) + 1

    def forget(self, ino: int, count: int) -> None:
        left = self._lookups.get(ino, 0) - count
        if left > 0:
            self._lookups[ino] = left
        elif ino != ROOT_INODE:
            self._lookups.pop(ino, None)
            self._paths.pop(ino, None)

    def __len__(self) -> int:
        return len(self._paths)
