"""ReadBlock's data on the wire, without protobuf's copies.

A ReadBlockResponse holds one bytes field, so its encoding is a tag, a length and the
bytes. Through protobuf, a worker copies each MiB three times (out of the block into a
`bytes`, into the message, into its serialization) and a reader once more (out of the
message). Writing the header in front of a view of the block, and reading the bytes
back as a view of the received message, leaves one copy on each side. The messages
stay ReadBlockResponse on the wire: grpcurl and generated stubs read them as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from reservoir.v1 import worker_pb2

METHOD = "/reservoir.v1.WorkerService/ReadBlock"
_TAG = 0x0A  # field 1 (data), wire type 2 (length-delimited)


def encode(data: bytes | memoryview) -> bytes:
    """A serialized ReadBlockResponse carrying `data`."""
    size = len(data)
    header = bytearray([_TAG])
    while size > 0x7F:
        header.append(size & 0x7F | 0x80)
        size >>= 7
    header.append(size)
    return b"".join((header, data))


def decode(message: bytes) -> memoryview:
    """The data of a serialized ReadBlockResponse, as a view of `message`."""
    view = memoryview(message)
    if not message:
        return view
    if message[0] == _TAG:
        size, shift, at = 0, 0, 1
        while at < len(message) and shift < 64:
            byte = message[at]
            size |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if not byte & 0x80:
                if at + size == len(message):
                    return view[at:]
                break
    # Anything else (fields added later, or an encoder's other choices): protobuf's way.
    return memoryview(worker_pb2.ReadBlockResponse.FromString(message).data)


def read_block(channel: grpc.Channel | grpc.aio.Channel) -> Callable[..., Any]:
    """ReadBlock on `channel`, its responses decoded by `decode`."""
    return channel.unary_stream(
        METHOD,
        request_serializer=worker_pb2.ReadBlockRequest.SerializeToString,
        response_deserializer=decode,
        # As the generated stubs do. grpcio takes this private flag; types-grpcio leaves
        # it out of Channel.unary_stream.
        _registered_method=True,  # type: ignore[call-arg]
    )


def add_worker_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Serve WorkerService as the generated code does, but with ReadBlock's responses
    encoded by `encode`: the servicer yields the data (bytes or a view), not messages."""
    # Handlers of different message types, as method_handlers_generic_handler takes them.
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "ReadBlock": grpc.unary_stream_rpc_method_handler(
            servicer.ReadBlock,
            request_deserializer=worker_pb2.ReadBlockRequest.FromString,
            response_serializer=encode,
        ),
        "CacheBlock": grpc.unary_unary_rpc_method_handler(
            servicer.CacheBlock,
            request_deserializer=worker_pb2.CacheBlockRequest.FromString,
            response_serializer=worker_pb2.CacheBlockResponse.SerializeToString,
        ),
    }
    name = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
