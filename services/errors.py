"""The errors of Reservoir, one tree for every service and the client.

    ReservoirError
    ├── InvalidArgument     bad name, URI, option, path, offset
    ├── NotFound            unknown dataset, path, worker or lease
    ├── AlreadyExists       a dataset of that name exists
    ├── FailedPrecondition  the world is not in the state the call needs
    │   └── NotLeader       this master is a standby; `leader` says where to go
    └── Unavailable         etcd, the origin or a service cannot be reached

Servicers raise these; `reservoir.rpc.server` turns them into gRPC status codes in
one place, and `reservoir.rpc.channel` turns the codes back, so library users never
handle gRPC types.
"""

from __future__ import annotations

import grpc


class ReservoirError(Exception):
    """Base of every error Reservoir raises on purpose."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ReservoirError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ReservoirError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ReservoirError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ReservoirError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotLeader(FailedPrecondition):
    """A write reached a standby master."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader
        where = f"the leader is {leader}" if leader else "no leader is elected yet, try again"
        super().__init__(f"this master is a standby: {where}")


class Unavailable(ReservoirError):
    code = grpc.StatusCode.UNAVAILABLE


BY_CODE: dict[grpc.StatusCode, type[ReservoirError]] = {
    cls.code: cls
    for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, Unavailable)
}
