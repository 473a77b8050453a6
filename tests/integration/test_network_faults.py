"""Network faults in the middle of a shadowing tunnel (issue 11), in network namespaces.

The real tether-server runs in one namespace, the real tether-agent (and, as its children,
tether-vnc and tether-shadow-ui on an Xvfb display) in another; one veth pair joins them:

    10.79.0.1  server namespace  tether-server on 8443; the viewer (an RFB client on the
                                 session's viewer WebSocket) and the REST calls run here too
    10.79.0.2  agent namespace   tether-agent; every fault is made on this side

Both sides ping every PING s (connection.ping_interval, up.ping_interval). With a shadowing
session running and a viewer attached through the server's relay, each test makes one fault:

    blackhole   nft drops every packet between the two sides
    reset       nft answers every packet of the agent's connections with a TCP reset, both ways
    link_down   `ip link set eth0 down` on the agent's side
    delay_loss  every chunk held 2 s by a userspace TCP forwarder (this kernel has no sch_netem)
                plus 30 % of the packets dropped (nft numgen) each way

and shows: each side finds the dead peer (printed: seconds from the fault to the server ending
the session, to the agent ending it); everything is freed (the server: session gone from the
active list, an audit row with the reason, the device offline; the viewer's WebSocket closed;
the agent: tether-vnc and the indicator exited, status.json says why); once the fault is gone
the agent reconnects (printed: seconds from the repair to the device online again), its
shadow_stop (lost with the network) arrives after all (the audit's reason becomes
`tunnel_lost`), and a new session shows the picture.

Detection bound asserted: two ping intervals plus MARGIN. Two intervals is the design (the
agent, lws's validity timer: a ping PING s after the last pong, a hangup when the next pong has
not come PING s later; the server, KeepaliveWheel: a ping after PING s of silence, a close after
2 PING, judged every PING/4, so up to 2.25 PING). MARGIN (3 s) covers the wheel's quarter
interval and a busy 2-core machine's scheduling; a 30 s/60 s keepalive (the agent's tunnel
before this test) fails it by far.

Delay with loss: the agent needs a ping's pong within one interval; with 2 s each way the round
trip (>= 4 s) exceeds the 2 s interval, so the agent counts the server as dead and hangs up
within two intervals — documented (docs/configuration.md, connection.ping_interval) and
asserted here. The server still hears the agent's traffic (late), so it does not time out by
itself; it ends the session when the agent's close reaches it, one delay later: asserted within
two intervals plus the delay plus MARGIN.
"""

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

try:
    import websockets
except ImportError:  # run as the forwarder (`python3 THIS proxy ...`) it is not needed
    websockets = None

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PID = os.getpid() % 100000
NS_SRV, NS_AGT = f"tnfs{PID}", f"tnfa{PID}"
SERVER_IP, AGENT_IP = "10.79.0.1", "10.79.0.2"
PORT, PROXY_PORT = 8443, 9443
PING = 2  # seconds, both sides
MARGIN = 3.0  # seconds over two intervals (see the module's docstring)
DELAY = 2.0  # seconds each way in the delay_loss case
LOSS = 30  # percent each way
TUNNEL_SUBPROTOCOL = "tether.tunnel.v1"
CLONE_NEWNET = 0x40000000
NFT_TABLE = "tnf"


# ---- namespaces -----------------------------------------------------------------------

def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def in_ns(ns):
    return ["ip", "netns", "exec", ns]


def unavailable():
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "Xvfb", "xsetroot", "xdpyinfo", "pgrep"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/deps)"
    from tether_harness import bin_dir
    for name in ("tether-server", "tether-agent", "tether-vnc", "tether-shadow-ui"):
        if not (bin_dir() / name).exists():
            return f"{name} is not built in {bin_dir()}"
    probe = f"tnfp{PID}"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns unavailable: " + r.stderr.strip()
    r = sh(*in_ns(probe), "nft", "add", "table", "inet", "probe", check=False)
    sh("ip", "netns", "del", probe, check=False)
    if r.returncode != 0:
        return "nftables unavailable in a namespace: " + r.stderr.strip()
    return None


def build_network():
    remove_network()
    for ns in (NS_SRV, NS_AGT):
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", NS_SRV, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
       "netns", NS_AGT)
    for ns, ip in ((NS_SRV, SERVER_IP), (NS_AGT, AGENT_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def remove_network():
    for ns in (NS_SRV, NS_AGT):
        sh("ip", "netns", "del", ns, check=False)


def ns_socket(ns, kind=socket.SOCK_STREAM):
    """A socket in namespace `ns`: made by a thread that entered it (setns affects only the
    calling thread; the socket keeps the namespace it was made in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}

    def make():
        try:
            with open(f"/run/netns/{ns}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns " + ns)
            out["sock"] = socket.socket(socket.AF_INET, kind)
        except OSError as e:
            out["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


def nft(ns, script):
    proc = subprocess.run([*in_ns(ns), "nft", "-f", "-"], input=script, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"nft: {proc.stderr}\n{script}"


def nft_clear(ns):
    sh(*in_ns(ns), "nft", "delete", "table", "inet", NFT_TABLE, check=False)


# ---- the pieces -------------------------------------------------------------------------

def make_server_class():
    import http.client

    from tether_harness import Server

    class NsHttpsConnection(http.client.HTTPSConnection):
        def connect(self):
            sock = ns_socket(NS_SRV)
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    class NsServer(Server):
        """tether-server in the server namespace; REST calls made from there too."""

        def command(self):
            return [*in_ns(NS_SRV), *super().command()]

        @property
        def url(self):
            return f"https://{SERVER_IP}:{self.port}"

        def https_connection(self):
            return NsHttpsConnection(SERVER_IP, self.port, context=self.ssl_context(), timeout=15)

    return NsServer


class Viewer:
    """An RFB 3.8 client on a session's viewer WebSocket, from the server's namespace, in a
    thread with its own event loop. Asks for the whole framebuffer (raw), then for incremental
    updates, one at a time, until the tunnel closes."""

    def __init__(self, url, ctx):
        self.url = url
        self.ctx = ctx
        self.frames = 0
        self.bytes = 0
        self.closed_at = None
        self.close = None  # (code, reason) of the close
        self.error = None
        self.first_frame = threading.Event()
        self.done = threading.Event()
        self.ws = None
        self._buf = bytearray()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.loop.run_until_complete(self._main())
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
        finally:
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            if self.ws is not None and self.close is None:
                self.close = (self.ws.close_code, self.ws.close_reason)
            self.done.set()

    async def _read(self, n):
        while len(self._buf) < n:
            message = await self.ws.recv()
            self.bytes += len(message)
            self._buf += message
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _update(self, bpp):
        while True:
            kind = (await self._read(1))[0]
            if kind == 0:
                (count,) = struct.unpack(">xH", await self._read(3))
                for _ in range(count):
                    _x, _y, w, h, enc = struct.unpack(">HHHHi", await self._read(12))
                    assert enc == 0, f"encoding {enc} not asked for"
                    await self._read(w * h * bpp // 8)
                return
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                (length,) = struct.unpack(">xxxI", await self._read(7))
                await self._read(length)
                continue
            raise AssertionError(f"unexpected RFB server message {kind}")

    async def _main(self):
        target = urlparse(self.url)
        sock = ns_socket(NS_SRV)
        sock.setblocking(False)
        await self.loop.sock_connect(sock, (target.hostname, target.port))
        self.ws = await websockets.connect(
            self.url, ssl=self.ctx, sock=sock, server_hostname=target.hostname,
            subprotocols=[TUNNEL_SUBPROTOCOL], ping_interval=None, max_size=None,
            open_timeout=15)
        try:
            version = await self._read(12)
            assert version.startswith(b"RFB 003."), version
            await self.ws.send(b"RFB 003.008\n")
            count = (await self._read(1))[0]
            assert 1 in await self._read(count), "no security type None"
            await self.ws.send(b"\x01")
            assert await self._read(4) == b"\0\0\0\0", "security failed"
            await self.ws.send(b"\x01")  # shared
            width, height = struct.unpack(">HH", await self._read(4))
            bpp = (await self._read(16))[0]
            (name_len,) = struct.unpack(">I", await self._read(4))
            await self._read(name_len)
            await self.ws.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw
            incremental = 0
            while True:
                await self.ws.send(struct.pack(">BBHHHH", 3, incremental, 0, 0, width, height))
                await self._update(bpp)
                self.frames += 1
                self.first_frame.set()
                incremental = 1
        except websockets.ConnectionClosed:
            self.closed_at = time.monotonic()
            self.close = (self.ws.close_code, self.ws.close_reason)

    def stop(self):
        if self.ws is not None and not self.done.is_set():
            asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop)
        self.done.wait(10)


# ---- the delaying forwarder (run as `python3 test_network_faults.py proxy ...`) ------------

async def _pump(reader, writer, state):
    """Copies reader to writer, each chunk written `state["delay"]` s after it was read
    (order kept); EOF passed on the same way."""
    queue = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + state["delay"], data))
            if not data:
                return

    async def write():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
    try:
        await asyncio.gather(*tasks)
    except (ConnectionError, OSError):
        pass
    finally:
        for t in tasks:
            t.cancel()
        writer.close()


def run_proxy(listen_host, listen_port, target_host, target_port, delay):
    """Forwards TCP connections; SIGUSR1 switches between no delay and `delay` s."""
    state = {"delay": 0.0}

    def toggle(*_):
        state["delay"] = float(delay) if state["delay"] == 0 else 0.0
        print(f"delay {state['delay']}", flush=True)

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer, state), _pump(up_reader, writer, state))

    async def main():
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle)
        server = await asyncio.start_server(handle, listen_host, int(listen_port))
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- the rig ------------------------------------------------------------------------------

class Rig:
    def __init__(self, base):
        from agent_harness import Agent
        from tether_harness import bin_dir
        from vnc_harness import Xvfb

        self.base = base
        self.xvfb = Xvfb(width=320, height=240).start()
        self.xvfb.solid("#1e90ff")
        self.server = make_server_class()(
            base / "server", port=PORT, listen_host=SERVER_IP,
            extra_args=["--set", f"up.ping_interval={PING}s", "--set", "online.check_interval=0",
                        "--set", "shadow.token_ttl=15s", "--set", "up.request_timeout=10s"])
        self.server.start()
        token = self.server.create_token()["token"]
        self.agent = Agent(base / "agent", prefix=in_ns(NS_AGT), settings={
            "connection.ping_interval": f"{PING}s", "connection.connect_timeout": "3s",
            "connection.backoff_cap": "2s", "discovery.port": "0",
            "discovery.auto_register": "off", "shadow.prompt_user": "false",
            "shadow.display": self.xvfb.display, "shadow.vnc_path": str(bin_dir() / "tether-vnc"),
            "shadow.ui_path": str(bin_dir() / "tether-shadow-ui"), "log.level": "debug"})
        self.agent.state_dir.mkdir(parents=True, exist_ok=True)
        reg = self.agent.register(token)
        assert reg.returncode == 0, reg.stdout + reg.stderr
        self.device_id = reg.stdout.strip()
        self.agent.start()
        self.proxy = None

    def close(self):
        try:
            self.agent.stop(sig=signal.SIGKILL)
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.stop_proxy()
        self.server.stop()
        self.xvfb.stop()

    # -- state --
    def device(self):
        status, _, body = self.server.admin("GET", f"/api/v1/devices/{self.device_id}")
        assert status == 200, body
        return body

    def active_sessions(self):
        status, _, body = self.server.admin("GET", "/api/v1/shadow/sessions")
        assert status == 200, body
        return [s["session"] for s in body["sessions"]]

    def audit_row(self, session):
        status, _, body = self.server.admin("GET", f"/api/v1/audit?device={self.device_id}")
        assert status == 200, body
        return next((r for r in body["sessions"] if r["session"] == session), None)

    def helpers(self):
        out = subprocess.run(["pgrep", "-f", "--", f"--display {self.xvfb.display}( |$)"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def wait_online(self, timeout=30):
        from tether_harness import wait_until
        wait_until(lambda: self.agent.connection_state() == "connected"
                   and self.device()["online"], timeout=timeout, interval=0.1,
                   what="the agent online again; its log:\n" + self.agent.log()[-3000:])

    # -- sessions --
    def start_session(self):
        status, _, body = self.server.admin("POST", f"/api/v1/devices/{self.device_id}/shadow",
                                            {"viewer": "external"})
        assert status == 201, (status, body, self.agent.log()[-3000:])
        viewer = Viewer(body["viewer_url"], self.server.ssl_context())
        assert viewer.first_frame.wait(20), (viewer.error, self.agent.log()[-3000:])
        return body["session"], viewer

    def check_new_session_works(self):
        """A fresh session shows the picture and ends cleanly when its viewer leaves."""
        from tether_harness import wait_until
        session, viewer = self.start_session()
        assert viewer.frames >= 1 and viewer.bytes > 320 * 240
        viewer.stop()
        row = wait_until(lambda: (self.audit_row(session) or {}).get("ended_at")
                         and self.audit_row(session), timeout=15, what="the new session's end")
        assert row["end_reason"] == "viewer_closed", row
        wait_until(lambda: not self.helpers(), timeout=15, what="no helper left")
        wait_until(lambda: self.agent.status().get("shadow") is None, timeout=15,
                   what="the agent idle")

    # -- the forwarder --
    def start_proxy(self):
        self.proxy = subprocess.Popen(
            [*in_ns(NS_SRV), sys.executable, str(Path(__file__).resolve()), "proxy", SERVER_IP,
             str(PROXY_PORT), SERVER_IP, str(PORT), str(DELAY)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proxy.stdout.readline().strip() == "ready", self.proxy.stderr.read()
        # The agent's connections to the server go to the forwarder (new connections only).
        nft(NS_SRV, f"""table ip {NFT_TABLE}nat {{
  chain pre {{ type nat hook prerouting priority dstnat;
    iifname "eth0" ip saddr {AGENT_IP} tcp dport {PORT} redirect to :{PROXY_PORT}; }}
}}""")

    def stop_proxy(self):
        if self.proxy is None:
            return
        sh(*in_ns(NS_SRV), "nft", "delete", "table", "ip", NFT_TABLE + "nat", check=False)
        self.proxy.terminate()
        try:
            self.proxy.wait(10)
        except subprocess.TimeoutExpired:
            self.proxy.kill()
            self.proxy.wait()
        self.proxy = None


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(why)
    if websockets is None:
        pytest.skip("python3-websockets is not installed")
    build_network()
    rig = None
    try:
        rig = Rig(tmp_path_factory.mktemp("netfaults"))
        rig.wait_online()
        yield rig
    finally:
        if rig is not None:
            rig.close()
            print("---- agent log (tail) ----\n" + rig.agent.log()[-6000:])
            print("---- server log (tail) ----\n" + rig.server.log()[-4000:])
        remove_network()


# ---- faults ----------------------------------------------------------------------------

def fault_blackhole(rig):
    nft(NS_AGT, f"""table inet {NFT_TABLE} {{
  chain in {{ type filter hook input priority 0; iifname "eth0" ip saddr {SERVER_IP} drop; }}
  chain out {{ type filter hook output priority 0; oifname "eth0" ip daddr {SERVER_IP} drop; }}
}}""")
    return lambda: nft_clear(NS_AGT)


def fault_reset(rig):
    # Packets from the server are answered with a reset to the server; the agent's packets
    # get a reset delivered back to the agent (over lo, so the input rule lets it in). Resets
    # themselves pass, so that the ones made here reach their socket.
    nft(NS_AGT, f"""table inet {NFT_TABLE} {{
  chain in {{ type filter hook input priority 0;
    iifname "eth0" ip saddr {SERVER_IP} tcp flags & rst == 0 reject with tcp reset; }}
  chain out {{ type filter hook output priority 0;
    oifname "eth0" ip daddr {SERVER_IP} tcp flags & rst == 0 reject with tcp reset; }}
}}""")
    return lambda: nft_clear(NS_AGT)


def fault_link_down(rig):
    sh("ip", "-n", NS_AGT, "link", "set", "eth0", "down")
    return lambda: sh("ip", "-n", NS_AGT, "link", "set", "eth0", "up")


def fault_delay_loss(rig):
    rig.proxy.send_signal(signal.SIGUSR1)  # delay on
    nft(NS_AGT, f"""table inet {NFT_TABLE} {{
  chain in {{ type filter hook input priority 0;
    iifname "eth0" numgen random mod 100 < {LOSS} drop; }}
  chain out {{ type filter hook output priority 0;
    oifname "eth0" numgen random mod 100 < {LOSS} drop; }}
}}""")

    def repair():
        nft_clear(NS_AGT)
        rig.proxy.send_signal(signal.SIGUSR1)  # delay off
    return repair


FAULTS = {"blackhole": fault_blackhole, "reset": fault_reset, "link_down": fault_link_down,
          "delay_loss": fault_delay_loss}


def through_proxy(rig):
    """The forwarder in the path (no delay yet): the agent's connections are made again."""
    rig.start_proxy()
    rig.agent.stop()
    rig.agent.start()
    rig.wait_online()
    address = rig.device()["address"]
    assert address.startswith(SERVER_IP), f"the agent is not behind the forwarder: {address}"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_cut_mid_tunnel(rig, fault):
    from tether_harness import wait_until

    if fault == "delay_loss":
        through_proxy(rig)
    rig.wait_online()
    session, viewer = rig.start_session()
    wait_until(lambda: rig.helpers(), what="tether-vnc running")
    wait_until(lambda: "running" in (rig.agent.status().get("shadow") or ""),
               what="the agent's status showing the session")
    # Data in flight when the fault comes: the picture changes (an update the viewer asked
    # for), and changes again just before the fault.
    rig.xvfb.solid("#ff8c00")
    wait_until(lambda: viewer.frames >= 2, what="an incremental update at the viewer")
    frames_before = viewer.frames
    rig.xvfb.solid("#1e90ff")

    started = time.monotonic()
    repair = FAULTS[fault](rig)
    server_mark, agent_mark = f"shadowing session {session} ended", f"shadowing {session} ended ("
    seen = {}
    try:
        deadline = started + 4 * PING + DELAY + 3 * MARGIN
        while len(seen) < 3 and time.monotonic() < deadline:
            now = time.monotonic() - started
            if "server" not in seen and server_mark in rig.server.log():
                seen["server"] = now
            if "agent" not in seen and agent_mark in rig.agent.log():
                seen["agent"] = now
            if "viewer" not in seen and viewer.done.is_set():
                seen["viewer"] = viewer.closed_at - started
            time.sleep(0.05)
        server_log, agent_log = rig.server.log(), rig.agent.log()
        print(f"\n{fault}: server ended the session after {seen.get('server', -1):.2f} s, "
              f"agent after {seen.get('agent', -1):.2f} s, viewer closed after "
              f"{seen.get('viewer', -1):.2f} s (ping interval {PING} s)")
        assert "server" in seen, f"the server did not end {session}:\n{server_log[-3000:]}"
        assert "agent" in seen, f"the agent did not end {session}:\n{agent_log[-3000:]}"
        assert "viewer" in seen, "the viewer's WebSocket is still open"
        bound = 2 * PING + MARGIN
        assert seen["agent"] <= bound, f"agent detection {seen['agent']:.2f} s > {bound} s"
        server_bound = bound + (DELAY if fault == "delay_loss" else 0)
        assert seen["server"] <= server_bound, \
            f"server detection {seen['server']:.2f} s > {server_bound} s"

        # Freed on the server: not active, an audit row with the reason; the UP channel gone.
        assert session not in rig.active_sessions()
        row = wait_until(lambda: (rig.audit_row(session) or {}).get("ended_at")
                         and rig.audit_row(session), timeout=10, what="the audit row")
        print(f"{fault}: audit end_reason {row['end_reason']!r} ({row.get('end_message')!r}), "
              f"{row['bytes_to_viewer']} bytes to the viewer; viewer close {viewer.close}, "
              f"{viewer.frames - frames_before} updates after the first")
        assert row["end_reason"] in ("device_closed", "tunnel_lost"), row
        if fault != "delay_loss":
            wait_until(lambda: not rig.device()["online"], timeout=2 * PING + MARGIN,
                       what="the device offline on the server")
            print(f"{fault}: the device is offline on the server")

        # Freed on the agent: no helper left, the status file says why.
        wait_until(lambda: not rig.helpers(), timeout=10,
                   what=f"tether-vnc/indicator gone: {rig.helpers()}")
        status = wait_until(lambda: (lambda s: s if s.get("shadow") is None else None)(
            rig.agent.status()), timeout=10, what="the agent's status without the session")
        print(f"{fault}: agent status: connection {status.get('connection')}, "
              f"last shadow {status.get('last_shadow')!r}")
        assert "tunnel_lost" in (status.get("last_shadow") or ""), status
        assert rig.agent.proc.poll() is None, "the agent exited"
    finally:
        repaired = time.monotonic()
        repair()
        viewer.stop()

    rig.wait_online(timeout=30)
    print(f"{fault}: online again {time.monotonic() - repaired:.2f} s after the repair")
    # The agent's shadow_stop, lost with the network, comes again after its hello: the audit
    # then carries the device's reason instead of the server's device_closed.
    row = wait_until(lambda: (lambda r: r if r and r["end_reason"] == "tunnel_lost" else None)(
        rig.audit_row(session)), timeout=10, what=f"tunnel_lost in the audit: "
        f"{rig.audit_row(session)}")
    print(f"{fault}: the audit then says {row['end_reason']!r} ({row.get('end_message')!r})")
    rig.check_new_session_works()
    if fault == "delay_loss":
        rig.stop_proxy()


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "proxy":
        run_proxy(*sys.argv[2:7])
    else:
        sys.exit("usage: test_network_faults.py proxy LISTEN_HOST LISTEN_PORT TARGET_HOST "
                 "TARGET_PORT DELAY")
