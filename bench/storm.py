"""Cold-start storm: N readers start together, each reads the whole file, from an origin
behind a capped link (origin_link.py). Three arms per N, in the same run:

- direct: each reader does its own ranged GETs from the origin (readers.py, kind
  direct): blocks of the dataset's block size, the current one and the next in
  flight, as Reservoir's client streams one block while the next one's worker fills;
- library: through Reservoir from a cold cache, `reservoir.client` in each reader;
- fuse: through Reservoir from a cold cache, every reader reads the file (as `cat`
  would) through ONE shared `reservoir mount`, as the pods of a node share the node's
  mount.

Cold means a dataset created for that run: block identities carry the dataset, so
nothing is cached for it, while the cluster (and its start-up time) is shared.
Per arm: seconds until the first and the last reader hold the whole file (sha256
checked for every reader), origin bytes (the origin-side veth's counter, from just
before the release until the workers have stored every block) and origin bytes /
file size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from origin_link import OriginLink

from reservoir.client import Client

SETTLE_TIMEOUT = 180.0


@dataclass(frozen=True)
class Setup:
    """What every section shares: the file, where it is, the cluster."""

    work: Path
    size: int
    sha: str
    block: int
    link: OriginLink
    bucket: str
    key: str
    master: str
    client: Client

    @property
    def options(self) -> dict[str, str]:
        return {"endpoint": self.link.endpoint, "access_key_id": harness.S3_KEY,
                "secret_access_key": harness.S3_SECRET, "region": "us-east-1"}  # fmt: skip

    @property
    def mount_uri(self) -> str:
        return f"s3://{self.bucket}/{os.path.dirname(self.key)}"

    @property
    def name(self) -> str:
        return os.path.basename(self.key)

    def dataset(self, name: str) -> str:
        """A fresh dataset over the file: nothing of it is cached yet."""
        self.client.create_dataset(name, self.mount_uri, self.options, block_size=self.block)
        return name

    def settle(self, dataset: str) -> int:
        """Wait until the workers have stored and reported every block; the dataset's
        own count of origin bytes."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (info := self.client.dataset(dataset)).cached_bytes < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dataset}: {info.cached_bytes} of {self.size} bytes cached")
            time.sleep(0.1)
        return info.origin_bytes_read


@contextmanager
def mounted(setup: Setup, dataset: str) -> Iterator[Path]:
    """`reservoir mount DATASET DIR` (served in the foreground by a child we stop)."""
    mountpoint = setup.work / f"mnt-{dataset}"
    mountpoint.mkdir()
    reservoir = Path(sys.executable).with_name("reservoir")
    log = setup.work / f"mount-{dataset}.log"
    argv = [str(reservoir), "--master", setup.master, "mount", dataset, str(mountpoint)]
    with ExitStack() as stack:
        stack.callback(_force_unmount, mountpoint)
        process = harness.spawn(stack, [*argv, "--foreground"], log)
        harness.wait_for(lambda: os.path.ismount(mountpoint), process, "reservoir mount", log)
        yield mountpoint


def _force_unmount(mountpoint: Path) -> None:
    """The daemon unmounts itself on SIGTERM; this is for when it could not."""
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def run_arm(setup: Setup, arm: str, n: int, tag: str) -> dict[str, Any]:
    """One storm of `n` readers on one arm; its times and origin bytes."""
    before: list[int] = []

    def mark() -> None:
        before.append(setup.link.origin_bytes())

    counted = None
    if arm == "direct":
        spec = {"kind": "direct", "options": setup.options, "bucket": setup.bucket,
                "key": setup.key, "size": setup.size, "block": setup.block, "ahead": 1}  # fmt: skip
        storm = harness.run_readers(spec, n, setup.sha, mark)
    elif arm == "library":
        dataset = setup.dataset(f"storm-lib-{tag}")
        spec = {"kind": "library", "master": setup.master, "dataset": dataset,
                "path": setup.name, "size": setup.size}  # fmt: skip
        storm = harness.run_readers(spec, n, setup.sha, mark)
        counted = setup.settle(dataset)
    else:
        dataset = setup.dataset(f"storm-fuse-{tag}")
        with mounted(setup, dataset) as mountpoint:
            spec = {"kind": "path", "path": str(mountpoint / setup.name), "size": setup.size}
            storm = harness.run_readers(spec, n, setup.sha, mark)
        counted = setup.settle(dataset)
    origin = setup.link.origin_bytes() - before[0]
    return {
        "first_s": storm.first,
        "last_s": storm.last,
        "origin_bytes": origin,
        "origin_ratio": origin / setup.size,
        "reservoir_counted_origin_bytes": counted,
        "readers_checked": len(storm.results),
    }


ARMS = ("direct", "library", "fuse")


def run(setup: Setup, ns: list[int], runs_for: dict[int, int], say: Any) -> dict[str, Any]:
    """Every arm at every N, `runs_for[N]` times; arms alternate order between runs."""
    out: dict[str, Any] = {}
    for n in ns:
        samples: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for rep in range(runs_for[n]):
            order = ARMS if rep % 2 == 0 else tuple(reversed(ARMS))
            for arm in order:
                result = run_arm(setup, arm, n, f"{n}-{rep}")
                samples[arm].append(result)
                say(f"  storm N={n} run {rep + 1} {arm}: last reader {result['last_s']:.2f} s, "
                    f"origin {result['origin_ratio']:.3f} x file")  # fmt: skip
        out[str(n)] = summarize(samples, n * setup.size)
    return out


def summarize(samples: dict[str, list[dict[str, Any]]], delivered: int) -> dict[str, Any]:
    """Figures per arm; `delivered`: the bytes all readers of one run hold at the end."""
    arms: dict[str, Any] = {}
    for arm, results in samples.items():
        arms[arm] = {
            key: harness.Figure(tuple(float(r[key]) for r in results)).as_json()
            for key in ("first_s", "last_s", "origin_bytes", "origin_ratio")
        }
        counted = [r["reservoir_counted_origin_bytes"] for r in results]
        arms[arm]["reservoir_counted_origin_bytes"] = counted if counted[0] is not None else None
        # Bytes handed to all readers per second until the last one is done: at large N,
        # Reservoir's fan-out (the workers' streams and the readers on these cores).
        arms[arm]["delivered_gbps"] = harness.gbps(
            delivered, [r["last_s"] for r in results]
        ).as_json()
        arms[arm]["runs"] = len(results)
        arms[arm]["readers_checked"] = sum(r["readers_checked"] for r in results)
    direct_last = arms["direct"]["last_s"]["median"]
    for arm in ("library", "fuse"):
        arms[arm]["speedup"] = direct_last / arms[arm]["last_s"]["median"]
    return arms
