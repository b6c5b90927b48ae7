"""The origin behind a capped link: s3rver in its own network namespace, behind a veth
pair whose origin-side end has a `tc tbf` rate limit on its egress (toward readers).

Why a namespace: the cap must come from outside Reservoir's code and bind every arm
alike, as a rate-limited object store would. The kernel's token bucket does that at
no CPU cost to the processes under test.

How origin bytes are counted: the transmit counter of the origin-side veth
(/sys/class/net/<dev>/statistics/tx_bytes, read inside the namespace): everything the
origin sent, bodies plus HTTP headers and TCP/IP framing. It is on the origin's side
(Reservoir's own counters could under-count; this cannot), and costs nothing, where a
counting proxy would take CPU from the arms on a 2-core machine. The framing makes it
read a few percent above the body bytes; one direct read of the file measures that.

Fallback (no netns: not root, or a kernel without veth/tbf): an asyncio TCP proxy
process with a token bucket (bench/rate_proxy.py) in front of s3rver, which counts the
bytes it forwards; the result says so.

Teardown: `stop` deletes the namespace (which deletes the veth pair) and is pushed on
the caller's ExitStack; a namespace left by a crashed run (named resbench-<pid> of a
dead pid) is removed at start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import harness

PREFIX = "resbench-"


@dataclass
class OriginLink:
    endpoint: str  # the S3 endpoint readers and workers use
    kind: str  # "netns+tbf" or "proxy"
    rate_mbit: float
    note: str
    _counter: Path | None = None  # the netns way: a tx_bytes file read through ip netns
    _netns: str = ""
    _proxy_stats: Path | None = None

    def origin_bytes(self) -> int:
        """Bytes the origin has sent so far (monotonic; take differences)."""
        if self._proxy_stats is not None:
            text = self._proxy_stats.read_text().strip()
            return int(text or 0)
        out = subprocess.run(
            ["ip", "netns", "exec", self._netns, "cat", str(self._counter)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout)


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def remove_stale() -> None:
    """Delete resbench-<pid> namespaces whose pid is gone (a crashed earlier run)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        match = re.match(rf"{PREFIX}(\d+)", line)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            with suppress(subprocess.CalledProcessError):
                _run("ip", "netns", "del", match.group(0))


def _setup_netns(stack: ExitStack, rate_mbit: float) -> tuple[str, str, str]:
    """A namespace with a capped veth; (netns, origin address, origin-side device)."""
    remove_stale()
    pid = os.getpid()
    netns, host_dev, ns_dev = f"{PREFIX}{pid}", f"rbh{pid}", f"rbn{pid}"
    # A private /30 picked from the pid, so that two runs at once do not collide.
    third, fourth = (pid >> 6) % 256, (pid % 64) * 4
    host_ip, ns_ip = f"10.213.{third}.{fourth + 1}", f"10.213.{third}.{fourth + 2}"
    _run("ip", "netns", "add", netns)
    stack.callback(_delete, netns, host_dev)
    _run("ip", "link", "add", host_dev, "type", "veth", "peer", "name", ns_dev)
    _run("ip", "link", "set", ns_dev, "netns", netns)
    _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_dev)
    _run("ip", "link", "set", host_dev, "up")
    inside = ["ip", "netns", "exec", netns]
    _run(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_dev)
    _run(*inside, "ip", "link", "set", ns_dev, "up")
    _run(*inside, "ip", "link", "set", "lo", "up")
    # burst: at least rate / HZ (250 here) and a few 64 KiB GSO packets; latency bounds
    # the queue, so a sender sees the cap as a slow link rather than as drops.
    burst = max(int(rate_mbit * 1e6 / 8 / 250), 256 * 1024)
    _run(*inside, "tc", "qdisc", "add", "dev", ns_dev, "root", "tbf", "rate", f"{rate_mbit}mbit",
         "burst", str(burst), "latency", "50ms")  # fmt: skip
    return netns, ns_ip, ns_dev


def _delete(netns: str, host_dev: str) -> None:
    with suppress(subprocess.CalledProcessError):
        _run("ip", "netns", "del", netns)
    with suppress(subprocess.CalledProcessError):
        _run("ip", "link", "del", host_dev)  # gone with the namespace, normally


def start(stack: ExitStack, work: Path, bucket: str, rate_mbit: float) -> OriginLink:
    """s3rver holding `bucket`, reachable only through a link capped at `rate_mbit`."""
    s3rver = harness.ROOT / "node_modules" / ".bin" / "s3rver"
    if not s3rver.exists():
        raise RuntimeError("s3rver is not installed: run `make setup` (npm install)")
    port = 9000
    argv = [str(s3rver), "-d", str(work / "s3rver"), "-p", str(port), "--silent",
            "--configure-bucket", bucket]  # fmt: skip
    try:
        netns, ns_ip, ns_dev = _setup_netns(stack, rate_mbit)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        note = f"no network namespace ({detail.decode().strip() or exc}): rate-limiting proxy"
        return _start_with_proxy(stack, work, bucket, rate_mbit, argv, note)
    log = work / "s3rver.log"
    process = harness.spawn(stack, ["ip", "netns", "exec", netns, *argv, "-a", ns_ip], log)
    endpoint = f"http://{ns_ip}:{port}"
    harness.wait_for(
        lambda: harness.answers(harness.s3_client(endpoint), bucket), process, "s3rver", log
    )
    counter = Path(f"/sys/class/net/{ns_dev}/statistics/tx_bytes")
    return OriginLink(endpoint, "netns+tbf", rate_mbit, "", counter, netns)


def _start_with_proxy(
    stack: ExitStack, work: Path, bucket: str, rate_mbit: float, argv: list[str], note: str
) -> OriginLink:
    log = work / "s3rver.log"
    port = harness.free_port()
    argv[argv.index("-p") + 1] = str(port)
    process = harness.spawn(stack, [*argv, "-a", harness.HOST], log)
    upstream = f"{harness.HOST}:{port}"
    harness.wait_for(
        lambda: harness.answers(harness.s3_client(f"http://{upstream}"), bucket),
        process, "s3rver", log,
    )  # fmt: skip
    proxy_port, stats = harness.free_port(), work / "proxy.bytes"
    script = Path(__file__).with_name("rate_proxy.py")
    proxy = harness.spawn(
        stack,
        [sys.executable, str(script), "--listen", f"{harness.HOST}:{proxy_port}",
         "--upstream", upstream, "--rate-mbit", str(rate_mbit), "--stats", str(stats)],
        work / "proxy.log",
    )  # fmt: skip
    endpoint = f"http://{harness.HOST}:{proxy_port}"
    harness.wait_for(
        lambda: harness.answers(harness.s3_client(endpoint), bucket),
        proxy,
        "proxy",
        work / "proxy.log",
    )
    return OriginLink(endpoint, "proxy", rate_mbit, note, _proxy_stats=stats)
