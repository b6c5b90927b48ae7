"""Type-check the `reservoir` package with mypy --strict (`make lint`, and a test).

The package's import names come from `package-dir` in pyproject.toml (services/ is
`reservoir`, services/api/reservoir/v1 is `reservoir.v1`, ...), which the editable
install resolves with an import hook that static tools cannot follow. So this lays
the packages out under their import names in a scratch folder, as symbolic links to
the sources (mypy reports the real paths), and checks them there. Generated code is
followed for its types (its .pyi) but not reported on: its fix is in protos/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def link_tree(into: Path) -> None:
    """Every package of `package-dir` at its import path under `into`. A package's
    own directory is linked whole, except where another mapping puts a subpackage
    inside it (reservoir.v1 inside reservoir): then its entries are linked one by one."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    for name in sorted(mapping, key=len):
        target = into.joinpath(*name.split("."))
        if target.exists():
            continue  # inside a package linked whole, where it already is
        source = ROOT / mapping[name]
        nested = [n for n in mapping if n.startswith(f"{name}.")]
        if nested and not all((source / n[len(name) + 1 :]).is_dir() for n in nested):
            target.mkdir(parents=True)
            homes = [ROOT / mapping[n] for n in nested]
            for entry in source.iterdir():
                if not any(entry in home.parents for home in homes):  # services/api
                    (target / entry.name).symlink_to(entry)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="reservoir-typecheck-") as scratch:
        link_tree(Path(scratch))
        command = [
            sys.executable,
            "-m",
            "mypy",
            f"--config-file={ROOT / 'pyproject.toml'}",
            "-p",
            "reservoir",
        ]
        return subprocess.call(command, cwd=scratch, env={**os.environ, "MYPYPATH": scratch})


if __name__ == "__main__":
    sys.exit(main())
