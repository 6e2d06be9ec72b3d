"""What ``python -m benchmarks many`` reports: per-run records, statistics, ratios, the targets,
the Markdown table and the chart.

A *case* is a tree and a direction: ``small-upload``, ``small-download``, ``small-tenth-...``,
``mix-...``. Per (contestant, case) every metric gets its median, min and max (and the
interquartile range from four runs on), by ``benchmarks.chart.summarize``. Ratios are
asynctransfer's median over each other contestant's (and asynctransfer-nofsync's over the
peers', when it ran). The targets, from the issue: asynctransfer's objects/s at least 3x
aioboto3's and at least obstore's, on ``small`` and ``mix``, both directions; and its peak RSS
flat in the number of files: at ``--files`` files at most ``RSS_FLAT`` times its peak at a
tenth as many, in each direction.

The PNG has four panels (objects/s, MB/s, client CPU s, client peak RSS MiB), one group of bars
per case, one bar per contestant (median), whiskers from min to max. matplotlib is imported
only by :func:`write_chart`, with the Agg backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks import chart

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from benchmarks.many import Tree
    from benchmarks.measure import Measurement

__all__ = [
    "CASES",
    "markdown",
    "ratios",
    "record",
    "summarize",
    "targets",
    "title",
    "write_chart",
]

TREES = ("small", "small-tenth", "mix")
DIRECTIONS = {"upload": "up", "download": "down"}
CASES = tuple(f"{tree}-{direction}" for tree in TREES for direction in DIRECTIONS)
METRICS = (
    "objects_per_s",
    "mb_per_s",
    "wall_s",
    "cpu_s",
    "cpu_ms_per_object",
    "cpu_s_per_gib",
    "cpu_total_s",
    "peak_rss_mib",
    "baseline_rss_mib",
    "server_cpu_s",
    "server_cpu_ms_per_object",
)
RATIO_METRICS = ("objects_per_s", "mb_per_s", "cpu_s", "peak_rss_mib")
OURS = ("asynctransfer", "asynctransfer-nofsync")
TARGET_PEERS = {"aioboto3": 3.0, "obstore": 1.0}
"""asynctransfer's objects/s over each of these peers' must be at least this."""
TARGET_TREES = ("small", "mix")
RSS_FLAT = 1.2
"""Peak RSS at ``--files`` files over the peak at a tenth as many: at most this is flat."""


def record(
    m: Measurement,
    contestant: str,
    tree: Tree,
    direction: str,
    repeat: int | None,
    server_cpu: float,
    check: dict[str, Any],
) -> dict[str, Any]:
    """One run as the JSON keeps it: the child's measurement plus the per-object figures."""
    return {
        **m.to_json(),
        "contestant": contestant,
        "case": f"{tree.name}-{direction}",
        "tree": tree.name,
        "files": tree.count,
        "repeat": repeat,
        "objects_per_s": tree.count / m.wall_s if m.wall_s > 0 else 0.0,
        "cpu_ms_per_object": 1000 * m.cpu_s / tree.count,
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_object": 1000 * server_cpu / tree.count,
        "check": check,
    }


def summarize(runs: list[dict[str, Any]], contestants: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (case, contestant) that has checked runs: ``{metric: spread}`` and ``runs``."""
    return chart.summarize(runs, contestants, CASES, METRICS)


def ratios(
    summary: list[dict[str, Any]], contestants: Sequence[str]
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{ours: {peer: {case: {metric: ours median / peer median}}}}``."""
    by = {(r["contestant"], r["case"]): r for r in summary}
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for ours in (c for c in OURS if c in contestants):
        for peer in (c for c in contestants if c not in OURS):
            for case in CASES:
                mine, theirs = by.get((ours, case)), by.get((peer, case))
                if mine is not None and theirs is not None:
                    out.setdefault(ours, {}).setdefault(peer, {})[case] = {
                        m: mine[m]["median"] / theirs[m]["median"]
                        for m in RATIO_METRICS
                        if m in mine and m in theirs and theirs[m]["median"] > 0
                    }
    return out


def targets(
    summary: list[dict[str, Any]], ratio_table: dict[str, dict[str, dict[str, dict[str, float]]]]
) -> list[dict[str, Any]]:
    """The issue's targets for asynctransfer, each with its value and ``met`` (None: no data)."""
    out: list[dict[str, Any]] = []
    ours = ratio_table.get("asynctransfer", {})
    for tree in TARGET_TREES:
        for direction in DIRECTIONS:
            case = f"{tree}-{direction}"
            for peer, threshold in TARGET_PEERS.items():
                value = ours.get(peer, {}).get(case, {}).get("objects_per_s")
                out.append(
                    {
                        "target": f"objects/s >= {threshold:g}x {peer}",
                        "case": case,
                        "value": value,
                        "threshold": threshold,
                        "met": None if value is None else value >= threshold,
                    }
                )
    by = {(r["contestant"], r["case"]): r for r in summary}
    for direction in DIRECTIONS:
        many = by.get(("asynctransfer", f"small-{direction}"), {}).get("peak_rss_mib")
        few = by.get(("asynctransfer", f"small-tenth-{direction}"), {}).get("peak_rss_mib")
        value = None if many is None or few is None else many["median"] / few["median"]
        out.append(
            {
                "target": f"peak RSS flat in the number of files (<= {RSS_FLAT:g}x)",
                "case": f"small-{direction}",
                "value": value,
                "threshold": RSS_FLAT,
                "peak_rss_mib": None if many is None else many["median"],
                "peak_rss_mib_tenth": None if few is None else few["median"],
                "met": None if value is None else value <= RSS_FLAT,
            }
        )
    return out


def case_label(case: str, parameters: dict[str, Any]) -> str:
    tree, _, direction = case.rpartition("-")
    small = chart.human_bytes(parameters["small_size"])
    if tree == "mix":  # its tree's files: the big one and the small ones
        what = f"{chart.human_bytes(parameters['big_size'])} + {parameters['mix_files']} x {small}"
    else:
        what = f"{parameters['trees'].get(tree, {}).get('files', '?')} x {small}"
    return f"{tree} {DIRECTIONS[direction]} ({what})"


def title(parameters: dict[str, Any]) -> str:
    small = chart.human_bytes(parameters["small_size"])
    big = chart.human_bytes(parameters["big_size"])
    return "; ".join(
        [
            f"S3 trees: {parameters['files']} x {small}",
            f"{big} + {parameters['mix_files']} x {small}",
            f"concurrency {parameters['concurrency']}, {parameters['repeat']} round(s)",
            str(parameters["server"]),
        ]
    )


def _verdict(met: bool | None) -> str:
    return "no data" if met is None else ("MET" if met else "NOT MET")


def markdown(
    summary: list[dict[str, Any]],
    ratio_table: dict[str, dict[str, dict[str, dict[str, float]]]],
    goals: list[dict[str, Any]],
    parameters: dict[str, Any],
    outputs: list[dict[str, Any]],
    failures: list[str],
) -> str:
    cell = chart.cell
    lines = [
        f"## {title(parameters)}",
        "",
        (
            "Each cell: median (min-max) over the checked timed runs, with the interquartile"
            " range once there are 4 runs or more. objects/s and MB/s (10^6 B/s) over the wall"
            " time of the copy call (the walk or the listing included); client CPU = user+sys"
            " of the client process over that call (all threads); peak RSS = the client"
            " process's VmHWM; server CPU = the server's user+sys over the whole child run,"
            " per object."
        ),
        "",
        (
            "| contestant | case | objects/s | MB/s | client CPU s | peak RSS MiB"
            " | server CPU ms/object | runs |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {row['contestant']} | {case_label(row['case'], parameters)}"
        f" | {cell(row.get('objects_per_s'), 0)} | {cell(row.get('mb_per_s'), 0)}"
        f" | {cell(row.get('cpu_s'), 2)} | {cell(row.get('peak_rss_mib'), 0)}"
        f" | {cell(row.get('server_cpu_ms_per_object'), 3)} | {row['runs']} |"
        for row in summary
    )
    if ratio_table:
        lines += [
            "",
            (
                "Ratios of medians, ours ÷ peer (objects/s and MB/s above 1: ours is faster;"
                " CPU and RSS below 1: ours uses less):"
            ),
            "",
            "| ours | peer | case | objects/s | MB/s | client CPU s | peak RSS |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for ours, peers in ratio_table.items():
            for peer, cases in peers.items():
                for case, r in cases.items():
                    cells = [f"x{r[m]:.2f}" if m in r else "-" for m in RATIO_METRICS]
                    label = case_label(case, parameters)
                    lines.append(f"| {ours} | {peer} | {label} | {' | '.join(cells)} |")
    lines += ["", "Targets (asynctransfer, medians):", ""]
    for goal in goals:
        value = "-" if goal["value"] is None else f"x{goal['value']:.2f}"
        if "peak_rss_mib" in goal and goal["value"] is not None:
            value += f" ({goal['peak_rss_mib']:.0f} vs {goal['peak_rss_mib_tenth']:.0f} MiB)"
        lines.append(
            f"- {goal['target']}, {case_label(goal['case'], parameters)}: {value}:"
            f" **{_verdict(goal['met'])}**"
        )
    ok = sum(1 for r in outputs if r["check"]["ok"])
    lines += [
        "",
        (
            f"Checks: {ok} of {len(outputs)} outputs identical to the source tree (uploads:"
            " keys, sizes and ETag = MD5 or the object read back; downloads: relative paths,"
            " sizes and xxh3-128; warm-ups included)."
        ),
    ]
    if failures:
        lines += ["", f"FAILED ({len(failures)}):", ""]
        lines += [f"- {f.splitlines()[0]}" for f in failures]
    return "\n".join(lines) + "\n"


def write_chart(
    summary: list[dict[str, Any]], contestants: Sequence[str], path: Path, heading: str
) -> None:
    """Four panels (objects/s, MB/s, client CPU s, peak RSS MiB), bars per contestant grouped by
    case, min-max whiskers; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["contestant"], r["case"]): r for r in summary}
    cases = [c for c in CASES if any(r["case"] == c for r in summary)]
    fig, grid = plt.subplots(2, 2, figsize=(18, 10), layout="constrained")
    panels = {
        "objects_per_s": "objects/s (higher is better)",
        "mb_per_s": "MB/s (higher is better)",
        "cpu_s": "client CPU s (lower is better)",
        "peak_rss_mib": "client peak RSS, MiB (lower is better)",
    }
    width = 0.8 / max(1, len(contestants))
    for ax, (metric, label) in zip(grid.flat, panels.items(), strict=True):
        for i, contestant in enumerate(contestants):
            offset = (i - (len(contestants) - 1) / 2) * width
            bars = [
                (j + offset, by[contestant, case][metric])
                for j, case in enumerate(cases)
                if metric in by.get((contestant, case), {})
            ]
            ax.bar(
                [x for x, _ in bars],
                [s["median"] for _, s in bars],
                width,
                yerr=[
                    [s["median"] - s["min"] for _, s in bars],
                    [s["max"] - s["median"] for _, s in bars],
                ],
                capsize=3,
                label=contestant,
                edgecolor="black" if contestant in OURS else "none",
                linewidth=1.2,
            )
        ax.set_title(label)
        ax.set_xticks(
            range(len(cases)), [c.replace("-up", "\nup").replace("-down", "\ndown") for c in cases]
        )
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(heading + "  (bars: median, whiskers: min-max)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
