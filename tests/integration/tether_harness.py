"""Drives the real tether-server and tetherctl binaries for integration tests.

The binaries come from the build directory named by TETHER_BIN_DIR (ctest sets it). Every
server runs on 127.0.0.1, on a free port, with a private --state-dir, and is stopped by the
test that started it.
"""

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parents[2]
UP_SUBPROTOCOL = "tether.up.v1"


def bin_dir():
    return Path(os.environ.get("TETHER_BIN_DIR", REPO / "build" / "default" / "bin"))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a true value; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Server:
    """One tether-server process."""

    def __init__(self, state_dir, port=None, listen_host="127.0.0.1", extra_args=()):
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.listen_host = listen_host
        self.extra_args = list(extra_args)
        self.proc = None
        self.lines = []
        self._lock = threading.Lock()
        self._reader = None

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self):
        return self.state_dir / "ca.crt"

    @property
    def token_file(self):
        return self.state_dir / "admin.token"

    def command(self):
        return [str(bin_dir() / "tether-server"), "--state-dir", str(self.state_dir),
                "--listen", f"{self.listen_host}:{self.port}",
                # A config file the test controls: never the machine's /etc/tether.
                "-c", str(self.state_dir.parent / "no-server.conf"),
                *self.extra_args]

    def start(self, wait=True, timeout=15.0):
        conf = self.state_dir.parent / "no-server.conf"
        if not conf.exists():
            conf.write_text("# empty: defaults and --set only\n")
        self.lines = []
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
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

    def wait_for_log(self, text, timeout=10.0):
        def seen():
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                if text in self.log():
                    return True
                raise AssertionError(
                    f"tether-server exited ({self.proc.returncode}) before logging {text!r}:\n"
                    + self.log())
            return False
        wait_until(seen, timeout=timeout, what=f"{text!r} in the server log:\n{self.log()}")

    def wait_exit(self, timeout=15.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self._reader:
                self._reader.join(timeout=2)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    # ---- REST --------------------------------------------------------------------------

    def ssl_context(self, cert=None, key=None):
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def admin_token(self):
        return self.token_file.read_text().strip()

    def https_connection(self):
        """A connection to the REST API (subclasses reach the server some other way)."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(),
                                           timeout=15)

    def request(self, method, path, body=None, token=None, raw_body=None, headers=None):
        """An HTTPS request; returns (status, headers, parsed JSON or None)."""
        conn = self.https_connection()
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            parsed = json.loads(payload) if payload else None
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
        finally:
            conn.close()

    def admin(self, method, path, body=None):
        return self.request(method, path, body=body, token=self.admin_token())

    def create_token(self, **fields):
        status, _, body = self.admin("POST", "/api/v1/enroll-tokens", fields)
        assert status == 201, body
        return body

    # ---- tetherctl ---------------------------------------------------------------------

    def ctl(self, *args, env=None, check=False):
        return run_ctl("--server", self.url, "--token-file", str(self.token_file),
                       "--ca-file", str(self.ca_file), *args, env=env, check=check)


def run_ctl(*args, env=None, check=False, home=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    # A HOME of its own: the developer's ~/.config/tether/ctl.conf must not leak in.
    full_env["HOME"] = home or tempfile.gettempdir() + "/tether-test-no-home"
    full_env.update(env or {})
    proc = subprocess.run([str(bin_dir() / "tetherctl"), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)
    if check:
        assert proc.returncode == 0, f"tetherctl {args} failed: {proc.stderr}"
    return proc


def token_secret(token):
    return token.split(".")[-1]


class DeviceKey:
    """An EC P-256 key and CSR made with the openssl command line, as a device would."""

    def __init__(self, directory, name="device"):
        self.dir = Path(directory)
        self.key = self.dir / f"{name}.key"
        self.csr = self.dir / f"{name}.csr"
        self.cert = self.dir / f"{name}.crt"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(self.key)], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", str(self.key), "-subj",
                        f"/CN={name}", "-out", str(self.csr)], check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", str(self.key), "-pubout", "-outform",
                              "DER"], check=True, capture_output=True).stdout
        self.device_id = hashlib.sha256(der).hexdigest()

    def csr_pem(self):
        return self.csr.read_text()

    def enroll(self, server, token, hostname="tc-test", macs=("52:54:00:12:34:56",)):
        """POST /api/v1/enroll; on success stores the certificate. Returns (status, body)."""
        status, headers, body = server.request("POST", "/api/v1/enroll", {
            "secret": token_secret(token), "csr_pem": self.csr_pem(), "hostname": hostname,
            "macs": list(macs)})
        if status == 201:
            self.cert.write_text(body["certificate_pem"])
        return status, headers, body

    def make_csr(self):
        return self.csr_pem()


# ---- UP channel ------------------------------------------------------------------------

def hello_message(device_id, msg_id="d1", hostname="tc-test"):
    return {"v": 1, "type": "hello", "id": msg_id, "body": {
        "device_id": device_id, "agent_version": "0.1.0-test",
        "os": {"name": "Debian GNU/Linux", "version": "12", "kernel": "6.1.0", "arch": "x86_64"},
        "hostname": hostname, "capabilities": ["reboot"]}}


async def wait_no_sessions(server, timeout=15):
    """Until the server lists no shadowing session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = await asyncio.to_thread(server.admin, "GET", "/api/v1/shadow/sessions")
        if status == 200 and not body.get("sessions"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the shadowing session did not end")


async def up_connect(server, device=None):
    ctx = server.ssl_context(device.cert, device.key) if device else server.ssl_context()
    return await websockets.connect(f"wss://127.0.0.1:{server.port}/up", ssl=ctx,
                                    subprotocols=[UP_SUBPROTOCOL], open_timeout=10,
                                    ping_interval=None)


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send_json(ws, message):
    await ws.send(json.dumps(message))


async def expect_close(ws, timeout=10):
    """Reads until the server closes; returns the close code."""
    async def drain():
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            return ws.close_code
    return await asyncio.wait_for(drain(), timeout)
