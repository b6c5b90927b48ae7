"""One way to run a gRPC server in the mesh: health, reflection, tracing, errors.

Servicers raise `reservoir.errors`; the interceptor here is the one place that turns
them into gRPC status codes (with the leader's address on a standby's refusal), so
that servicers only translate between protobuf and the domain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Never, TypeAlias, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reservoir.errors import NotLeader, ReservoirError, Unavailable
from reservoir.rpc.telemetry import server_interceptors

log = logging.getLogger(__name__)

# Large enough for a 1 MiB data chunk plus framing with room to grow; gRPC's default
# 4 MiB refuses a 4 MiB payload.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# Trailing metadata: where the leader is, and that a status came from our code (not
# from a broken connection), so clients fail fast instead of trying other masters.
LEADER_KEY = "reservoir-leader"
APP_ERROR_KEY = "reservoir-error"

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
if TYPE_CHECKING:  # grpc.aio.ServicerContext is not subscriptable at run time
    # A grpc.aio servicer's behaviours. types-grpcio types RpcMethodHandler's as the
    # synchronous server calls them (a plain return or an Iterator, given a
    # grpc.ServicerContext); grpc.aio calls a coroutine function or an async generator
    # with its own context.
    _AioUnaryUnary: TypeAlias = Callable[
        [_Request, grpc.aio.ServicerContext[_Request, _Response]], Awaitable[_Response]
    ]
    _AioUnaryStream: TypeAlias = Callable[
        [_Request, grpc.aio.ServicerContext[_Request, _Response]], AsyncIterator[_Response]
    ]


@dataclass(frozen=True)
class Service:
    """A servicer and what registers it: `add(servicer, server)`, its full name."""

    name: str
    servicer: object
    add: Callable[[Any, grpc.aio.Server], None]


async def _abort(context: grpc.aio.ServicerContext[_Request, _Response], exc: Exception) -> Never:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc  # the handler aborted by itself
    trailer: list[tuple[str, str]] = [(APP_ERROR_KEY, "1")]
    if isinstance(exc, ReservoirError):
        code, message = exc.code, str(exc)
        if isinstance(exc, NotLeader):  # empty while an election is under way
            trailer.append((LEADER_KEY, exc.leader or ""))
    elif isinstance(exc, NotImplementedError):  # a generated servicer's default method
        code, message = grpc.StatusCode.UNIMPLEMENTED, "this server does not implement the call"
    else:
        log.exception("internal error")
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {exc!r}"
    await context.abort(code, message, trailing_metadata=tuple(trailer))


class _ErrorMapping(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(details)
        # Ours: the mesh's services and the CSI plugin's (csi.v1), not health or reflection.
        if handler is None or not details.method.startswith(("/reservoir.", "/csi.")):
            return handler
        if handler.unary_unary:
            # Our servicers' methods are coroutine functions (see _AioUnaryUnary).
            inner = cast("_AioUnaryUnary[_Request, _Response]", handler.unary_unary)

            async def unary_unary(
                request: _Request, context: grpc.aio.ServicerContext[_Request, _Response]
            ) -> _Response:
                try:
                    return await inner(request, context)
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            # Our servicers' streaming methods are async generators (see _AioUnaryStream).
            stream = cast("_AioUnaryStream[_Request, _Response]", handler.unary_stream)

            async def unary_stream(
                request: _Request, context: grpc.aio.ServicerContext[_Request, _Response]
            ) -> AsyncIterator[_Response]:
                try:
                    async for item in stream(request, context):
                        yield item
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


async def start_server(address: str, services: Sequence[Service]) -> grpc.aio.Server:
    """Serve `services` on `address` with grpc.health.v1 and reflection."""
    server = grpc.aio.server(
        interceptors=[*server_interceptors(), _ErrorMapping()], options=CHANNEL_OPTIONS
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in services:
        service.add(service.servicer, server)
    names = [s.name for s in services]
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {address}: {exc}") from exc
    if not port:
        raise Unavailable(f"cannot listen on {address}: is the port taken?")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM: how every service learns to shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
