"""Reservoir's benchmark suite: cold-start storm, warm throughput, metadata.

    python bench/suite.py [--quick] [--out DIR] [--size 256MiB] [--cap-mbit 400]
                          [--readers 1,4,16,32] [--runs 3] [--workers 2] [--files 10000]

Writes DIR/suite.md (the tables), DIR/suite.json (every sample) and DIR/suite.png
(the plots); DIR is bench/results by default. Each section's design note is at the
top of its module: storm.py, warm.py, metadata.py; the origin link in origin_link.py,
the reader processes in readers.py. Every figure has its baseline from the same run.

--quick: a 32 MiB file, N in {1, 4}, one run, a 2000 Mbit/s cap, 1,000 files and
1 s per metadata measurement; every arm still runs (the test suite runs this).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import harness
import metadata
import numpy as np
import origin_link
import report
import storm
import warm

from reservoir.client import Client
from reservoir.units import parse_size

MiB = 1024 * 1024
BLOCK = 64 * MiB  # Reservoir's default block size
BUCKET, KEY = "reservoir-bench", "models/model.bin"
RESULTS = Path(__file__).resolve().parent / "results"
# Storm runs per N by default: the direct arm at N = 32 moves 32 copies of the file
# through the cap (about 170 s at 256 MiB and 400 Mbit/s), so large N run once.
STORM_RUNS_LARGE_N = 1
LARGE_N = 16


def measure(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    began = time.monotonic()
    data = np.random.default_rng(args.seed).bytes(args.size)
    sha = hashlib.sha256(data).hexdigest()
    (work / os.path.basename(KEY)).write_bytes(data)
    say(f"origin: s3rver behind a {args.cap_mbit:g} Mbit/s link ...")
    link = origin_link.start(stack, work, BUCKET, args.cap_mbit)
    if link.note:
        say(f"  {link.note}")
    harness.s3_client(link.endpoint).put_object(Bucket=BUCKET, Key=KEY, Body=data)
    del data
    say(f"reservoir up --workers {args.workers} ...")
    master = harness.start_reservoir(stack, work, args.workers)
    client = stack.enter_context(Client(master))
    setup = storm.Setup(work, args.size, sha, BLOCK, link, BUCKET, KEY, master, client)

    say("cold-start storm ...")
    runs_for = {n: args.runs if n < LARGE_N else min(args.runs, STORM_RUNS_LARGE_N)
                for n in args.readers}  # fmt: skip
    if args.storm_runs:
        runs_for = dict.fromkeys(args.readers, args.storm_runs)
    storm_out = storm.run(setup, args.readers, runs_for, say)
    say("warm throughput ...")
    warm_out = warm.run(setup, stack, args.runs, say)
    say("metadata ...")
    meta_out = metadata.run(setup, args.files, args.meta_seconds, args.runs, say)
    checked = sum(
        arm["readers_checked"] for by_arm in storm_out.values() for arm in by_arm.values()
    )
    return {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "settings": {"size": args.size, "block": BLOCK, "cap_mbit": args.cap_mbit,
                     "readers": args.readers, "runs": args.runs, "storm_runs": runs_for,
                     "workers": args.workers, "files": args.files,
                     "meta_seconds": args.meta_seconds, "quick": args.quick},
        "origin": {"kind": link.kind, "note": link.note, "server": "s3rver"},
        "sha256": sha,
        "sha256_ok": True,  # run_readers raises on any reader whose bytes differ
        "storm_readers_checked": checked,
        "storm": storm_out,
        "warm": warm_out,
        "metadata": meta_out,
        "duration_s": time.monotonic() - began,
    }  # fmt: skip


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast: under 2 minutes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    parser.add_argument("--size", type=parse_size, help="file size (256MiB; 32MiB quick)")
    parser.add_argument("--cap-mbit", type=float, help="origin link cap (400; 2000 quick)")
    parser.add_argument("--readers", help="storm sizes N, comma-separated (1,4,16,32; 1,4 quick)")
    parser.add_argument("--runs", type=int, help="repetitions (3; 1 quick)")
    parser.add_argument("--storm-runs", type=int, help=f"storm runs for every N (default: --runs "
                        f"below N={LARGE_N}, {STORM_RUNS_LARGE_N} from there)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="workers of `reservoir up`")
    parser.add_argument(
        "--files", type=int, help="files in the metadata dataset (10000; 1000 quick)"
    )
    parser.add_argument("--meta-seconds", type=float, help="per metadata measurement (3; 1 quick)")
    parser.add_argument("--seed", type=int, default=20240601, help="of the generated file")
    args = parser.parse_args()
    q = args.quick
    args.size = args.size or (32 * MiB if q else 256 * MiB)
    args.cap_mbit = args.cap_mbit or (2000.0 if q else 400.0)
    args.readers = [int(n) for n in (args.readers or ("1,4" if q else "1,4,16,32")).split(",")]
    args.runs = args.runs or (1 if q else 3)
    args.files = args.files or (1000 if q else 10_000)
    args.meta_seconds = args.meta_seconds or (1.0 if q else 3.0)
    if min(args.runs, args.workers, *args.readers) < 1:
        parser.error("--runs, --workers and --readers must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    harness.stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="reservoir-bench-") as tmp, ExitStack() as stack:
        try:
            result = measure(args, Path(tmp), stack)
        except KeyboardInterrupt:
            say("interrupted: stopping everything the benchmark started")
            return 130
    text = report.markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.md").write_text(text + "\n")
    (args.out / "suite.json").write_text(json.dumps(result, indent=2) + "\n")
    report.plot(result, args.out / "suite.png")
    say(f"wrote {args.out}/suite.md, suite.json, suite.png in {result['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
