"""Asking a mesh server whether it is serving (grpc.health.v1)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def is_serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            # HealthStub sets its methods up in __init__; types-grpcio-health-checking
            # declares none of them.
            check: grpc.UnaryUnaryMultiCallable[
                health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
            ] = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
            answer = check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
