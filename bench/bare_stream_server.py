"""The warm-read ceiling: WorkerService.ReadBlock over plain grpc.aio, from memory.

    python bench/bare_stream_server.py --file PATH --block-size BYTES --port PORT

It holds the whole file in memory and answers ReadBlock as a worker with the block
cached would (same service and method, same 64 MiB message limits, 1 MiB messages,
the same wire encoding with one copy per message: `reservoir.rpc.block_stream`, whose
decoder the bare client uses too) and nothing else: no interceptors, no health or
reflection, no block store, no metrics, no read-ahead. The gap between a Reservoir
warm read and a read of this server is the cost of Reservoir's own code.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from reservoir.processes import tune_allocator
from reservoir.rpc import block_stream
from reservoir.rpc.server import CHANNEL_OPTIONS
from reservoir.v1 import worker_pb2

CHUNK = 1024 * 1024  # what a worker streams (reservoir.worker.blockcache.CHUNK)


class BareWorker:
    def __init__(self, data: bytes, block_size: int) -> None:
        self._data = memoryview(data)
        self._block_size = block_size

    async def ReadBlock(
        self, request: worker_pb2.ReadBlockRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[memoryview]:
        base = request.block.index * self._block_size
        block_end = min(base + self._block_size, len(self._data))
        start = base + request.offset
        end = block_end if request.length == 0 else min(block_end, start + request.length)
        for position in range(start, end, CHUNK):
            yield self._data[position : min(position + CHUNK, end)]


async def serve(data: bytes, block_size: int, port: int) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.unary_stream_rpc_method_handler(
        BareWorker(data, block_size).ReadBlock,
        request_deserializer=worker_pb2.ReadBlockRequest.FromString,
        response_serializer=block_stream.encode,
    )
    service = grpc.method_handlers_generic_handler(
        "reservoir.v1.WorkerService", {"ReadBlock": handler}
    )
    server.add_generic_rpc_handlers((service,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--block-size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    tune_allocator()  # as `reservoir worker` does: 1 MiB message buffers reused, not faulted in
    asyncio.run(serve(args.file.read_bytes(), args.block_size, args.port))


if __name__ == "__main__":
    main()
