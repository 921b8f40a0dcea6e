"""Timing over several runs, and the result rows every measurement returns.

A row is a dict with the keys name, unit, median, min, max, baseline_median
(or None), ratio (or None), target (text) and met (bool or None), so the
runner prints rows from every module in one table.
"""

import statistics
import time


def time_runs(runs, work, setup=None):
    """Return the wall-clock seconds of ``work()`` in each of ``runs`` runs.

    ``setup()`` runs untimed before each run, such as deleting what the
    previous run wrote.
    """
    seconds = []
    for _ in range(runs):
        if setup is not None:
            setup()
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def row(name, unit, values, baseline=None, ratio=None, target="", met=None):
    """Return a result row from a list of measured values."""
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "baseline_median": statistics.median(baseline) if baseline else None,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def format_table(rows):
    """Return the rows as a Markdown table."""
    header = (
        "| Figure | Unit | Median | Min | Max | Baseline median | Ratio "
        "| Target | Met |"
    )
    lines = [header, "|" + " --- |" * 9]
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(
            f"| {r['name']} | {r['unit']} | {_number(r['median'])} "
            f"| {_number(r['min'])} | {_number(r['max'])} "
            f"| {_number(r['baseline_median'])} | {_number(r['ratio'])} "
            f"| {r['target']} | {met} |"
        )
    return "\n".join(lines)


def _number(value):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
