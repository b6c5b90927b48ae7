"""CSI Node: the rules of the specification for each call, then the volumes do it.

A volume is a dataset. `volume_context` says which: key `dataset` (else the
volume_id names it), `subPath` (a directory inside it, shown as the root) and
`master` (HOST:PORT, else the plugin's own). Every volume is read-only: block
access, and a writer access mode asked to be writable, are refused with
FAILED_PRECONDITION (the spec's "exceeds capabilities"); a writer mode with
`readonly` set is served, as Kubernetes asks for inline volumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import grpc
from csi.v1 import csi_pb2 as pb
from csi.v1 import csi_pb2_grpc

from reservoir import paths
from reservoir.client.csi import mounts
from reservoir.client.csi.volumes import Publish, Volumes
from reservoir.errors import FailedPrecondition, InvalidArgument, NotFound

Mode = pb.VolumeCapability.AccessMode
READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}


class Node(csi_pb2_grpc.NodeServicer):
    def __init__(self, node_id: str, master: str, volumes: Volumes) -> None:
        self.node_id = node_id
        self.master = master
        self.volumes = volumes

    async def NodePublishVolume(
        self,
        request: pb.NodePublishVolumeRequest,
        context: grpc.aio.ServicerContext[
            pb.NodePublishVolumeRequest, pb.NodePublishVolumeResponse
        ],
    ) -> pb.NodePublishVolumeResponse:
        _require(request, "volume_id", "target_path")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        _check_capability(request.volume_capability, request.readonly)
        await self.volumes.publish(self._publish(request))
        return pb.NodePublishVolumeResponse()

    async def NodeUnpublishVolume(
        self,
        request: pb.NodeUnpublishVolumeRequest,
        context: grpc.aio.ServicerContext[
            pb.NodeUnpublishVolumeRequest, pb.NodeUnpublishVolumeResponse
        ],
    ) -> pb.NodeUnpublishVolumeResponse:
        _require(request, "volume_id", "target_path")
        await self.volumes.unpublish(request.volume_id, _absolute(request.target_path))
        return pb.NodeUnpublishVolumeResponse()

    async def NodeGetVolumeStats(
        self,
        request: pb.NodeGetVolumeStatsRequest,
        context: grpc.aio.ServicerContext[
            pb.NodeGetVolumeStatsRequest, pb.NodeGetVolumeStatsResponse
        ],
    ) -> pb.NodeGetVolumeStatsResponse:
        """What statfs(2) of the mount says: the dataset's size as total and used
        (a read-only volume has no room left), and its file count as inodes. A mount
        that does not answer in time is reported abnormal, not waited for. Any path
        where the volume is not published, a relative one too, is NOT_FOUND (what
        the spec and csi-sanity expect), not INVALID_ARGUMENT."""
        _require(request, "volume_id", "volume_path")
        path = _normalized(request.volume_path)
        self.volumes.find(request.volume_id, path)
        try:
            st = await mounts.statvfs(Path(path))
        except TimeoutError:
            return _abnormal(
                f"the mount does not answer within {mounts.STATS_TIMEOUT_SECONDS:.0f} s "
                "(its FUSE process is stuck, or the master is slow)"
            )
        except OSError as exc:
            if exc.errno not in mounts.DEAD_ERRNOS:
                raise
            return _abnormal(f"the mount does not answer ({exc.strerror}): recovering")
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        usage = [
            pb.VolumeUsage(
                unit=pb.VolumeUsage.BYTES,
                total=total,
                available=free,
                used=total - st.f_bfree * st.f_frsize,
            ),
            pb.VolumeUsage(
                unit=pb.VolumeUsage.INODES,
                total=st.f_files,
                available=st.f_favail,
                used=st.f_files - st.f_ffree,
            ),
        ]
        return pb.NodeGetVolumeStatsResponse(
            usage=usage, volume_condition=pb.VolumeCondition(abnormal=False, message="serving")
        )

    async def NodeGetCapabilities(
        self,
        request: pb.NodeGetCapabilitiesRequest,
        context: grpc.aio.ServicerContext[
            pb.NodeGetCapabilitiesRequest, pb.NodeGetCapabilitiesResponse
        ],
    ) -> pb.NodeGetCapabilitiesResponse:
        kinds = [
            pb.NodeServiceCapability.RPC.GET_VOLUME_STATS,
            pb.NodeServiceCapability.RPC.VOLUME_CONDITION,
        ]
        return pb.NodeGetCapabilitiesResponse(
            capabilities=[
                pb.NodeServiceCapability(rpc=pb.NodeServiceCapability.RPC(type=k)) for k in kinds
            ]
        )

    async def NodeGetInfo(
        self,
        request: pb.NodeGetInfoRequest,
        context: grpc.aio.ServicerContext[pb.NodeGetInfoRequest, pb.NodeGetInfoResponse],
    ) -> pb.NodeGetInfoResponse:
        return pb.NodeGetInfoResponse(node_id=self.node_id)

    def _publish(self, request: pb.NodePublishVolumeRequest) -> Publish:
        context = request.volume_context
        dataset = context.get("dataset") or request.volume_id
        try:
            paths.check_name(dataset)
        except InvalidArgument as exc:  # such a dataset cannot exist
            raise NotFound(f"no dataset named {dataset!r}: {exc}") from None
        return Publish(
            volume_id=request.volume_id,
            target=_absolute(request.target_path),
            master=context.get("master") or self.master,
            dataset=dataset,
            subpath=paths.normalize(context.get("subPath", "")),
            fingerprint=_fingerprint(request),
        )


def _abnormal(message: str) -> pb.NodeGetVolumeStatsResponse:
    condition = pb.VolumeCondition(abnormal=True, message=message)
    return pb.NodeGetVolumeStatsResponse(volume_condition=condition)


def _require(request: object, *names: str) -> None:
    missing = [name for name in names if not getattr(request, name)]
    if missing:
        raise InvalidArgument(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
        )


def _absolute(path: str) -> Path:
    if not os.path.isabs(path):
        raise InvalidArgument(f"{path!r} is not an absolute path")
    return Path(os.path.normpath(path))


def _normalized(path: str) -> str:
    """`path` as targets are kept; a relative one stays relative, so it names none."""
    return os.path.normpath(path)


def _check_capability(capability: pb.VolumeCapability, readonly: bool) -> None:
    access = capability.WhichOneof("access_type")
    if access is None:
        raise InvalidArgument("volume_capability needs an access type: mount or block")
    if access == "block":
        raise FailedPrecondition("block access is not supported: a dataset is a file system")
    mode = capability.access_mode.mode
    if mode == Mode.UNKNOWN:
        raise InvalidArgument("volume_capability.access_mode.mode is required")
    if mode not in READ_ONLY_MODES and not readonly:
        raise FailedPrecondition(
            f"access mode {Mode.Mode.Name(mode)} writes, but a dataset is read-only: "
            "use a READER_ONLY mode or publish with readonly"
        )


def _fingerprint(request: pb.NodePublishVolumeRequest) -> str:
    """Of the arguments a repeated publish must repeat (secrets left out)."""
    digest = hashlib.sha256()
    digest.update(request.volume_id.encode())
    digest.update(request.volume_capability.SerializeToString(deterministic=True))
    digest.update(b"ro" if request.readonly else b"rw")
    digest.update(json.dumps(dict(request.volume_context), sort_keys=True).encode())
    return digest.hexdigest()
