"""The benchmark suite runs end to end (`bench/suite.py --quick`) and writes its report.

Its figures are not asserted (a noisy shared machine makes them vary); what a user of
the suite relies on is: it finishes, every arm ran, every reader's bytes matched the
file's sha256, origin bytes were counted, and it left no namespace, mount or process.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("resbench-")}


def test_quick_suite_writes_its_report(tmp_path: Path) -> None:
    before = netns_names()
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "suite.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    result = json.loads((tmp_path / "suite.json").read_text())
    assert result["sha256_ok"] is True
    assert result["storm_readers_checked"] == 3 * (1 + 4)  # three arms, N = 1 and 4
    assert result["machine"]["cores"] >= 1
    for n in ("1", "4"):
        assert set(result["storm"][n]) == {"direct", "library", "fuse"}
        for arm in result["storm"][n].values():
            assert arm["origin_ratio"]["median"] > 0
            assert arm["last_s"]["median"] >= arm["first_s"]["median"] > 0
        assert "speedup" in result["storm"][n]["library"]
    assert "library_1_vs_bare_1" in result["warm"]["ratios"]
    assert "fuse_second_4_vs_local_page_cache_4" in result["warm"]["ratios"]
    assert "stat_1_vs_health_1" in result["metadata"]["ratios"]

    table = (tmp_path / "suite.md").read_text()
    for heading in ("### Cold-start storm", "### Warm throughput", "### Metadata"):
        assert heading in table
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert netns_names() == before  # the namespace went with the run
    mounts = Path("/proc/mounts").read_text()
    assert "reservoir-bench-" not in mounts


def test_a_reader_with_wrong_bytes_fails_the_benchmark(tmp_path: Path) -> None:
    """The suite's readers check every byte: a file that differs from the origin's
    sha256 stops the run with a message, rather than producing figures."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import harness
    finally:
        sys.path.remove(str(ROOT / "bench"))
    data = tmp_path / "model.bin"
    data.write_bytes(b"not the model" * 1000)
    spec = {"kind": "path", "path": str(data), "size": data.stat().st_size}
    ok = harness.run_readers(spec, 2, hashlib.sha256(data.read_bytes()).hexdigest())
    assert len(ok.results) == 2 and ok.last >= ok.first > 0
    with pytest.raises(RuntimeError, match="WRONG BYTES"):
        harness.run_readers(spec, 2, hashlib.sha256(b"the model").hexdigest())
