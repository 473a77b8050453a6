"""Strings a device supplies (enrollment hostname; hello's hostname, OS and agent version; the
inventory; a settings refusal's message) are hostile input to the server, tetherctl and the web
app: HTML, control characters (C0, DEL, ANSI escapes, C1 such as CSI U+009B), bidirectional
overrides, invalid UTF-8 and megabyte strings.

Expected (docs/security.md): the server does not trust the agent's sanitizer — its decoders
refuse control characters, invalid UTF-8 and overlong strings with a structured error (or close
a message over the UP size limit with 1009), stored strings are capped again by the store;
the REST API returns them JSON-escaped; tetherctl prints them without a single raw control or
bidi character; the web app shows the HTML as text (headless Chromium: no script ran, no
dialog, the literal "<img" visible).
"""

import asyncio
import http.client
import json
import os
import socket
import subprocess
import time

import pytest
import websockets

from browser_harness import Browser, ensure_playwright
from fake_device import enroll
from tether_harness import (DeviceKey, bin_dir, hello_message, recv_json, send_json,
                            token_secret, up_connect, wait_until)

IMG = '<img src=x onerror="window.__pwned=1;alert(1)">'
SCRIPT = "<script>window.__pwned=2;alert(2)</script>"
HOSTNAME = "tc-" + IMG + SCRIPT + "-\u202egnp.exe"  # HTML, and a bidi override (allowed text)
OS_NAME = '<img src=x onerror="window.__pwned=3">OS'
VERSION = '<b onmouseover="window.__pwned=4">1.0</b>'
CPU = '<svg onload="window.__pwned=5">cpu'
CONNECTOR = '<img src=x onerror="window.__pwned=6">'
ANSI = "\x1b[2J\x1b]0;pwned\x07\x1b[31m"
CONTROLS = {
    "ansi": "tc" + ANSI,
    "nul": "tc\x00x",
    "del": "tc\x7fx",
    "newline": "tc\nfake-line",
    "c1-csi": "tc\u009b31m",
}
MEGA = "A" * (1 << 20)
REFUSAL = "bad " + ANSI + " \u009b2J \u202eevil\u202c " + IMG  # kText: any UTF-8
BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202a, 0x202f)),
        *map(chr, range(0x2066, 0x206a))}
# What the store keeps at most (server/SqliteStore.cpp) and the decoder allows.
CAPS = {"hostname": 253, "agent_version": 64, "os": 512}


@pytest.fixture
def hostile_server(make_server):
    return make_server(extra_args=["--set", "enroll.rate_per_minute=100000"]).start()


def ctl_bytes(server, *args):
    """tetherctl's exact bytes (no decoding): (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["HOME"] = str(server.state_dir.parent)
    proc = subprocess.run([str(bin_dir() / "tetherctl"), "--server", server.url, "--token-file",
                           str(server.token_file), "--ca-file", str(server.ca_file), *args],
                          capture_output=True, env=env, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def assert_terminal_safe(data, what):
    text = data.decode("utf-8")  # strict: no invalid UTF-8 reaches the terminal either
    bad = sorted({f"U+{ord(c):04X}" for c in text
                  if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f or c in BIDI})
    assert not bad, f"{what} prints raw control characters {bad}:\n{text[:2000]!r}"


def raw_get(server, path):
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context(),
                                       timeout=15)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {server.admin_token()}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def device_count(server):
    status, _, body = server.admin("GET", "/api/v1/devices")
    assert status == 200, body
    return len(body["devices"])


def refused_from_its_headers(server, body):
    """POST /enroll announcing `body` but sending only the headers: the server answers a body
    over its limit from Content-Length alone and closes without reading it (a client still
    sending it may see the connection reset before it reads the answer)."""
    head = (f"POST /api/v1/enroll HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as raw:
        with server.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head.encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            payload = response.read()
    return response.status, json.loads(payload) if payload else None


def test_enrollment_hostname_is_checked(hostile_server, tmp_path):
    """POST /enroll: HTML is text and accepted; control characters (C0, DEL, ANSI, C1), a
    1 MB hostname and invalid UTF-8 are refused with a 4xx and enroll nothing."""
    server = hostile_server
    accepted = DeviceKey(tmp_path, "html")
    status, _, body = accepted.enroll(server, server.create_token()["token"], hostname=HOSTNAME)
    assert status == 201, body
    before = device_count(server)
    outcomes = {}
    for name, hostname in CONTROLS.items():
        key = DeviceKey(tmp_path, "bad-" + name)
        status, _, body = key.enroll(server, server.create_token()["token"], hostname=hostname)
        outcomes[name] = (status, (body or {}).get("error", {}).get("code"))
    key = DeviceKey(tmp_path, "bad-1MB")
    mega = json.dumps({"secret": token_secret(server.create_token()["token"]),
                       "csr_pem": key.csr_pem(), "hostname": MEGA}).encode()
    status, body = refused_from_its_headers(server, mega)
    outcomes["1MB"] = (status, (body or {}).get("error", {}).get("code"))
    # Invalid UTF-8 in the body, raw, and as a lone surrogate escape.
    key = DeviceKey(tmp_path, "bad-utf8")
    token = server.create_token()["token"]
    for name, hostname in (("utf8-raw", b'"tc-\xff\xfe\xc0\xaf"'), ("utf8-surrogate",
                                                                   b'"tc-\\udc80"')):
        raw = (b'{"secret": ' + json.dumps(token_secret(token)).encode() + b', "csr_pem": '
               + json.dumps(key.csr_pem()).encode() + b', "hostname": ' + hostname + b'}')
        status, _, body = server.request("POST", "/api/v1/enroll", raw_body=raw,
                                         headers={"Content-Type": "application/json"})
        outcomes[name] = (status, (body or {}).get("error", {}).get("code"))
    print("\nenrollment with a hostile hostname:", outcomes)
    for name, (status, _) in outcomes.items():
        assert 400 <= status < 500, (name, status)
    assert device_count(server) == before
    shown = server.admin("GET", f"/api/v1/devices/{accepted.device_id}")[2]
    assert shown["hostname"] == HOSTNAME


async def expect_refused(ws, message, what):
    """Sends `message` (str, bytes or dict); returns ('error', code) when answered with a
    structured error, ('closed', code) when the server closed the channel instead."""
    if isinstance(message, dict):
        message = json.dumps(message)
    try:
        await ws.send(message)
        answer = await recv_json(ws, 10)
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        return "closed", code
    assert answer["type"] == "result" and answer["body"]["ok"] is False, (what, answer)
    return "error", answer["body"]["error"]["code"]


def inventory(cpu="cpu", connector="HDMI-1"):
    return {"cpu_model": cpu, "cpu_count": 2, "memory_kb": 1024, "nics": [],
            "block_devices": [{"name": "sda", "model": IMG, "size_bytes": 1, "removable": False}],
            "usb_devices": [{"vendor_id": "046d", "product_id": "c52b", "manufacturer": SCRIPT,
                             "product": IMG, "serial": ""}],
            "displays": [{"connector": connector, "connected": True, "modes": ["1x1"]}]}


def report_hostile_device(server, tmp_path):
    """An enrolled device that tries every hostile string over UP, then reports the accepted
    HTML ones; returns (device_id, outcomes of the refused ones)."""
    device = enroll(server, tmp_path, "plain")
    # Pending settings, pushed at the next hello: the device refuses them with REFUSAL.
    assert server.ctl("device", "settings", device.device_id, "--set",
                      "shadow.view_only=true").returncode == 0
    outcomes = {}

    async def run():
        ws = await up_connect(server, device)
        greeted = False

        async def refused(name, message):
            nonlocal ws, greeted
            outcomes[name] = await expect_refused(ws, message, name)
            if outcomes[name][0] == "closed":
                ws = await up_connect(server, device)
                greeted = False

        async def say_hello():
            """The accepted hello (HTML and a bidi override are text); answers the
            trust_update and refuses the pushed settings with REFUSAL."""
            nonlocal greeted
            hello = hello_message(device.device_id, "ok", hostname=HOSTNAME)
            hello["body"]["os"]["name"] = OS_NAME
            hello["body"]["agent_version"] = VERSION
            await send_json(ws, hello)
            ack = await recv_json(ws)
            assert ack["body"]["ok"], ack
            for _ in range(2):
                request = await recv_json(ws)
                if request["type"] == "settings":
                    await send_json(ws, {"v": 1, "type": "result", "id": request["id"], "body": {
                        "ok": False,
                        "error": {"code": "permission_denied", "message": REFUSAL}}})
                else:
                    assert request["type"] == "trust_update", request
                    await send_json(ws, {"v": 1, "type": "result", "id": request["id"],
                                         "body": {"ok": True}})
            greeted = True

        for name, text in {**CONTROLS, "1MB": MEGA}.items():
            hello = hello_message(device.device_id, "h-" + name, hostname=text)
            await refused("hello.hostname " + name, hello)
            hello = hello_message(device.device_id, "o-" + name)
            hello["body"]["os"]["name"] = text
            await refused("hello.os.name " + name, hello)
        await refused("hello invalid UTF-8 (binary frame)",
                      json.dumps(hello_message(device.device_id, "u1", hostname="@@")).encode()
                      .replace(b"@@", b"\xff\xfe"))
        await refused("hello lone surrogate",
                      json.dumps(hello_message(device.device_id, "u2", hostname="@@"))
                      .replace("@@", "\\udc80"))
        await say_hello()
        for name, text in {**CONTROLS, "1MB": MEGA}.items():
            await refused("inventory.cpu_model " + name,
                          {"v": 1, "type": "inventory", "id": "i-" + name,
                           "body": inventory(cpu=text)})
        await refused("inventory invalid UTF-8 (binary frame)", json.dumps(
            {"v": 1, "type": "inventory", "id": "i-utf8", "body": inventory(cpu="@@")})
            .encode().replace(b"@@", b"\xc0\xaf"))
        if not greeted:  # a new connection must say hello again
            await say_hello()
        await send_json(ws, {"v": 1, "type": "inventory", "id": "i-ok",
                             "body": inventory(CPU, CONNECTOR)})
        await asyncio.to_thread(
            wait_until, lambda: (server.admin("GET", f"/api/v1/devices/{device.device_id}")[2]
                                 .get("inventory") or {}).get("cpu_model") == CPU,
            10, 0.1, "the HTML inventory stored")
        server.wait_for_log("did not apply its server settings")
        await ws.close()

    asyncio.run(run())
    return device.device_id, outcomes


def test_device_strings_are_refused_or_stored_as_text(hostile_server, tmp_path):
    server = hostile_server
    started = time.monotonic()
    device_id, outcomes = report_hostile_device(server, tmp_path)
    print(f"\nhostile UP strings ({len(outcomes)} messages, {time.monotonic() - started:.1f} s):")
    for name, outcome in outcomes.items():
        print(f"  {name}: {outcome[0]} {outcome[1]}")
    for name, (how, code) in outcomes.items():
        if name.endswith("1MB") or "binary" in name:
            # Over the UP limit or a binary frame: an error reply or a close, never taken.
            assert how == "error" or code in (1003, 1007, 1009), (name, how, code)
        else:
            assert how == "error" and code in ("bad_value", "syntax", "invalid_argument"), \
                (name, how, code)

    # REST: the accepted strings as they were sent, JSON-escaped, within the caps.
    status, raw = raw_get(server, f"/api/v1/devices/{device_id}")
    assert status == 200
    assert not [b for b in raw if b < 0x20 and b not in b"\n\r\t"], "raw control bytes in JSON"
    shown = json.loads(raw)
    assert shown["hostname"] == HOSTNAME and OS_NAME in shown["os"]
    assert shown["agent_version"] == VERSION
    assert shown["settings_error"] == "permission_denied: " + REFUSAL
    assert shown["inventory"]["cpu_model"] == CPU
    assert shown["inventory"]["displays"][0]["connector"] == CONNECTOR
    for field, cap in CAPS.items():
        assert len(shown[field].encode()) <= cap, field
    escapes = raw.count(b"\\u001b")
    print(f"REST device JSON: {len(raw)} bytes, ESC sent as \\u001b {escapes} times")

    # tetherctl: the HTML literally, never a raw control or bidi character.
    for args in (("devices",), ("device", "show", device_id), ("audit",)):
        rc, out, err = ctl_bytes(server, *args)
        assert rc == 0, err
        assert_terminal_safe(out, "tetherctl " + " ".join(args))
        assert_terminal_safe(err, "tetherctl " + " ".join(args) + " (stderr)")
    rc, out, _ = ctl_bytes(server, "device", "show", device_id)
    assert b"<img src=x onerror=" in out and b"<script>" in out
    assert b"gnp.exe" in out and "?gnp.exe".encode() in out  # U+202E shown as '?'
    assert b"?[2J?]0;pwned??[31m" in out, out  # the refusal's ANSI escapes, defused
    # An error message built from device text (resolve by name) is defused too.
    rc, _, err = ctl_bytes(server, "device", "show", "tc\u009b31m-no-such\u202e")
    assert rc != 0
    assert_terminal_safe(err, "tetherctl error message")
    # The server's own log (stderr/journal) carries no raw escape from the device either.
    assert "\x1b" not in server.log(), "the server logged a raw ESC from a device"


def test_web_app_shows_device_strings_as_text(hostile_server, tmp_path):
    """Headless Chromium: the device list and page show the HTML as text; no script ran (the
    handlers would set window.__pwned), no dialog opened, no <img> or <script> element."""
    modules = ensure_playwright()
    server = hostile_server
    device_id, _ = report_hostile_device(server, tmp_path)

    async def run():
        browser = await Browser(modules).start()
        try:
            await browser.call("goto", url=server.url + "/")
            await browser.call("waitFor", selector="#login-view")
            await browser.call("fill", selector="#login-admin-token", value=server.admin_token())
            await browser.call("click", selector="#login-token button")
            await browser.call("waitFor", selector=f"tr[data-device-id='{device_id}']")
            listed = await browser.call("evaluate", arg=device_id, expression="""(id) => {
                const row = document.querySelector(`tr[data-device-id='${id}']`);
                return {text: row.innerText, pwned: window.__pwned === undefined ? null
                                                                             : window.__pwned,
                        elements: document.querySelectorAll('main img, main script, main svg,'
                                                            + ' main b').length};
            }""")
            assert listed["pwned"] is None and listed["elements"] == 0, listed
            assert "<img" in listed["text"] and "<script>" in listed["text"], listed
            await browser.call("goto", url=server.url + f"/#/device/{device_id}")
            await browser.call("waitFor", selector="#device-view")
            await browser.call("waitForFunction", arg=CONNECTOR, expression="""(c) =>
                [...document.querySelectorAll('#monitor option')].some((o) => o.text === c)""")
            await asyncio.sleep(0.5)  # give a (wrongly) inserted onerror handler time to run
            page = await browser.call("evaluate", expression="""() => ({
                title: document.querySelector('#device-title').textContent,
                visible: document.body.innerText,
                pwned: window.__pwned === undefined ? null : window.__pwned,
                elements: document.querySelectorAll('main img, main script, main svg, main b')
                    .length})""")
            assert page["pwned"] is None and page["elements"] == 0, page
            assert page["title"] == HOSTNAME, page["title"]
            for text in ("<img src=x onerror=", "<script>", OS_NAME, VERSION):
                assert text in page["visible"], (text, page["visible"][:2000])
            console = await browser.call("console")
            dialogs = [m for m in console if m["type"] == "dialog"]
            errors = [m for m in console if m["type"] == "pageerror"]
            assert not dialogs and not errors, console
            print(f"\nweb app: device list and page show the HTML as text; "
                  f"{len(console)} console messages, no dialog, window.__pwned undefined")
        finally:
            await browser.close()

    asyncio.run(run())
