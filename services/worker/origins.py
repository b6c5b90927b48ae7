"""The worker's handles on datasets' under-storage, opened on first use.

A worker learns a dataset's mount (with its secrets) from the master, opens it once
and keeps it for a while; a dataset re-created with another mount is picked up when
the entry expires.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from reservoir.origin import Origin, open_origin
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2

# Long enough to open a mount once per burst of fills, short enough that a
# re-created dataset is read from its new mount soon after.
KEEP_SECONDS = 30.0


class Origins:
    def __init__(self, master: MasterClient) -> None:
        self._master = master
        self._open: dict[str, tuple[float, Origin]] = {}
        # Bytes read from each dataset's origin since this worker started.
        self.bytes_read: Counter[str] = Counter()

    async def get(self, dataset: str) -> Origin:
        kept = self._open.get(dataset)
        if kept and time.monotonic() - kept[0] < KEEP_SECONDS:
            return kept[1]
        request = master_pb2.GetMountRequest(dataset=dataset)
        mount = await asyncio.to_thread(self._master.call, "GetMount", request, timeout=30)
        origin = open_origin(mount.mount_uri, dict(mount.options))
        if kept:
            await kept[1].close()
        self._open[dataset] = (time.monotonic(), origin)
        return origin

    async def close(self) -> None:
        for _, origin in self._open.values():
            await origin.close()
        self._open.clear()
