"""bench/scale-out: the driver's arithmetic (database URL, a ramp's rate from the generator's stat
lines, all or one endpoint's, totals) and the generator's endpoint list (--connect A,B)."""

import json
import subprocess

from benchtest import load_driver, program

scale_out = load_driver("scale-out")


def test_database_url_replaces_the_database():
    assert (scale_out.database_url("postgresql://tether@127.0.0.1:5432/postgres", "bench")
            == "postgresql://tether@127.0.0.1:5432/bench")
    assert (scale_out.database_url("postgresql://u@h:1/postgres?sslmode=disable", "b")
            == "postgresql://u@h:1/b?sslmode=disable")


def test_ramp_rate_counts_connections_gained_until_the_share_is_held():
    stats = [
        {"t_ms": 1000, "connected": 0, "connected_by_endpoint": [0, 0]},
        {"t_ms": 1500, "connected": 50, "connected_by_endpoint": [40, 10]},
        {"t_ms": 2000, "connected": 160, "connected_by_endpoint": [100, 60]},
        {"t_ms": 3000, "connected": 200, "connected_by_endpoint": [100, 100]},
    ]
    assert scale_out.ramp_rate(stats, 200) == (200, 2.0)
    assert scale_out.ramp_rate(stats, 100, 0) == (100, 1.0)
    assert scale_out.ramp_rate(stats, 100, 1) == (100, 2.0)
    # Never reached: up to the last line.
    assert scale_out.ramp_rate(stats, 300) == (200, 2.0)
    assert scale_out.ramp_rate(stats[1:], 100, 0) == (60, 0.5)
    assert scale_out.ramp_rate([], 10) == (0, 0.0)


def test_first_lines_gives_the_generator_only_the_identities_it_needs(tmp_path):
    src = tmp_path / "ids.txt"
    src.write_text("a 1 2\nb 3 4\nc 5 6\n")
    dst = tmp_path / "few.txt"
    assert scale_out.first_lines(src, 2, dst) == dst
    assert dst.read_text() == "a 1 2\nb 3 4\n"
    assert scale_out.first_lines(src, 3, tmp_path / "all.txt") == src
    assert not (tmp_path / "all.txt").exists()


def test_totals_and_ratios():
    assert scale_out.sum_up([1, 2]) == 3
    assert scale_out.sum_up([1, None]) is None
    assert scale_out.sum_up([]) is None
    assert scale_out.mean([2, 4]) == 3
    assert scale_out.mean([2, None]) is None
    assert scale_out.ratio(300, 150) == 2.0
    assert scale_out.ratio(300, None) is None
    assert scale_out.ratio(None, 1) is None


def test_generator_takes_an_endpoint_list():
    proc = subprocess.run([str(program("tether-bench-fleet")), "run", "--connect",
                           "127.0.0.1:8443,127.0.0.1:8444", "--dry-run"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert cfg["endpoints"] == ["127.0.0.1:8443", "127.0.0.1:8444"]
    assert cfg["port"] == 8443
    for bad in ("127.0.0.1:8443,", "127.0.0.1:8443,nothing", ",".join(["127.0.0.1:1"] * 17)):
        proc = subprocess.run([str(program("tether-bench-fleet")), "run", "--connect", bad,
                               "--dry-run"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, (bad, proc.stdout)
