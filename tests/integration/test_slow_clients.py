"""Slow and half-open clients (issue 11): a TLS handshake or an HTTP upgrade sent one byte a
second, WebSocket frames never completed, thousands of connections that never say anything,
tunnel ends that never pair or never read. Each is cut off by a timeout or kept out by a cap,
while a device's UP channel and the REST API keep working: their latency is measured during
the whole run and printed (not asserted: the machine may be busy).
"""

import asyncio
import resource
import select
import socket
import ssl
import time

import pytest

import ws_frames as wf
from fake_device import FakeDevice, enroll, request_async
from tether_harness import wait_no_sessions

PING_INTERVAL = 2    # up.ping_interval: silent channels are cut after twice this
TOKEN_TTL = 2        # shadow.token_ttl: unpaired tunnel ends are closed (4408) after this
LWS_TIMEOUT = 5      # lws 4.1.6's default context timeout_secs (TLS accept, negotiation)


def settings():
    return ["--set", f"up.ping_interval={PING_INTERVAL}s", "--set",
            f"shadow.token_ttl={TOKEN_TTL}s"]


def client_hello(server):
    """The bytes of a real TLS ClientHello for the server (made through a memory BIO)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = server.ssl_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


class Attacker:
    """One connection: bytes to trickle (one per `every` seconds), the time it was cut off."""

    def __init__(self, kind, sock, trickle=b"", every=1.0):
        self.kind = kind
        self.sock = sock
        self.trickle = trickle
        self.every = every
        self.sent = 0
        self.next_at = time.monotonic()
        self.opened = time.monotonic()
        self.cut_after = None

    def step(self, now):
        if self.cut_after is not None or self.sent >= len(self.trickle) or now < self.next_at:
            return
        try:
            self.sock.send(self.trickle[self.sent:self.sent + 1])
            self.sent += 1
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError:
            self.cut_after = now - self.opened
        self.next_at = now + self.every

    def poll_closed(self, now):
        if self.cut_after is not None:
            return True
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            data = b""
        if data == b"" or self.kind.startswith("tcp"):  # anything at all ends a silent one
            self.cut_after = now - self.opened
            return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def nonblocking_tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    return s


def tls_open(server, ctx=None):
    s = wf.tls_connect(server.port, ctx or server.ssl_context())
    s.setblocking(False)
    return s


def up_upgraded(server, device):
    ws = wf.upgrade(server.port, server.ssl_context(device.cert, device.key), "/up",
                    "tether.up.v1")
    ws.sock.setblocking(False)
    return ws


def upgrade_request(port, path):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n").encode()


def half_open_count():
    """2000 silent connections, fewer when the file limit (shared by both ends' processes
    here, each needing one fd per connection plus room to work) does not allow them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(0, min(2000, soft - 600))


def test_slow_and_silent_clients_are_cut_off_while_others_keep_working(make_server, tmp_path):
    silent = half_open_count()  # before the server starts: it inherits the raised limit
    if silent < 500:
        pytest.skip(f"the file limit ({resource.getrlimit(resource.RLIMIT_NOFILE)}) leaves "
                    "room for fewer than 500 silent connections")
    server = make_server(extra_args=settings()).start()
    monitor_dev = enroll(server, tmp_path, "monitor")
    header_dev = enroll(server, tmp_path, "header-only", macs=("52:54:00:00:00:02",))
    payload_dev = enroll(server, tmp_path, "part-payload", macs=("52:54:00:00:00:03",))

    monitor = None
    attackers = []
    try:
        hello = client_hello(server)
        attackers.append(Attacker("TLS ClientHello, 1 byte/s", nonblocking_tcp(server.port),
                                  hello))
        attackers.append(Attacker("HTTP upgrade to /up, 1 byte/s", tls_open(server),
                                  upgrade_request(server.port, "/up")))
        attackers.append(Attacker("HTTP request, 1 byte/s", tls_open(server),
                                  b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 50))
        ws = up_upgraded(server, header_dev)
        ws.sock.send(b"\x81\xfe")  # a text frame's first two bytes; its length never comes
        attackers.append(Attacker("UP frame header never completed", ws.sock))
        ws = up_upgraded(server, payload_dev)
        ws.sock.send(wf.frame(wf.OP_TEXT, b"", length=1000, key=b"\0\0\0\0") + b"{" * 10)
        attackers.append(Attacker("UP frame payload never completed (10 of 1000 bytes)",
                                  ws.sock))
        opened_at = time.monotonic()
        # Thousands of connections that never say anything, and some that stop after TLS or
        # halfway through a tunnel upgrade (a viewer end that never arrives).
        for _ in range(silent):
            attackers.append(Attacker("tcp: connected, silent", nonblocking_tcp(server.port)))
        for _ in range(100):
            attackers.append(Attacker("TLS done, silent", tls_open(server)))
        for i in range(100):
            s = tls_open(server)
            s.setblocking(True)
            s.sendall(upgrade_request(server.port, f"/tunnel/viewer/s{i}?token=t")[:60])
            s.setblocking(False)
            attackers.append(Attacker("tunnel upgrade, half sent", s))
        print(f"opened {len(attackers)} connections in {time.monotonic() - opened_at:.2f} s "
              f"({silent} silent TCP)")
        # A device connects now, with all of them hanging on (its channel would be cut by the
        # keepalive if it stayed silent while they were opened).
        t0 = time.monotonic()
        monitor = wf.upgrade(server.port,
                             server.ssl_context(monitor_dev.cert, monitor_dev.key), "/up",
                             "tether.up.v1")
        print(f"a device's UP channel opened in {(time.monotonic() - t0) * 1000:.1f} ms")

        # While they hang on: the monitor device pings, the REST API answers.
        up_rtts, rest_rtts = [], []
        started = time.monotonic()
        deadline = started + 4 * PING_INTERVAL + 3 * LWS_TIMEOUT + 10
        last_probe = 0.0
        poller = select.poll()
        by_fd = {}
        for a in attackers:
            poller.register(a.sock.fileno(), select.POLLIN)
            by_fd[a.sock.fileno()] = a
        while time.monotonic() < deadline:
            now = time.monotonic()
            for a in attackers:
                a.step(now)
            if all(a.cut_after is not None for a in attackers):
                break
            ready = poller.poll(50)
            now = time.monotonic()
            for fd, _ in ready:
                a = by_fd[fd]
                if a.poll_closed(now):
                    poller.unregister(fd)
            for a in attackers:
                if a.trickle and a.cut_after is None:
                    a.poll_closed(now)
            if now - last_probe >= 0.5:
                last_probe = now
                up_rtts.append(monitor.ping_roundtrip(b"mon"))
                t0 = time.monotonic()
                status, _, _ = server.admin("GET", "/api/v1/devices")
                rest_rtts.append(time.monotonic() - t0)
                assert status == 200

        by_kind = {}
        for a in attackers:
            by_kind.setdefault(a.kind, []).append(a.cut_after)
        for kind, cuts in by_kind.items():
            done = [c for c in cuts if c is not None]
            line = f"{kind}: {len(done)}/{len(cuts)} cut off"
            if done:
                line += f", after {min(done):.1f}-{max(done):.1f} s"
            print(line)
        print(f"during the run: UP ping rtt median {median(up_rtts) * 1000:.1f} ms, max "
              f"{max(up_rtts) * 1000:.1f} ms ({len(up_rtts)} pings); REST GET /api/v1/devices "
              f"median {median(rest_rtts) * 1000:.1f} ms, max {max(rest_rtts) * 1000:.1f} ms")
        left = {k: sum(c is None for c in cuts) for k, cuts in by_kind.items()
                if any(c is None for c in cuts)}
        assert not left, f"still open at the end: {left}"
        # The monitor's channel lived through all of it.
        print(f"monitor channel after the run: ping {monitor.ping_roundtrip(b'end') * 1000:.1f} ms")
    finally:
        for a in attackers:
            a.close()
        if monitor is not None:
            monitor.close()


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def test_tunnel_ends_that_never_pair_or_never_read(make_server, tmp_path):
    """A device end whose viewer never comes is closed with 4408 after shadow.token_ttl; a
    spliced viewer that never reads nor answers a ping is cut by the keepalive (two ping
    intervals), and its device end is closed with the reason; shadow.max_sessions caps the
    sessions (503)."""
    server = make_server(extra_args=settings() + ["--set", "shadow.max_sessions=1"]).start()
    device = enroll(server, tmp_path)
    other = enroll(server, tmp_path, "other", macs=("52:54:00:00:00:09",))

    async def session(dev):
        call = request_async(server, "POST", f"/api/v1/devices/{dev.device.device_id}/shadow",
                             {"viewer": "external"})
        start = await dev.next_shadow_start()
        await dev.accept_shadow(start)
        status, _, created = await call
        assert status == 201, created
        return start, created

    async def closed(ws, timeout):
        t0 = time.monotonic()
        try:
            while True:
                await asyncio.wait_for(ws.recv(), timeout)
        except Exception:
            pass
        return ws.close_code, ws.close_reason, time.monotonic() - t0

    async def run():
        dev = await FakeDevice.online(server, device)
        dev2 = await FakeDevice.online(server, other)
        # 1. The device end alone.
        start, created = await session(dev)
        tunnel = await dev.open_tunnel(start)
        code, reason, took = await closed(tunnel, 4 * TOKEN_TTL + 10)
        print(f"unpaired device end: closed {code} {reason!r} after {took:.1f} s "
              f"(shadow.token_ttl {TOKEN_TTL} s)")
        assert code == 4408
        await dev.shadow_stop(created["session"], "tunnel_lost")
        await wait_no_sessions(server)

        # 2. Spliced; the viewer never reads and never answers pings.
        start, created = await session(dev)
        tunnel = await dev.open_tunnel(start)
        url = created["viewer_url"]
        viewer = await asyncio.to_thread(wf.upgrade, server.port, server.ssl_context(),
                                         url[url.index("/tunnel/"):], "binary")
        # The cap: one session at a time here.
        status, _, body = await request_async(
            server, "POST", f"/api/v1/devices/{other.device_id}/shadow", {"viewer": "external"})
        print(f"a second session with shadow.max_sessions=1: {status} {body.get('error')}")
        assert status == 503
        # The device keeps sending (as an RFB server would); the viewer reads nothing.
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < 4 * PING_INTERVAL + 10:
            try:
                await asyncio.wait_for(tunnel.send(b"x" * 1024), 1)
                await asyncio.sleep(0.01)
            except asyncio.TimeoutError:
                continue  # backpressure: the relay stopped reading the device
            except Exception:
                break
        code, reason, _ = await closed(tunnel, 10)
        took = time.monotonic() - t0
        print(f"spliced, viewer never reads nor pongs: device end closed {code} {reason!r} "
              f"after {took:.1f} s (up.ping_interval {PING_INTERVAL} s)")
        assert code == 1000 and reason == "viewer_closed"
        viewer.close()
        await dev.shadow_stop(created["session"], "viewer_closed")
        await wait_no_sessions(server)
        await dev.close()
        await dev2.close()

    asyncio.run(run())
