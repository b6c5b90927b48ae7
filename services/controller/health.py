"""`/healthz` for the controller's liveness probe: 200 while its work loop turns.

The loop wakes at least every half second whether or not there is work, so a loop
that has not turned for `STALE_S` is stuck (a hung call, a dead thread): kubelet
restarts the pod. Both replicas answer 200; only the Lease decides who acts.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A master call may legitimately take minutes (listing a large bucket on create).
STALE_S = 900.0


class Heartbeat:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.last < STALE_S


def serve_health(listen: str, heartbeat: Heartbeat) -> ThreadingHTTPServer:
    """Serve /healthz on HOST:PORT in a daemon thread; the server (to shut down)."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/healthz" and heartbeat.healthy()
            code = 200 if ok else (503 if self.path == "/healthz" else 404)
            body = b"ok\n" if ok else b"stuck\n" if code == 503 else b"not found\n"
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
