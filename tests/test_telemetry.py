"""Every gRPC call is traced when OTEL_TRACES_EXPORTER asks for it."""

from __future__ import annotations

from tests.fixtures.mesh import Mesh, run_cli


def test_console_exporter_prints_server_spans(mesh: Mesh) -> None:
    master = mesh.master(env={"OTEL_TRACES_EXPORTER": "console"})
    assert run_cli("dataset", "list", master=master.address).returncode == 0
    master.stop()  # the batch processor flushes at exit
    log = master.output()
    assert '"name": "/reservoir.v1.MasterService/ListDatasets"' in log
    assert '"service.name": "reservoir-master"' in log
    assert '"kind": "SpanKind.SERVER"' in log


def test_client_spans_carry_the_trace_to_the_server(mesh: Mesh) -> None:
    master = mesh.master(env={"OTEL_TRACES_EXPORTER": "console"})
    shown = run_cli("workers", master=master.address, env={"OTEL_TRACES_EXPORTER": "console"})
    master.stop()
    assert '"kind": "SpanKind.CLIENT"' in shown.stdout + shown.stderr
    client_trace = _trace_ids(shown.stdout + shown.stderr)
    assert client_trace & _trace_ids(master.output()), "server span not in the client's trace"


def test_tracing_is_off_by_default(mesh: Mesh) -> None:
    master = mesh.master()
    assert run_cli("dataset", "list", master=master.address).returncode == 0
    master.stop()
    assert '"trace_id"' not in master.output()


def _trace_ids(text: str) -> set[str]:
    import re

    return set(re.findall(r'"trace_id": "(0x[0-9a-f]+)"', text))
