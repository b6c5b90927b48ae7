"""The wire contracts: lint-clean, and the committed generated code is current."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "protos/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes() -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    buf_path = str(buf) if buf.exists() else shutil.which("buf")
    assert buf_path, "buf is missing: `make setup` installs it (npm package @bufbuild/buf)"
    result = subprocess.run([buf_path, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_services_are_importable_under_their_proto_package() -> None:
    from reservoir.v1 import master_pb2, worker_pb2

    assert master_pb2.DESCRIPTOR.package == "reservoir.v1"
    assert "ReadBlock" in worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].methods_by_name
