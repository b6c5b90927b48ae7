"""Channels to workers, one per address, kept and shared.

Opening a channel costs a TCP and HTTP/2 handshake, and a reader, a fill or a preload
talks to the same few workers over and over. Both kinds of stub decode ReadBlock's
data without copies (`block_stream`): iterating a ReadBlock call yields memoryviews.

- `WorkerChannels`: synchronous, for the client library (a synchronous stream is about
  twice as fast as a grpc.aio one here), shared by every file of a process.
- `AsyncWorkerChannels`: grpc.aio, for the services (peer fills, preload jobs).
"""

from __future__ import annotations

import os
import threading

import grpc

from reservoir.rpc import block_stream
from reservoir.rpc.server import CHANNEL_OPTIONS
from reservoir.rpc.telemetry import client_aio_interceptors
from reservoir.v1 import worker_pb2_grpc


class WorkerStub(worker_pb2_grpc.WorkerServiceStub):
    """The generated stub, with ReadBlock yielding each message's data as a view."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        # grpc_tools writes no types for *_pb2_grpc (the generated __init__ is unannotated).
        super().__init__(channel)  # type: ignore[no-untyped-call]
        self.ReadBlock = block_stream.read_block(channel)


class WorkerChannels:
    """Thread-safe. A forked child starts afresh: gRPC channels do not survive a fork
    (data loaders fork their workers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, WorkerStub] = {}
        # A fork while another thread holds the lock would leave it held in the child.
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()

    def stub(self, address: str) -> WorkerStub:
        with self._lock:
            if self._pid != os.getpid():  # the parent's channels: never touch them here
                self._pid, self._channels, self._stubs = os.getpid(), {}, {}
            stub = self._stubs.get(address)
            if stub is None:
                channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                self._channels[address] = channel
                stub = self._stubs[address] = WorkerStub(channel)
            return stub

    def close(self) -> None:
        with self._lock:
            channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            channel.close()


_shared = WorkerChannels()


def shared_channels() -> WorkerChannels:
    """The process's channels to workers."""
    return _shared


class AsyncWorkerChannels:
    """For one event loop."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> WorkerStub:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS, interceptors=client_aio_interceptors()
            )
        return WorkerStub(self._channels[address])

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
