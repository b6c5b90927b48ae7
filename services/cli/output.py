"""How the command line shows things: aligned text for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

from reservoir.client.types import Dataset, FileStat, LoadJob, SyncResult, Worker
from reservoir.units import format_size


def as_json(value: Any) -> str:
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out = dataclasses.asdict(v)
            if isinstance(v, Dataset):
                out["cached_percent"] = round(v.cached_percent, 2)
            return out
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return json.dumps(plain(value), indent=2)


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def datasets(items: list[Dataset]) -> str:
    if not items:
        return "no datasets"
    rows = [["NAME", "PHASE", "FILES", "TOTAL", "CACHED", "MOUNT"]]
    rows += [
        [
            d.name,
            d.phase,
            str(d.file_count),
            format_size(d.total_bytes),
            f"{d.cached_percent:.1f}%",
            d.mount,
        ]
        for d in items
    ]
    return table(rows)


def dataset(d: Dataset) -> str:
    fields = [
        ("name", d.name),
        ("mount", d.mount),
        ("phase", d.phase + (f" ({d.message})" if d.message else "")),
        ("files", str(d.file_count)),
        ("total", f"{format_size(d.total_bytes)} ({d.total_bytes} bytes)"),
        ("cached", f"{format_size(d.cached_bytes)} ({d.cached_percent:.1f}%)"),
        ("origin read", format_size(d.origin_bytes_read)),
        ("block size", format_size(d.block_size)),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(d.options.items())) or "-"),
        ("created", when(d.created_ms)),
        ("synced", when(d.synced_ms)),
    ]
    return "\n".join(f"{k + ':':<13}{v}" for k, v in fields)


def synced(result: SyncResult) -> str:
    d = result.dataset
    return (
        f"synced {d.name}: {result.added} added, {result.changed} changed, "
        f"{result.removed} removed; {d.file_count} files, {format_size(d.total_bytes)}"
    )


def listing(entries: list[FileStat]) -> str:
    rows = [
        ["DIR", "-", "-", e.name + "/"]
        if e.is_dir
        else ["FILE", format_size(e.size), when(e.mtime_ms), e.name]
        for e in entries
    ]
    return table(rows) if rows else ""


def stat(e: FileStat) -> str:
    fields = [("path", e.path or "/"), ("type", "directory" if e.is_dir else "file")]
    if not e.is_dir:
        fields += [
            ("size", f"{e.size} ({format_size(e.size)})"),
            ("version", e.version),
            ("modified", when(e.mtime_ms)),
        ]
    return "\n".join(f"{k + ':':<10}{v}" for k, v in fields)


def workers(items: list[Worker]) -> str:
    if not items:
        return "no workers"
    rows = [["ID", "ADDRESS", "MEM (used/capacity)", "DISK (used/capacity)", "SINCE"]]
    for w in sorted(items, key=lambda w: w.address):
        tiers = {
            t.name: f"{format_size(t.used_bytes)} / {format_size(t.capacity_bytes)}"
            for t in w.tiers
        }
        rows.append(
            [
                w.worker_id,
                w.address,
                tiers.get("MEM", "-"),
                tiers.get("DISK", "-"),
                when(w.registered_ms),
            ]
        )
    return table(rows)


def progress_bar(done: int, total: int, seconds: float, width: int = 30) -> str:
    """`[#######.......]  45.0%  450.0 MiB / 1.0 GiB  512.0 MiB/s`"""
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(width * fraction)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}%  "
        f"{format_size(done)} / {format_size(total)}  {_rate(done, seconds)}"
    )


def copied(source: str, dest: str, size: int, seconds: float) -> str:
    """The line `get` ends with: what went where, how much, how fast."""
    return f"{source} -> {dest}: {format_size(size)} in {seconds:.1f} s ({_rate(size, seconds)})"


def _rate(size: int, seconds: float) -> str:
    return f"{format_size(int(size / seconds))}/s" if seconds > 0 else "-"


class Progress:
    """A progress bar redrawn in place on a terminal, at most every `interval` seconds
    (redrawing per chunk would cost more than the copy)."""

    def __init__(self, total: int, stream: TextIO, interval: float = 0.1) -> None:
        self.total, self.stream, self.interval = total, stream, interval
        self.start = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._drawn >= self.interval or done >= self.total:
            self._drawn = now
            bar = progress_bar(done, self.total, now - self.start)
            self.stream.write(f"\r{bar}\x1b[K")  # \x1b[K: erase what a longer bar left
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def load_job(job: LoadJob) -> str:
    done = (
        f"{job.loaded_blocks}/{job.total_blocks} blocks, "
        f"{format_size(job.loaded_bytes)} of {format_size(job.total_bytes)}"
    )
    ended = f", finished {when(job.finished_ms)}" if job.finished_ms else ""
    why = f": {job.message}" if job.message else ""
    return f"load {job.id} of {job.dataset}: {job.state}{why} ({done}{ended})"


class LoadProgress:
    """A load's progress: a bar on a terminal, else a plain line whenever it moves
    (at most once a second), so logs of scripted runs show it too. The final state is
    not progress: the command prints it on stdout, and stdout and stderr often reach
    the same place (a terminal, a log, `2>&1`), where it would show twice."""

    def __init__(self, total: int, stream: TextIO, *, terminal: bool, quiet: bool) -> None:
        self._bar = Progress(total, stream) if terminal and not quiet else None
        self._stream = None if terminal or quiet else stream
        self._last = (-1, 0.0)

    def update(self, job: LoadJob) -> None:
        if self._bar:
            self._bar.update(job.loaded_bytes)
        elif self._stream and not job.done and job.loaded_blocks != self._last[0]:
            now = time.monotonic()
            if now - self._last[1] >= 1.0:
                self._last = (job.loaded_blocks, now)
                print(load_job(job), file=self._stream, flush=True)

    def finish(self) -> None:
        if self._bar:
            self._bar.finish()


def load_progress(total: int, stream: TextIO, *, quiet: bool) -> LoadProgress:
    return LoadProgress(total, stream, terminal=stream.isatty(), quiet=quiet)
