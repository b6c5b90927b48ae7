"""ReadBlock's hand-made encoding is ReadBlockResponse's, both ways."""

from __future__ import annotations

import os

import pytest

from reservoir.rpc import block_stream
from reservoir.v1 import worker_pb2

SIZES = [0, 1, 127, 128, 16_383, 16_384, 1024 * 1024, 3 * 1024 * 1024 + 7]


@pytest.mark.parametrize("size", SIZES)
def test_encoded_chunks_parse_as_protobuf(size: int) -> None:
    data = os.urandom(size)
    message = block_stream.encode(memoryview(data))
    assert worker_pb2.ReadBlockResponse.FromString(message).data == data


@pytest.mark.parametrize("size", SIZES)
def test_protobuf_messages_decode_to_their_data(size: int) -> None:
    data = os.urandom(size)
    message = worker_pb2.ReadBlockResponse(data=data).SerializeToString()
    decoded = block_stream.decode(message)
    assert bytes(decoded) == data
    if size:
        assert decoded.obj is message, "the data is a view of the message, not a copy"


def test_messages_with_other_fields_are_decoded_by_protobuf() -> None:
    # Field 1 (data) followed by an unknown field 2 (varint 5), as a newer worker might send.
    message = worker_pb2.ReadBlockResponse(data=b"abc").SerializeToString() + b"\x10\x05"
    assert bytes(block_stream.decode(message)) == b"abc"


def test_a_length_running_past_the_message_is_not_trusted() -> None:
    truncated = block_stream.encode(b"abcdef")[:-2]
    with pytest.raises(Exception, match="Error parsing message"):
        block_stream.decode(truncated)


def test_the_hand_made_registration_serves_every_method_of_the_service() -> None:
    # add_worker_service lists WorkerService's methods itself; a method added to
    # worker.proto and not there would answer UNIMPLEMENTED.
    class Recorder:
        names: list[str] = []

        def add_generic_rpc_handlers(self, handlers: tuple[object, ...]) -> None:
            pass

        def add_registered_method_handlers(self, service: str, methods: dict[str, object]) -> None:
            self.names = [f"{service}/{name}" for name in methods]

    server = Recorder()
    block_stream.add_worker_service(_Servicer(), server)  # type: ignore[arg-type]
    service = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]
    assert sorted(server.names) == sorted(f"{service.full_name}/{m.name}" for m in service.methods)


class _Servicer:
    def ReadBlock(self) -> None: ...

    def CacheBlock(self) -> None: ...
