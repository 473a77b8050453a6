"""Drives the real tether-agent (and the fleet simulator) for integration tests."""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from tether_harness import bin_dir, wait_until


class Agent:
    """One tether-agent with a private state directory and no config file of the machine's."""

    def __init__(self, state_dir, settings=None, env=None, prefix=()):
        """`env`: extra environment (e.g. DBUS_SYSTEM_BUS_ADDRESS); `prefix`: a command to run
        the agent under (e.g. ["ip", "netns", "exec", "ns1"])."""
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.prefix = list(prefix)
        self.conf = self.state_dir.parent / (self.state_dir.name + ".conf")
        self.settings = {"connection.backoff_base": "200ms", "connection.backoff_cap": "5s",
                         "connection.restart_spread": "2s", **(settings or {})}
        self.proc = None
        self.lines = []
        self._lock = threading.Lock()
        self._reader = None

    def _base(self):
        if not self.conf.exists():
            self.conf.write_text("# empty: defaults and --set only\n")
        args = [*self.prefix, str(bin_dir() / "tether-agent"), "--state-dir",
                str(self.state_dir), "-c", str(self.conf)]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        return args

    def run(self, *args, timeout=60):
        """Runs a subcommand to completion; returns the CompletedProcess."""
        return subprocess.run([*self._base(), *args], capture_output=True, text=True,
                              timeout=timeout, env=self._environment())

    def register(self, token, *extra):
        return self.run("register", "--token", token, *extra)

    def status(self):
        proc = self.run("status", "--json")
        return json.loads(proc.stdout)

    def device_id(self):
        return self.status().get("device_id")

    def start(self):
        self.lines = []
        self.proc = subprocess.Popen([*self._base(), "run"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace", env=self._environment())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        # Never the machine's own system bus or systemd unless a test says so.
        env.pop("NOTIFY_SOCKET", None)
        env.setdefault("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/tether-test-bus")
        env.update(self.env)
        return env

    def _read(self):
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self._lock:
            return "\n".join(self.lines)

    def connection_state(self):
        conn = self.status().get("connection") or {}
        return conn.get("state")

    def wait_connected(self, timeout=20):
        wait_until(lambda: self.connection_state() == "connected", timeout=timeout,
                   what=f"the agent to connect; its log:\n{self.log()}")

    def wait_log(self, text, timeout=20):
        wait_until(lambda: text in self.log(), timeout=timeout,
                   what=f"{text!r} in the agent log:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(timeout=2)
        return rc


class FleetSim:
    """tether-fleet-sim: many simulated agents in one process."""

    def __init__(self, server, state_dir, count, restart_spread="10s"):
        self.state_dir = Path(state_dir)
        self.report = self.state_dir / "report.json"
        self.args = [str(bin_dir() / "tether-fleet-sim"), "--server",
                     f"wss://127.0.0.1:{server.port}", "--admin-token", str(server.token_file),
                     "--ca-file", str(server.ca_file), "--count", str(count), "--state",
                     str(self.state_dir), "--restart-spread", restart_spread,
                     "--report", str(self.report)]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        return self

    def read_report(self):
        try:
            return json.loads(self.report.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def connected(self):
        report = self.read_report()
        return report["connected"] if report else 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
