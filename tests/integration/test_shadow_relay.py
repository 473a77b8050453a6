"""The server's half of shadowing (docs/protocol.md §5, docs/api.md "Shadowing and audit"):
sessions made through the REST API and answered by a fake device over a real UP channel, its
tunnel and a viewer joined at the relay over real TLS WebSockets, with the admission checks
(token, Origin, the device's certificate), the splice (bytes intact both ways, backpressure),
the ways a session ends, the audit log, and tetherctl shadow/audit."""

import asyncio
import contextlib
import hashlib
import json
import os
import re
import subprocess

import pytest
import websockets

from fake_device import (FakeDevice, enroll, request_async, tunnel_connect, viewer_connect)
from tether_harness import bin_dir

CHUNK = 64 * 1024


def refused_status(exc_info):
    """The HTTP status of a refused WebSocket handshake."""
    exc = exc_info.value
    return getattr(exc, "status_code", None)


async def start_session(server, dev, body=None, answer=True, **accept):
    """POST shadow; the fake device accepts. Returns (shadow_start message, 201 body)."""
    call = request_async(server, "POST", f"/api/v1/devices/{dev.device.device_id}/shadow",
                         body or {})
    start = await dev.next_shadow_start()
    if answer:
        await dev.accept_shadow(start, **accept)
    status, _, response = await call
    assert status == 201, response
    return start, response


async def send_all(ws, data):
    for i in range(0, len(data), CHUNK):
        await ws.send(data[i:i + CHUNK])


async def recv_exactly(ws, n, timeout=60):
    out = bytearray()
    while len(out) < n:
        message = await asyncio.wait_for(ws.recv(), timeout)
        assert isinstance(message, bytes), "the relay sent a text message"
        out += message
    assert len(out) == n, f"got {len(out)} bytes, expected {n}"
    return bytes(out)


async def closed_with(ws, timeout=10):
    """Reads until the connection closes; (code, reason)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        return ws.close_code, ws.close_reason


def audit_rows(server, device_id=None):
    path = "/api/v1/audit" + (f"?device={device_id}" if device_id else "")
    status, _, body = server.admin("GET", path)
    assert status == 200, body
    return body["sessions"]


def active_sessions(server):
    status, _, body = server.admin("GET", "/api/v1/shadow/sessions")
    assert status == 200, body
    return body["sessions"]


class CtlShadow:
    """A running `tetherctl shadow`: its process and the lines of stdout read so far."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []

    async def viewer_port(self):
        """Reads stdout up to the line that says what to run (`vncviewer 127.0.0.1::PORT`,
        printed once the viewer listener is up); PORT."""
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 15)).decode()
            assert line, "tetherctl ended early: " + (await self.proc.stderr.read()).decode()
            self.lines.append(line)
            m = re.search(r"vncviewer 127\.0\.0\.1::(\d+)", line)
            if m:
                return int(m[1])

    async def finish(self, timeout=15):
        """Waits for it to exit; (exit code, all of stdout, stderr)."""
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        return self.proc.returncode, "".join(self.lines) + out.decode(), err.decode()


@contextlib.asynccontextmanager
async def tetherctl_shadow(server, tmp_path, *args):
    """`tetherctl shadow ARGS...` as the admin, with no TETHER_* settings from this test run
    and a HOME of its own; killed on the way out if still running (a failed test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["HOME"] = str(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir() / "tetherctl"), "--server", server.url, "--token-file",
        str(server.token_file), "--ca-file", str(server.ca_file), "shadow", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        yield CtlShadow(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def wait_for(predicate, what, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_bytes_cross_intact_both_ways(server, tmp_path):
    device = enroll(server, tmp_path)
    size = 20 * 1024 * 1024

    async def run():
        dev = await FakeDevice.online(server, device)
        start, created = await start_session(server, dev, {"viewer": "external"})
        body = start["body"]
        assert body["tunnel_url"] == f"wss://127.0.0.1:{server.port}/tunnel/device/{created['session']}"
        assert len(created["session"]) == 22 and len(body["token"]) == 43
        assert created["viewer_url"].startswith(
            f"wss://127.0.0.1:{server.port}/tunnel/viewer/{created['session']}?token=")
        assert created["expires_in"] == 30 and created["consent"] == "not_required"

        tunnel = await dev.open_tunnel(start)
        assert tunnel.subprotocol == "tether.tunnel.v1"
        # The RFB server speaks first: held until the viewer arrives.
        await tunnel.send(b"RFB 003.008\n")
        viewer = await viewer_connect(server, created["viewer_url"])
        assert viewer.subprotocol == "binary"
        assert await recv_exactly(viewer, 12) == b"RFB 003.008\n"

        to_viewer = os.urandom(size)
        to_device = os.urandom(size)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(
            send_all(tunnel, to_viewer), send_all(viewer, to_device),
            recv_exactly(viewer, size), recv_exactly(tunnel, size))
        elapsed = loop.time() - t0
        print(f"relayed 2 x {size >> 20} MiB in {elapsed:.2f} s")
        assert hashlib.sha256(results[2]).hexdigest() == hashlib.sha256(to_viewer).hexdigest()
        assert hashlib.sha256(results[3]).hexdigest() == hashlib.sha256(to_device).hexdigest()

        sessions = await asyncio.to_thread(active_sessions, server)
        assert len(sessions) == 1 and sessions[0]["state"] == "spliced"
        assert sessions[0]["bytes_to_viewer"] == size + 12
        assert sessions[0]["bytes_to_device"] == size

        # The viewer leaves: the device end is closed with the reason, and the device says so.
        await viewer.close()
        assert await closed_with(tunnel) == (1000, "viewer_closed")
        await dev.shadow_stop(created["session"], "viewer_closed")
        rows = await wait_for(lambda: [r for r in audit_rows(server) if r["ended_at"]],
                              "the audit row to be final")
        row = rows[0]
        assert row["session"] == created["session"]
        assert row["end_reason"] == "viewer_closed"
        assert row["admin"] == "admin" and row["viewer"] == "external"
        assert row["hostname"] == "device" and row["device"] == device.device_id
        assert row["bytes_to_viewer"] == size + 12 and row["bytes_to_device"] == size
        assert row["started_at"] is not None and row["ended_at"] >= row["started_at"]
        await dev.close()

    asyncio.run(run())


def test_a_slow_viewer_slows_the_device_and_memory_stays_bounded(server, tmp_path):
    device = enroll(server, tmp_path)
    total = 256 * 1024 * 1024

    async def run():
        dev = await FakeDevice.online(server, device)
        start, created = await start_session(server, dev)
        tunnel = await dev.open_tunnel(start)
        viewer = await viewer_connect(server, created["viewer_url"])
        sent = 0
        stop = False

        async def flood():
            nonlocal sent
            block = os.urandom(CHUNK)
            while sent < total and not stop:
                await tunnel.send(block)
                sent += CHUNK

        # The viewer reads nothing: the device's sends must stall long before `total`.
        flooding = asyncio.create_task(flood())
        last = -1
        stalled_for = 0
        while stalled_for < 20:  # 20 polls of 0.1 s without progress
            await asyncio.sleep(0.1)
            stalled_for = stalled_for + 1 if sent == last else 0
            last = sent
            assert not flooding.done(), "the device sent everything to a viewer that reads nothing"
        sessions = await asyncio.to_thread(active_sessions, server)
        queued = sessions[0]["queued_to_viewer"]
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)",
                                open(f"/proc/{server.proc.pid}/status").read())[1])
        print(f"device stalled after {sent >> 20} MiB; relay holds {queued} bytes; "
              f"server RSS {rss_kib} KiB")
        assert queued <= 256 * 1024 + CHUNK, queued
        assert sent < total
        # The rest of what was sent sits in socket buffers, not in the server.
        assert rss_kib < 200 * 1024

        # The viewer reads again: the device gets going, and every byte arrives.
        stop = True
        got = 0
        while not (flooding.done() and got >= sent):
            got += len(await asyncio.wait_for(viewer.recv(), 30))
        await flooding
        assert got == sent
        await tunnel.close()
        assert await closed_with(viewer) == (1000, "device_closed")
        await dev.close()

    asyncio.run(run())


def test_admission_checks(server, tmp_path):
    device = enroll(server, tmp_path, "device")
    other = enroll(server, tmp_path, "other", macs=("52:54:00:12:34:57",))

    async def run():
        dev = await FakeDevice.online(server, device)
        start, created = await start_session(server, dev)
        session = created["session"]
        viewer_url = created["viewer_url"]
        base = viewer_url.split("?")[0]
        device_url = start["body"]["tunnel_url"]

        async def refused(coro):
            with pytest.raises(websockets.InvalidStatusCode) as info:
                ws = await coro
                await ws.close()
            return refused_status(info)

        # Wrong token, no token, another session's path.
        assert await refused(viewer_connect(server, base + "?token=" + "A" * 43)) == 403
        assert await refused(viewer_connect(server, base)) == 403
        assert await refused(viewer_connect(
            server, viewer_url.replace(session, "B" * 22))) == 403
        # Wrong Origin (a page of another site); the right one is fine.
        assert await refused(viewer_connect(server, viewer_url,
                                            origin="https://evil.example")) == 403
        assert await refused(viewer_connect(server, viewer_url,
                                            origin="http://127.0.0.1:%d" % server.port)) == 403
        # The device end: the viewer token does not open it, nor another device's cert, nor none.
        viewer_token = viewer_url.split("token=")[1]
        assert await refused(tunnel_connect(server, device_url, viewer_token, dev.device)) == 403
        assert await refused(tunnel_connect(server, device_url, start["body"]["token"],
                                            other)) == 403
        assert await refused(tunnel_connect(server, device_url, start["body"]["token"],
                                            None)) == 403

        # The right ones work, once.
        viewer = await viewer_connect(server, viewer_url,
                                      origin=f"https://127.0.0.1:{server.port}")
        assert await refused(viewer_connect(server, viewer_url)) == 403
        tunnel = await dev.open_tunnel(start)
        assert await refused(dev.open_tunnel(start)) == 403

        # A text message closes its sender with 1003, then the peer.
        await viewer.send("hello")
        assert (await closed_with(viewer))[0] == 1003
        assert await closed_with(tunnel) == (1000, "viewer_closed")
        await dev.close()

    asyncio.run(run())
    log = server.log()
    assert "is not this server" in log and "wrong token" in log


@pytest.mark.parametrize("code,status", [("user_denied", 403), ("policy", 403),
                                         ("prompt_timeout", 403), ("no_session", 409),
                                         ("busy", 409), ("vnc_failed", 502)])
def test_refusals_map_to_statuses(server, tmp_path, code, status):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/shadow", {})
        start = await dev.next_shadow_start()
        await dev.refuse(start, code, f"the device says {code}")
        got, _, body = await call
        assert got == status, body
        assert body == {"error": {"code": code, "message": f"the device says {code}"}}
        await dev.close()

    asyncio.run(run())
    row = audit_rows(server)[0]
    assert row["end_reason"] == code and row["end_message"] == f"the device says {code}"
    assert row["started_at"] is None and row["ended_at"] is not None
    assert active_sessions(server) == []


def test_offline_busy_and_unknown(server, tmp_path):
    device = enroll(server, tmp_path)
    status, _, body = server.admin("POST", f"/api/v1/devices/{device.device_id}/shadow", {})
    assert status == 409 and body["error"]["code"] == "offline", body
    status, _, body = server.admin("POST", "/api/v1/devices/" + "0" * 64 + "/shadow", {})
    assert status == 404, body
    status, _, body = server.request("POST", f"/api/v1/devices/{device.device_id}/shadow", {})
    assert status == 401

    async def run():
        dev = await FakeDevice.online(server, device)
        await start_session(server, dev)
        status, _, body = await request_async(
            server, "POST", f"/api/v1/devices/{device.device_id}/shadow", {})
        assert status == 409 and body["error"]["code"] == "busy", body
        await dev.close()

    asyncio.run(run())


def test_device_stop_admin_delete_and_peer_timeout(make_server, tmp_path):
    server = make_server(extra_args=["--set", "shadow.token_ttl=2s"]).start()
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)

        # The device's user ends it: the viewer is closed, the audit has the device's reason.
        start, created = await start_session(server, dev)
        tunnel = await dev.open_tunnel(start)
        viewer = await viewer_connect(server, created["viewer_url"])
        await dev.shadow_stop(created["session"], "user", "ended from the tray")
        assert (await closed_with(viewer))[0] == 1000
        await tunnel.close()
        await wait_for(lambda: audit_rows(server)[0]["ended_at"], "the first session to end")
        row = audit_rows(server)[0]
        assert (row["end_reason"], row["end_message"]) == ("user", "ended from the tray")

        # The admin ends it: the device hears shadow_stop "admin", both ends close.
        start, created = await start_session(server, dev)
        tunnel = await dev.open_tunnel(start)
        viewer = await viewer_connect(server, created["viewer_url"])
        status, _, body = await request_async(
            server, "DELETE", f"/api/v1/shadow/sessions/{created['session']}")
        assert status == 200 and body == {"ended": created["session"]}
        stop = await dev.next_request()
        assert stop["type"] == "shadow_stop"
        assert stop["body"]["session_id"] == created["session"]
        assert stop["body"]["reason"] == "admin"
        assert (await closed_with(viewer))[0] == 1000
        assert (await closed_with(tunnel))[0] == 1000
        await wait_for(lambda: audit_rows(server)[0]["ended_at"], "the second session to end")
        assert audit_rows(server)[0]["end_reason"] == "admin"

        # The viewer never comes: the device end is closed with 4408 after the token's time.
        start, created = await start_session(server, dev)
        tunnel = await dev.open_tunnel(start)
        code, reason = await closed_with(tunnel, timeout=15)
        assert (code, reason) == (4408, "peer did not arrive")
        stop = await dev.next_request()
        assert stop["type"] == "shadow_stop" and stop["body"]["reason"] == "peer_timeout"
        await wait_for(lambda: audit_rows(server)[0]["ended_at"], "the third session to end")
        assert audit_rows(server)[0]["end_reason"] == "peer_timeout"
        # Its viewer token is dead now.
        with pytest.raises(websockets.InvalidStatusCode):
            await viewer_connect(server, created["viewer_url"])
        await dev.close()

    asyncio.run(run())


def test_tetherctl_shadow_and_audit(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        async with tetherctl_shadow(server, tmp_path, device.device_id, "--listen",
                                    "127.0.0.1:0", "--view-only") as ctl:
            start = await dev.next_shadow_start()
            assert start["body"]["viewer"] == "external" and start["body"]["view_only"] is True
            await dev.accept_shadow(start, view_only=True)
            # It prints what to run; the port is in it.
            port = await ctl.viewer_port()
            tunnel = await dev.open_tunnel(start)
            await tunnel.send(b"RFB 003.008\n")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.readexactly(12), 10) == b"RFB 003.008\n"
            payload = os.urandom(3 * 1024 * 1024)
            writer.write(payload)
            await writer.drain()
            assert await recv_exactly(tunnel, len(payload)) == payload
            big = os.urandom(5 * 1024 * 1024)
            await send_all(tunnel, big)
            assert await asyncio.wait_for(reader.readexactly(len(big)), 30) == big
            # The viewer leaves: tetherctl closes the tunnel and exits 0.
            writer.close()
            assert await closed_with(tunnel) == (1000, "viewer_closed")
            await dev.shadow_stop(start["body"]["session_id"], "viewer_closed")
            rc, text, err = await ctl.finish()
        print(text, err)
        assert rc == 0, err
        assert f"vncsnapshot 127.0.0.1::{port}" in text
        await dev.close()
        return start["body"]["session_id"]

    session = asyncio.run(run())
    wait = [r for r in audit_rows(server) if r["session"] == session]
    assert wait and wait[0]["end_reason"] == "viewer_closed"

    out = server.ctl("audit")
    assert out.returncode == 0, out.stderr
    assert session in out.stdout and "viewer_closed" in out.stdout and "external" in out.stdout
    out = server.ctl("audit", "--device", device.device_id, "--limit", "1", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["sessions"]
    assert len(rows) == 1 and rows[0]["session"] == session


def test_tetherctl_shadow_refused(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        async with tetherctl_shadow(server, tmp_path, "device") as ctl:
            start = await dev.next_shadow_start()
            await dev.refuse(start, "user_denied", "the user said no")
            rc, _, err = await ctl.finish()
        assert rc == 1
        assert "user_denied" in err and "the user said no" in err, err
        await dev.close()

    asyncio.run(run())


def test_tetherctl_shadow_tunnel_closed_by_the_device(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        async with tetherctl_shadow(server, tmp_path, device.device_id) as ctl:
            start = await dev.next_shadow_start()
            await dev.accept_shadow(start)
            port = await ctl.viewer_port()
            tunnel = await dev.open_tunnel(start)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await tunnel.send(b"RFB 003.008\n")
            assert await asyncio.wait_for(reader.readexactly(12), 10) == b"RFB 003.008\n"
            await tunnel.close()
            rc, _, err = await ctl.finish()
        assert rc == 1, err
        assert "device_closed" in err, err
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the viewer was let go
        writer.close()
        await dev.close()

    asyncio.run(run())


def test_server_stopping_ends_sessions_and_audits_them(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        start, created = await start_session(server, dev)
        tunnel = await dev.open_tunnel(start)
        viewer = await viewer_connect(server, created["viewer_url"])
        await tunnel.send(b"RFB 003.008\n")
        assert await recv_exactly(viewer, 12) == b"RFB 003.008\n"
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        stop = await dev.next_request()
        assert stop["type"] == "shadow_stop", stop
        assert stop["body"] == {"session_id": created["session"], "reason": "server_stopping",
                                "message": ""} or stop["body"]["reason"] == "server_stopping"
        assert (await closed_with(viewer))[0] == 1001
        assert (await closed_with(tunnel))[0] == 1001
        await stopping
        return created["session"]

    session = asyncio.run(run())
    server.start()
    rows = [r for r in audit_rows(server) if r["session"] == session]
    assert rows and rows[0]["end_reason"] == "server_stopping" and rows[0]["ended_at"]
    assert rows[0]["bytes_to_viewer"] == 12
