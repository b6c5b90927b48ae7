"""Conformance of the KV seam, run against a real etcd server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from reservoir.errors import Unavailable
from reservoir.meta import EtcdKV, GuardFailed
from reservoir.meta.etcd_server import EtcdServer
from reservoir.processes import free_port
from tests.fixtures.mesh import wipe


def run(test: Callable[[EtcdKV], Coroutine[Any, Any, None]], url: str) -> None:
    async def body() -> None:
        kv = EtcdKV(url)
        try:
            await test(kv)
        finally:
            await kv.close()

    asyncio.run(body())


@pytest.fixture
def url(etcd: EtcdServer) -> str:
    wipe(etcd.url)
    return etcd.url


def test_get_put_and_paged_scan(url: str) -> None:
    async def test(kv: EtcdKV) -> None:
        assert await kv.get("/reservoir/t/missing") is None
        # More keys than one scan page (1000) and one transaction (128 operations).
        puts = {f"/reservoir/t/k{i:05d}": str(i).encode() for i in range(2500)}
        await kv.commit(puts)
        pairs = await kv.scan("/reservoir/t/")
        assert pairs == sorted(puts.items())
        assert await kv.scan("/reservoir/t/", start="/reservoir/t/k02498") == [
            ("/reservoir/t/k02498", b"2498"),
            ("/reservoir/t/k02499", b"2499"),
        ]
        assert len(await kv.scan("/reservoir/t/", limit=1500)) == 1500
        assert await kv.exists_under("/reservoir/t/k0")
        assert not await kv.exists_under("/reservoir/u/")
        await kv.commit(delete_prefixes=["/reservoir/t/"])
        assert await kv.scan("/reservoir/t/") == []

    run(test, url)


def test_create_only_if_absent(url: str) -> None:
    async def test(kv: EtcdKV) -> None:
        assert await kv.create("/reservoir/c", b"first")
        assert not await kv.create("/reservoir/c", b"second")
        assert await kv.get("/reservoir/c") == b"first"

    run(test, url)


def test_a_failed_guard_applies_nothing(url: str) -> None:
    async def test(kv: EtcdKV) -> None:
        await kv.commit({"/reservoir/leader": b"me"})
        await kv.commit({"/reservoir/x": b"1"}, guard=("/reservoir/leader", b"me"))
        with pytest.raises(GuardFailed):
            await kv.commit(
                {"/reservoir/x": b"2"}, ["/reservoir/leader"], guard=("/reservoir/leader", b"you")
            )
        assert await kv.get("/reservoir/x") == b"1"
        assert await kv.get("/reservoir/leader") == b"me"

    run(test, url)


def test_leased_keys_vanish_when_the_lease_expires(url: str) -> None:
    async def test(kv: EtcdKV) -> None:
        lease = await kv.grant_lease(2)
        await kv.commit({"/reservoir/leased": b"v"}, lease=lease)
        assert await kv.refresh_lease(lease) > 0
        start = time.monotonic()
        while await kv.get("/reservoir/leased") is not None:
            assert time.monotonic() - start < 10, "leased key outlived its lease"
            await asyncio.sleep(0.2)
        assert await kv.refresh_lease(lease) == 0

    run(test, url)


def test_revoking_a_lease_deletes_its_keys_at_once(url: str) -> None:
    async def test(kv: EtcdKV) -> None:
        lease = await kv.grant_lease(60)
        await kv.commit({"/reservoir/r": b"v"}, lease=lease)
        await kv.revoke_lease(lease)
        assert await kv.get("/reservoir/r") is None
        await kv.revoke_lease(lease)  # revoking again is harmless

    run(test, url)


def test_unreachable_etcd_is_unavailable_promptly() -> None:
    async def test(kv: EtcdKV) -> None:
        start = time.monotonic()
        with pytest.raises(Unavailable, match=r"etcd at http://127\.0\.0\.1:\d+ is unavailable"):
            await kv.get("/reservoir/x")
        assert time.monotonic() - start < 15

    run(test, f"http://127.0.0.1:{free_port()}")
