"""bench/agent-idle: the driver's parsers and arithmetic (perf stat CSV, smaps_rollup, the RSS
slope, RSS by mapping of this very process). No agent, no server, no perf."""

import os

import pytest

from benchtest import load_driver

idle = load_driver("agent-idle")


def test_perf_csv_count():
    out = ("# started on Sun Nov 22\n\n"
           "44,,sched:sched_wakeup,10065943168,100.00,,\n")
    assert idle.parse_perf_csv(out) == 44
    assert idle.parse_perf_csv("<not counted>,,sched:sched_wakeup,0,0.00,,\n") is None
    assert idle.parse_perf_csv("<not supported>,,sched:sched_wakeup,,,\n") is None
    assert idle.parse_perf_csv("12,,context-switches,1,100.00,,\n") is None
    assert idle.parse_perf_csv("") is None


def test_smaps_rollup():
    text = ("55b92b1a2000-7ffc37f14000 ---p 00000000 00:00 0    [rollup]\n"
            "Rss:               12960 kB\nPss:                5083 kB\n"
            "Anonymous:          1904 kB\nPrivate_Clean:      1896 kB\n")
    out = idle.parse_smaps_rollup(text)
    assert out == {"Rss": 12960, "Pss": 5083, "Anonymous": 1904, "Private_Clean": 1896}
    own = idle.smaps_rollup(os.getpid())
    assert own["Rss"] > 0 and own["Pss"] <= own["Rss"]


def test_slope_of_rss_samples():
    assert idle.slope_per_s([(0, 100), (1, 102), (2, 104), (3, 106)]) == pytest.approx(2.0)
    assert idle.slope_per_s([(0, 100), (10, 100)]) == 0.0
    assert idle.slope_per_s([(0, 100)]) == 0.0
    # Noise around a flat line: no slope to speak of.
    assert abs(idle.slope_per_s([(t, 100 + (t % 2) * 4) for t in range(100)])) < 0.01


def test_rss_by_mapping_of_this_process():
    biggest = idle.rss_by_mapping(os.getpid(), top=3)
    assert 1 <= len(biggest) <= 3
    assert all(kb >= 0 for _, kb in biggest)
    assert biggest == sorted(biggest, key=lambda kv: -kv[1])
