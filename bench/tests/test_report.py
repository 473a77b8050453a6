"""bench/report.py: the common result shape is checked, ratios and verdicts come out right,
and the table renders every row."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import report  # noqa: E402


def result(rows):
    return {"bench": "x", "quick": False, "rows": rows, "notes": []}


def row(values, better, goal=None, met=None):
    return {"figure": "f", "unit": "MiB/s", "values": values, "better": better, "goal": goal,
            "met": met, "note": None}


def test_ratio_goals_against_a_peer():
    higher = row({"tether": 300.0, "websockify": 100.0}, "higher",
                 {"text": "≥ 1.5× websockify", "peer": "websockify", "ratio": 1.5})
    assert report.verdict(higher) == (3.0, True)
    higher["values"]["tether"] = 120.0
    assert report.verdict(higher) == (1.2, False)
    lower = row({"tether": 4.0, "node": 20.0}, "lower",
                {"text": "≤ 0.4× node", "peer": "node", "ratio": 0.4})
    assert report.verdict(lower) == (0.2, True)
    lower["values"]["tether"] = 10.0
    assert report.verdict(lower)[1] is False


def test_limit_goals_and_explicit_verdicts():
    assert report.verdict(row({"tether": 7.5}, "lower", {"text": "≤ 8 MB", "limit": 8}))[1]
    assert not report.verdict(row({"tether": 9}, "lower", {"text": "≤ 8 MB", "limit": 8}))[1]
    assert report.verdict(row({"tether": 1200}, "higher", {"text": "≥ 1000", "limit": 1000}))[1]
    # A bench may decide itself (e.g. "0 bytes lost").
    assert report.verdict(row({"tether": 0}, "lower", None, met=True)) == (None, True)
    # No peer value: no ratio, no verdict.
    assert report.verdict(row({"tether": 1.0, "node": None}, "lower",
                              {"text": "≤ 0.4× node", "peer": "node", "ratio": 0.4})) == (None, None)


@pytest.mark.parametrize("bad", [
    {"rows": []},
    {"bench": "x", "rows": [{"figure": "f", "unit": "u", "values": {}, "better": "higher"}]},
    {"bench": "x", "rows": [{"figure": "f", "unit": "u", "values": {"tether": 1},
                             "better": "faster"}]},
    {"bench": "x", "rows": [{"figure": "f", "unit": "u", "values": {"tether": 1},
                             "better": "higher", "goal": {"text": "?"}}]},
])
def test_malformed_results_are_refused(bad):
    with pytest.raises(ValueError):
        report.render_table([bad])


def test_table_has_every_row_with_its_verdict():
    table = report.render_table([result([
        row({"tether": 300.0, "websockify": 100.0, "socat": 900.0}, "higher",
            {"text": "≥ 1.5× websockify", "peer": "websockify", "ratio": 1.5}),
        row({"tether": 12.5}, "lower", {"text": "≤ 8 MB", "limit": 8}),
    ])])
    lines = table.splitlines()
    assert len(lines) == 4
    assert "3.00× websockify" in lines[2] and "| met |" in lines[2]
    assert "websockify 100" in lines[2] and "socat 900" in lines[2]
    assert "**missed**" in lines[3]
