"""Real peers for tether-vnc tests: an Xvfb display, tether-vnc on one end of a socketpair,
and a TCP bridge so that external viewers (vncsnapshot, TigerVNC) can reach it.

    with Xvfb() as x:                        # a display number of its own (-displayfd)
        x.solid("#1e90ff")                   # paints the root window
        vnc = TetherVnc(x.display, "--view-only")
        client = vnc.client()                # rfb_client.RfbClient on our end
        ...
        rc = vnc.wait()                      # exit status; vnc.stderr() has its log

    bridge = TcpBridge(vnc.take_socket())    # 127.0.0.1:bridge.port, one connection
"""

import os
import select
import shutil
import socket
import subprocess
import threading
import time

from rfb_client import RfbClient
from tether_harness import bin_dir, wait_until


class Xvfb:
    def __init__(self, width=1024, height=768, depth=24):
        self.size = (width, height, depth)
        self.proc = None
        self.display = None

    def start(self):
        if shutil.which("Xvfb") is None:
            raise RuntimeError("Xvfb is not installed (scripts/deps)")
        read_end, write_end = os.pipe()
        w, h, d = self.size
        # -displayfd: Xvfb picks a free display number and writes it once it accepts
        # connections. -noreset: the server does not reset (repainting the root black) each
        # time its last client leaves.
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{w}x{h}x{d}",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=[write_end], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        # Read up to the newline: Xvfb writes the number and "\n" separately, and a pipe
        # closed in between would kill it with SIGPIPE.
        data = b""
        try:
            deadline = time.monotonic() + 20
            while not data.endswith(b"\n"):
                left = deadline - time.monotonic()
                ready, _, _ = select.select([read_end], [], [], max(left, 0))
                if not ready:
                    raise RuntimeError("Xvfb did not start within 20 s")
                chunk = os.read(read_end, 64)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(read_end)
        number = data.decode().strip()
        if not number:
            raise RuntimeError("Xvfb exited: " + str(self.proc.poll()))
        self.display = ":" + number
        wait_until(lambda: self.run("xdpyinfo").returncode == 0, timeout=10,
                   what="xdpyinfo to reach " + self.display)
        return self

    def env(self):
        return {**os.environ, "DISPLAY": self.display}

    def run(self, *argv, **kwargs):
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 20), **kwargs)

    def popen(self, *argv, **kwargs):
        return subprocess.Popen(list(argv), env=self.env(), **kwargs)

    def solid(self, colour):
        result = self.run("xsetroot", "-solid", colour)
        assert result.returncode == 0, result.stderr

    def pointer(self):
        out = self.run("xdotool", "getmouselocation").stdout
        fields = dict(part.split(":", 1) for part in out.split())
        return int(fields["x"]), int(fields["y"])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class TetherVnc:
    """tether-vnc serving `display` on one end of a socketpair; we keep the other."""

    def __init__(self, display, *extra, xauthority=None):
        ours, theirs = socket.socketpair()
        args = [str(bin_dir() / "tether-vnc"), "--fd", str(theirs.fileno()),
                "--display", display, *extra]
        if xauthority:
            args += ["--xauthority", xauthority]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, pass_fds=[theirs.fileno()],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        theirs.close()
        self.sock = ours
        self._stderr = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self._stderr.append(line)

    def stderr(self):
        return "".join(self._stderr)

    def client(self, timeout=10.0):
        return RfbClient(self.sock, timeout=timeout)

    def take_socket(self):
        sock, self.sock = self.sock, None
        return sock

    def wait(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TcpBridge:
    """Accepts one TCP connection on 127.0.0.1 and copies bytes between it and `sock` until
    either side closes; then closes both (so tether-vnc sees its peer go)."""

    def __init__(self, sock):
        self.sock = sock
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            self.sock.close()
            return
        self.listener.close()
        pair = {conn: self.sock, self.sock: conn}
        try:
            while True:
                readable, _, _ = select.select(list(pair), [], [])
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    pair[src].sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            self.sock.close()

    def close(self):
        try:
            self.listener.close()
        except OSError:
            pass
        self.thread.join(5)
