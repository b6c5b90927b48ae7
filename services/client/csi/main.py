"""`reservoir csi`: the CSI node plugin on a Unix socket, as kubelet reaches it.

It serves csi.v1 Identity, Node and a minimal Controller (see identity.py), plus
grpc.health.v1 and reflection like every server here. On start it adopts what a
previous run published (state dir) and repairs what broke meanwhile. On SIGTERM it
stops serving and leaves every mount and FUSE process in place. Whether the FUSE
processes outlive the plugin depends on where it runs: on a host they do (their own
session), and pods keep reading while it restarts; in a Kubernetes container they
die with it (one PID namespace), the pods' mounts answer ENOTCONN meanwhile, and the
restarted plugin mounts again and binds again within seconds once the master answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from csi.v1 import csi_pb2_grpc

from reservoir.client.csi.identity import Controller, Identity
from reservoir.client.csi.node import Node
from reservoir.client.csi.state import StateDir
from reservoir.client.csi.volumes import Volumes
from reservoir.errors import InvalidArgument
from reservoir.rpc.server import Service, start_server, wait_for_stop_signal

log = logging.getLogger(__name__)
DEFAULT_STATE_DIR = Path("/var/lib/reservoir/csi")


@dataclass(frozen=True)
class CsiConfig:
    endpoint: str  # unix:///absolute/path.sock
    node_id: str
    master: str
    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def socket(self) -> Path:
        """The socket's path; InvalidArgument unless the endpoint is unix:///PATH."""
        path = self.endpoint.removeprefix("unix://")
        if path == self.endpoint or not path.startswith("/"):
            raise InvalidArgument(
                f"--endpoint {self.endpoint!r} is not unix:///ABSOLUTE/PATH: "
                "kubelet reaches CSI plugins on a Unix socket"
            )
        return Path(path)


async def serve(config: CsiConfig) -> None:
    socket = config.socket
    socket.parent.mkdir(parents=True, exist_ok=True)
    volumes = Volumes(StateDir(config.state_dir))
    volumes.adopt()
    services = [
        Service(
            "csi.v1.Identity", Identity(config.master), csi_pb2_grpc.add_IdentityServicer_to_server
        ),
        Service(
            "csi.v1.Node",
            Node(config.node_id, config.master, volumes),
            csi_pb2_grpc.add_NodeServicer_to_server,
        ),
        Service("csi.v1.Controller", Controller(), csi_pb2_grpc.add_ControllerServicer_to_server),
    ]
    socket.unlink(missing_ok=True)  # left by a plugin that was killed
    server = await start_server(f"unix://{socket}", services)
    log.info(
        "serving CSI on %s as node %s (master %s)", config.endpoint, config.node_id, config.master
    )
    watcher = asyncio.create_task(volumes.watch())
    try:
        await wait_for_stop_signal()
        log.info("stopping; mounts stay in place")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        volumes.close()
        await server.stop(grace=2)
