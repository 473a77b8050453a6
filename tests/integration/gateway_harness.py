"""Drives a real tether-gateway for integration tests: joined to a real tether-server with
`tetherctl gateway add`, listening on a free port of 127.0.0.1."""

import re
import signal
import subprocess
import threading
from pathlib import Path

from tether_harness import bin_dir, free_port, wait_until


class Gateway:
    """One tether-gateway process with a private state directory."""

    def __init__(self, state_dir, port=None, extra_args=()):
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.lines = []
        self._lock = threading.Lock()
        self._reader = None

    @property
    def wss_url(self):
        return f"wss://127.0.0.1:{self.port}"

    def command(self, *extra):
        conf = self.state_dir.parent / "no-gateway.conf"
        if not conf.exists():
            conf.write_text("# empty: defaults and --set only\n")
        return [str(bin_dir() / "tether-gateway"), "--state-dir", str(self.state_dir),
                "--listen", f"127.0.0.1:{self.port}", "-c", str(conf), *self.extra_args, *extra]

    def start(self, *extra, wait=True, timeout=30.0):
        self.lines = []
        self.proc = subprocess.Popen(self.command(*extra), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            self.wait_for_log("listening on", timeout=timeout)
        return self

    def _read(self):
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self._lock:
            return "\n".join(self.lines)

    def count(self, text):
        return self.log().count(text)

    def wait_for_log(self, text, timeout=15.0, occurrences=1):
        def seen():
            if self.count(text) >= occurrences:
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                if self.count(text) >= occurrences:
                    return True
                raise AssertionError(f"tether-gateway exited ({self.proc.returncode}) before "
                                     f"logging {text!r}:\n{self.log()}")
            return False
        wait_until(seen, timeout=timeout, what=f"{text!r} in the gateway log:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
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


def add_gateway(server, name, gateway):
    """`tetherctl gateway add NAME --url` on `server`; returns the join token it printed."""
    proc = server.ctl("gateway", "add", name, "--url", gateway.wss_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"(tether-gw1\.\S+)", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def joined_gateway(server, tmp_path, name="gw1", on_start=None, **kwargs):
    """A gateway joined to `server` and running, with the server's link open. `on_start`
    gets the Gateway as soon as its process exists (for the caller's clean-up)."""
    gateway = Gateway(tmp_path / f"gateway-{name}", **kwargs)
    token = add_gateway(server, name, gateway)
    if on_start:
        on_start(gateway)
    gateway.start("--join", token)
    server.wait_for_log(f"gateway {name}: link open", timeout=20)
    gateway.wait_for_log("device list from the server", timeout=20)
    return gateway
