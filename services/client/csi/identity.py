"""CSI Identity (who the plugin is, whether it can work) and a minimal Controller.

The plugin is node-only: volumes are datasets that already exist, so there is
nothing to create or attach. It still serves a Controller service whose
ControllerGetCapabilities answers one capability of type UNKNOWN, because the CSI
conformance suite (csi-sanity) asks for it before every node test; every other
Controller call answers UNIMPLEMENTED (the generated servicer's default).
"""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version

import grpc
from csi.v1 import csi_pb2 as pb
from csi.v1 import csi_pb2_grpc
from google.protobuf.wrappers_pb2 import BoolValue

from reservoir.errors import FailedPrecondition
from reservoir.rpc.health import is_serving
from reservoir.rpc.master_client import parse_addresses

# A DNS-style name starting and ending with a letter: what CSIDriver objects name.
DRIVER_NAME = "fuse.csi.reservoir.dev"


def _version() -> str:
    try:
        return version("reservoir")
    except PackageNotFoundError:
        return "0.0.0"


class Identity(csi_pb2_grpc.IdentityServicer):
    def __init__(self, master: str) -> None:
        self.master = master

    async def GetPluginInfo(
        self,
        request: pb.GetPluginInfoRequest,
        context: grpc.aio.ServicerContext[pb.GetPluginInfoRequest, pb.GetPluginInfoResponse],
    ) -> pb.GetPluginInfoResponse:
        return pb.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=_version())

    async def GetPluginCapabilities(
        self,
        request: pb.GetPluginCapabilitiesRequest,
        context: grpc.aio.ServicerContext[
            pb.GetPluginCapabilitiesRequest, pb.GetPluginCapabilitiesResponse
        ],
    ) -> pb.GetPluginCapabilitiesResponse:
        return pb.GetPluginCapabilitiesResponse()  # node-only: no CONTROLLER_SERVICE

    async def Probe(
        self,
        request: pb.ProbeRequest,
        context: grpc.aio.ServicerContext[pb.ProbeRequest, pb.ProbeResponse],
    ) -> pb.ProbeResponse:
        """Healthy when a master answers: without one no volume can be published."""
        addresses = parse_addresses(self.master)
        answers = await asyncio.gather(*(asyncio.to_thread(is_serving, a) for a in addresses))
        if not any(answers):
            raise FailedPrecondition(f"no master answers at {self.master}")
        return pb.ProbeResponse(ready=BoolValue(value=True))


class Controller(csi_pb2_grpc.ControllerServicer):
    async def ControllerGetCapabilities(
        self,
        request: pb.ControllerGetCapabilitiesRequest,
        context: grpc.aio.ServicerContext[
            pb.ControllerGetCapabilitiesRequest, pb.ControllerGetCapabilitiesResponse
        ],
    ) -> pb.ControllerGetCapabilitiesResponse:
        unknown = pb.ControllerServiceCapability.RPC(
            type=pb.ControllerServiceCapability.RPC.UNKNOWN
        )
        return pb.ControllerGetCapabilitiesResponse(
            capabilities=[pb.ControllerServiceCapability(rpc=unknown)]
        )
