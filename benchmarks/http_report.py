"""What ``python -m benchmarks http`` reports: statistics per case, the Markdown table, the chart.

The statistics and cells are ``benchmarks.chart``'s (the S3 suite's), given this suite's cases
and metrics; here a case is where a download goes (``new``, ``prealloc``, ``devnull``, see
``benchmarks.peers.http_child.CASES``) and the server is nginx. Per (contestant, case) every
metric gets its median, min and max, and the interquartile range once there are four runs or
more. Ratios: asynctransfer's median over each other contestant's, and asynctransfer-nofsync's
over the external programs' (which do not fsync either).

The PNG has three panels (MB/s, client CPU s per GiB, peak RSS MiB), one group of bars per
case, one bar per contestant, whiskers from min to max. matplotlib is imported only by
:func:`write_chart`, with the Agg backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks import chart
from benchmarks.peers.http_child import CASES

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["markdown", "ratios", "summarize", "title", "write_chart"]

METRICS = (
    "mb_per_s",
    "wall_s",
    "cpu_s",
    "cpu_s_per_gib",
    "cpu_total_s",
    "peak_rss_mib",
    "baseline_rss_mib",
    "server_cpu_s",
    "server_cpu_s_per_gib",
)
RATIO_METRICS = ("mb_per_s", "cpu_s_per_gib", "peak_rss_mib")
OURS = ("asynctransfer", "asynctransfer-nofsync")


def summarize(runs: list[dict[str, Any]], contestants: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (case, contestant) that has checked runs: ``{metric: spread}`` and ``runs``."""
    return chart.summarize(runs, contestants, CASES, METRICS)


def ratios(
    summary: list[dict[str, Any]], contestants: Sequence[str]
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{ours: {peer: {case: {metric: ours median / peer median}}}}``: asynctransfer over
    every other contestant, asynctransfer-nofsync over the external programs."""
    by = {(r["contestant"], r["case"]): r for r in summary}
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for ours in OURS:
        if ours not in contestants:
            continue
        for peer in contestants:
            if peer in OURS[: OURS.index(ours) + 1]:
                continue
            for case in CASES:
                mine, theirs = by.get((ours, case)), by.get((peer, case))
                if mine is None or theirs is None:
                    continue
                out.setdefault(ours, {}).setdefault(peer, {})[case] = {
                    m: mine[m]["median"] / theirs[m]["median"]
                    for m in RATIO_METRICS
                    if m in mine and m in theirs and theirs[m]["median"] > 0
                }
    return out


def title(parameters: dict[str, Any]) -> str:
    return (
        f"HTTP GET of {chart.human_bytes(parameters['size'])} from nginx, parts {chart.human_bytes(parameters['part_size'])},"
        f" concurrency {parameters['concurrency']}, {parameters['repeat']} round(s)"
    )


def markdown(
    summary: list[dict[str, Any]],
    ratio_table: dict[str, dict[str, dict[str, dict[str, float]]]],
    parameters: dict[str, Any],
    outputs: list[dict[str, Any]],
    failures: list[str],
) -> str:
    lines = [
        f"## {title(parameters)}",
        "",
        (
            "Each cell: median (min-max) over the timed runs, with the interquartile range once"
            " there are 4 runs or more. MB/s = bytes / wall time of the download (10^6 B/s);"
            " client CPU = user+sys of the client over the download, per GiB (curl's and"
            " aria2c's own, from wait4); peak RSS = VmHWM of the client process (curl's and"
            " aria2c's sampled every 5 ms while they run); nginx CPU ="
            " nginx's user+sys (master and worker) over the whole child run, per GiB."
        ),
        "",
        "| contestant | case | MB/s | client CPU s/GiB | peak RSS MiB | nginx CPU s/GiB | runs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {row['contestant']} | {CASES[row['case']]} | {chart.cell(row.get('mb_per_s'), 0)} | "
        f"{chart.cell(row.get('cpu_s_per_gib'), 2)} | {chart.cell(row.get('peak_rss_mib'), 0)} | "
        f"{chart.cell(row.get('server_cpu_s_per_gib'), 2)} | {row['runs']} |"
        for row in summary
    )
    if ratio_table:
        lines += [
            "",
            (
                "Ratios of medians, ours ÷ peer (MB/s above 1: ours is faster; CPU and RSS below"
                " 1: ours uses less):"
            ),
            "",
            "| ours | peer | case | MB/s | client CPU s/GiB | peak RSS |",
            "|---|---|---|---:|---:|---:|",
        ]
        for ours, peers in ratio_table.items():
            for peer, cases in peers.items():
                for case, r in cases.items():
                    cells = [f"x{r[m]:.2f}" if m in r else "-" for m in RATIO_METRICS]
                    lines.append(f"| {ours} | {peer} | {CASES[case]} | {' | '.join(cells)} |")
    ok = sum(1 for r in outputs if r["check"]["ok"])
    hashed = sum(1 for r in outputs if r["check"]["ok"] and r["check"]["got"]["xxh3_128"])
    lines += [
        "",
        (
            f"Byte checks: {ok} of {len(outputs)} outputs as expected (warm-ups included):"
            f" {hashed} by size + xxh3-128 against the source, {ok - hashed} by size only"
            " (curl to /dev/null: its size_download)."
        ),
    ]
    if failures:
        lines += ["", f"FAILED ({len(failures)}):", ""]
        lines += [f"- {f.splitlines()[0]}" for f in failures]
    return "\n".join(lines) + "\n"


def write_chart(
    summary: list[dict[str, Any]], contestants: Sequence[str], path: Path, heading: str
) -> None:
    """Three panels (MB/s, client CPU s/GiB, peak RSS MiB), bars per contestant grouped by
    case, min-max whiskers; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["contestant"], r["case"]): r for r in summary}
    cases = [c for c in CASES if any(r["case"] == c for r in summary)]
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.5), layout="constrained")
    width = 0.8 / max(1, len(contestants))
    panels = (
        ("mb_per_s", "throughput, MB/s (higher is better)"),
        ("cpu_s_per_gib", "client CPU s per GiB (lower is better)"),
        ("peak_rss_mib", "client peak RSS, MiB (lower is better)"),
    )
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for i, contestant in enumerate(contestants):
            xs, heights, low, high = [], [], [], []
            for j, case in enumerate(cases):
                row = by.get((contestant, case))
                if row is None or metric not in row:
                    continue
                s = row[metric]
                xs.append(j + (i - (len(contestants) - 1) / 2) * width)
                heights.append(s["median"])
                low.append(s["median"] - s["min"])
                high.append(s["max"] - s["median"])
            ax.bar(
                xs,
                heights,
                width,
                yerr=[low, high],
                capsize=3,
                label=contestant,
                edgecolor="black" if contestant in OURS else "none",
                linewidth=1.2,
            )
        ax.set_title(label)
        ax.set_xticks(range(len(cases)), [CASES[c] for c in cases])
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(heading + "  (bars: median, whiskers: min-max)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
