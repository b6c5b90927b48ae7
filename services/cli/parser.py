"""The command line's grammar: every sub-command, its options and help, and the function
that runs it (`args.run`). Global options work before or after the sub-command."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from reservoir.cli.daemons import (
    cmd_controller,
    cmd_csi,
    cmd_health,
    cmd_master,
    cmd_mount,
    cmd_up,
    cmd_worker,
)
from reservoir.cli.data import (
    cmd_cat,
    cmd_dataset_create,
    cmd_dataset_delete,
    cmd_dataset_get,
    cmd_dataset_list,
    cmd_dataset_sync,
    cmd_get,
    cmd_job,
    cmd_load,
    cmd_ls,
    cmd_stat,
    cmd_workers,
)
from reservoir.errors import InvalidArgument
from reservoir.units import parse_size

Command = Callable[[argparse.Namespace], int | None]


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
