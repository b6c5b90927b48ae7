"""`KV` on a real etcd v3 server, through etcd3aio (asyncio, grpc.aio).

Every call has a deadline, and every etcd failure surfaces as `Unavailable` naming
the endpoints: the master answers UNAVAILABLE while etcd is away, and serves again
by itself when it returns (the gRPC channel reconnects on its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import etcd3aio
import grpc
from etcd3aio.kv import KVService

from reservoir.errors import Unavailable
from reservoir.meta.kv import Guard, GuardFailed, LeaseExpired

# etcd refuses a transaction of more than 128 operations (its --max-txn-ops default).
MAX_TXN_OPS = 128
# Bounded pages keep each answer far below gRPC's 4 MiB message limit.
SCAN_PAGE = 1000
# Long enough for a loaded etcd, short enough that a caller hears of an outage.
CALL_TIMEOUT = 5.0


def _end(prefix: str) -> bytes:
    return etcd3aio.prefix_range_end(prefix)


class EtcdKV:
    def __init__(self, endpoints: str) -> None:
        """`endpoints`: comma-separated etcd URLs or host:port pairs."""
        self.endpoints = endpoints
        hosts = [e.split("://", 1)[-1].rstrip("/") for e in endpoints.split(",") if e]
        self._client = etcd3aio.Etcd3Client(hosts, rpc_max_attempts=2)
        self._connected = False

    async def _etcd(self) -> etcd3aio.Etcd3Client:
        if not self._connected:
            await self._client.connect()
            self._connected = True
        return self._client

    def _unavailable(self, exc: BaseException) -> Unavailable:
        return Unavailable(f"etcd at {self.endpoints} is unavailable: {exc or type(exc).__name__}")

    async def _call(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self._etcd()
        try:
            return await getattr(getattr(client, service), method)(
                *args, timeout=CALL_TIMEOUT, **kwargs
            )
        except (etcd3aio.EtcdConnectionError, etcd3aio.EtcdTransientError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise self._unavailable(exc) from exc
            raise

    async def get(self, key: str) -> bytes | None:
        response = await self._call("kv", "get", key)
        return bytes(response.kvs[0].value) if response.kvs else None

    async def scan(
        self, prefix: str, *, start: str | None = None, limit: int = 0
    ) -> list[tuple[str, bytes]]:
        pairs: list[tuple[str, bytes]] = []
        cursor = (start or prefix).encode()
        while True:
            page = SCAN_PAGE if limit == 0 else min(SCAN_PAGE, limit - len(pairs))
            response = await self._call("kv", "get", cursor, _end(prefix), limit=page)
            pairs.extend((kv.key.decode(), bytes(kv.value)) for kv in response.kvs)
            if not response.more or (limit and len(pairs) >= limit):
                return pairs
            cursor = response.kvs[-1].key + b"\0"

    async def exists_under(self, prefix: str) -> bool:
        response = await self._call("kv", "get", prefix, _end(prefix), limit=1, keys_only=True)
        return bool(response.kvs)

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        kv = KVService
        response = await self._call(
            "kv",
            "txn",
            [kv.txn_compare_create_revision(key, 0)],
            [kv.txn_op_put(key, value, lease=lease)],
        )
        return bool(response.succeeded)

    async def commit(
        self,
        puts: Mapping[str, bytes] = {},
        deletes: Iterable[str] = (),
        *,
        delete_prefixes: Iterable[str] = (),
        lease: int = 0,
        guard: Guard | None = None,
    ) -> None:
        kv = KVService
        ops = [kv.txn_op_put(k, v, lease=lease) for k, v in puts.items()]
        ops += [kv.txn_op_delete(k) for k in deletes]
        ops += [kv.txn_op_delete(p, range_end=_end(p)) for p in delete_prefixes]
        compare = [kv.txn_compare_value(guard[0], guard[1])] if guard else []
        for i in range(0, len(ops), MAX_TXN_OPS):
            try:
                response = await self._call("kv", "txn", compare, ops[i : i + MAX_TXN_OPS])
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND and lease:
                    raise LeaseExpired(lease) from None  # "requested lease not found"
                raise
            if not response.succeeded:
                raise GuardFailed(guard[0] if guard else "")

    async def grant_lease(self, ttl: int) -> int:
        return int((await self._call("lease", "grant", ttl)).ID)

    async def refresh_lease(self, lease: int) -> int:
        # One round trip on the keep-alive stream: send the ID, read the new TTL.
        client = await self._etcd()
        assert client.lease is not None
        stream = client.lease.keep_alive(lease)
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                async for response in stream:
                    return max(0, int(response.TTL))
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        finally:
            stream.cancel()
        return 0

    async def revoke_lease(self, lease: int) -> None:
        try:
            await self._call("lease", "revoke", lease)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise  # NOT_FOUND: it had expired already

    async def close(self) -> None:
        if self._connected:
            await self._client.close()
            self._connected = False
