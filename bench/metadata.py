"""Metadata: stat and ls calls per second against the master, with `files` files in a
dataset (a local directory: `dirs` directories of equal share, 1 byte each; the
under-storage plays no part, the master answers from its metadata).

1 and 4 client processes (readers.py kinds stat, ls, health) make calls for
`seconds` each (a time, not a count: a slow master must not stretch the run): stat
of a random file, ls of a random directory. The baseline, in the same
run against the same master: grpc.health.v1 Check, the cheapest call it answers
(gRPC and Python's floor for a round trip).
"""

from __future__ import annotations

import time
from typing import Any

import harness
from storm import Setup

CLIENTS = (1, 4)


def run(setup: Setup, files: int, seconds: float, runs: int, say: Any) -> dict[str, Any]:
    root = setup.work / "meta"
    dirs = max(1, files // 100)
    names: list[str] = []
    for d in range(dirs):
        (root / f"d{d:03d}").mkdir(parents=True)
        for f in range(d, files, dirs):
            name = f"d{d:03d}/f{f:05d}.bin"
            (root / name).write_bytes(b"x")
            names.append(name)
    started = time.monotonic()
    setup.client.create_dataset("meta", f"file://{root}")
    created = time.monotonic() - started
    info = setup.client.dataset("meta")
    if info.file_count != files:
        raise RuntimeError(f"the metadata dataset lists {info.file_count} files of {files}")
    say(f"  metadata: dataset of {files} files created in {created:.1f} s")
    base = {"master": setup.master, "dataset": "meta", "files": names, "seconds": seconds,
            "dirs": sorted({n.rsplit("/", 1)[0] for n in names})}  # fmt: skip
    rates: dict[str, list[float]] = {
        f"{k}_{c}": [] for k in ("stat", "ls", "health") for c in CLIENTS
    }
    for _ in range(runs):
        for clients in CLIENTS:
            for kind in ("stat", "ls", "health"):
                storm = harness.run_readers({**base, "kind": kind}, clients)
                rates[f"{kind}_{clients}"].append(sum(r["ops"] for r in storm.results) / storm.last)
    say("  metadata: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()))
    out: dict[str, Any] = {k: harness.Figure(tuple(v)).as_json() for k, v in rates.items()}
    out["files"] = files
    out["dataset_create_s"] = created
    out["ratios"] = {
        f"{kind}_{c}_vs_health_{c}": out[f"{kind}_{c}"]["median"] / out[f"health_{c}"]["median"]
        for kind in ("stat", "ls")
        for c in CLIENTS
    }
    return out
