"""`reservoir mount`: the life of one mount, from the checks to the unmount.

Design
------
- Checks first, mount after: the mount point must be an existing directory and the
  dataset (and sub-path) must exist, so a typo mounts nothing and says why.
- Ready means answering: the daemon stats its own mount point (a request its own
  loop serves) before it calls itself ready, so a caller that sees "mounted" can
  read at once.
- In the background the command starts the same command again with `--foreground`
  as a detached child, and returns when the child says it is ready (exit 0) or
  when it dies (its exit code; its error went to the caller's stderr). A child
  process rather than fork(2): gRPC's threads and channels do not survive a fork.
- It ends cleanly three ways: `umount`/`fusermount3 -u` (the kernel ends the
  session), SIGTERM and SIGINT (the daemon unmounts itself). Exit status 0.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from reservoir import paths
from reservoir.client.client import Client
from reservoir.client.fuse.handles import OpenFiles
from reservoir.client.fuse.ops import ReadOnlyOperations
from reservoir.client.fuse.tree import TTL_SECONDS, DatasetTree
from reservoir.errors import InvalidArgument, ReservoirError

log = logging.getLogger(__name__)

# The kernel's read-ahead for the mount, in KiB. At FUSE's default (128 KiB) the
# kernel asks for 128 KiB at a time; with more it sends 1 MiB requests (the most
# libfuse negotiates), several in flight. A cold sequential 256 MiB read through
# the mount on a 2-core machine: 0.20-0.26 GB/s at 128, 0.30-0.48 at 1024,
# 0.35-0.50 at 4096; 16384 measured no better.
READ_AHEAD_KB = 4096
# How long the background command waits for its child to be ready: a mount asks the
# master a few questions, but an overloaded master may take seconds to answer.
READY_TIMEOUT_SECONDS = 60.0
READY = b"ready\n"


@dataclass(frozen=True)
class MountConfig:
    """What to mount where, and how."""

    master: str
    dataset: str
    mountpoint: Path
    subpath: str = ""  # a directory inside the dataset to show as the root
    allow_other: bool = False  # let other users than the mounting one see it
    timeout: float = TTL_SECONDS  # entries and attributes kept by the kernel and us

    @property
    def source(self) -> str:
        return f"{self.dataset}/{self.subpath}" if self.subpath else self.dataset

    def options(self) -> set[str]:
        """libfuse mount options: read-only, named for `mount` and `df` to show."""
        options = {
            "ro",
            "default_permissions",  # the kernel checks our 0444/0555 modes
            f"fsname=reservoir:{self.source}",
            "subtype=reservoir",
        }
        if self.allow_other:
            options.add("allow_other")
        return options


def check_mountpoint(mountpoint: Path) -> None:
    """InvalidArgument unless `mountpoint` is a directory one can mount on."""
    try:
        if not mountpoint.is_dir():
            what = "is not a directory" if mountpoint.exists() else "does not exist"
            raise InvalidArgument(f"mount point {mountpoint} {what}")
    except OSError as exc:  # ENOTCONN: a dead FUSE mount is still there
        raise InvalidArgument(
            f"mount point {mountpoint}: {exc.strerror} (unmount it first)"
        ) from None


def serve(config: MountConfig, on_ready: Callable[[], None] = lambda: None) -> int:
    """Mount and serve until unmounted or signalled; the exit status. `on_ready` runs
    once the mount answers. ReservoirError if the checks fail (nothing mounted)."""
    check_mountpoint(config.mountpoint)
    client = Client(config.master)
    try:
        tree = DatasetTree(client, config.dataset, config.subpath, ttl=config.timeout)
        tree.check()
        files = OpenFiles(client, tree)
        operations = ReadOnlyOperations(tree, files, timeout=config.timeout)
        # SIGTERM as Ctrl-C until trio takes the signals over: a stop that comes
        # while mounting unmounts too, instead of leaving a dead mount behind.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            pyfuse3.init(operations, str(config.mountpoint), config.options())
        except RuntimeError as exc:  # libfuse said why on stderr already
            raise ReservoirError(f"cannot mount on {config.mountpoint}: {exc}") from None
        log.info("mounted %s at %s", config.source, config.mountpoint)
        try:
            failed = trio.run(_main, config, on_ready)
        finally:
            pyfuse3.close(unmount=True)  # a no-op when umount ended the session
            files.close_all()
        if failed:
            raise ReservoirError(failed)
        log.info("unmounted %s from %s", config.source, config.mountpoint)
        return 0
    finally:
        client.close()


async def _main(config: MountConfig, on_ready: Callable[[], None]) -> str:
    """Serve until the session ends; what went wrong, if anything."""
    failed = ""

    async def announce() -> None:
        """Once the mount answers a stat: tune its read-ahead, call `on_ready`."""
        nonlocal failed
        try:
            st = await trio.to_thread.run_sync(os.stat, config.mountpoint)
        except OSError as exc:
            failed = f"the mount at {config.mountpoint} does not answer: {exc.strerror}"
            pyfuse3.terminate()
            return
        _tune_read_ahead(st.st_dev)
        on_ready()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals)
        nursery.start_soon(announce)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()  # the session is over: stop the helpers
    return failed


async def _stop_on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


def _tune_read_ahead(device: int) -> None:
    """Raise the mount's read-ahead (see READ_AHEAD_KB). Needs root and a writable
    /sys; without them the mount works with the kernel's default."""
    knob = f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb"
    try:
        with open(knob, "w") as f:
            f.write(str(READ_AHEAD_KB))
    except OSError as exc:
        log.debug("read-ahead left at the default: %s: %s", knob, exc.strerror)


# -- the command ---------------------------------------------------------------------


def run_foreground(config: MountConfig, ready_fd: int | None, log_file: Path | None) -> int:
    """`reservoir mount --foreground`. With `ready_fd` (the background command's
    child) stdio leave the caller's terminal once ready, and READY is written there."""
    # The background command's child shares the caller's stderr until it is ready:
    # there it says only what went wrong, unless it has a log of its own.
    quiet = ready_fd is not None and log_file is None
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=log_file,
    )

    def ready() -> None:
        if ready_fd is None:
            print(f"mounted {config.source} at {config.mountpoint}", flush=True)
            return
        _detach_stdio(log_file)
        os.write(ready_fd, READY)
        os.close(ready_fd)

    return serve(config, ready)


def _detach_stdio(log_file: Path | None) -> None:
    """Point stdin, stdout and stderr away from the caller (at the log, if any), so
    that the caller's pipes close when it exits."""
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log_file else null
    for fd, target in ((0, null), (1, out), (2, out)):
        os.dup2(target, fd)


def run_background(config: MountConfig, argv: Sequence[str]) -> int:
    """`reservoir mount` without --foreground: start the daemon, wait until it is
    ready or dead. `argv`: the daemon's extra options (--allow-other, --log ...)."""
    check_mountpoint(config.mountpoint)  # fail fast, before starting anything
    read_end, write_end = os.pipe()
    target = f"{config.dataset}/{config.subpath}" if config.subpath else config.dataset
    command = [
        sys.executable,
        "-m",
        "reservoir",
        "mount",
        target,
        str(config.mountpoint),
        "--foreground",
        f"--ready-fd={write_end}",
        f"--master={config.master}",
        *argv,
    ]
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=[write_end],
            start_new_session=True,  # the terminal's Ctrl-C is not for the daemon
        )
    finally:
        os.close(write_end)
    try:
        readable, _, _ = select.select([read_end], [], [], READY_TIMEOUT_SECONDS)
        said = os.read(read_end, len(READY)) if readable else b""
    finally:
        os.close(read_end)
    if said == READY:
        print(f"mounted {config.source} at {config.mountpoint} (pid {child.pid})")
        return 0
    if not readable:  # alive but not ready in time: give up on it
        child.terminate()
        child.wait()
        raise ReservoirError(f"the mount did not answer within {READY_TIMEOUT_SECONDS:.0f} s")
    code = child.wait()  # the pipe closed: the child is exiting
    if code > 0:
        return code  # the child said why on our stderr
    raise ReservoirError(f"the mount process ended (status {code}) before it was ready")


def config_from(master: str, target: str, mountpoint: str, allow_other: bool) -> MountConfig:
    """The config of the command line's NAME[/PATH] MOUNTPOINT."""
    dataset, subpath = paths.split_target(target)
    return MountConfig(
        master=master,
        dataset=dataset,
        mountpoint=Path(mountpoint).absolute(),
        subpath=subpath,
        allow_other=allow_other,
    )
