"""Calls to the master from anywhere: the CLI, the client library, the workers.

Several masters may run; any of them answers reads, only the leader writes. This
client holds every known master address, sends each call to the last one that
answered (the leader once it is known), follows a standby's redirect to the
leader, and rides out a failover: while no master answers or no leader is elected
it keeps trying until the call's deadline, then fails with Unavailable. Errors
come back as `reservoir.errors`, never as gRPC types.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from reservoir.errors import BY_CODE, InvalidArgument, ReservoirError, Unavailable
from reservoir.rpc.server import APP_ERROR_KEY, CHANNEL_OPTIONS, LEADER_KEY
from reservoir.rpc.telemetry import traced_channel
from reservoir.v1 import master_pb2_grpc

DEFAULT_MASTER = "127.0.0.1:19700"
# Covers a leader failover (lease TTL 5 s plus an election round) with room to spare.
DEFAULT_TIMEOUT = 30.0
# How long to keep trying when no master can be reached at all: enough for a master
# to restart, short enough that a typo in --master is reported promptly.
UNREACHABLE_BUDGET = 5.0
RETRY_PAUSE = 0.25


def parse_addresses(masters: str | Sequence[str]) -> list[str]:
    items = masters.split(",") if isinstance(masters, str) else list(masters)
    addresses = [a.strip() for a in items if a.strip()]
    if not addresses:
        raise InvalidArgument("no master address given: use --master HOST:PORT")
    return addresses


def error_from(exc: grpc.RpcError, address: str) -> ReservoirError:
    """The Reservoir error that a gRPC status from `address` stands for."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"the master at {address} did not answer in time")
    if code == grpc.StatusCode.UNAVAILABLE and _trailer(exc, APP_ERROR_KEY) is None:
        return Unavailable(f"cannot reach the master at {address}: {details}")
    return BY_CODE.get(code, ReservoirError)(details or code.name)


def _trailer(exc: grpc.RpcError, key: str) -> str | None:
    for item in exc.trailing_metadata() or ():  # grpcio's _Metadatum: a (key, value) namedtuple
        if item.key == key:
            return str(item.value)
    return None


class MasterClient:
    """A synchronous, thread-safe client of the MasterService."""

    def __init__(self, masters: str | Sequence[str] = DEFAULT_MASTER) -> None:
        self.addresses = parse_addresses(masters)
        self._stubs: dict[str, master_pb2_grpc.MasterServiceStub] = {}
        self._channels: list[grpc.Channel] = []
        self._current = 0

    def _stub(self, address: str) -> master_pb2_grpc.MasterServiceStub:
        if address not in self._stubs:
            channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            # grpc_tools writes no types for *_pb2_grpc (the generated __init__ is unannotated).
            self._stubs[address] = master_pb2_grpc.MasterServiceStub(traced_channel(channel))  # type: ignore[no-untyped-call]
        return self._stubs[address]

    def call(self, method: str, request: Any, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Invoke `method` (e.g. "GetDataset") with `request` and return the answer."""
        start = time.monotonic()
        deadline = start + timeout
        answered = False  # has any master answered during this call?
        tries = 0
        while True:
            address = self.addresses[self._current]
            try:
                remaining = max(deadline - time.monotonic(), 0.001)
                return getattr(self._stub(address), method)(request, timeout=remaining)
            except grpc.RpcError as exc:
                error = error_from(exc, address)
                leader = _trailer(exc, LEADER_KEY)
                reachable = _trailer(exc, APP_ERROR_KEY) is not None
                answered = answered or reachable
                if reachable and leader is None:
                    raise error from None  # the master's own answer
                if leader:  # a standby named the leader: go there
                    if leader not in self.addresses:
                        self.addresses.append(leader)
                    self._current = self.addresses.index(leader)
                else:  # unreachable, or an election is under way: try the next
                    self._current = (self._current + 1) % len(self.addresses)
                tries += 1
                now = time.monotonic()
                budget = deadline if answered else min(deadline, start + UNREACHABLE_BUDGET)
                if now >= budget:
                    raise error from None
                if tries % len(self.addresses) == 0:
                    time.sleep(RETRY_PAUSE)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._stubs.clear()

    def __enter__(self) -> MasterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
