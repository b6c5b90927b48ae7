"""The command line as a contract: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from reservoir.processes import free_port
from tests.fixtures.mesh import Mesh, run_cli, wait_until


@pytest.fixture
def master(mesh: Mesh, tmp_path: Path) -> str:
    mesh.master()
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"hello\n")
    (data / "sub" / "b.bin").write_bytes(b"\0" * 4096)
    created = run_cli("dataset", "create", "demo", f"--mount={data.as_uri()}", master=mesh.address)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created demo: 2 files, 4.0 KiB"
    return mesh.address


def assert_user_error(result, message: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reservoir: ") and message in lines[0], lines[0]


def test_dataset_get_reports_phase_files_bytes_and_cache(master: str) -> None:
    shown = run_cli("dataset", "get", "demo", master=master)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert fields["phase"].strip() == "Ready"
    assert fields["files"].strip() == "2"
    assert fields["total"].strip() == "4.0 KiB (4102 bytes)"
    assert fields["cached"].strip() == "0 B (0.0%)"
    as_json = json.loads(run_cli("--json", "dataset", "get", "demo", master=master).stdout)
    assert (as_json["total_bytes"], as_json["cached_bytes"], as_json["cached_percent"]) == (
        4102,
        0,
        0.0,
    )


def test_ls_and_stat(master: str) -> None:
    root = run_cli("ls", "demo", master=master)
    assert root.returncode == 0, root.stderr
    names = [line.split()[-1] for line in root.stdout.splitlines()]
    assert names == ["a.txt", "sub/"]
    listed = json.loads(run_cli("--json", "ls", "demo/sub", master=master).stdout)
    assert [(e["path"], e["size"], e["is_dir"]) for e in listed] == [("sub/b.bin", 4096, False)]
    stat = run_cli("stat", "demo/sub/b.bin", master=master)
    assert "size:     4096 (4.0 KiB)" in stat.stdout
    listed = json.loads(run_cli("dataset", "list", "--json", master=master).stdout)
    assert [d["name"] for d in listed] == ["demo"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset", "get", "missing"], "dataset 'missing' does not exist"),
        (["stat", "demo/nope"], "no such file or directory: demo/nope"),
        (["ls", "demo/../../etc"], "leaves the dataset's root"),
        (["dataset", "create", "Bad_Name", "--mount=file:///tmp"], "DNS-1123"),
        (["dataset", "create", "demo", "--mount=file:///tmp"], "already exists"),
        (["dataset", "create", "x", "--mount=gs://b"], "scheme"),
        (["dataset", "create", "x", "--mount=s3://b", "--option=colour=red"], "colour"),
        (["dataset", "delete", "missing"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(master: str, args: list[str], message: str) -> None:
    assert_user_error(run_cli(*args, master=master), message)


def test_an_unreachable_master_is_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    assert_user_error(
        run_cli("--master", address, "workers"), f"cannot reach the master at {address}"
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["dataset", "create", "x"],
        ["up", "--mem-quota", "lots"],
        ["dataset", "create", "x", "--mount=file:///tmp", "--option", "novalue"],
    ],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "usage: reservoir" in result.stderr


def test_load_wait_prints_its_final_line_once(master: str, mesh: Mesh) -> None:
    """Progress on stderr, the result on stdout: where both reach one place (a terminal,
    a log, `2>&1`), the final state shows once."""
    mesh.worker()
    with mesh.client() as client:
        wait_until(lambda: len(client.workers()) == 1, 30, "the worker to register")
    loaded = run_cli("load", "demo", "--wait", master=master)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.count("\n") == 1 and "Succeeded (2/2 blocks" in loaded.stdout
    final = loaded.stdout.strip()
    both = (loaded.stdout + loaded.stderr).splitlines()
    assert both.count(final) == 1, both
    assert all(": Running (" in line for line in loaded.stderr.splitlines()), loaded.stderr


def test_a_closed_pipe_ends_the_command_quietly(master: str) -> None:
    """`reservoir ... | head -1`: the reader goes away before the output is written. The
    command stops as Unix tools do (exit 0, or 141 as if killed by SIGPIPE), with no
    traceback; and it does so with a real `head` too."""
    for args in (["dataset", "get", "demo"], ["ls", "demo"], ["--json", "dataset", "list"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "reservoir", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "RESERVOIR_MASTER": master},
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before the command can write: every write hits EPIPE
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=60)
        assert code in (0, 141), (code, stderr)
        assert stderr == "", stderr
    piped = subprocess.run(
        f"{shlex.quote(sys.executable)} -m reservoir dataset get demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RESERVOIR_MASTER": master},
    )
    assert piped.stdout == "name:        demo\n"
    assert "Traceback" not in piped.stderr and piped.stderr == "", piped.stderr
