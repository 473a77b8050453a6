"""Shared pieces of the benchmarks (bench/*/run): process figures from /proc, a result
file in the common JSON shape, the table every bench prints, and the repo's test harnesses.

Every bench is run by scripts/bench with these in its environment:
  TETHER_BIN_DIR  the build's bin/ (tether-server, tether-agent, bench programs)
  BENCH_QUICK     "1" for `scripts/bench --quick` (whole suite under 5 minutes), else "0"
  BENCH_OUT       directory for NAME.json
  BENCH_WORK      a scratch directory of its own (deleted afterwards)
  BENCH_NODE_PATH node_modules with the npm peers (ws)
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def quick():
    return os.environ.get("BENCH_QUICK", "0") == "1"


def bin_dir():
    return Path(os.environ.get("TETHER_BIN_DIR", REPO / "build" / "default" / "bin"))


def work_dir():
    d = Path(os.environ.get("BENCH_WORK", "/tmp/tether-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcStats:
    """Figures of one running process (and optionally its children) from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def _stat(self):
        text = Path(f"/proc/{self.pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()

    def cpu_seconds(self):
        """User + system CPU time of the process so far (children not included)."""
        f = self._stat()
        return (int(f[11]) + int(f[12])) / CLK_TCK

    def status(self):
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def rss_kb(self):
        """Resident set in KiB; None once the process is a zombie (no memory left to show)."""
        value = self.status().get("VmRSS")
        return int(value.split()[0]) if value else None

    def peak_rss_kb(self):
        value = self.status().get("VmHWM")
        return int(value.split()[0]) if value else None

    def context_switches(self):
        s = self.status()
        return int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"])


class Sampler:
    """CPU seconds, context switches and RSS of a process over an interval:
    `with Sampler(pid) as s: ...` then s.cpu, s.seconds, s.cpu_percent, s.switches_per_s."""

    def __init__(self, pid):
        self.stats = ProcStats(pid)

    def __enter__(self):
        self.t0 = time.monotonic()
        self.cpu0 = self.stats.cpu_seconds()
        self.sw0 = self.stats.context_switches()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        self.cpu = self.stats.cpu_seconds() - self.cpu0
        self.switches = self.stats.context_switches() - self.sw0
        self.rss_kb = self.stats.rss_kb()
        self.cpu_percent = 100.0 * self.cpu / self.seconds if self.seconds > 0 else 0.0
        self.switches_per_s = self.switches / self.seconds if self.seconds > 0 else 0.0
        return False


def stop_process(proc, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; reaps. No-op for one already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values, p):
    """The p-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def median(values):
    return percentile(values, 50)


class BenchResult:
    """The result of one bench in the common shape (bench/README.md), written as
    $BENCH_OUT/NAME.json and printed as a table."""

    def __init__(self, name):
        self.name = name
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.t0 = time.monotonic()
        self.rows = []
        self.notes = []

    def row(self, figure, unit, values, better, goal=None, met=None, note=None):
        """`values`: {"tether": x, "<peer>": y, ...} (None where not measured).
        `better`: "higher" or "lower". `goal`: None, {"text", "peer", "ratio"} (Tether
        against ratio × peer) or {"text", "limit"} (Tether against an absolute limit).
        `met` overrides the verdict the report computes from `goal`."""
        assert better in ("higher", "lower"), better
        self.rows.append({"figure": figure, "unit": unit, "values": values, "better": better,
                          "goal": goal, "met": met, "note": note})
        return self.rows[-1]

    def note(self, text):
        self.notes.append(text)

    def to_json(self):
        return {"bench": self.name, "quick": quick(),
                "started": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "seconds": round(time.monotonic() - self.t0, 1),
                "rows": self.rows, "notes": self.notes}

    def write(self):
        out = Path(os.environ.get("BENCH_OUT", work_dir()))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        import report  # bench/report.py
        print(report.render_table([self.to_json()]))
        return path
