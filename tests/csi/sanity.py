"""csi-sanity, the CSI conformance suite of kubernetes-csi/csi-test: where its binary
is, and what its report says.

The binary is found as CI provides it: `$CSI_SANITY` (a path), else `csi-sanity` in
`$KUBEBUILDER_ASSETS` (next to the envtest binaries), else `csi-sanity` on PATH. A
missing binary fails the test rather than skipping it: a conformance check that
silently does not run would look like one that passes.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

VERSION = "v5.3.1"
HOW_TO_GET = (
    f"csi-sanity {VERSION} is needed: `go install "
    f"github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@{VERSION}` (it lands in "
    "$(go env GOPATH)/bin: put that on PATH), or unpack the copy in the shared folder with "
    "`mkdir -p /work/k8s-bin && xz -dc /work/shared/csi-sanity/csi-sanity.xz > "
    "/work/k8s-bin/csi-sanity && chmod +x /work/k8s-bin/csi-sanity` and "
    "`export CSI_SANITY=/work/k8s-bin/csi-sanity`"
)
# Ginkgo's closing lines, without colour (--ginkgo.no-color):
#   Ran 13 of 92 Specs in 0.229 seconds
#   SUCCESS! -- 13 Passed | 0 Failed | 1 Pending | 78 Skipped
_SUMMARY = re.compile(
    r"^Ran (\d+) of (\d+) Specs? in .*\n"
    r"(?:SUCCESS!|FAIL!) -- (\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped",
    re.MULTILINE,
)


def find_csi_sanity() -> Path:
    """The csi-sanity to run; FileNotFoundError saying how to get one."""
    named = os.environ.get("CSI_SANITY", "")
    if named:  # asked for this one: never another in its place
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise FileNotFoundError(f"CSI_SANITY={named} is not an executable file. {HOW_TO_GET}")
        return Path(named)
    assets = os.environ.get("KUBEBUILDER_ASSETS", "")
    if assets:
        candidate = Path(assets) / "csi-sanity"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("csi-sanity")
    if on_path:
        return Path(on_path)
    where = f"not in KUBEBUILDER_ASSETS={assets}, " if assets else ""
    raise FileNotFoundError(
        f"csi-sanity not found ({where}not on PATH, CSI_SANITY unset). {HOW_TO_GET}"
    )


@dataclass(frozen=True)
class Summary:
    """Ginkgo's count of the specs: `total` = ran + pending + skipped."""

    ran: int
    total: int
    passed: int
    failed: int
    pending: int
    skipped: int


def parse_summary(output: str) -> Summary:
    """The counts from csi-sanity's output; ValueError if it printed none (it
    crashed, or could not reach the endpoint)."""
    found = _SUMMARY.search(output)
    if found is None:
        raise ValueError("csi-sanity printed no summary line")
    return Summary(*(int(n) for n in found.groups()))


def skip_pattern(spec: str) -> str:
    """A --ginkgo.skip regex (Go RE2) that matches the one spec whose full text is
    `spec`. Ginkgo matches against the suite's description, a space, then the
    spec's text, so the pattern is anchored at the end and at a word boundary."""
    return r"(^| )" + re.sub(r"([\\.+*?()\[\]{}|^$])", r"\\\1", spec) + "$"
