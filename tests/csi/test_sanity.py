"""The node plugin against csi-sanity v5.3.1, the reference CSI conformance suite: a
real `reservoir csi` process on its socket, over a real mesh with dataset "ds".

Of the suite's 92 specs, 13 run and pass (Identity; Node capabilities, info, and the
argument checks of publish, unpublish and stats). The suite itself skips 71, those
behind a capability the plugin does not advertise (CONTROLLER_SERVICE and every
Controller RPC, STAGE_UNSTAGE_VOLUME, EXPAND_VOLUME, snapshots, group snapshots), and
leaves one pending. SKIPPED below names the 7 skipped here, each with why it cannot
apply to a read-only, node-only driver; every other spec runs and must pass.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.csi.conftest import Plugin
from tests.csi.sanity import find_csi_sanity, parse_summary, skip_pattern

# Without a Controller service csi-sanity cannot create a volume: CreateVolume answers
# UNIMPLEMENTED, so a spec that needs one fails before it reaches the node.
_NEEDS_CREATE = (
    "it makes its volume with CreateVolume, which a node-only driver does not serve "
    "(volumes are datasets that already exist)"
)
_NO_CONTROLLER = (
    "a Controller RPC: the plugin advertises no CONTROLLER_SERVICE, so a CO never "
    "calls it, and it answers UNIMPLEMENTED"
)
SKIPPED: dict[str, str] = {
    "Controller Service [Controller Server] ControllerGetCapabilities "
    "should return appropriate capabilities": (
        "the plugin has no Controller service; its stub answers one capability, "
        "UNKNOWN, because every other spec refuses an empty list (it reaches Go as "
        "nil), and this spec refuses UNKNOWN"
    ),
    "Controller Service [Controller Server] ValidateVolumeCapabilities "
    "should fail when no volume id is provided": _NO_CONTROLLER,
    "Controller Service [Controller Server] ValidateVolumeCapabilities "
    "should fail when the requested volume does not exist": _NO_CONTROLLER,
    "Controller Service [Controller Server] ValidateVolumeCapabilities "
    "should fail when no volume capabilities are provided": (
        f"{_NO_CONTROLLER}; and {_NEEDS_CREATE}"
    ),
    "Controller Service [Controller Server] ValidateVolumeCapabilities "
    "should return appropriate values (no optional values added)": (
        f"{_NO_CONTROLLER}; and {_NEEDS_CREATE}"
    ),
    "Node Service NodeUnpublishVolume should remove target path": (
        f"{_NEEDS_CREATE}, then publishes it SINGLE_NODE_WRITER with readonly=false, "
        "which a read-only driver refuses (test_publish.py and test_rules.py check "
        "that unpublishing removes the target)"
    ),
    "Node Service NodeGetVolumeStats should fail when volume does not exist on the "
    "specified path": (
        f"{_NEEDS_CREATE}, then publishes it writable (test_rules.py::"
        "test_stats_at_a_relative_path_is_not_found makes the same call on a "
        "published volume)"
    ),
}
# A bound on a hung run, not a speed requirement: the suite takes about a second.
RUN_TIMEOUT = 300.0
# What a provisioned volume's context would be. csi-sanity hands this file only to
# CreateVolume, so with no Controller it reaches no call today; it is given so that a
# plugin that ever serves CreateVolume is run against dataset "ds".
VOLUME_PARAMETERS = "dataset: ds\n"


def test_csi_sanity_passes(plugin: Plugin, targets: Path) -> None:
    try:
        csi_sanity = find_csi_sanity()
    except FileNotFoundError as exc:  # a failure, not a skip: see tests/csi/sanity.py
        pytest.fail(str(exc), pytrace=False)
    parameters = targets / "volume-parameters.yaml"
    parameters.write_text(VOLUME_PARAMETERS)
    report = targets / "report.json"
    command = [
        str(csi_sanity),
        f"--csi.endpoint=unix://{plugin.socket}",
        f"--csi.mountdir={targets / 'mount'}",
        f"--csi.stagingdir={targets / 'staging'}",
        f"--csi.testvolumeparameters={parameters}",
        "--ginkgo.no-color",
        f"--ginkgo.json-report={report}",
        *(f"--ginkgo.skip={skip_pattern(spec)}" for spec in SKIPPED),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT
    )
    output = f"{done.stdout}\n{done.stderr}\nplugin log:\n{plugin.output()}"
    specs = _spec_states(report) if report.exists() else {}
    failed = [
        f"  {text}: {state}: {why}"
        for text, (state, why) in specs.items()
        if state not in ("passed", "skipped", "pending")  # failed, panicked, timedout...
    ]
    assert done.returncode == 0 and not failed, (
        "csi-sanity failed:\n" + "\n".join(failed) + f"\n{output[-8000:]}"
    )
    summary = parse_summary(done.stdout)
    assert summary.passed > 0 and summary.failed == 0, summary
    assert summary.passed == summary.ran, summary
    # Each skip names a spec of this csi-sanity version (a renamed spec would leave
    # its skip matching nothing), and that spec did not run.
    for spec in SKIPPED:
        assert spec in specs, f"csi-sanity has no spec {spec!r}: update SKIPPED"
        assert specs[spec][0] == "skipped", (spec, specs[spec])
    assert plugin.all_targets() == [], "the run left volumes published"


def _spec_states(report: Path) -> dict[str, tuple[str, str]]:
    """Spec text -> (state, failure message) from Ginkgo's JSON report."""
    states: dict[str, tuple[str, str]] = {}
    for suite in json.loads(report.read_text()):
        for spec in suite["SpecReports"]:
            if spec["LeafNodeType"] != "It":
                continue  # suite-level setup nodes
            text = " ".join([*spec["ContainerHierarchyTexts"], spec["LeafNodeText"]])
            failure = (spec.get("Failure") or {}).get("Message", "")
            states[text] = (spec["State"], failure)
    return states
