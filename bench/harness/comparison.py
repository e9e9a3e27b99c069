"""Two checkouts measured burst by burst in the same rounds (bench/compare.py): the summary.

On a shared machine the CPU a request costs drifts by tens of percent within minutes, for both
checkouts alike. A burst of each side in the same round sees nearly the same machine, so the
ratio after/before of one round cancels most of the drift; the median of those ratios is the
change, and their min..max shows how far one round alone could be trusted.
"""

from __future__ import annotations

import statistics
from typing import Any

SIDES = ("before", "after")


def side_order(round_number: int) -> tuple[str, str]:
    """ABBA...: which side goes first alternates, so neither always runs on a warmer cache
    or right after the other's burst."""
    return SIDES if round_number % 2 == 0 else (SIDES[1], SIDES[0])


def summarize(workload: str, bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """One workload's bursts: each side's medians and the change in server CPU per request as
    the median of the per-round ratios after/before, minus one."""
    by_side = {
        side: {b["round"]: b for b in bursts if b["workload"] == workload and b["side"] == side}
        for side in SIDES
    }
    before, after = by_side["before"], by_side["after"]
    cpu = "server_cpu_ms_per_request"
    ratios = [
        after[number][cpu] / before[number][cpu]
        for number in sorted(before.keys() & after.keys())
        if before[number][cpu] > 0
    ]
    summary: dict[str, Any] = {"workload": workload, "rounds": len(ratios)}
    for side, runs in by_side.items():
        for name, digits in ((cpu, 3), ("db_cpu_ms_per_request", 3), ("rps", 1), ("p99_ms", 2)):
            values = [run[name] for run in runs.values()]
            summary[f"{side}_{name}"] = round(statistics.median(values), digits) if values else None
        summary[f"{side}_errors"] = sum(run["errors"] for run in runs.values())
    summary["change_percent"] = round(100 * (statistics.median(ratios) - 1), 1) if ratios else None
    summary["ratio_min"] = round(min(ratios), 3) if ratios else None
    summary["ratio_max"] = round(max(ratios), 3) if ratios else None
    return summary


def format_comparison(summaries: list[dict[str, Any]]) -> str:
    header = (
        f"{'workload':<12} {'CPU ms/req before':>17} {'after':>7} {'change':>9} "
        f"{'ratio min..max':>14} {'p99 before':>10} {'p99 after':>9} {'errors b/a':>10}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        change = "n/a" if s["change_percent"] is None else f"{s['change_percent']:+.1f} %"
        if s["before_errors"] or s["after_errors"]:
            change += "*"
        errors = f"{s['before_errors']}/{s['after_errors']}"
        spread = "n/a" if s["ratio_min"] is None else f"{s['ratio_min']:.2f}..{s['ratio_max']:.2f}"
        lines.append(
            f"{s['workload']:<12} {_ms(s['before_server_cpu_ms_per_request']):>17} "
            f"{_ms(s['after_server_cpu_ms_per_request']):>7} {change:>9} {spread:>14} "
            f"{_ms(s['before_p99_ms'], 2):>10} {_ms(s['after_p99_ms'], 2):>9} "
            f"{errors:>10}"
        )
    if any(s["before_errors"] or s["after_errors"] for s in summaries):
        lines.append(
            "* a side answered with errors: its CPU per request is partly that of error "
            "answers (a route it lacks is a cheap 404), so the change says little"
        )
    return "\n".join(lines)


def _ms(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
