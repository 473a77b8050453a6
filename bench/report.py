#!/usr/bin/python3
"""Renders benchmark results (bench/*/run → NAME.json, the shape in bench/README.md) as one
Markdown table, with the ratio to the peer each goal names and whether the goal is met.

  bench/report.py RESULT.json... > report.md
"""

import json
import os
import platform
import sys


def fmt(value):
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def verdict(row):
    """(ratio or None, met or None) for a row: Tether against `goal`."""
    goal = row.get("goal") or {}
    values = row.get("values") or {}
    ours = values.get("tether")
    ratio = None
    met = row.get("met")
    if "peer" in goal:
        peer = values.get(goal["peer"])
        if isinstance(ours, (int, float)) and isinstance(peer, (int, float)) and peer:
            ratio = ours / peer
            if met is None:
                met = ratio >= goal["ratio"] if row["better"] == "higher" else ratio <= goal["ratio"]
    elif "limit" in goal and met is None and isinstance(ours, (int, float)):
        met = ours >= goal["limit"] if row["better"] == "higher" else ours <= goal["limit"]
    return ratio, met


def validate(result):
    """Raises ValueError when a result file does not have the common shape."""
    for key in ("bench", "rows"):
        if key not in result:
            raise ValueError(f"result without '{key}'")
    for row in result["rows"]:
        for key in ("figure", "unit", "values", "better"):
            if key not in row:
                raise ValueError(f"{result['bench']}: row without '{key}': {row}")
        if "tether" not in row["values"]:
            raise ValueError(f"{result['bench']}: row '{row['figure']}' has no Tether value")
        if row["better"] not in ("higher", "lower"):
            raise ValueError(f"{result['bench']}: row '{row['figure']}': better is "
                             f"{row['better']!r}")
        goal = row.get("goal")
        if goal is not None and not ("peer" in goal and "ratio" in goal or "limit" in goal):
            raise ValueError(f"{result['bench']}: row '{row['figure']}': goal needs peer+ratio "
                             f"or limit")


def render_table(results):
    lines = ["| bench | figure | Tether | peers | ratio | goal | met |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        validate(result)
        for row in result["rows"]:
            values = row["values"]
            unit = row["unit"]
            peers = ", ".join(f"{name} {fmt(v)}" for name, v in values.items() if name != "tether")
            ratio, met = verdict(row)
            goal = (row.get("goal") or {}).get("text", "")
            ratio_text = f"{ratio:.2f}× {row['goal']['peer']}" if ratio is not None else ""
            met_text = {True: "met", False: "**missed**", None: ""}[met]
            figure = row["figure"] + (f" ({row['note']})" if row.get("note") else "")
            lines.append(f"| {result['bench']} | {figure} | {fmt(values['tether'])} {unit} | "
                         f"{peers} | {ratio_text} | {goal} | {met_text} |")
    return "\n".join(lines)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return (f"{os.cpu_count()} × {cpu}, {mem_kb // 1024 // 1024} GiB RAM, "
            f"Linux {platform.release()}")


def main(paths):
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    print(f"Machine: {machine()}")
    print()
    print(render_table(results))
    notes = [(r["bench"], n) for r in results for n in r.get("notes", [])]
    if notes:
        print()
        for bench, note in notes:
            print(f"- {bench}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
