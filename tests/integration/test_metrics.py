"""Metrics (issue 12, docs/metrics.md): GET /metrics on tether-server and tether-gateway and
the agent's opt-in metrics file. Each process is driven through known activity (enrollments
that succeed and fail, UP channels accepted, refused and reopened, a shadowing session that
relays a known number of bytes, discovery probes answered and dropped), then scraped; the
values must match that activity, /metrics must refuse requests without the metrics token,
and `promtool check metrics` (Debian's prometheus package) must find nothing wrong in any
scrape."""

import asyncio
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest
import websockets

from fake_device import FakeDevice, enroll, request_async, viewer_connect
from gateway_harness import joined_gateway
from tether_harness import DeviceKey, bin_dir, free_port, up_connect, wait_until

CONTENT_TYPE = "text/plain; version=0.0.4"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---- scraping and parsing -------------------------------------------------------------------

def scrape(host_port, ca_file, token):
    """GET /metrics; (status, content type, body text)."""
    import http.client
    ctx = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", host_port, context=ctx, timeout=15)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


def parse(text):
    """{(name, ((label, value), ...)): value}, labels sorted; fails on a malformed line."""
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = tuple(sorted(LABEL.findall(labels or "")))
        samples[(name, pairs)] = float(value)
    return samples, types


def value(samples, name, **labels):
    """The sample with exactly these non-empty labels (empty label values count as absent)."""
    want = tuple(sorted(labels.items()))
    for (n, pairs), v in samples.items():
        if n == name and tuple(p for p in pairs if p[1] != "") == want:
            return v
    raise AssertionError(f"no sample {name}{labels}; have: "
                         f"{sorted(k for k in samples if k[0] == name)}")


def promtool_check(text, what):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus, scripts/deps) is not installed: "
                    f"the {what} scrape was checked by this test's own parser only")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    report = (proc.stdout + proc.stderr).strip()
    print(f"promtool check metrics ({what}): rc {proc.returncode} {report or 'no problems'}")
    assert proc.returncode == 0 and not report, f"promtool on the {what} scrape:\n{report}"


def metrics_token(state_dir):
    path = state_dir / "metrics.token"
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    return path.read_text().strip()


# ---- the server -----------------------------------------------------------------------------

def test_server_metrics_follow_enrollment_channels_and_shadowing(server, tmp_path):
    t0 = time.monotonic()
    token = metrics_token(server.state_dir)

    # Authentication first: nothing without a valid token.
    for presented in (None, "not-the-token", token[:-2] + "xx"):
        status, _, body = scrape(server.port, server.ca_file, presented)
        assert status == 401, (presented, body)
    status, ctype, baseline_text = scrape(server.port, server.ca_file, token)
    assert status == 200 and ctype.startswith(CONTENT_TYPE), (status, ctype)
    # The admin token is accepted too.
    assert scrape(server.port, server.ca_file, server.admin_token())[0] == 200
    base, types = parse(baseline_text)
    assert value(base, "tether_devices_connected") == 0
    assert value(base, "tether_enrollments_total", kind="new") == 0
    assert value(base, "tether_build_info", version=re.search(
        r'version="([^"]*)"', baseline_text).group(1)) == 1
    assert value(base, "process_resident_memory_bytes") > 1e6
    assert value(base, "process_open_fds") > 3
    assert abs(value(base, "process_start_time_seconds") - time.time()) < 300
    assert types["tether_enrollments_total"] == "counter"
    assert types["tether_devices_connected"] == "gauge"

    # Enrollment: one new device, one unknown token, one token used twice.
    created = server.create_token()["token"]
    first = DeviceKey(tmp_path, "first")
    assert first.enroll(server, created, hostname="first")[0] == 201
    again = DeviceKey(tmp_path, "again")
    assert again.enroll(server, created, hostname="again")[0] == 401
    stranger = DeviceKey(tmp_path, "stranger")
    unknown_secret = "tether1.x." + "A" * 43  # well-formed, never issued
    assert stranger.enroll(server, unknown_secret)[0] == 401
    revoked = enroll(server, tmp_path, name="revoked")
    assert server.ctl("device", "revoke", revoked.device_id[:10]).returncode == 0

    size = 5 * 64 * 1024

    async def run():
        # A device greets, leaves and comes back: one reconnect.
        dev = await FakeDevice.online(server, first)
        await dev.close()
        dev = await FakeDevice.online(server, first)
        # A revoked device and a client without a certificate are refused.
        for device in (revoked, None):
            with pytest.raises((websockets.InvalidStatusCode, websockets.InvalidHandshake,
                                ConnectionError, ssl.SSLError)):
                ws = await up_connect(server, device)
                await ws.recv()

        # A shadowing session relays a known number of bytes each way, then the viewer leaves.
        call = request_async(server, "POST", f"/api/v1/devices/{first.device_id}/shadow",
                             {"viewer": "external"})
        start = await dev.next_shadow_start()
        await dev.accept_shadow(start)
        status, _, created_session = await call
        assert status == 201, created_session
        tunnel = await dev.open_tunnel(start)
        viewer = await viewer_connect(server, created_session["viewer_url"])
        during = parse((await asyncio.to_thread(scrape, server.port, server.ca_file, token))[2])[0]
        assert value(during, "tether_shadow_sessions_active") == 1
        payload = os.urandom(size)
        for i in range(0, size, 64 * 1024):  # to the viewer: size; to the device: size / 2
            await tunnel.send(payload[i:i + 64 * 1024])
            await viewer.send(payload[i // 2:(i + 64 * 1024) // 2])
        got_viewer = got_device = 0
        while got_viewer < size:
            got_viewer += len(await asyncio.wait_for(viewer.recv(), 10))
        while got_device < size // 2:
            got_device += len(await asyncio.wait_for(tunnel.recv(), 10))
        assert (got_viewer, got_device) == (size, size // 2)
        await viewer.close()
        await dev.shadow_stop(created_session["session"], "viewer_closed")
        await tunnel.close()

        def ended():
            s = parse(scrape(server.port, server.ca_file, token)[2])[0]
            return s if value(s, "tether_shadow_sessions_active") == 0 else None
        after = await asyncio.to_thread(wait_until, ended, 10, 0.1, "the session to end")
        await dev.close()
        return after

    after = asyncio.run(run())
    print(after and f"scraped {len(after)} samples")

    assert value(after, "tether_enrollments_total", kind="new") == 2
    assert value(after, "tether_enrollments_total", kind="re_enrolled") == 0
    assert value(after, "tether_enrollment_failures_total", reason="used_token") == 1
    assert value(after, "tether_enrollment_failures_total", reason="unknown_token") == 1
    assert value(after, "tether_channel_handshakes_total", channel="up", result="accepted") == 2
    assert value(after, "tether_channel_handshakes_total", channel="up", result="refused",
                 reason="revoked") == 1
    assert value(after, "tether_channel_handshakes_total", channel="up", result="refused",
                 reason="bad_certificate") == 1
    assert value(after, "tether_channel_reconnects_total", channel="up") == 1
    assert value(after, "tether_devices_connected") == 1
    assert value(after, "tether_devices_online") == 1
    assert value(after, "tether_channels_open", channel="up") == 1
    assert value(after, "tether_tunnel_relayed_bytes_total", direction="to_viewer") == size
    assert value(after, "tether_tunnel_relayed_bytes_total", direction="to_device") == size // 2
    assert value(after, "tether_shadow_sessions_total", spliced="true",
                 reason="viewer_closed") == 1
    assert value(after, "tether_registration_requests_total", answer="issued") == 0

    # The device's channel closed: the gauges follow.
    def disconnected():
        s = parse(scrape(server.port, server.ca_file, token)[2])[0]
        return value(s, "tether_devices_connected") == 0
    wait_until(disconnected, 10, 0.1, "the device to show disconnected")

    _, _, final_text = scrape(server.port, server.ca_file, token)
    promtool_check(baseline_text, "server (fresh)")
    promtool_check(final_text, "server (after activity)")
    print(f"server metrics test: {time.monotonic() - t0:.1f} s")


# ---- the gateway and the agent --------------------------------------------------------------

def scan_probe(nonce, reply_port, padding=300):
    """docs/protocol.md §3.1: header (magic, version, type 1, reserved, nonce), reply port,
    padding length, padding."""
    return (b"TTHD" + bytes([1, 1]) + b"\0\0" + struct.pack(">Q", nonce) +
            struct.pack(">HH", reply_port, padding) + bytes(padding))


def free_udp_and_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (the agent binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")


def test_gateway_and_agent_metrics(make_server, make_agent, tmp_path):
    if not (bin_dir() / "tether-gateway").exists():
        pytest.skip(f"tether-gateway is not built in {bin_dir()}")
    t0 = time.monotonic()
    # The server's scans probe the agent's discovery port (on 127.0.0.1).
    discovery_port = free_udp_and_tcp_port()
    server = make_server(extra_args=["--registration-port", str(free_port()), "--set",
                                     f"discovery.device_port={discovery_port}"]).start()
    started = []
    try:
        gateway = joined_gateway(server, tmp_path, on_start=started.append)
        gw_token = metrics_token(gateway.state_dir)
        ca_file = server.ca_file
        assert scrape(gateway.port, ca_file, None)[0] == 401
        assert scrape(gateway.port, ca_file, "wrong")[0] == 401
        # The server's admin token is not the gateway's business.
        assert scrape(gateway.port, ca_file, server.admin_token())[0] == 401
        status, ctype, gw_fresh = scrape(gateway.port, ca_file, gw_token)
        assert status == 200 and ctype.startswith(CONTENT_TYPE), (status, ctype)
        fresh, _ = parse(gw_fresh)
        assert value(fresh, "tether_gateway_server_link_up") == 1
        assert value(fresh, "tether_channel_handshakes_total", channel="link",
                     result="accepted") == 1
        assert value(fresh, "tether_channels_open", channel="link") == 1
        assert value(fresh, "tether_gateway_devices_connected") == 0

        # An agent enrolled through the gateway, writing its metrics file every second.
        proc = server.ctl("enroll-token", "create", "--via", "gw1")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        metrics_file = tmp_path / "textfile" / "tether-agent.prom"
        metrics_file.parent.mkdir()
        agent = make_agent(settings={
            "metrics.file": str(metrics_file), "metrics.interval": "1s",
            "discovery.port": str(discovery_port), "discovery.address": "127.0.0.1",
            "discovery.allow_loopback": "true", "discovery.auto_register": "off"})
        reg = agent.register(proc.stdout.strip())
        assert reg.returncode == 0, reg.stdout + reg.stderr
        before_start = time.time()
        agent.start()
        agent.wait_connected()

        # Discovery: one scan probe answered, one malformed datagram and one probe naming a
        # reserved reply port dropped.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            reply_port = sock.getsockname()[1]
            sock.sendto(scan_probe(7, reply_port), ("127.0.0.1", discovery_port))
            data, _ = sock.recvfrom(2048)
            assert data[:4] == b"TTHD", data[:8]
            sock.sendto(b"not a probe", ("127.0.0.1", discovery_port))
            sock.sendto(scan_probe(8, 80), ("127.0.0.1", discovery_port))

        # A scan from the server: its probe is answered, the reply reaches the server's socket.
        status, _, job = server.admin("POST", "/api/v1/scan",
                                      {"broadcast": "127.0.0.1", "timeout_ms": 300})
        assert status == 202, job
        done = wait_until(lambda: (lambda r: r[2] if r[2]["state"] == "done" else None)(
            server.admin("GET", f"/api/v1/scan/{job['id']}")), 15, 0.1, "the scan to finish")
        assert [d["address"] for d in done["devices"]] == ["127.0.0.1"], done

        def agent_metrics(predicate):
            def ready():
                if not metrics_file.exists():
                    return None
                text = metrics_file.read_text()
                s = parse(text)[0]
                return (s, text) if predicate(s) else None
            return wait_until(ready, 15, 0.1, f"the agent's metrics file:\n"
                              f"{metrics_file.read_text() if metrics_file.exists() else '-'}")

        samples, agent_text = agent_metrics(
            lambda s: value(s, "tether_agent_discovery_dropped_total", reason="reserved_port") >= 1
            and value(s, "tether_agent_discovery_dropped_total", reason="malformed") >= 1
            and value(s, "tether_agent_discovery_replies_total", probe="scan") >= 2)
        assert metrics_file.stat().st_mode & 0o777 == 0o644
        assert value(samples, "tether_agent_channel_up") == 1
        assert value(samples, "tether_agent_channel_via_gateway") == 1
        assert value(samples, "tether_agent_channel_connects_total") == 1
        assert value(samples, "tether_agent_channel_reconnects_total") == 0
        assert value(samples, "tether_agent_channel_last_connect_time_seconds") >= int(before_start)
        assert value(samples, "tether_agent_discovery_replies_total", probe="scan") == 2
        assert value(samples, "tether_agent_discovery_replies_total", probe="online") == 0
        assert value(samples, "tether_agent_discovery_dropped_total", reason="malformed") == 1
        assert value(samples, "tether_agent_discovery_dropped_total", reason="reserved_port") == 1
        assert value(samples, "tether_agent_discovery_datagrams_total") == 4
        assert value(samples, "tether_agent_shadow_sessions_active") == 0
        assert not [p for p in metrics_file.parent.iterdir() if p.name != metrics_file.name], \
            "temporary files left beside the metrics file"

        # The gateway and the server both see the device.
        _, _, gw_text = scrape(gateway.port, ca_file, gw_token)
        gw, _ = parse(gw_text)
        assert value(gw, "tether_gateway_devices_connected") == 1
        assert value(gw, "tether_channel_handshakes_total", channel="up", result="accepted") == 1
        assert value(gw, "tether_gateway_tunnels_active") == 0
        srv_token = metrics_token(server.state_dir)
        srv_text = scrape(server.port, ca_file, srv_token)[2]
        srv = parse(srv_text)[0]
        assert value(srv, "tether_devices_connected") == 1
        assert value(srv, "tether_devices_online") == 1
        assert value(srv, "tether_gateway_links_connected") == 1
        # The server's link to the gateway is not an /up channel of the server's listener.
        assert value(srv, "tether_channels_open", channel="up") == 0
        assert value(srv, "tether_lan_replies_received_total", outcome="matched") == 1
        assert value(srv, "tether_lan_replies_received_total", outcome="unmatched") == 0

        # The agent stops: its last write says the channel is down.
        agent.stop()
        samples, _ = agent_metrics(lambda s: value(s, "tether_agent_channel_up") == 0)
        assert value(samples, "tether_agent_channel_connects_total") == 1

        def gateway_sees_none():
            s = parse(scrape(gateway.port, ca_file, gw_token)[2])[0]
            return value(s, "tether_gateway_devices_connected") == 0
        wait_until(gateway_sees_none, 10, 0.1, "the gateway to drop the device")

        promtool_check(gw_fresh, "gateway (fresh)")
        promtool_check(gw_text, "gateway (device connected)")
        promtool_check(agent_text, "agent file")
        promtool_check(srv_text, "server (device behind the gateway)")
        print(f"gateway and agent metrics test: {time.monotonic() - t0:.1f} s")
    finally:
        for gw in started:
            gw.stop()
