"""`/healthz` for the controller's liveness probe: 200 while its work loop turns and
its watches work.

The loop wakes at least every half second whether or not there is work, so a loop
that has not turned for `STALE_S` is stuck (a hung call, a dead thread): kubelet
restarts the pod, and the elector stops renewing the Lease meanwhile. Both replicas
answer 200; only the Lease decides who acts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A master call may legitimately take minutes (listing a large bucket on create: the
# client allows 600 s).
STALE_S = 900.0


class Heartbeat:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.last < STALE_S


def serve_health(listen: str, problems: Callable[[], list[str]]) -> ThreadingHTTPServer:
    """Serve /healthz on HOST:PORT in a daemon thread: 200 "ok", or 503 and what
    `problems` says is wrong. The server (to shut down)."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                code, body = 404, b"not found\n"
            elif wrong := problems():
                code, body = 503, "".join(f"{p}\n" for p in wrong).encode()
            else:
                code, body = 200, b"ok\n"
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
