"""The commands that start Reservoir's services: `up` (a whole cluster), `master`,
`worker`, `controller`, `mount` (the FUSE daemon) and `csi`; and `health`, the probe
that asks any of them whether it serves. Each service's module is imported when its
command runs, so the commands on data do not load them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from reservoir.client.client import default_master
from reservoir.errors import InvalidArgument
from reservoir.rpc.health import is_serving


def _default_data_dir(port: int) -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "reservoir" / f"up-{port}"


def _serve_logging(level: int | str = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_up(args: argparse.Namespace) -> int:
    from reservoir.cli.local_cluster import UpConfig, up

    config = UpConfig(
        data_dir=args.data_dir or _default_data_dir(args.port),
        workers=args.workers,
        port=args.port,
        etcd=args.etcd or "",
        mem_quota=args.mem_quota,
        disk_quota=args.disk_quota,
    )
    return up(config, say=lambda line: print(line, flush=True))


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


def cmd_health(args: argparse.Namespace) -> int:
    if is_serving(args.address, timeout=args.timeout):
        return 0
    print(f"reservoir: {args.address} is not serving (grpc.health.v1)", file=sys.stderr)
    return 1
