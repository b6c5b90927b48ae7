"""The commands on datasets and their files: `dataset`, `ls`, `stat`, `cat`, `get`,
`load`, `job`, `workers`. Each talks to the master (and workers) through the client
library and prints aligned text, or JSON with `--json`."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from reservoir import paths
from reservoir.cli import output
from reservoir.client import Client, ReservoirFile
from reservoir.client.client import default_master
from reservoir.errors import InvalidArgument, ReservoirError
from reservoir.units import format_size

# What `cat` and `get` copy per step: large enough that the loop costs nothing next to
# the copy, small enough to keep a progress bar moving.
COPY_CHUNK = 4 * 1024 * 1024


def _client(args: argparse.Namespace) -> Client:
    return Client(args.master or default_master())


def _print(args: argparse.Namespace, value: object, text: Callable[[], str]) -> None:
    print(output.as_json(value) if args.json else text())


def cmd_dataset_create(args: argparse.Namespace) -> None:
    with _client(args) as client:
        d = client.create_dataset(
            args.name, args.mount, dict(args.option or []), block_size=args.block_size
        )
    _print(
        args,
        d,
        lambda: f"created {d.name}: {d.file_count} files, {format_size(d.total_bytes)}",
    )


def cmd_dataset_list(args: argparse.Namespace) -> None:
    with _client(args) as client:
        items = client.datasets()
    _print(args, items, lambda: output.datasets(items))


def cmd_dataset_get(args: argparse.Namespace) -> None:
    with _client(args) as client:
        d = client.dataset(args.name)
    _print(args, d, lambda: output.dataset(d))


def cmd_dataset_sync(args: argparse.Namespace) -> None:
    with _client(args) as client:
        result = client.sync_dataset(args.name)
    _print(args, result, lambda: output.synced(result))


def cmd_dataset_delete(args: argparse.Namespace) -> None:
    with _client(args) as client:
        client.delete_dataset(args.name)
    _print(args, {"deleted": args.name}, lambda: f"deleted {args.name}")


def cmd_ls(args: argparse.Namespace) -> None:
    name, path = paths.split_target(args.target)
    with _client(args) as client:
        entries = client.ls(name, path)
    _print(args, entries, lambda: output.listing(entries))


def cmd_stat(args: argparse.Namespace) -> None:
    name, path = paths.split_target(args.target)
    with _client(args) as client:
        entry = client.stat(name, path)
    _print(args, entry, lambda: output.stat(entry))


def _chunks(f: ReservoirFile) -> Iterator[memoryview]:
    """The rest of `f`, in COPY_CHUNK pieces of one reused buffer."""
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    while n := f.readinto(buffer):
        yield view[:n]


def cmd_cat(args: argparse.Namespace) -> None:
    """A reader that goes away (`| head`) ends it as it ends every command (`main`)."""
    name, path = paths.split_target(args.target)
    with _client(args) as client, client.open(name, path) as f:
        out = sys.stdout.buffer
        for chunk in _chunks(f):
            out.write(chunk)
        out.flush()


def cmd_get(args: argparse.Namespace) -> None:
    name, path = paths.split_target(args.target)
    if not path:
        raise InvalidArgument("name a file to get: NAME/PATH")
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / PurePosixPath(path).name
    if not dest.parent.is_dir():
        raise InvalidArgument(f"no such directory: {dest.parent}")
    start = time.monotonic()
    with _client(args) as client, client.open(name, path) as f:
        bar = output.Progress(f.size, sys.stderr) if sys.stderr.isatty() else None
        try:
            size = _copy_into(f, dest, bar.update if bar else None)
        finally:
            if bar:
                bar.finish()  # an error message then starts on a line of its own
    seconds = time.monotonic() - start
    source = f"{name}/{path}"
    summary = {"source": source, "dest": str(dest), "bytes": size, "seconds": round(seconds, 3)}
    _print(args, summary, lambda: output.copied(source, str(dest), size, seconds))


def _copy_into(f: ReservoirFile, dest: Path, progress: Callable[[int], None] | None) -> int:
    """Copy `f` into a temporary file beside `dest`, then rename it over `dest`: a copy
    that fails leaves no partial `dest`. Not fsynced: this is a cache, the origin keeps
    the bytes."""
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb", buffering=0) as out:
            done = 0
            for chunk in _chunks(f):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
            if progress and not done:
                progress(0)
        os.replace(partial, dest)
        return done
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ReservoirError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def cmd_load(args: argparse.Namespace) -> int:
    name, path = paths.split_target(args.target)
    with _client(args) as client:
        job = client.load(name, [path, *args.paths] if path else args.paths)
        if not args.wait:
            _print(args, job, lambda: f"{output.load_job(job)}\nfollow it: reservoir job {job.id}")
            return 0
        show = output.load_progress(job.total_bytes, sys.stderr, quiet=args.json)
        job = client.wait_for_load(job.id, show.update)
        show.finish()
    _print(args, job, lambda: output.load_job(job))
    return 0 if job.state == "Succeeded" else 1


def cmd_job(args: argparse.Namespace) -> None:
    with _client(args) as client:
        job = client.load_job(args.id)
    _print(args, job, lambda: output.load_job(job))


def cmd_workers(args: argparse.Namespace) -> None:
    with _client(args) as client:
        items = client.workers()
    _print(args, items, lambda: output.workers(items))
