"""The fill buffer streams to readers while it grows; single flight shares one fill."""

from __future__ import annotations

import asyncio

import pytest

from reservoir.worker.fill import Fill
from reservoir.worker.singleflight import SingleFlight


def test_a_reader_gets_the_first_bytes_before_the_fill_completes() -> None:
    async def scenario() -> None:
        fill = Fill(0, 30)
        seen: list[tuple[bytes, int]] = []

        async def reader() -> None:
            async for piece in fill.read(0, 30, chunk=10):
                seen.append((piece, fill.filled))

        task = asyncio.create_task(reader())
        for i in range(3):
            await asyncio.sleep(0.01)
            await fill.write(bytes([i]) * 10)
        await fill.finish()
        await task
        assert b"".join(p for p, _ in seen) == b"\0" * 10 + b"\1" * 10 + b"\2" * 10
        assert seen[0][1] == 10  # the first piece arrived when a third was filled

    asyncio.run(scenario())


def test_readers_of_a_range_and_a_failed_fill() -> None:
    async def scenario() -> None:
        fill = Fill(0, 20)
        await fill.write(b"a" * 12)
        middle = [p async for p in _take(fill.read(5, 10, chunk=4))]
        assert b"".join(middle) == b"aaaaa"
        late = asyncio.create_task(_collect(fill.read(10, 20, chunk=4)))
        await asyncio.sleep(0.01)
        await fill.finish(OSError("origin went away"))
        with pytest.raises(OSError, match="origin went away"):
            await late
        with pytest.raises(OSError):
            await fill.wait()

    asyncio.run(scenario())


def test_a_short_source_is_an_error_not_a_short_block() -> None:
    async def scenario() -> None:
        fill = Fill(0, 10)
        await fill.write(b"x" * 4)
        await fill.finish()
        with pytest.raises(ValueError, match="after 4 of 10 bytes"):
            await fill.wait()
        with pytest.raises(ValueError, match="sent 14 bytes"):
            await fill.write(b"y" * 10)

    asyncio.run(scenario())


def test_single_flight_shares_one_flight_per_key() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    first, new = flights.join("k", object)
    again, new_again = flights.join("k", object)
    assert new and not new_again and first is again
    flights.land("k")
    third, new_third = flights.join("k", object)
    assert new_third and third is not first


async def _take(pieces):  # type: ignore[no-untyped-def]
    async for piece in pieces:
        yield piece


async def _collect(pieces) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([p async for p in pieces])
