"""The UP WebSocket with a real peer (python3-websockets) over mutual TLS."""

import asyncio
import json
import ssl
import subprocess

import pytest
import websockets

from tether_harness import (DeviceKey, expect_close, hello_message, recv_json, send_json,
                            up_connect, wait_until)


def enrolled(server, tmp_path, name="device"):
    device = DeviceKey(tmp_path, name)
    status, _, body = device.enroll(server, server.create_token()["token"], hostname=name)
    assert status == 201, body
    return device


async def greet(server, device, msg_id="d1"):
    """Connects, sends hello; returns (ws, hello result, trust_update request)."""
    ws = await up_connect(server, device)
    await send_json(ws, hello_message(device.device_id, msg_id, hostname=device.key.stem))
    first = await recv_json(ws)
    second = await recv_json(ws)
    return ws, first, second


def devices_json(server):
    out = server.ctl("devices", "--json", check=True)
    return {d["id"]: d for d in json.loads(out.stdout)["devices"]}


def test_hello_gets_ack_and_trust_update(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, ack, trust = await greet(server, device)
        assert ws.subprotocol == "tether.up.v1"
        assert ack["type"] == "result" and ack["id"] == "d1"
        assert ack["body"]["ok"] is True
        data = ack["body"]["data"]
        assert data["status_interval_s"] == 60
        assert len(data["online_key"]) == 64
        assert abs(data["server_time"] - __import__("time").time()) < 60
        assert trust["type"] == "trust_update"
        fp = subprocess.run(["openssl", "x509", "-in", str(server.ca_file), "-noout",
                             "-fingerprint", "-sha256"], capture_output=True, text=True,
                            check=True).stdout.split("=")[1].strip().replace(":", "").lower()
        assert trust["body"]["ca_fingerprints"] == [fp]
        assert trust["body"]["ca_certificates_pem"] == [server.ca_file.read_text()]
        await send_json(ws, {"v": 1, "type": "result", "id": trust["id"], "body": {"ok": True}})

        online = wait_until(lambda: devices_json(server)[device.device_id]["online"],
                            what="the device to show online")
        assert online
        d = devices_json(server)[device.device_id]
        assert d["connected_via"] == "direct"
        assert d["address"] == "127.0.0.1"
        assert d["agent_version"] == "0.1.0-test"
        assert d["hostname"] == "device"
        table = server.ctl("devices", check=True).stdout
        assert device.device_id[:12] in table and "yes" in table
        await ws.close()
        wait_until(lambda: not devices_json(server)[device.device_id]["online"],
                   what="the device to go offline")

    asyncio.run(run())


def test_the_online_key_is_stable(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def key():
        ws, ack, _ = await greet(server, device)
        await ws.close()
        return ack["body"]["data"]["online_key"]

    assert asyncio.run(key()) == asyncio.run(key())


def test_malformed_messages_get_errors_and_the_channel_stays_open(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, _, _ = await greet(server, device)
        await ws.send("{not json")
        reply = await recv_json(ws)
        assert reply["type"] == "result" and reply["body"]["ok"] is False
        assert reply["body"]["error"]["code"] == "syntax"
        await send_json(ws, {"v": 1, "type": "status", "id": "d7", "body": {"uptime_s": "x"}})
        reply = await recv_json(ws)
        assert reply["id"] == "d7" and reply["body"]["error"]["code"] == "wrong_type"
        await send_json(ws, {"v": 1, "type": "frobnicate", "id": "d8", "body": {}})
        reply = await recv_json(ws)
        assert reply["id"] == "d8" and reply["body"]["error"]["code"] == "unknown_type"
        await send_json(ws, {"v": 2, "type": "status", "id": "d9", "body": {}})
        reply = await recv_json(ws)
        assert reply["id"] == "d9" and reply["body"]["error"]["code"] == "bad_version"
        # Still open and working: a status report is taken.
        await send_json(ws, {"v": 1, "type": "status", "id": "d10", "body": {
            "uptime_s": 42, "load1": 0.5, "mem_total_kb": 2048000, "mem_available_kb": 1024000,
            "shadow_sessions": 0}})
        shown = wait_until(lambda: server.admin("GET", f"/api/v1/devices/{device.device_id}")[2]
                           .get("status"), what="the status report")
        assert shown["uptime_s"] == 42
        await ws.close()

    asyncio.run(run())


def test_messages_before_hello_are_refused(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws = await up_connect(server, device)
        await send_json(ws, {"v": 1, "type": "event", "id": "d1", "body": {
            "kind": "x", "severity": "info", "message": "m", "time": 1}})
        reply = await recv_json(ws)
        assert reply["id"] == "d1" and reply["body"]["ok"] is False
        await ws.close()

    asyncio.run(run())


def test_cert_renew_over_the_channel(server, tmp_path):
    device = enrolled(server, tmp_path)
    old_serial = devices_json(server)[device.device_id]["cert_serial"]

    async def run():
        ws, _, _ = await greet(server, device)
        await send_json(ws, {"v": 1, "type": "cert_renew", "id": "d2",
                             "body": {"csr_pem": device.csr_pem()}})
        reply = await recv_json(ws)
        assert reply["id"] == "d2" and reply["body"]["ok"] is True, reply
        data = reply["body"]["data"]
        assert data["ca_certificates_pem"] == [server.ca_file.read_text()]
        return data["certificate_pem"]

    pem = asyncio.run(run())
    renewed = tmp_path / "renewed.crt"
    renewed.write_text(pem)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_file), "-purpose",
                             "sslclient", str(renewed)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
    serial = subprocess.run(["openssl", "x509", "-in", str(renewed), "-noout", "-serial"],
                            capture_output=True, text=True, check=True).stdout
    new_serial = devices_json(server)[device.device_id]["cert_serial"]
    assert new_serial != old_serial
    assert serial.strip().split("=")[1].lower().lstrip("0") == new_serial.lstrip("0")


def test_cert_renew_for_another_key_is_refused(server, tmp_path):
    device = enrolled(server, tmp_path)
    other = DeviceKey(tmp_path, "other")

    async def run():
        ws, _, _ = await greet(server, device)
        await send_json(ws, {"v": 1, "type": "cert_renew", "id": "d2",
                             "body": {"csr_pem": other.csr_pem()}})
        reply = await recv_json(ws)
        assert reply["body"]["ok"] is False
        assert reply["body"]["error"]["code"] == "permission_denied"
        await ws.close()

    asyncio.run(run())


def test_revocation_closes_the_channel_and_refuses_reconnects(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, _, _ = await greet(server, device)
        out = server.ctl("device", "revoke", device.device_id[:10])
        assert out.returncode == 0, out.stderr
        assert await expect_close(ws) == 4003
        with pytest.raises((websockets.InvalidStatusCode, websockets.InvalidHandshake,
                            ConnectionError, ssl.SSLError)):
            ws2 = await up_connect(server, device)
            await ws2.recv()

    asyncio.run(run())
    assert devices_json(server)[device.device_id]["revoked"] is True
    assert "refused UP connection" in server.log()


def test_delete_closes_the_channel_and_hides_the_device(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, _, _ = await greet(server, device)
        out = server.ctl("device", "delete", "device")  # by name
        assert out.returncode == 0, out.stderr
        assert await expect_close(ws) == 4003

    asyncio.run(run())
    assert device.device_id not in devices_json(server)
    assert server.admin("GET", f"/api/v1/devices/{device.device_id}")[0] == 404


def test_a_second_connection_replaces_the_first(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        first, _, _ = await greet(server, device)
        second, ack, _ = await greet(server, device, "d5")
        assert ack["body"]["ok"] is True
        assert await expect_close(first) == 4000
        await send_json(second, {"v": 1, "type": "event", "id": "d6", "body": {
            "kind": "test.still_here", "severity": "notice", "message": "hi", "time": 1}})
        server.wait_for_log("test.still_here")
        await second.close()

    asyncio.run(run())


def test_no_client_certificate_is_refused(server):
    async def run():
        with pytest.raises((websockets.InvalidStatusCode, websockets.InvalidHandshake,
                            ConnectionError)):
            ws = await up_connect(server)
            await ws.recv()

    asyncio.run(run())
    assert "no client certificate" in server.log()


def test_a_certificate_from_another_ca_is_refused(server, make_server, tmp_path):
    other = make_server("other").start()
    device = enrolled(other, tmp_path, "foreign")

    async def run():
        with pytest.raises((websockets.InvalidStatusCode, websockets.InvalidHandshake,
                            ConnectionError, ssl.SSLError, OSError)):
            ws = await up_connect(server, device)
            await ws.recv()

    asyncio.run(run())


def test_sigterm_closes_channels_with_1012_and_exits_zero(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, _, _ = await greet(server, device)
        server.proc.terminate()
        assert await expect_close(ws) == 1012

    asyncio.run(run())
    assert server.wait_exit() == 0


def test_last_seen_survives_a_restart(server, tmp_path):
    device = enrolled(server, tmp_path)

    async def run():
        ws, _, _ = await greet(server, device)
        await ws.close()

    asyncio.run(run())
    wait_until(lambda: not devices_json(server)[device.device_id]["online"], what="offline")
    seen = devices_json(server)[device.device_id]["last_seen"]
    assert server.stop() == 0
    server.start()
    d = devices_json(server)[device.device_id]
    assert d["online"] is False
    assert d["last_seen"] == seen
    assert d["os"].startswith("Debian GNU/Linux 12")


def _raw_upgrade(server, device):
    """A WebSocket upgrade by hand, for a peer that then never answers anything."""
    import base64
    import os
    import socket
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    tls = server.ssl_context(device.cert, device.key).wrap_socket(raw,
                                                                  server_hostname="127.0.0.1")
    key = base64.b64encode(os.urandom(16)).decode()
    tls.sendall((f"GET /up HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.up.v1\r\n\r\n")
                .encode())
    assert tls.recv(4096).startswith(b"HTTP/1.1 101")
    return tls


def test_a_silent_peer_is_dropped_and_a_live_one_kept(make_server, tmp_path):
    server = make_server(extra_args=["--set", "up.ping_interval=1s"]).start()
    silent = enrolled(server, tmp_path, "silent")
    live = enrolled(server, tmp_path, "live")

    async def run():
        ws, _, _ = await greet(server, live)  # websockets answers pings by itself
        tls = _raw_upgrade(server, silent)

        def read_until_closed():
            received = b""
            try:
                while True:
                    chunk = tls.recv(4096)  # the server's pings arrive, never answered
                    if not chunk:
                        return received
                    received += chunk
            finally:
                tls.close()

        # In a thread, so that the live peer's loop keeps answering its pings meanwhile.
        received = await asyncio.to_thread(read_until_closed)
        assert received.startswith(b"\x89")  # a ping came before the hang-up
        assert ws.open  # the live peer answered its pings and is still there
        await send_json(ws, {"v": 1, "type": "event", "id": "d2", "body": {
            "kind": "test.alive", "severity": "notice", "message": "hi", "time": 1}})
        server.wait_for_log("test.alive")
        await ws.close()

    asyncio.run(run())
