"""Pieces shared by bench/session/run and bench/first-frame/run: the RFB client
(tether-bench-rfb, its JSON lines), x11vnc and tether-vnc as the two servers under test, and
the desktop the scenes draw on.

    run = RfbRun(connect=("127.0.0.1", port), encoding="tight", quality=8, duration=10)
    first = run.first_frame()        # {"ms": ..., "ms_since_connect": ..., "bytes": ...}
    summary = run.finish()           # {"bytes_per_s": ..., "updates_per_s": ..., ...}

x11vnc runs with its defaults plus what a bench needs (X11VNC_ARGS): no password, shared,
forever, loopback only, quiet. It keeps its default change detection (XDAMAGE hints plus
polling, -wait 20 ms, -defer 20 ms); tether-vnc runs as the agent starts it (docs: no extra
options), on one end of a socketpair.
"""

import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path

import benchlib
from vnc_harness import Xvfb

X11VNC_ARGS = ["-localhost", "-nopw", "-shared", "-forever", "-quiet"]


class BenchError(RuntimeError):
    pass


def client_binary():
    return benchlib.bin_dir() / "tether-bench-rfb"


def parse_event(line):
    """One JSON line of tether-bench-rfb as a dict; BenchError for anything else or for an
    error event."""
    line = line.strip()
    try:
        event = json.loads(line)
    except ValueError:
        raise BenchError(f"tether-bench-rfb printed something that is not JSON: {line!r}")
    if not isinstance(event, dict) or "event" not in event:
        raise BenchError(f"tether-bench-rfb printed a line without an event: {line!r}")
    if event["event"] == "error":
        raise BenchError("tether-bench-rfb: " + str(event.get("message")))
    return event


class RfbRun:
    """tether-bench-rfb connected to one server: over TCP (`connect`=(host, port), retried
    until it listens) or on an inherited socket (`sock`, closed here once handed over)."""

    def __init__(self, connect=None, sock=None, encoding="tight", quality=8, compress=2,
                 duration=0, start_ns=None, timeout=60, hold=False):
        """`hold`: the client keeps the session open after its last line until release()
        (or finish(release=True)), so the server's process can still be read."""
        args = [str(client_binary()), "--encoding", encoding, "--quality", str(quality),
                "--compress", str(compress), "--duration", str(duration),
                "--timeout", str(timeout)]
        if start_ns is not None:
            args += ["--start-ns", str(start_ns)]
        if hold:
            args.append("--hold")
        self.duration = duration
        pass_fds = ()
        if sock is not None:
            args += ["--fd", str(sock.fileno())]
            pass_fds = (sock.fileno(),)
        else:
            args += ["--connect", f"{connect[0]}:{connect[1]}"]
        self.events = {}
        self.proc = subprocess.Popen(args, pass_fds=pass_fds,
                                     stdin=subprocess.PIPE if hold else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if sock is not None:
            sock.close()

    def _until(self, name):
        while name not in self.events:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise BenchError(f"tether-bench-rfb ended (exit {self.proc.returncode}) "
                                 f"before '{name}': {self.proc.stderr.read().strip()}")
            event = parse_event(line)
            self.events[event["event"]] = event
        return self.events[name]

    def first_frame(self):
        return self._until("first_frame")

    def finish(self, release=True):
        """The summary (with a duration) or the first frame (without); with `release`, ends
        the client and waits for its exit."""
        event = self._until("summary" if self.duration > 0 else "first_frame")
        if release:
            self.release()
        return event

    def release(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def listening(port):
    """True when something listens on 127.0.0.1:port (read from /proc, no connection made:
    a probe would be a client to the server)."""
    want = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return True
    return False


class BenchXvfb(Xvfb):
    """vnc_harness.Xvfb on a display number derived from our pid (the next free one above
    it), so that benches running beside each other never pick the same one."""

    def start(self):
        base = 100 + os.getpid() % 800
        for number in range(base, base + 50):
            if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
                continue
            read_end, write_end = os.pipe()
            w, h, d = self.size
            self.proc = subprocess.Popen(
                ["Xvfb", f":{number}", "-displayfd", str(write_end), "-screen", "0",
                 f"{w}x{h}x{d}", "-nolisten", "tcp", "-noreset"],
                pass_fds=[write_end], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.close(write_end)
            data = b""
            with os.fdopen(read_end, "rb") as ready:
                deadline = time.monotonic() + 20
                while not data.endswith(b"\n") and time.monotonic() < deadline:
                    chunk = ready.read1(64) if select.select([ready], [], [], 1)[0] else b""
                    if not chunk and self.proc.poll() is not None:
                        break
                    data += chunk
            if data.strip() == str(number).encode():
                self.display = f":{number}"
                return self
            self.stop()  # taken meanwhile, or did not start: try the next one
        raise BenchError("no free X display number for Xvfb")


class X11vnc:
    def __init__(self, display, log_path):
        self.display = display
        self.log_path = log_path
        self.proc = None
        self.port = None

    def start(self, wait=True):
        self.port = benchlib.free_port()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["x11vnc", "-display", self.display, "-rfbport", str(self.port), *X11VNC_ARGS],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=20):
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise BenchError(f"x11vnc exited ({self.proc.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"x11vnc did not listen within {timeout} s")
            time.sleep(0.01)

    def stop(self):
        benchlib.stop_process(self.proc)
        if self.proc:
            self.log.close()
        self.proc = None


class TetherVnc:
    """tether-vnc as the agent starts it, on one end of a socketpair; `client_socket` is the
    other end, for RfbRun(sock=...)."""

    def __init__(self, display, log_path, *extra):
        ours, theirs = socket.socketpair()
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(benchlib.bin_dir() / "tether-vnc"), "--fd", str(theirs.fileno()),
             "--display", display, *extra],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT)
        theirs.close()
        self.client_socket = ours

    def stop(self):
        if self.client_socket is not None:
            self.client_socket.close()
            self.client_socket = None
        benchlib.stop_process(self.proc)
        self.log.close()
        return self.proc.returncode


def make_photo(path, width, height, seed=7):
    """A photo-like picture (ImageMagick's fractal plasma, blurred a little), reproducible."""
    if not Path(path).exists():
        subprocess.run(["convert", "-seed", str(seed), "-size", f"{width}x{height}",
                        "plasma:fractal", "-blur", "0x1", str(path)], check=True, timeout=120)
    return path


def need_programs(*names):
    import shutil
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BenchError("not installed (scripts/deps --bench): " + ", ".join(missing))
    for name in ("tether-bench-rfb", "tether-vnc"):
        if not (benchlib.bin_dir() / name).exists():
            raise BenchError(f"{name} is not built in {benchlib.bin_dir()}")
