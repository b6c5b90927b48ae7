"""Reusable grpc.aio channels to workers, one per address, for the services.

Opening a channel costs a TCP and HTTP/2 handshake; a fill or a preload talks to the
same few workers over and over, so channels are kept and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from reservoir.rpc import block_stream
from reservoir.rpc.server import CHANNEL_OPTIONS
from reservoir.rpc.telemetry import client_aio_interceptors
from reservoir.v1 import worker_pb2_grpc


class WorkerChannels:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(self._channel(address))

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS, interceptors=client_aio_interceptors()
            )
        return self._channels[address]

    def read_block(self, address: str) -> Callable[..., Any]:
        """ReadBlock on `address`, its data decoded without copies (block_stream)."""
        return block_stream.read_block(self._channel(address))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
