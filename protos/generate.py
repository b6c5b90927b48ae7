"""Generate the Python code for every .proto under protos/ into services/api/.

`make protos` runs this; `--check` regenerates into a scratch folder and fails when
the committed code differs (a test runs it, so stale generated code cannot land).
Output paths follow the proto packages (reservoir/v1/..., csi/v1/...), which
pyproject.toml maps onto import names (reservoir.v1, csi.v1), so the generated
imports resolve without edits.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "services" / "api"
HEADER = '"""Generated from protos/ by `make protos`; do not edit."""\n'


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every folder on the way down is a package too: `csi.v1` needs `csi`.
    packages = {p.parent for p in out.rglob("*_pb2.py")}
    packages |= {parent for p in packages for parent in p.parents if out in parent.parents}
    for package in packages:
        (package / "__init__.py").write_text(HEADER)


def differences(a: Path, b: Path) -> list[str]:
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names |= {
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    return sorted(
        str(n)
        for n in names
        if not ((a / n).exists() and (b / n).exists() and filecmp.cmp(a / n, b / n, shallow=False))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if services/api is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        if check:
            stale = differences(fresh, OUT)
            if stale:
                print("generated code is stale, run `make protos`:", *stale, sep="\n  ")
                return 1
            return 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(fresh, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
