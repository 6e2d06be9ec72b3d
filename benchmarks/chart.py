"""What ``python -m benchmarks s3`` reports: statistics per case, the Markdown table, the chart.

A *case* is a direction plus, for downloads, the destination: ``upload``, ``download-new`` (the
file does not exist yet) and ``download-prealloc`` (it exists with the full size). Per
(contestant, case) every metric gets its median, min and max, and the interquartile range once
there are four runs or more. Ratios are asynctransfer's median over each peer's.

The PNG has two panels (MB/s; client CPU seconds per GiB), one group of bars per case, one bar
per contestant, whiskers from min to max. matplotlib is imported only by :func:`write_chart`,
with the Agg backend (no display needed).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

__all__ = ["CASES", "case_id", "markdown", "ratios", "summarize", "title", "write_chart"]

CASES: dict[str, str] = {
    "upload": "upload",
    "download-new": "download → new file",
    "download-prealloc": "download → preallocated file",
}
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


def case_id(direction: str, dest: str | None) -> str:
    return direction if dest is None else f"{direction}-{dest}"


def _spread(values: list[float]) -> dict[str, float]:
    out = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out.update(q1=q1, q3=q3)
    return out


def summarize(
    runs: list[dict[str, Any]],
    contestants: Sequence[str],
    cases: Iterable[str] = CASES,
    metrics: Iterable[str] = METRICS,
) -> list[dict[str, Any]]:
    """One row per (case, contestant) that has checked runs: ``{metric: spread}`` and ``runs``.
    ``cases`` and ``metrics``: the S3 suite's by default."""
    rows: list[dict[str, Any]] = []
    for case in cases:
        for contestant in contestants:
            mine = [
                r
                for r in runs
                if r["case"] == case and r["contestant"] == contestant and r["check"]["ok"]
            ]
            if not mine:
                continue
            row: dict[str, Any] = {"contestant": contestant, "case": case, "runs": len(mine)}
            for metric in metrics:
                values = [float(r[metric]) for r in mine if r.get(metric) is not None]
                if values:
                    row[metric] = _spread(values)
            rows.append(row)
    return rows


def ratios(
    summary: list[dict[str, Any]], contestants: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{peer: {case: {metric: asynctransfer median / peer median}}}``."""
    by = {(r["contestant"], r["case"]): r for r in summary}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in contestants:
        if peer == "asynctransfer":
            continue
        for case in CASES:
            ours, theirs = by.get(("asynctransfer", case)), by.get((peer, case))
            if ours is None or theirs is None:
                continue
            out.setdefault(peer, {})[case] = {
                m: ours[m]["median"] / theirs[m]["median"]
                for m in RATIO_METRICS
                if m in ours and m in theirs and theirs[m]["median"] > 0
            }
    return out


def title(parameters: dict[str, Any]) -> str:
    size, part = parameters["size"], parameters["part_size"]
    return (
        f"S3 {human_bytes(size)}, parts {human_bytes(part)}, concurrency {parameters['concurrency']}, "
        f"{parameters['repeat']} round(s); server: {parameters['server']}"
    )


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def cell(spread: dict[str, float] | None, digits: int) -> str:
    if spread is None:
        return "-"
    low, high = _num(spread["min"], digits), _num(spread["max"], digits)
    text = _num(spread["median"], digits)
    if low == high:  # one run, or all alike at this precision: no spread to show
        return text
    text += f" ({low}-{high})"
    if "q1" in spread:
        text += f" [IQR {_num(spread['q1'], digits)}-{_num(spread['q3'], digits)}]"
    return text


def markdown(
    summary: list[dict[str, Any]],
    ratio_table: dict[str, dict[str, dict[str, float]]],
    parameters: dict[str, Any],
    outputs: list[dict[str, Any]],
    failures: list[str],
) -> str:
    lines = [
        f"## {title(parameters)}",
        "",
        (
            "Each cell: median (min-max) over the timed runs, with the interquartile range once"
            " there are 4 runs or more. MB/s = bytes / wall time of the transfer call (10^6 B/s);"
            " client CPU = user+sys of the client process over that call, per GiB; peak RSS ="
            " the client process's VmHWM; server CPU = the server process's user+sys over the"
            " whole child run."
        ),
        "",
        "| contestant | case | MB/s | client CPU s/GiB | peak RSS MiB | server CPU s | runs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {row['contestant']} | {CASES[row['case']]} | {cell(row.get('mb_per_s'), 0)} | "
        f"{cell(row.get('cpu_s_per_gib'), 2)} | {cell(row.get('peak_rss_mib'), 0)} | "
        f"{cell(row.get('server_cpu_s'), 2)} | {row['runs']} |"
        for row in summary
    )
    if ratio_table:
        lines += [
            "",
            (
                "asynctransfer ÷ peer, medians (MB/s above 1: asynctransfer is faster; CPU and"
                " RSS below 1: it uses less):"
            ),
            "",
            "| peer | case | MB/s | client CPU s/GiB | peak RSS |",
            "|---|---|---:|---:|---:|",
        ]
        for peer, cases in ratio_table.items():
            for case, r in cases.items():
                cells = [f"x{r[m]:.2f}" if m in r else "-" for m in RATIO_METRICS]
                lines.append(f"| {peer} | {CASES[case]} | {' | '.join(cells)} |")
    ok = sum(1 for r in outputs if r["check"]["ok"])
    lines += [
        "",
        (
            f"Byte checks: {ok} of {len(outputs)} outputs identical to the source (size +"
            " xxh3-128; warm-ups included)."
        ),
    ]
    if failures:
        lines += ["", f"FAILED ({len(failures)}):", ""]
        lines += [f"- {f.splitlines()[0]}" for f in failures]
    return "\n".join(lines) + "\n"


def write_chart(
    summary: list[dict[str, Any]], contestants: Sequence[str], path: Path, heading: str
) -> None:
    """Two panels (MB/s, client CPU s/GiB), bars per contestant grouped by case, min-max
    whiskers; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["contestant"], r["case"]): r for r in summary}
    cases = [c for c in CASES if any(r["case"] == c for r in summary)]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    width = 0.8 / max(1, len(contestants))
    panels = (
        ("mb_per_s", "throughput, MB/s (higher is better)"),
        ("cpu_s_per_gib", "client CPU s per GiB (lower is better)"),
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
                edgecolor="black" if contestant == "asynctransfer" else "none",
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
