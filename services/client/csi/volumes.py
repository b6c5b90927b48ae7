"""The volumes published on this node: one FUSE mount each, bound into every target.

Design
------
- One FUSE process per volume per node, mounted at a staging folder in the state
  dir and bound read-only into each target: a pod gets a bind mount, never a FUSE
  session of its own, so N pods on a node share one cache client.
- The state (which volumes, where, which targets with which arguments) is written
  to disk after every change (reservoir.client.csi.state), so a plugin that restarts
  knows what it published, adopts the FUSE processes still running (on a host) and
  replaces those that died with it (in a container: one PID namespace).
- Calls are serialised per target (then per volume), so two calls for one target
  never interleave; blocking work runs in threads and the server stays responsive.
  Every blocking call has a time limit (mounts.py): a stuck FUSE daemon delays the
  calls for its own volume, never the others'.
- A watcher checks each volume every WATCH_INTERVAL, in threads of its own (calls
  waiting on a stuck mount cannot starve the one thing that kills its daemon): when
  the FUSE process has died (its mount answers ENOTCONN) or is stuck, it kills it,
  unmounts the staging, mounts again, binds the staging again on top of each
  target's broken bind, and logs `volume=... target=... recovered`. A pod whose
  mount of the target has HostToContainer propagation receives the new bind; the
  same pass runs once when the plugin starts. It also stops volumes left without
  targets (an unpublish whose stop failed, or a plugin that died before it).
- A publish binds only a staging mount that answers: when the volume cannot be
  mounted again it fails with UNAVAILABLE, and kubelet retries. The watcher tries
  such a volume again after 1 s, then 2, 4... up to REPAIR_BACKOFF_MAX (each try
  is a `reservoir mount`, about a CPU-second); a publish tries at once.
- A publish or unpublish, once it holds its target's lock, runs to its end even
  when kubelet's deadline cancels the call: stopped half way it would leave a FUSE
  process or a bind that no state records. Kubelet's retry then finds it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakValueDictionary

from reservoir.client.client import Client
from reservoir.client.csi import mounts
from reservoir.client.csi.state import StateDir, Target, Volume
from reservoir.client.fuse.tree import DatasetTree
from reservoir.errors import AlreadyExists, InvalidArgument, NotFound, ReservoirError, Unavailable
from reservoir.mounts import is_mounted, mounts_at

log = logging.getLogger(__name__)

# How often the watcher checks every FUSE mount: a crash is repaired within about
# this long plus a remount (about a second).
WATCH_INTERVAL = 1.0
# Threads of the watcher: volumes are checked side by side, so a stuck mount (whose
# check waits STAT_TIMEOUT_SECONDS) holds up others' repairs only when this many are.
WATCH_THREADS = 8
# A volume that cannot be mounted again is tried again after this long, twice as
# long after each failure up to the most: a dataset deleted or a master down would
# otherwise cost a `reservoir mount` (about a CPU-second) every WATCH_INTERVAL.
REPAIR_BACKOFF_FIRST = 1.0
REPAIR_BACKOFF_MAX = 30.0


@dataclass(frozen=True)
class Publish:
    """A NodePublishVolume call, reduced to what the plugin acts on."""

    volume_id: str
    target: Path
    master: str
    dataset: str
    subpath: str
    fingerprint: str  # of every argument that must match on a repeated call


class Volumes:
    def __init__(self, state: StateDir) -> None:
        self.state = state
        self.by_id: dict[str, Volume] = {}
        # A lock lives while a call holds or awaits it: paths come and go for ever.
        self._target_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self._volume_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self._watch_pool = ThreadPoolExecutor(WATCH_THREADS, thread_name_prefix="csi-watch")
        # volume id -> (when the watcher may try to mount it again, the wait after that)
        self._backoff: dict[str, tuple[float, float]] = {}
        self._calls: set[asyncio.Task[None]] = set()  # running on after a cancel

    def close(self) -> None:
        """Let the watcher's threads end once their checks are done."""
        self._watch_pool.shutdown(wait=False, cancel_futures=True)

    # -- the calls -------------------------------------------------------------------

    async def publish(self, request: Publish) -> None:
        await self._to_the_end(self._publish(request))

    async def unpublish(self, volume_id: str, target_path: Path) -> None:
        await self._to_the_end(self._unpublish(volume_id, target_path))

    async def _to_the_end(self, call: Coroutine[None, None, None]) -> None:
        """Run `call` as a task that a cancel of the caller (kubelet's deadline) does
        not stop: a publish cut between mounting and saving would leave a FUSE
        process or a bind that no state records, and the retry would stack another."""
        task = asyncio.create_task(call)
        self._calls.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._call_done)
        await asyncio.shield(task)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its caller is gone when it was cancelled; else the caller reports it.
            log.debug("a call ended with %r", task.exception())

    async def _publish(self, request: Publish) -> None:
        target = str(request.target)
        async with _lock(self._target_locks, target):
            owner = self.owner(target)
            if owner is not None:
                same = owner.volume_id == request.volume_id and (
                    owner.targets[target].fingerprint == request.fingerprint
                )
                if not same:
                    raise AlreadyExists(
                        f"{target} already holds volume {owner.volume_id!r}, published "
                        "with other arguments: unpublish it first"
                    )
                if await asyncio.to_thread(is_mounted, request.target):
                    return  # published already: nothing to do
            async with _lock(self._volume_locks, request.volume_id):
                volume = await self._volume_for(request)
                await self._bind(volume, request, owner is not None)

    async def _unpublish(self, volume_id: str, target_path: Path) -> None:
        target = str(target_path)
        async with _lock(self._target_locks, target):
            volume = self.owner(target)
            if volume is None:  # never published, unpublished, or bound but not saved
                await asyncio.to_thread(_unmount_unrecorded, target_path)
                return
            if volume.volume_id != volume_id:
                raise NotFound(f"{target} holds volume {volume.volume_id!r}, not {volume_id!r}")
            async with _lock(self._volume_locks, volume_id):
                await asyncio.to_thread(mounts.unmount, target_path)
                gone = volume.targets.pop(target)
                try:  # before the stop: a restarted plugin must not bind it again
                    await self._save(volume)
                except OSError:
                    volume.targets[target] = gone
                    raise
                if gone.created_dir:
                    await asyncio.to_thread(_remove_dir, target_path)
                log.info("volume=%s target=%s unpublished", volume_id, target)
                if not volume.targets:
                    await self._stop(volume)

    def owner(self, target: str) -> Volume | None:
        """The volume published at `target`, if any."""
        return next((v for v in self.by_id.values() if target in v.targets), None)

    def find(self, volume_id: str, path: str) -> Volume:
        """The volume `volume_id` when `path` is one of its targets or its staging."""
        volume = self.by_id.get(volume_id)
        if volume is None or (path not in volume.targets and path != volume.staging):
            raise NotFound(f"volume {volume_id!r} is not published at {path}")
        return volume

    # -- starting, binding, stopping ---------------------------------------------------

    async def _volume_for(self, request: Publish) -> Volume:
        """The running volume of `request`, started if it is not running yet."""
        volume = self.by_id.get(request.volume_id)
        if volume is not None:
            if (volume.master, volume.dataset, volume.subpath) != (
                request.master,
                request.dataset,
                request.subpath,
            ):
                raise AlreadyExists(
                    f"volume {request.volume_id!r} is published on this node from "
                    f"{volume.source} at {volume.master}: its other targets must be "
                    "unpublished before it can show something else"
                )
            problem = await asyncio.to_thread(self._repair, volume)
            if problem:  # binding it would show the pod an empty folder
                raise Unavailable(
                    f"dataset {volume.source} (volume {volume.volume_id!r}) is not mounted "
                    f"on this node: {problem}"
                )
            return volume
        await asyncio.to_thread(_check_dataset, request)
        volume = Volume(
            volume_id=request.volume_id,
            master=request.master,
            dataset=request.dataset,
            subpath=request.subpath,
            staging=str(self.state.staging(request.volume_id)),
        )
        volume.pid = await asyncio.to_thread(
            mounts.start_fuse,
            volume.master,
            volume.source,
            Path(volume.staging),
            self.state.log(volume.volume_id),
        )
        self.by_id[volume.volume_id] = volume
        await self._save(volume)
        log.info("volume=%s mounted %s (pid %d)", volume.volume_id, volume.source, volume.pid)
        return volume

    async def _bind(self, volume: Volume, request: Publish, known: bool) -> None:
        target = str(request.target)
        if known and await asyncio.to_thread(is_mounted, request.target):
            return  # bound again by the repair of its volume
        try:
            created = await asyncio.to_thread(_make_dir, request.target)
            await asyncio.to_thread(mounts.bind_read_only, Path(volume.staging), request.target)
        except ReservoirError:
            if not volume.targets:
                await self._stop(volume)
            raise
        if not known:
            volume.targets[target] = Target(request.fingerprint, created)
        await self._save(volume)
        log.info("volume=%s target=%s published", volume.volume_id, target)

    async def _stop(self, volume: Volume) -> None:
        """End the volume's FUSE process: no target uses it any more. A failure is
        logged and the watcher tries again (the volume stays, without targets)."""
        try:
            await asyncio.to_thread(mounts.stop_fuse, Path(volume.staging), volume.pid)
            await asyncio.to_thread(self.state.forget, volume)
        except (ReservoirError, OSError) as exc:
            log.error("volume=%s: cannot stop (will retry): %s", volume.volume_id, exc)
            return
        self.by_id.pop(volume.volume_id, None)
        self._backoff.pop(volume.volume_id, None)
        log.info("volume=%s unmounted %s", volume.volume_id, volume.source)

    async def _save(self, volume: Volume) -> None:
        await asyncio.to_thread(self.state.save, volume)  # it fsyncs

    # -- recovery ------------------------------------------------------------------------

    def adopt(self) -> None:
        """Take over the volumes a previous plugin published; the watcher's first
        pass, at once, repairs what broke meanwhile (without holding up serving:
        a remount waits for the master, which may be slow)."""
        for volume in self.state.load():
            self.by_id[volume.volume_id] = volume
            log.info("volume=%s adopted with %d target(s)", volume.volume_id, len(volume.targets))

    async def watch(self) -> None:
        """Check every volume now, then every WATCH_INTERVAL, for ever. Each volume's
        check is a task of its own: one that takes long (a stuck mount takes
        STAT_TIMEOUT_SECONDS to tell) is not started again until it is done, and
        holds up no other volume's."""
        checks: dict[str, asyncio.Task[None]] = {}

        def done(volume_id: str, task: asyncio.Task[None]) -> None:
            checks.pop(volume_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("volume=%s: checking it failed", volume_id, exc_info=task.exception())

        try:
            while True:
                for volume_id in [v for v in self.by_id if v not in checks]:
                    checks[volume_id] = asyncio.create_task(self._check(volume_id))
                    checks[volume_id].add_done_callback(functools.partial(done, volume_id))
                await asyncio.sleep(WATCH_INTERVAL)
        finally:
            for task in list(checks.values()):
                task.cancel()

    async def _check(self, volume_id: str) -> None:
        lock = self._volume_locks.get(volume_id)
        if lock is not None and lock.locked():
            return  # a call is changing it: check it next time
        async with _lock(self._volume_locks, volume_id):
            volume = self.by_id.get(volume_id)
            if volume is None:
                return
            if not volume.targets:
                await self._stop(volume)
                return
            retry_at, _ = self._backoff.get(volume_id, (0.0, 0.0))
            if time.monotonic() < retry_at:
                return  # it failed to mount again lately: not yet
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._watch_pool, self._repair, volume)

    def _repair(self, volume: Volume) -> str:
        """Mount again if the FUSE mount broke; bind again targets that lost their
        bind. What is still wrong, "" once the staging mount serves. A failure to
        mount again puts off the watcher's next try (REPAIR_BACKOFF_FIRST doubling)."""
        staging = Path(volume.staging)
        broken = _broken(volume)
        if broken:
            log.warning("volume=%s: %s: mounting %s again", volume.volume_id, broken, volume.source)
            if mounts.serves(volume.pid, staging):  # stuck: end it first
                mounts.kill(volume.pid)
            try:
                mounts.unmount(staging)
                volume.pid = mounts.start_fuse(
                    volume.master, volume.source, staging, self.state.log(volume.volume_id)
                )
            except ReservoirError as exc:
                _, wait = self._backoff.get(volume.volume_id, (0.0, REPAIR_BACKOFF_FIRST / 2))
                wait = min(wait * 2, REPAIR_BACKOFF_MAX)
                self._backoff[volume.volume_id] = (time.monotonic() + wait, wait)
                log.error(
                    "volume=%s: cannot mount again (will retry in %.0f s): %s",
                    volume.volume_id,
                    wait,
                    exc,
                )
                return f"{broken}, and mounting it again failed: {exc}"
            self._backoff.pop(volume.volume_id, None)
            self.state.save(volume)
        for target in volume.targets:
            if broken or not is_mounted(Path(target)):
                try:
                    _rebind(staging, Path(target))
                except ReservoirError as exc:
                    log.error("volume=%s target=%s: cannot bind: %s", volume.volume_id, target, exc)
                    continue
                log.warning("volume=%s target=%s recovered", volume.volume_id, target)
        return ""


def _lock(locks: WeakValueDictionary[str, asyncio.Lock], key: str) -> asyncio.Lock:
    """The lock of `key` in `locks`, made when no call holds one (the caller keeps
    it alive while it holds or awaits it)."""
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


def _broken(volume: Volume) -> str:
    """Why the volume's FUSE mount does not serve, or "" when it does."""
    staging = Path(volume.staging)
    if not mounts.serves(volume.pid, staging):
        return f"the FUSE process (pid {volume.pid}) is gone"
    if not is_mounted(staging):
        return f"{staging} is not mounted"
    if not mounts.answers(staging):
        return f"{staging} does not answer (ENOTCONN, or stuck)"
    return ""


def _rebind(staging: Path, target: Path) -> None:
    """Bind `staging` at `target` again. On top of the broken bind, not in its place:
    a pod's view of the target is a copy of that bind, a slave of it with
    HostToContainer propagation, so a mount on top of it reaches the pod, where
    unmounting it first would leave the pod's copy dead. Unpublish unmounts every
    layer."""
    _make_dir(target)
    try:
        mounts.bind_read_only(staging, target)
    except ReservoirError:  # the broken bind refused a mount on top: replace it
        mounts.unmount(target)
        mounts.bind_read_only(staging, target)


def _unmount_unrecorded(target: Path) -> None:
    """Unmount a target that no saved volume names but that holds a FUSE mount or a
    bind of one (a plugin that died between the bind and saving it), and remove its
    folder: kubelet cleans the folder up next, which fails on a mount point."""
    found = mounts_at(target)
    if found and all(m.fstype.startswith("fuse") for m in found):
        mounts.unmount(target)
        _remove_dir(target)
        log.warning("target=%s: unmounted a mount the state did not record", target)


def _check_dataset(request: Publish) -> None:
    """NotFound unless the dataset (and its sub-path, a directory) exists: asked
    before mounting, so that a typo mounts nothing. Unavailable if the master is."""
    with Client(request.master) as client:
        DatasetTree(client, request.dataset, request.subpath).check()


def _make_dir(path: Path) -> bool:
    """Create the target directory; whether it was created here."""
    try:
        path.mkdir()
    except FileExistsError:
        if is_mounted(path):
            return False  # a broken bind: its stat fails, but it is a directory
        if not path.is_dir():
            raise InvalidArgument(f"target_path {path} exists and is not a directory") from None
        return False
    except FileNotFoundError:
        raise InvalidArgument(f"the parent of target_path {path} does not exist") from None
    return True


def _remove_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()
