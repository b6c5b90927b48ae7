"""Warm throughput: 1 and 4 concurrent readers of a file every block of which is in the
workers' memory, against the ceilings measured in the same run on the same machine.

Reads (all whole-file, 8 MiB readinto; each kind's bytes checked against the file's
sha256 once, in an untimed warm-up read, and not hashed while timed; GB/s = readers x size / time
until the last one is done):
- library: `reservoir.client`;
- bare: a bare grpcio stream of the same bytes (bare_stream_server.py: WorkerService.
  ReadBlock from memory in 1 MiB messages over grpc.aio with the workers' wire
  encoding, read by a synchronous call that decodes each message's data as a view,
  as the library does, one call per block), from as many server processes as there
  are workers, block i from server i mod that number -- the ceiling for the library;
- fuse first: through a `reservoir mount`, with the file's pages dropped from the
  kernel's page cache first (posix_fadvise DONTNEED): every byte crosses FUSE;
- fuse second: the same again without the drop: the kernel's page cache (keep_cache);
- local page cache: a local copy of the file, in the page cache -- the ceiling for
  both FUSE reads; local disk: the same copy with its pages dropped first.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import harness
from storm import Setup, mounted

READERS = (1, 4)


def run(setup: Setup, stack: ExitStack, runs: int, say: Any) -> dict[str, Any]:
    local = setup.work / setup.name
    workers = len(setup.client.workers())
    bare = [
        harness.start_bare_server(stack, setup.work, local, setup.block) for _ in range(workers)
    ]
    dataset = setup.dataset("warm")
    lib = {"kind": "library", "master": setup.master, "dataset": dataset, "path": setup.name}
    harness.run_readers({**lib, "size": setup.size}, 1, setup.sha)  # the cold fill, checked
    setup.settle(dataset)
    with mounted(setup, dataset) as mountpoint:
        on_mount = str(mountpoint / setup.name)
        specs = {
            "library": lib,
            "bare": {"kind": "bare", "addresses": bare, "block": setup.block},
            "fuse_first": {"kind": "path", "path": on_mount, "drop": True},
            "fuse_second": {"kind": "path", "path": on_mount},
            "local_page_cache": {"kind": "path", "path": str(local)},
            "local_disk": {"kind": "path", "path": str(local), "drop": True},
        }
        seconds: dict[str, list[float]] = {f"{k}_{n}": [] for k in specs for n in READERS}
        for spec in specs.values():  # warm-up, and the sha256 check of each kind of read
            harness.run_readers({**spec, "size": setup.size}, 1, setup.sha)
            spec["digest"] = False
        for rep in range(runs):
            for n in READERS:
                order = list(specs) if rep % 2 == 0 else list(reversed(specs))
                for name in order:
                    # fuse_second must follow a read through the mount: keep its place.
                    if name == "fuse_second":
                        continue
                    storm = harness.run_readers({**specs[name], "size": setup.size}, n, setup.sha)
                    seconds[f"{name}_{n}"].append(storm.last / n)
                    if name == "fuse_first":
                        storm = harness.run_readers(
                            {**specs["fuse_second"], "size": setup.size}, n, setup.sha
                        )
                        seconds[f"fuse_second_{n}"].append(storm.last / n)
            say("  warm run " + str(rep + 1) + ": " + ", ".join(
                f"{k} {setup.size / v[-1] / 1e9:.2f}" for k, v in seconds.items()
            ) + " GB/s")  # fmt: skip
    figures = {k: harness.gbps(setup.size, v) for k, v in seconds.items()}
    out: dict[str, Any] = {k: f.as_json() for k, f in figures.items()}
    out["ratios"] = {
        f"{num}_{n}_vs_{den}_{n}": figures[f"{num}_{n}"].median / figures[f"{den}_{n}"].median
        for n in READERS
        for num, den in (
            ("library", "bare"),
            ("fuse_first", "library"),
            ("fuse_first", "local_page_cache"),
            ("fuse_second", "local_page_cache"),
            ("fuse_first", "local_disk"),
        )
    }
    return out
