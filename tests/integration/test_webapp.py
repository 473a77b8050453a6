"""The web app served by tether-server: static files and their security headers, path
traversal, users and login, and (in headless Chromium through playwright-core) the pages:
login, the device list rendering device strings as text, and the noVNC viewer showing a
device's picture, typing into it, view-only, and the viewer WebSocket's Origin check.

The device being shadowed is shadow_fixture.FakeShadowDevice (a fake device with a
solid-colour RFB server); the real chain (agent + tether-vnc + Xvfb) can stand in for it.
"""

import asyncio
import json
import os
import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from browser_harness import Browser, ensure_playwright
from fake_device import enroll
from shadow_fixture import FakeShadowDevice
from tether_harness import REPO, wait_until

SCREENSHOTS = Path(os.environ.get("TETHER_TEST_ARTIFACTS", "/tmp"))
XSS_HOSTNAME = '<img src=x onerror="window.__xss=1">tc-<b>bold</b>'
XSS_DESKTOP = '<img src=x onerror="window.__xss2=1"><b>desk</b>'
WEB_FILES = {
    "/": "text/html",
    "/index.html": "text/html",
    "/viewer.html": "text/html",
    "/app.js": "text/javascript",
    "/api.js": "text/javascript",
    "/viewer.js": "text/javascript",
    "/style.css": "text/css",
}


def raw_get(server, target, method="GET"):
    """One HTTP/1.1 request with `target` sent exactly as given (no client normalisation);
    returns (status, headers, body)."""
    ctx = server.ssl_context()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            length = "" if method in ("GET", "HEAD") else "Content-Length: 0\r\n"
            tls.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                        f"{length}Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def check_security_headers(headers, what):
    csp = headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, f"{what}: no or weak CSP: {csp!r}"
    assert "default-src 'none'" in csp, f"{what}: CSP {csp!r}"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, f"{what}: CSP {csp!r}"
    assert headers.get("x-content-type-options") == "nosniff", f"{what}: no nosniff"


def test_files_have_types_and_security_headers(server):
    for path, content_type in WEB_FILES.items():
        status, headers, body = raw_get(server, path)
        assert status == 200, (path, status)
        assert headers["content-type"].startswith(content_type), (path, headers)
        check_security_headers(headers, path)
        assert body
    _, headers, _ = raw_get(server, "/")
    assert f"wss://127.0.0.1:{server.port}" in headers["content-security-policy"]
    if Path("/usr/share/novnc/core/rfb.js").exists():
        status, headers, body = raw_get(server, "/novnc/core/rfb.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert b"export default class RFB" in body
        check_security_headers(headers, "/novnc/core/rfb.js")
    status, headers, _ = raw_get(server, "/index.html", method="POST")
    assert status == 405
    # The pages carry no inline script: everything runs from files (CSP script-src 'self').
    for page in ("index.html", "viewer.html"):
        text = (REPO / "webapp" / page).read_text()
        assert "<script>" not in text and not re.search(r"\son[a-z]+\s*=", text), page


def test_path_traversal_and_listings_are_refused(make_server, tmp_path):
    # A web root of our own, with a symlink that leads out of it.
    root = tmp_path / "web"
    root.mkdir()
    (root / "index.html").write_text("<!DOCTYPE html><title>t</title>ok")
    (root / "sub").mkdir()
    (root / "sub" / "page.html").write_text("sub page")
    (root / ".secret.html").write_text("hidden")
    secret = tmp_path / "outside.html"
    secret.write_text("OUTSIDE-SECRET")
    (root / "leak.html").symlink_to(secret)
    server = make_server(extra_args=["--set", f"web.root={root}"]).start()

    status, headers, body = raw_get(server, "/")
    assert status == 200 and body.endswith(b"ok")
    assert raw_get(server, "/sub/page.html")[0] == 200
    for target in ["/../outside.html", "/sub/../../outside.html", "/%2e%2e/outside.html",
                   "/%2E%2E%2Foutside.html", "/..%2foutside.html", "/sub/%2e%2e/%2e%2e/outside.html",
                   "/leak.html", "/.secret.html", "/sub", "/sub/", "//etc/passwd",
                   "/../../../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                   "/novnc/../../../../etc/passwd", "/novnc/vnc.html", "/novnc/core/",
                   "/novnc/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/sub/page.html%00.js"]:
        status, headers, body = raw_get(server, target)
        # 0: libwebsockets hung up on a URI it would not parse (%00).
        assert status in (0, 400, 403, 404), (target, status, body[:200])
        assert b"OUTSIDE-SECRET" not in body and b"root:" not in body and b"hidden" not in body, \
            target
        if status == 404:
            check_security_headers(headers, target)


def test_tetherctl_users(server, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("correct horse battery\n")
    added = server.ctl("user", "add", "alice", "--password-file", str(password_file))
    assert added.returncode == 0, added.stderr
    assert added.stdout == ""  # nothing secret printed when the admin chose it
    generated = server.ctl("user", "add", "bob")
    assert generated.returncode == 0, generated.stderr
    bob_password = generated.stdout.strip()
    assert len(bob_password) >= 20 and "shown only now" in generated.stderr
    again = server.ctl("user", "add", "alice", "--password-file", str(password_file))
    assert again.returncode == 1 and "exists" in again.stderr
    listed = server.ctl("user", "list", "--json")
    assert listed.returncode == 0
    users = json.loads(listed.stdout)["users"]
    assert [u["name"] for u in users] == ["alice", "bob"]
    assert all("password" not in json.dumps(u) for u in users)
    assert "alice" in server.ctl("user", "list").stdout

    status, _, body = server.request("POST", "/api/v1/login",
                                     {"name": "bob", "password": bob_password})
    assert status == 200, body
    bob_session = body["session"]
    status, _, wrong = server.request("POST", "/api/v1/login",
                                      {"name": "bob", "password": "not-his-password"})
    status2, _, unknown = server.request("POST", "/api/v1/login",
                                         {"name": "mallory", "password": "not-his-password"})
    assert status == status2 == 401 and wrong == unknown
    # A user's session works for the device API but not for managing users.
    assert server.request("GET", "/api/v1/devices", token=bob_session)[0] == 200
    assert server.request("GET", "/api/v1/users", token=bob_session)[0] == 403
    removed = server.ctl("user", "remove", "bob")
    assert removed.returncode == 0, removed.stderr
    assert server.request("GET", "/api/v1/devices", token=bob_session)[0] == 401
    assert server.ctl("user", "remove", "bob").returncode == 1


def test_login_is_rate_limited(make_server):
    server = make_server(extra_args=["--set", "web.login_rate_per_minute=3"]).start()
    statuses = [server.request("POST", "/api/v1/login", {"token": "wrong"})[0] for _ in range(4)]
    assert statuses[:3] == [401, 401, 401]
    status, headers, _ = server.request("POST", "/api/v1/login", {"token": "wrong"})
    assert status == 429 and int(headers["retry-after"]) >= 1


# ---- in the browser ----------------------------------------------------------------------

@pytest.fixture
def playwright_modules():
    return ensure_playwright()


async def login_with_token(browser, server):
    await browser.call("goto", url=server.url + "/")
    await browser.call("waitFor", selector="#login-view")
    await browser.call("fill", selector="#login-admin-token", value=server.admin_token())
    await browser.call("click", selector="#login-token button")
    await browser.call("waitFor", selector="#devices-view")


def check_browser_saw_no_violations(responses, console, server):
    own = f"https://127.0.0.1:{server.port}/"
    pages = [r for r in responses if r["url"].startswith(own) and "/api/" not in r["url"]]
    assert pages, "the browser loaded nothing from the server"
    for r in pages:
        check_security_headers(r["headers"], r["url"])
    bad = [m for m in console if m["type"] == "pageerror"
           or "Content Security Policy" in m["text"] or "Refused to" in m["text"]]
    assert not bad, bad


def test_browser_login_and_device_list(server, tmp_path, playwright_modules):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret-password\n")
    assert server.ctl("user", "add", "alice", "--password-file", str(password_file)).returncode == 0
    device = enroll(server, tmp_path, "plain")
    status, _, body = device.enroll(server, server.create_token()["token"], hostname=XSS_HOSTNAME)
    assert status == 201, body
    xss_id = device.device_id

    async def run():
        browser = await Browser(playwright_modules).start()
        try:
            await browser.call("goto", url=server.url + "/")
            await browser.call("waitFor", selector="#login-view")
            # A wrong password: refused, said so, no session kept.
            await browser.call("fill", selector="#login-name", value="alice")
            await browser.call("fill", selector="#login-password", value="wrong-password")
            await browser.call("click", selector="#login-user button")
            await browser.call("waitFor", selector="#message")
            assert "login failed" in await browser.call("text", selector="#message")
            assert await browser.call(
                "evaluate", expression="() => sessionStorage.getItem('tether.session')") is None
            assert not await browser.call("evaluate",
                                          expression="() => !document.querySelector('#devices-view').hidden")
            # The admin token works.
            await browser.call("fill", selector="#login-admin-token", value=server.admin_token())
            await browser.call("click", selector="#login-token button")
            await browser.call("waitFor", selector=f"tr[data-device-id='{xss_id}']")
            cell = await browser.call("evaluate", arg=xss_id, expression="""(id) => {
                const row = document.querySelector(`tr[data-device-id='${id}']`);
                return {text: row.querySelector('a').textContent,
                        images: document.querySelectorAll('#devices img').length,
                        bold: document.querySelectorAll('#devices b').length,
                        xss: window.__xss === undefined ? null : window.__xss};
            }""")
            assert cell == {"text": XSS_HOSTNAME, "images": 0, "bold": 0, "xss": None}, cell
            assert "Logged in as admin" in await browser.call("text", selector="#whoami")
            # The device page shows the same text as text.
            await browser.call("click", selector=f"tr[data-device-id='{xss_id}'] a")
            await browser.call("waitFor", selector="#device-view")
            title = await browser.call("text", selector="#device-title")
            assert title == XSS_HOSTNAME
            assert await browser.call("evaluate",
                                      expression="() => document.querySelectorAll('main img').length") == 0
            # Log out, then in as the user.
            await browser.call("click", selector="#logout")
            await browser.call("waitFor", selector="#login-view")
            await browser.call("fill", selector="#login-name", value="alice")
            await browser.call("fill", selector="#login-password", value="s3cret-password")
            await browser.call("click", selector="#login-user button")
            # Back where the session ended: the device's page.
            await browser.call("waitFor", selector="#device-view")
            assert "Logged in as alice" in await browser.call("text", selector="#whoami")
            await browser.call("click", selector="nav a[href='#/devices']")
            await browser.call("waitFor", selector=f"tr[data-device-id='{xss_id}']")
            check_browser_saw_no_violations(await browser.call("responses"),
                                            await browser.call("console"), server)
        finally:
            await browser.close()

    asyncio.run(run())


CANVAS_PIXEL = """(want) => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width < 2) return null;
    const p = canvas.getContext('2d').getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
    const got = [p[0], p[1], p[2]];
    return want === null || got.every((v, i) => Math.abs(v - want[i]) <= 2) ? got : null;
}"""


async def open_viewer(browser, device, button):
    await browser.call("goto", url=browser.base + f"/#/device/{device.device_id}")
    await browser.call("waitFor", selector="#device-view")
    await browser.call("waitFor", selector=f"{button}")
    started = time.monotonic()
    device.new_session()
    await browser.call("click", selector=button)
    await browser.call("waitForFunction", ms=30000, timeout=40,
                       expression="() => window.tetherViewer && "
                                  "['connected', 'refused', 'disconnected', 'failed']"
                                  ".includes(window.tetherViewer.state)")
    state = await browser.call("evaluate", expression="() => window.tetherViewer.state")
    assert state == "connected", await browser.call("text", selector="body")
    await device.wait_session()
    try:
        await browser.call("waitForFunction", arg=list(device.colour), expression=CANVAS_PIXEL,
                           ms=15000, timeout=25)
    except AssertionError:
        seen = await browser.call("evaluate", expression=CANVAS_PIXEL, arg=None)
        await browser.call("screenshot", file=str(SCREENSHOTS / "viewer-failed.png"))
        raise AssertionError(f"the canvas shows {seen}, not {device.colour}")
    return time.monotonic() - started


async def shadowable_device(server, tmp_path, **kwargs):
    """The device these tests shadow: for now FakeShadowDevice (a solid-colour RFB server
    behind the real relay). The real chain — tether-agent, tether-vnc, Xvfb — plugs in here
    with the same interface (shadow_fixture.py)."""
    return await FakeShadowDevice.online(server, tmp_path, **kwargs)


def test_browser_shadow_shows_the_picture_and_types(server, tmp_path, playwright_modules):
    async def run():
        device = await shadowable_device(server, tmp_path, hostname="tc-shadow",
                                         colour=(0, 160, 80), desktop_name=XSS_DESKTOP)
        browser = await Browser(playwright_modules).start()
        browser.base = server.url
        try:
            await login_with_token(browser, server)
            elapsed = await open_viewer(browser, device, "#shadow")
            print(f"shadow button to the first picture in the canvas: {elapsed * 1000:.0f} ms")
            start = device.last_request()
            assert start["view_only"] is False and start["admin"] == "admin"
            assert start["viewer"] == "browser"
            # The desktop name from the device is text.
            await browser.call("waitForFunction", arg=XSS_DESKTOP, expression="""(name) =>
                document.querySelector('#desktop-name').textContent === name""")
            assert await browser.call("evaluate", expression="""() =>
                [document.querySelectorAll('header img, header b').length,
                 window.__xss2 === undefined]""") == [0, True]
            # Typing in the canvas reaches the desktop as KeyEvents.
            await browser.call("clickAt", selector="#screen canvas", x=20, y=20)
            await browser.call("type", text="hi")
            await asyncio.to_thread(wait_until, lambda: (True, 0x68) in device.key_events()
                                    and (True, 0x69) in device.key_events(),
                                    what="KeyEvents h and i at the RFB server")
            assert device.pointer_events(), "the click reached the desktop as a PointerEvent"
            # The picture changes: the canvas follows.
            await device.set_colour((200, 30, 30))
            await browser.call("waitForFunction", arg=[200, 30, 30], expression=CANVAS_PIXEL)
            # Disconnect ends the session on the device's side too.
            await browser.call("click", selector="#disconnect")
            await browser.call("waitForFunction",
                               expression="() => window.tetherViewer.state === 'disconnected'")
            await device.wait_session_end()
            # The viewer shows how the session ended, as the server recorded it.
            await browser.call("waitForFunction", expression="""() =>
                document.querySelector('#status').textContent === 'disconnected: viewer_closed'""")

            # View-only: the picture shows, input does not leave the browser.
            await device.set_colour((20, 40, 220))
            await open_viewer(browser, device, "#shadow-view-only")
            assert device.last_request()["view_only"] is True
            assert await browser.call("evaluate", expression="() => window.tetherViewer.rfb.viewOnly")
            await browser.call("clickAt", selector="#screen canvas", x=20, y=20)
            await browser.call("type", text="xy")
            await device.input_barrier()
            assert device.key_events() == [], device.key_events()
            assert device.pointer_events() == [], device.pointer_events()

            # A refusal is shown, in the device's words, as text.
            await browser.call("click", selector="#disconnect")
            await device.wait_session_end()
            device.refuse_next = ("user_denied", "<i>not now</i>, says the user")
            await browser.call("goto", url=server.url + f"/#/device/{device.device_id}")
            await browser.call("click", selector="#shadow")
            await browser.call("waitForFunction",
                               expression="() => window.tetherViewer && "
                                          "window.tetherViewer.state === 'refused'")
            assert await browser.call("text", selector="#status") == "refused: user_denied"
            shown = await browser.call("text", selector="#message")
            assert "<i>not now</i>, says the user" in shown, shown
            assert await browser.call("evaluate",
                                      expression="() => document.querySelectorAll('i').length") == 0

            # The audit log page lists the sessions and how they ended.
            await browser.call("goto", url=server.url + "/#/audit")
            await browser.call("waitForFunction", expression="""() => {
                const cells = [...document.querySelectorAll('#audit tbody td')].map(c => c.textContent);
                return cells.includes('viewer_closed') &&
                       cells.some(t => t.startsWith('user_denied'));
            }""")
            check_browser_saw_no_violations(await browser.call("responses"),
                                            await browser.call("console"), server)
        finally:
            await browser.close()
            await device.stop()

    asyncio.run(run())


def test_viewer_websocket_from_a_foreign_origin_is_refused(server, tmp_path, playwright_modules):
    open_socket = """(url) => new Promise((resolve) => {
        const ws = new WebSocket(url, ['binary']);
        ws.onopen = () => { resolve('open'); ws.close(); };
        ws.onerror = () => resolve('error');
        ws.onclose = (e) => resolve('closed ' + e.code);
        setTimeout(() => resolve('timeout'), 15000);
    })"""

    async def shadow(device):
        status, _, body = await asyncio.to_thread(
            server.admin, "POST", f"/api/v1/devices/{device.device_id}/shadow", {})
        assert status == 201, body
        return body

    async def run():
        device = await shadowable_device(server, tmp_path)
        browser = await Browser(playwright_modules).start()
        try:
            # A page at another origin (any site the admin visits) tries the viewer URL.
            await browser.call("route", pattern="https://evil.example/**",
                               body="<!DOCTYPE html><title>evil</title>")
            await browser.call("goto", url="https://evil.example/")
            session = await shadow(device)
            result = await browser.call("evaluate", expression=open_socket,
                                        arg=session["viewer_url"])
            assert result != "open", result
            status, _, body = await asyncio.to_thread(
                server.admin, "DELETE", f"/api/v1/shadow/sessions/{session['session']}")
            assert status == 200, body
            # The same from the server's own page opens.
            await browser.call("goto", url=server.url + "/")
            session = await shadow(device)
            result = await browser.call("evaluate", expression=open_socket,
                                        arg=session["viewer_url"])
            assert result == "open", result
        finally:
            await browser.close()
            await device.stop()

    asyncio.run(run())
