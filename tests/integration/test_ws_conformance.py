"""The server's WebSockets against the Autobahn|Testsuite case groups that apply (issue 11),
with frames written by hand (ws_frames.py) over TLS: the UP endpoint (a device certificate)
and a shadowing tunnel's viewer end (docs/protocol.md §5). Plus interop with
python3-websockets and node's `ws` as peers.

Autobahn groups: 1 framing, 2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation,
6 UTF-8, 7 close handling, 9 limits (10 auto-fragmentation and 12/13 compression do not
apply: the server negotiates no extension). Each test prints the outcome per case; what
libwebsockets 4.1.6 does differently from RFC 6455 is printed and asserted as it is (named
"lws:" in the output), so that a change shows.
"""

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import ws_frames as wf
from fake_device import FakeDevice, enroll, request_async
from tether_harness import Server, bin_dir, wait_no_sessions

UP_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """One server and one enrolled device for the module's UP cases."""
    base = tmp_path_factory.mktemp("ws")
    server = Server(base / "state").start()
    device = enroll(server, base)
    yield server, device
    server.stop()


def up_socket(up):
    server, device = up
    return wf.upgrade(server.port, server.ssl_context(device.cert, device.key), "/up",
                      "tether.up.v1")


def envelope(tag, size=None):
    """An unknown-type UP message, padded with spaces to `size` bytes: its answer is an error
    result carrying `tag`, so the whole message arrived intact."""
    text = json.dumps({"v": 1, "type": "frobnicate", "id": tag, "body": {}}).encode()
    if size is not None:
        assert size >= len(text)
        text += b" " * (size - len(text))
    return text


def answer(ws, tag, timeout=10):
    """The error result for `tag` (other messages are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        op, data = ws.recv_message(max(0.1, deadline - time.monotonic()))
        assert op == wf.OP_TEXT
        reply = json.loads(data)
        if reply.get("id") == tag:
            assert reply["type"] == "result" and reply["body"]["ok"] is False
            return reply


def with_up(up, case):
    ws = up_socket(up)
    try:
        return case(ws)
    finally:
        ws.close()


def expect_failed(ws, want, what):
    """The server fails the connection: a close frame with `want`, or (allowed where `want`
    is a tuple holding None: RFC 6455 §7.1.7 makes the close frame optional) just the end of
    the connection."""
    code, reason = ws.expect_close()
    print(f"  {what}: " + (f"close {code} {reason!r}" if isinstance(reason, bytes)
                            else f"no close frame, connection closed ({reason})"))
    wanted = want if isinstance(want, tuple) else (want,)
    assert code in wanted, f"{what}: expected close {want}, got {code} {reason!r}"


# ---- 1 framing ---------------------------------------------------------------------------

def test_1_framing_payload_lengths(up):
    sizes = [125, 126, 127, 65535, 65536, 200_000]

    def case(ws):
        ws.send_frame(wf.OP_TEXT, b"")
        empty = answer(ws, "0")
        print(f"  0 bytes: {empty['body']['error']['code']}")
        for n in sizes:
            tag = f"len{n}"
            ws.send_frame(wf.OP_TEXT, envelope(tag, n))
            bits = 7 if n < 126 else 16 if n < 65536 else 64
            print(f"  {n} bytes ({bits}-bit length): {answer(ws, tag)['body']['error']['code']}")
        # A frame written one byte at a time (Autobahn 1.1.x/1.2.x "chopped").
        for b in wf.frame(wf.OP_TEXT, envelope("chopped", 300)):
            ws.send(bytes([b]))
        print(f"  300 bytes sent byte by byte: {answer(ws, 'chopped')['body']['error']['code']}")
        # Binary frames carry UP messages as well (the server reads bytes).
        ws.send_frame(wf.OP_BINARY, envelope("bin", 126))
        print(f"  binary frame: {answer(ws, 'bin')['body']['error']['code']}")

    with_up(up, case)


# ---- 2 pings and pongs -------------------------------------------------------------------

def test_2_pings_and_pongs(up):
    def case(ws):
        for payload in (b"", b"ka", os.urandom(125), "héllo".encode()):
            ws.send_frame(wf.OP_PING, payload)
            fin, op, got = ws.recv_frame()
            assert (fin, op, got) == (True, wf.OP_PONG, payload)
        print("  pings of 0, 2, 125 bytes and UTF-8: pong with the same payload")
        ws.send_frame(wf.OP_PONG, b"unsolicited")
        for i in range(10):
            ws.send_frame(wf.OP_PING, str(i).encode())
        pongs = [ws.recv_frame()[2] for _ in range(10)]
        print(f"  unsolicited pong ignored; 10 pings in a row: {len(pongs)} pongs")
        assert pongs == [str(i).encode() for i in range(10)]
        ws.send_frame(wf.OP_TEXT, envelope("after-pings"))
        answer(ws, "after-pings")

    with_up(up, case)

    def too_long(ws):
        ws.send_frame(wf.OP_PING, b"x" * 126)
        # lws: drops the connection without a close frame.
        expect_failed(ws, (1002, None), "lws: ping with 126 bytes")

    with_up(up, too_long)

    def fragmented(ws):
        ws.send_frame(wf.OP_PING, b"x", fin=False)
        expect_failed(ws, 1002, "fragmented ping")

    with_up(up, fragmented)


# ---- 3 reserved bits ---------------------------------------------------------------------

def test_3_reserved_bits(up):
    for rsv in range(1, 8):
        for op, payload in ((wf.OP_TEXT, envelope("rsv")), (wf.OP_BINARY, b"\x00"),
                            (wf.OP_PING, b"p"), (wf.OP_CLOSE, wf.close_payload(1000))):
            def case(ws):
                ws.send_frame(op, payload, rsv=rsv)
                expect_failed(ws, 1002, f"rsv={rsv} opcode {op}")

            with_up(up, case)


# ---- 4 opcodes ---------------------------------------------------------------------------

def test_4_reserved_opcodes(up):
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        for payload in (b"", b"reserved"):
            def case(ws):
                ws.send_frame(wf.OP_TEXT, envelope("before"))
                answer(ws, "before")
                ws.send_frame(op, payload)
                expect_failed(ws, 1002, f"opcode {op:#x} with {len(payload)} bytes")

            with_up(up, case)


# ---- 5 fragmentation ---------------------------------------------------------------------

def test_5_fragmentation(up):
    def ok(ws):
        text = envelope("frag", 3000)
        parts = [text[:1], text[1:1000], b"", text[1000:]]
        ws.send_frame(wf.OP_TEXT, parts[0], fin=False)
        for i, part in enumerate(parts[1:]):
            ws.send_frame(wf.OP_CONT, part, fin=i == len(parts) - 2)
            if i == 0:
                ws.send_frame(wf.OP_PING, b"between")
        fin, op, got = ws.recv_frame()
        assert (op, got) == (wf.OP_PONG, b"between")
        print(f"  4 fragments (one empty) with a ping between: pong first, then "
              f"{answer(ws, 'frag')['body']['error']['code']}")
        # Fragments of 1 byte each.
        text = envelope("tiny", 200)
        ws.send_frame(wf.OP_TEXT, text[:1], fin=False)
        for i in range(1, len(text)):
            ws.send_frame(wf.OP_CONT, text[i:i + 1], fin=i == len(text) - 1)
        print(f"  200 one-byte fragments: {answer(ws, 'tiny')['body']['error']['code']}")

    with_up(up, ok)

    bad = [
        ("continuation without a start", [(wf.OP_CONT, b"x", True)]),
        ("unfinished continuation without a start", [(wf.OP_CONT, b"x", False)]),
        ("a new text frame inside a fragmented one",
         [(wf.OP_TEXT, b"{", False), (wf.OP_TEXT, b"}", True)]),
        ("a binary frame inside a fragmented text",
         [(wf.OP_TEXT, b"{", False), (wf.OP_BINARY, b"}", True)]),
        ("a fragmented close", [(wf.OP_CLOSE, wf.close_payload(1000), False)]),
    ]
    for what, frames in bad:
        def case(ws):
            for op, payload, fin in frames:
                ws.send_frame(op, payload, fin=fin)
            expect_failed(ws, 1002, what)

        with_up(up, case)


# ---- 6 UTF-8 -----------------------------------------------------------------------------

def test_6_utf8(up):
    good = "κόσμε 日本 😀".encode()

    def valid(ws):
        message = b'{"v": 1, "type": "frobnicate", "id": "utf8", "body": {"t": "' + good + b'"}}'
        ws.send_frame(wf.OP_TEXT, message)
        answer(ws, "utf8")
        # Split inside a code point across fragments (Autobahn 6.2.x/6.4.x).
        cut = message.index(b"\xf0") + 2
        ws.send_frame(wf.OP_TEXT, message[:cut].replace(b"utf8", b"utf9"), fin=False)
        ws.send_frame(wf.OP_CONT, message[cut:], fin=True)
        answer(ws, "utf9")
        print("  valid UTF-8, whole and split inside a code point: answered")

    with_up(up, valid)

    invalid = [
        ("0xff", b"\xff"),
        ("a lone continuation byte", b"\x80"),
        ("overlong '/'", b"\xc0\xaf"),
        ("a UTF-16 surrogate", b"\xed\xa0\x80"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("truncated at the end", b"\xe6\x97"),
    ]
    for what, bad in invalid:
        def case(ws):
            ws.send_frame(wf.OP_TEXT, b'{"v": 1, "type": "x", "id": "u", "body": {"t": "'
                          + bad + b'"}}')
            expect_failed(ws, 1007, f"invalid UTF-8 ({what}) in a text message")

        with_up(up, case)

    def fragmented_bad(ws):
        # Invalid in the first fragment: failed before the message ends (Autobahn 6.4.x).
        ws.send_frame(wf.OP_TEXT, b'{"t": "\xce\xba\xf4\x90', fin=False)
        expect_failed(ws, 1007, "invalid UTF-8 in the first fragment")

    with_up(up, fragmented_bad)


# ---- 7 close handling --------------------------------------------------------------------

def test_7_close_handling(up):
    def echoed(code):
        def case(ws):
            ws.send_frame(wf.OP_CLOSE, wf.close_payload(code, b"bye"))
            got, reason = ws.expect_close()
            return got

        return with_up(up, case)

    valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
    results = {code: echoed(code) for code in valid}
    print(f"  valid codes echoed: {results}")
    assert all(results[c] == c for c in valid)

    invalid = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
    results = {code: echoed(code) for code in invalid}
    print(f"  invalid codes answered: {results}")
    assert all(results[c] == 1002 for c in invalid)

    # lws 4.1.6 takes 1012-1015 for invalid (RFC 6455's registry has since added 1012-1014)
    # and does not check codes of 5000 and above (RFC 6455 §7.4.2: invalid).
    lws = {code: echoed(code) for code in (1012, 1013, 1014, 1015, 5000, 65535)}
    print(f"  lws: 1012-1015 and >= 5000 answered: {lws}")
    assert lws[1015] == 1002

    def empty(ws):
        ws.send_frame(wf.OP_CLOSE, b"")
        code, reason = ws.expect_close()
        print(f"  empty close: answered with {code} {reason!r}")
        assert code in (None, 1000) and isinstance(reason, bytes)

    with_up(up, empty)

    def bad_reason(ws):
        ws.send_frame(wf.OP_CLOSE, wf.close_payload(1000, b"\xff\xfe"))
        # lws: drops the connection without a close frame.
        expect_failed(ws, (1007, None), "lws: close reason not UTF-8")

    with_up(up, bad_reason)

    def long_reason(ws):
        ws.send_frame(wf.OP_CLOSE, wf.close_payload(1000, b"r" * 123))
        code, reason = ws.expect_close()
        print(f"  close with a 123-byte reason: {code}")
        assert code == 1000

    with_up(up, long_reason)

    def after_close(ws):
        ws.send_frame(wf.OP_CLOSE, wf.close_payload(1000))
        ws.send_frame(wf.OP_TEXT, envelope("late"))
        ws.send_frame(wf.OP_PING, b"late")
        frames = []
        try:
            while True:
                _, op, payload = ws.recv_frame()
                frames.append(op)
        except wf.Closed:
            pass
        print(f"  frames after our close: the server sent opcodes {frames}")
        assert frames == [wf.OP_CLOSE]

    with_up(up, after_close)


# ---- 9 limits ----------------------------------------------------------------------------

def test_9_large_messages_within_the_cap(up):
    def case(ws):
        for size, fragment in ((64 * 1024, None), (UP_LIMIT, None), (UP_LIMIT, 1024),
                               (UP_LIMIT, 65536)):
            tag = f"big{size}-{fragment}"
            text = envelope(tag, size)
            started = time.monotonic()
            if fragment is None:
                ws.send_frame(wf.OP_TEXT, text)
            else:
                chunks = [text[i:i + fragment] for i in range(0, len(text), fragment)]
                for i, chunk in enumerate(chunks):
                    ws.send_frame(wf.OP_TEXT if i == 0 else wf.OP_CONT, chunk,
                                  fin=i == len(chunks) - 1)
            code = answer(ws, tag)["body"]["error"]["code"]
            print(f"  {size} bytes in {'one frame' if fragment is None else f'{fragment}-byte fragments'}"
                  f": {code} in {(time.monotonic() - started) * 1000:.1f} ms")
            assert code in ("unknown_type", "invalid_argument")
        ws.send_frame(wf.OP_TEXT, envelope("over", UP_LIMIT + 1))
        code = answer(ws, "0")["body"]["error"]["code"]
        print(f"  {UP_LIMIT + 1} bytes: {code}, channel kept")
        assert code == "too_large"
        ws.send_frame(wf.OP_TEXT, envelope("still"))
        answer(ws, "still")

    with_up(up, case)


# ---- the tunnel's viewer end -------------------------------------------------------------

def test_tunnel_viewer_end(tmp_path, make_server):
    """The same rules on a shadowing tunnel (a text message there closes with 1003)."""
    server = make_server().start()
    device = enroll(server, tmp_path)
    cases = [
        ("binary fragments relayed", None),
        ("ping answered", None),
        ("rsv bits", 1002),
        ("reserved opcode", 1002),
        ("continuation without start", 1002),
        ("126-byte ping", (1002, None)),
        ("text message", 1003),
        ("invalid UTF-8 text", 1007),
        ("invalid close code", 1002),
    ]

    async def run():
        dev = await FakeDevice.online(server, device)
        for what, want in cases:
            call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/shadow",
                                 {"viewer": "external"})
            start = await dev.next_shadow_start()
            await dev.accept_shadow(start)
            status, _, created = await call
            assert status == 201, created
            tunnel = await dev.open_tunnel(start)
            url = created["viewer_url"]
            path = url[url.index("/tunnel/"):]
            ws = await asyncio.to_thread(wf.upgrade, server.port, server.ssl_context(), path,
                                         "binary")
            try:
                await asyncio.to_thread(tunnel_case, ws, tunnel, what)
                if want is None:
                    print(f"  {what}: ok")
                else:
                    await asyncio.to_thread(expect_failed, ws, want, what)
            finally:
                ws.close()
            await tunnel.close()
            await dev.shadow_stop(created["session"], "viewer_closed")
            await wait_no_sessions(server)
        await dev.close()

    def tunnel_case(ws, tunnel, what):
        if what == "binary fragments relayed":
            ws.send_frame(wf.OP_BINARY, b"ab", fin=False)
            ws.send_frame(wf.OP_PING, b"mid")
            ws.send_frame(wf.OP_CONT, b"cd", fin=True)
            assert ws.recv_frame()[1:] == (wf.OP_PONG, b"mid")
            got = b""
            loop = asyncio.new_event_loop()
            try:
                while len(got) < 4:
                    got += loop.run_until_complete(asyncio.wait_for(tunnel.recv(), 10))
            finally:
                loop.close()
            assert got == b"abcd"
        elif what == "ping answered":
            ws.send_frame(wf.OP_PING, b"x" * 125)
            assert ws.recv_frame()[1:] == (wf.OP_PONG, b"x" * 125)
        elif what == "rsv bits":
            ws.send_frame(wf.OP_BINARY, b"x", rsv=2)
        elif what == "reserved opcode":
            ws.send_frame(0xB, b"")
        elif what == "continuation without start":
            ws.send_frame(wf.OP_CONT, b"x")
        elif what == "126-byte ping":
            ws.send_frame(wf.OP_PING, b"x" * 126)
        elif what == "text message":
            ws.send_frame(wf.OP_TEXT, b"hello")
        elif what == "invalid UTF-8 text":
            ws.send_frame(wf.OP_TEXT, b"\xff")
        elif what == "invalid close code":
            ws.send_frame(wf.OP_CLOSE, wf.close_payload(999))

    asyncio.run(run())


# ---- interop -----------------------------------------------------------------------------

def test_interop_python_websockets(up):
    import websockets

    server, device = up

    async def run():
        ctx = server.ssl_context(device.cert, device.key)
        async with websockets.connect(f"wss://127.0.0.1:{server.port}/up", ssl=ctx,
                                      subprotocols=["tether.up.v1"], ping_interval=None,
                                      max_size=None, compression="deflate") as ws:
            assert ws.subprotocol == "tether.up.v1"
            # permessage-deflate was offered: the server takes no extension.
            assert not ws.extensions
            started = time.monotonic()
            await asyncio.wait_for(await ws.ping(b"py"), 10)
            for size in (60, 70_000, UP_LIMIT):
                await ws.send(envelope(f"py{size}", size).decode())
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["id"] == f"py{size}"
            await ws.send([envelope("pyfrag", 5000).decode()[i:i + 1000] for i in range(0, 5000, 1000)])
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] == "pyfrag"
            print(f"  python3-websockets {websockets.__version__}: ping, messages of 60 B, "
                  f"70 KB, 256 KiB and 5 fragments in {(time.monotonic() - started) * 1000:.0f} ms")
        assert ws.close_code == 1000

    asyncio.run(run())


NODE_WS_VERSION = "8.18.0"

NODE_PEER = r"""
const WebSocket = require('ws');
const fs = require('fs');
const [url, ca, cert, key] = process.argv.slice(2);
const ws = new WebSocket(url, 'tether.up.v1', {
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  perMessageDeflate: true,
});
const out = {};
const t0 = Date.now();
ws.on('open', () => {
  out.protocol = ws.protocol;
  out.extensions = ws.extensions;
  ws.ping(Buffer.from('node'));
});
ws.on('pong', (data) => {
  out.pong = data.toString();
  ws.send(JSON.stringify({v: 1, type: 'frobnicate', id: 'node1', body: {}}) + ' '.repeat(100000));
});
ws.on('message', (data) => {
  const reply = JSON.parse(data.toString());
  out.reply = {id: reply.id, code: reply.body.error.code};
  out.ms = Date.now() - t0;
  ws.close(1000, 'done');
});
ws.on('close', (code) => { out.close = code; console.log(JSON.stringify(out)); process.exit(0); });
ws.on('error', (e) => { console.error(String(e)); process.exit(2); });
setTimeout(() => { console.error('timed out'); process.exit(3); }, 20000);
"""


def ensure_node_ws():
    """node_modules holding `ws`, installed with npm beside the build like playwright-core
    (browser_harness.py); pytest.skip when that cannot be done here."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the `ws` interop test (Debian: nodejs, npm)")
    import fcntl

    cache = Path(os.environ.get("TETHER_NODE_CACHE", bin_dir().parent / "node-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    modules = cache / "node_modules"
    marker = modules / "ws" / "package.json"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and json.loads(marker.read_text()).get("version") == NODE_WS_VERSION:
            return modules
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
             "--no-package-lock", f"ws@{NODE_WS_VERSION}"],
            capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not marker.exists():
            pytest.skip(f"cannot install ws {NODE_WS_VERSION} with npm: "
                        f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return modules


def test_interop_node_ws(up, tmp_path):
    modules = ensure_node_ws()
    server, device = up
    script = tmp_path / "peer.js"
    script.write_text(NODE_PEER)
    proc = subprocess.run(
        ["node", str(script), f"wss://127.0.0.1:{server.port}/up", str(server.ca_file),
         str(device.cert), str(device.key)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, NODE_PATH=str(modules)))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    print(f"  node ws {NODE_WS_VERSION}: {out}")
    assert out["protocol"] == "tether.up.v1" and out["extensions"] == ""
    assert out["pong"] == "node"
    assert out["reply"]["id"] == "node1"
    assert out["close"] == 1000
