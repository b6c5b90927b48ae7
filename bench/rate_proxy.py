"""A TCP proxy that caps what the upstream sends to all clients together, and counts it.

    python bench/rate_proxy.py --listen HOST:PORT --upstream HOST:PORT --rate-mbit R --stats FILE

The fallback of origin_link.py when no network namespace can be made: one token
bucket shared by every connection, on the upstream-to-client direction only (what a
rate-limited object store limits). The bytes forwarded that way are written to
--stats every 50 ms, for the benchmark to read.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

CHUNK = 64 * 1024


class Bucket:
    def __init__(self, rate_bytes: float) -> None:
        self.rate = rate_bytes
        self.burst = max(rate_bytes / 50, CHUNK)  # 20 ms worth
        self.tokens = self.burst
        self.last = time.monotonic()
        self.lock = asyncio.Lock()
        self.sent = 0

    async def take(self, n: int) -> None:
        async with self.lock:  # first come, first served: a fair share per connection
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    self.sent += n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: Bucket | None
) -> None:
    try:
        while data := await reader.read(CHUNK):
            if bucket:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    bucket = Bucket(args.rate_mbit * 1e6 / 8)
    up_host, up_port = args.upstream.rsplit(":", 1)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, None), pipe(up_r, client_w, bucket))

    async def report() -> None:
        while True:
            args.stats.write_text(f"{bucket.sent}\n")
            await asyncio.sleep(0.05)

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    reporter = asyncio.create_task(report())
    async with server:
        await server.serve_forever()
    reporter.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate-mbit", type=float, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
