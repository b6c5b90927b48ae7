"""The `reservoir` command: start the services and drive the system.

The sub-commands and their output are a contract (DESIGN.md): scripts use them. A
user error prints one line on stderr and exits 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from reservoir import paths
from reservoir.client import output
from reservoir.client.client import Client, default_master
from reservoir.client.reader import ReservoirFile
from reservoir.errors import InvalidArgument, ReservoirError
from reservoir.processes import tune_allocator
from reservoir.rpc.health import is_serving
from reservoir.rpc.telemetry import setup_tracing
from reservoir.units import format_size, parse_size

Command = Callable[[argparse.Namespace], int | None]

# What `cat` and `get` copy per step: large enough that the loop costs nothing next to
# the copy, small enough to keep a progress bar moving.
COPY_CHUNK = 4 * 1024 * 1024
# The exit status of a process killed by SIGPIPE (128 + 13), as cat's when `| head` stops.
EXIT_BROKEN_PIPE = 141


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _default_data_dir(port: int) -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "reservoir" / f"up-{port}"


def _print(args: argparse.Namespace, value: object, text: Callable[[], str]) -> None:
    print(output.as_json(value) if args.json else text())


# -- services ------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from reservoir.client.local_cluster import UpConfig, up

    config = UpConfig(
        data_dir=args.data_dir or _default_data_dir(args.port),
        workers=args.workers,
        port=args.port,
        etcd=args.etcd or "",
        mem_quota=args.mem_quota,
        disk_quota=args.disk_quota,
    )
    return up(config, say=lambda line: print(line, flush=True))


def _serve_logging(level: int | str = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_master(args: argparse.Namespace) -> None:
    from reservoir.master.main import MasterConfig, serve

    _serve_logging()
    config = MasterConfig(
        listen=args.listen,
        etcd=args.etcd,
        advertise=args.advertise or "",
        leader_ttl=args.leader_ttl,
        worker_ttl=args.worker_ttl,
    )
    asyncio.run(serve(config))


def cmd_worker(args: argparse.Namespace) -> None:
    from reservoir.worker.main import WorkerConfig, serve

    _serve_logging()
    config = WorkerConfig(
        master=args.master or default_master(),
        listen=args.listen,
        cache_dir=args.cache_dir,
        advertise=args.advertise or "",
        mem_quota=args.mem_quota,
        disk_quota=args.disk_quota,
        metrics_listen=args.metrics_listen or "",
    )
    asyncio.run(serve(config))


def cmd_controller(args: argparse.Namespace) -> int:
    from reservoir.controller.main import ControllerConfig, serve

    _serve_logging()
    config = ControllerConfig(
        master=args.master or default_master(),
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        identity=args.identity or "",
        lease_namespace=args.lease_namespace or "",
        lease_duration_s=args.lease_duration,
        health_listen=args.health_listen or "",
    )
    return serve(config)


# -- datasets and files --------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(args.master or default_master())


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


def cmd_cat(args: argparse.Namespace) -> int:
    name, path = paths.split_target(args.target)
    with _client(args) as client, client.open(name, path) as f:
        out = sys.stdout.buffer
        try:
            for chunk in _chunks(f):
                out.write(chunk)
            out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as cat does, and keep the
            # interpreter from complaining when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
    return 0


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


def cmd_workers(args: argparse.Namespace) -> None:
    with _client(args) as client:
        items = client.workers()
    _print(args, items, lambda: output.workers(items))


def cmd_health(args: argparse.Namespace) -> int:
    if is_serving(args.address, timeout=args.timeout):
        return 0
    print(f"reservoir: {args.address} is not serving (grpc.health.v1)", file=sys.stderr)
    return 1


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


def cmd_mount(args: argparse.Namespace) -> int:
    from reservoir.client.fuse.mount import config_from, run_background, run_foreground

    config = config_from(
        args.master or default_master(), args.target, args.mountpoint, args.allow_other
    )
    if args.foreground or args.ready_fd is not None:
        return run_foreground(config, args.ready_fd, args.log)
    extra = [
        *(["--allow-other"] if args.allow_other else []),
        *(["--log", str(args.log)] if args.log else []),
    ]
    return run_background(config, extra)


def cmd_csi(args: argparse.Namespace) -> int:
    from reservoir.client.csi.main import CsiConfig, serve

    config = CsiConfig(
        endpoint=args.endpoint,
        node_id=args.node_id,
        master=args.master or default_master(),
        state_dir=args.state_dir,
    )
    try:
        config.socket  # noqa: B018 -- checked before anything starts
    except InvalidArgument as exc:
        print(f"reservoir: {exc}", file=sys.stderr)
        return 2  # bad usage
    _serve_logging(args.log_level)
    asyncio.run(serve(config))
    return 0


def cmd_job(args: argparse.Namespace) -> None:
    with _client(args) as client:
        job = client.load_job(args.id)
    _print(args, job, lambda: output.load_job(job))


# -- the parser ----------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    # Global options work before or after the sub-command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--master",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help="the master (several: comma-separated); else $RESERVOIR_MASTER, else 127.0.0.1:19700",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    top = argparse.ArgumentParser(
        prog="reservoir",
        description="Reservoir: a distributed read cache for datasets in object storage.",
        parents=[common],
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        run: Command,
        help: str,
        where: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> argparse.ArgumentParser:
        sub = where.add_parser(name, help=help, description=help, parents=[common, *parents])
        sub.set_defaults(run=run)
        return sub

    quotas = argparse.ArgumentParser(add_help=False)
    quotas.add_argument(
        "--mem-quota",
        type=_size,
        default=1024**3,
        metavar="SIZE",
        help="memory tier (default 1GiB)",
    )
    quotas.add_argument(
        "--disk-quota",
        type=_size,
        default=10 * 1024**3,
        metavar="SIZE",
        help="disk tier (default 10GiB)",
    )

    up = command(
        "up", cmd_up, "run a whole cluster on this machine, in the foreground", parents=[quotas]
    )
    up.add_argument(
        "--workers", type=int, default=2, metavar="N", help="workers to start (default 2)"
    )
    up.add_argument(
        "--port", type=int, default=19700, metavar="P", help="the master's port (default 19700)"
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="state and logs (default ~/.local/state/reservoir/up-P)",
    )
    up.add_argument("--etcd", metavar="URL", help="use this etcd instead of starting one")

    master = command("master", cmd_master, "run a master")
    master.add_argument("--listen", default="127.0.0.1:19700", metavar="HOST:PORT")
    master.add_argument(
        "--etcd", required=True, metavar="URL", help="etcd endpoints, comma-separated"
    )
    master.add_argument(
        "--advertise", metavar="HOST:PORT", help="address others reach it at (default --listen)"
    )
    master.add_argument(
        "--leader-ttl", type=int, default=5, metavar="S", help="leader lease, seconds (default 5)"
    )
    master.add_argument(
        "--worker-ttl", type=int, default=10, metavar="S", help="worker lease, seconds (default 10)"
    )

    worker = command("worker", cmd_worker, "run a worker", parents=[quotas])
    worker.add_argument("--listen", required=True, metavar="HOST:PORT")
    worker.add_argument("--cache-dir", required=True, type=Path, metavar="DIR")
    worker.add_argument(
        "--advertise", metavar="HOST:PORT", help="address others reach it at (default --listen)"
    )
    worker.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="where to serve Prometheus /metrics (default: the --listen host, port + 1)",
    )

    controller = command(
        "controller", cmd_controller, "reconcile Dataset and DataLoad resources with the master"
    )
    controller.add_argument("--namespace", metavar="NS", help="watch only NS (default: all)")
    controller.add_argument(
        "--kubeconfig", metavar="PATH", help="default: in-cluster, else ~/.kube/config"
    )
    controller.add_argument(
        "--identity", metavar="ID", help="name in the leader Lease (default: $POD_NAME)"
    )
    controller.add_argument(
        "--lease-namespace", metavar="NS", help="the Lease's namespace (default: $POD_NAMESPACE)"
    )
    controller.add_argument(
        "--lease-duration", type=float, default=15.0, metavar="S", help="seconds (default 15)"
    )
    controller.add_argument(
        "--health-listen", metavar="HOST:PORT", help="serve /healthz there (default: none)"
    )

    dataset = command("dataset", lambda a: None, "create, list, inspect, sync and delete datasets")
    actions = dataset.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = command(
        "create", cmd_dataset_create, "record a dataset over an under-storage", actions
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--mount", required=True, metavar="URI", help="s3://bucket/prefix or file:///absolute/dir"
    )
    create.add_argument(
        "--option",
        type=_option,
        action="append",
        metavar="KEY=VALUE",
        help="under-storage option, repeatable: endpoint, region, access_key_id, "
        "secret_access_key, session_token, anonymous",
    )
    create.add_argument(
        "--block-size", type=_size, default=0, metavar="SIZE", help="block size (default 64MiB)"
    )
    command("list", cmd_dataset_list, "list datasets", actions)
    for name, run, what in (
        ("get", cmd_dataset_get, "show a dataset: phase, files, size, cached bytes"),
        ("sync", cmd_dataset_sync, "list the under-storage again, record changes"),
        ("delete", cmd_dataset_delete, "forget a dataset and everything it owns"),
    ):
        command(name, run, what, actions).add_argument("name", metavar="NAME")

    command("ls", cmd_ls, "list a directory of a dataset").add_argument(
        "target", metavar="NAME[/PATH]"
    )
    command("stat", cmd_stat, "show a file or directory").add_argument(
        "target", metavar="NAME/PATH"
    )
    command("cat", cmd_cat, "write a file's bytes to standard output").add_argument(
        "target", metavar="NAME/PATH"
    )
    get = command("get", cmd_get, "copy a file to a local path (a progress bar on a terminal)")
    get.add_argument("target", metavar="NAME/PATH")
    get.add_argument("dest", metavar="DEST", help="a file, or an existing directory to copy into")
    load = command("load", cmd_load, "preload files into the cache (the whole dataset if no PATH)")
    load.add_argument("target", metavar="NAME", help="a dataset, or NAME/PATH")
    load.add_argument("paths", nargs="*", metavar="PATH", help="files or directories in it")
    load.add_argument("--wait", action="store_true", help="follow the job until it ends")
    command("job", cmd_job, "show a load job, by the ID `load` printed").add_argument(
        "id", metavar="ID"
    )
    command("workers", cmd_workers, "list live workers and their tiers")
    health = command(
        "health", cmd_health, "exit 0 if a server answers SERVING (grpc.health.v1): for probes"
    )
    health.add_argument("address", metavar="HOST:PORT|unix:///PATH", help="any Reservoir server")
    health.add_argument("--timeout", type=float, default=3.0, metavar="S", help="default 3")
    mount = command(
        "mount",
        cmd_mount,
        "mount a dataset read-only (FUSE); returns once it answers; unmount with umount",
    )
    mount.add_argument("target", metavar="NAME", help="a dataset, or NAME/PATH for a directory")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory")
    mount.add_argument("--foreground", action="store_true", help="serve in this process")
    mount.add_argument(
        "--allow-other", action="store_true", help="let users other than this one see it"
    )
    mount.add_argument("--log", type=Path, metavar="FILE", help="the daemon's log (appended)")
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)  # the daemon's, internal
    csi = command("csi", cmd_csi, "run the CSI node plugin: datasets as read-only pod volumes")
    csi.add_argument("--endpoint", required=True, metavar="unix:///PATH", help="the socket")
    csi.add_argument("--node-id", required=True, metavar="ID", help="this node's name")
    csi.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/reservoir/csi"),
        metavar="DIR",
        help="what it published, staging mounts, FUSE logs (default /var/lib/reservoir/csi)",
    )
    csi.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return top


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    # Set here, not as parser defaults: the parsers share these options' actions, so a
    # default on one would overwrite a value given to another.
    args.master = getattr(args, "master", None)
    args.json = getattr(args, "json", False)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    tune_allocator()
    try:
        setup_tracing(f"reservoir-{args.command}")
        return args.run(args) or 0
    except ReservoirError as exc:
        print(f"reservoir: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
