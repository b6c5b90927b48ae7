"""The suite's report: Markdown tables with targets, and the plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reservoir.units import format_size

ORIGIN_TARGET = 1.05
SPEEDUP_TARGET = 0.75  # x N, for N up to SPEEDUP_MAX_N
SPEEDUP_MAX_N = 16
WARM_TARGETS = {  # read, readers -> (baseline, target ratio)
    "library": ("bare", 0.80),
    "fuse_first": ("library", 0.70),
    "fuse_second": ("local_page_cache", 0.25),
}
NAMES = {
    "library": "client library",
    "bare": "bare grpcio stream",
    "fuse_first": "FUSE, first read (page cache dropped)",
    "fuse_second": "FUSE, second read (kernel page cache)",
    "local_page_cache": "local copy, page cache",
    "local_disk": "local copy, from disk",
}

SHORT = {
    "library": "library",
    "bare": "bare grpcio",
    "fuse_first": "FUSE 1st",
    "fuse_second": "FUSE 2nd\n(page cache)",
    "local_page_cache": "local copy\n(page cache)",
    "local_disk": "local copy\n(disk)",
}


def show(f: dict[str, Any], digits: int = 2) -> str:
    spread = f" ({f['min']:.{digits}f}-{f['max']:.{digits}f})" if len(f["samples"]) > 1 else ""
    return f"{f['median']:.{digits}f}{spread}"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    origin = r["origin"]
    link = "netns veth + tc tbf" if origin["kind"] == "netns+tbf" else "rate-limiting proxy"
    note = f" ({origin['note']})" if origin["note"] else ""
    lines = [
        f"Reservoir benchmark suite: {r['machine']['cores']} cores, file "
        f"{format_size(s['size'])}, origin s3rver behind a {s['cap_mbit']:g} Mbit/s link "
        f"({link}{note}), {s['workers']} workers, {s['runs']} run(s) "
        f"(storm runs per N: {', '.join(f'{n}: {k}' for n, k in s['storm_runs'].items())}), "
        f"{r['duration_s']:.0f} s in all.",
        "Figures: median (min-max) over the runs; ratios between medians. Every reader's "
        f"bytes were checked against the file's sha256 ({r['storm_readers_checked']} storm "
        "readers, and every warm read).",
        "",
        "### Cold-start storm",
        "",
        "N readers released together, each reads the whole file. Seconds until the first "
        "and the last reader hold it; origin bytes = what the origin's veth sent "
        "(bodies + headers + framing) / file size; delivered = N x file size / time to the "
        "last reader; speedup = direct / Reservoir, time to the last reader.",
        "",
        "| N | arm | first reader s | last reader s | delivered GB/s | origin bytes / file "
        "| speedup | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, arms in r["storm"].items():
        n_int = int(n)
        for arm, a in arms.items():
            target = ""
            if arm != "direct":
                origin_ok = a["origin_ratio"]["max"] <= ORIGIN_TARGET
                target = f"origin <= {ORIGIN_TARGET}: {verdict(origin_ok)}"
                if n_int <= SPEEDUP_MAX_N:
                    want = SPEEDUP_TARGET * n_int
                    target += f"; speedup >= {want:g}: {verdict(a['speedup'] >= want)}"
                else:
                    target += "; speedup: no target (bounds in README)"
            speedup = f"{a['speedup']:.1f}x" if "speedup" in a else "1 (baseline)"
            lines.append(
                f"| {n} | {arm} | {show(a['first_s'])} | {show(a['last_s'])} | "
                f"{show(a['delivered_gbps'])} | {show(a['origin_ratio'], 3)} | {speedup} | "
                f"{target} |"
            )
    w = r["warm"]
    lines += [
        "",
        "### Warm throughput",
        "",
        "GB/s (10^9 B/s) = readers x file size / time until the last reader is done; "
        "every block in the workers' memory.",
        "",
        "| read | readers | GB/s | baseline | baseline GB/s | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in (1, 4):
        for read, (base, want) in WARM_TARGETS.items():
            ratio = w["ratios"][f"{read}_{n}_vs_{base}_{n}"]
            lines.append(
                f"| {NAMES[read]} | {n} | {show(w[f'{read}_{n}'])} | {NAMES[base]} | "
                f"{show(w[f'{base}_{n}'])} | {ratio:.0%} | "
                f">= {want:.0%}: {verdict(ratio >= want)} |"
            )
        ratio = w["ratios"][f"fuse_first_{n}_vs_local_disk_{n}"]
        lines.append(
            f"| {NAMES['fuse_first']} | {n} | {show(w[f'fuse_first_{n}'])} | "
            f"{NAMES['local_disk']} | {show(w[f'local_disk_{n}'])} | {ratio:.0%} | |"
        )
        ratio = w["ratios"][f"fuse_first_{n}_vs_local_page_cache_{n}"]
        lines.append(
            f"| {NAMES['fuse_first']} | {n} | {show(w[f'fuse_first_{n}'])} | "
            f"{NAMES['local_page_cache']} | {show(w[f'local_page_cache_{n}'])} | {ratio:.0%} | |"
        )
    if "1" in r["storm"]:
        one = r["storm"]["1"]
        cold, direct = one["fuse"]["delivered_gbps"], one["direct"]["delivered_gbps"]
        lines += [
            "",
            f"Cold sequential read through FUSE (the storm's fuse arm at N = 1): "
            f"{show(cold, 3)} GB/s, {cold['median'] / direct['median']:.0%} of a direct read "
            f"from the same capped origin ({show(direct, 3)}); the local copy from disk: "
            f"{show(w['local_disk_1'])} GB/s.",
        ]
    m = r["metadata"]
    lines += [
        "",
        "### Metadata",
        "",
        f"Calls per second to the master, {m['files']} files in the dataset (listed into "
        f"the master in {m['dataset_create_s']:.2f} s); baseline: grpc.health.v1 Check "
        "on the same master.",
        "",
        "| call | client processes | calls/s | health Check calls/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for c in (1, 4):
        for kind, what in (("stat", "stat (random file)"), ("ls", "ls (random directory)")):
            lines.append(
                f"| {what} | {c} | {show(m[f'{kind}_{c}'], 0)} | {show(m[f'health_{c}'], 0)} | "
                f"{m['ratios'][f'{kind}_{c}_vs_health_{c}']:.0%} |"
            )
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ns = [int(n) for n in r["storm"]]
    for arm, style in (("direct", "o-"), ("library", "s-"), ("fuse", "^-")):
        medians = [r["storm"][str(n)][arm]["last_s"]["median"] for n in ns]
        lows = [
            m - r["storm"][str(n)][arm]["last_s"]["min"] for n, m in zip(ns, medians, strict=True)
        ]
        highs = [
            r["storm"][str(n)][arm]["last_s"]["max"] - m for n, m in zip(ns, medians, strict=True)
        ]
        left.errorbar(ns, medians, yerr=[lows, highs], fmt=style, capsize=3, label=arm)
    s = r["settings"]
    title = f"Cold-start storm: {format_size(s['size'])} at {s['cap_mbit']:g} Mbit/s"
    left.set(xscale="log", yscale="log", xlabel="readers N", title=title)
    left.set_ylabel("seconds until the last reader holds the file")
    left.set_xticks(ns, [str(n) for n in ns])
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    reads = ["library", "bare", "fuse_first", "fuse_second", "local_page_cache", "local_disk"]
    width = 0.4
    for i, n in enumerate((1, 4)):
        values = [r["warm"][f"{k}_{n}"]["median"] for k in reads]
        xs = [x + (i - 0.5) * width for x in range(len(reads))]
        right.bar(xs, values, width, label=f"{n} reader{'s' if n > 1 else ''}")
    right.set_xticks(range(len(reads)), [SHORT[k] for k in reads], fontsize=8)
    right.set(yscale="log", ylabel="GB/s", title=f"Warm reads ({r['machine']['cores']} cores)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
