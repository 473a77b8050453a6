"""The agent against a hostile server: bad WebSocket framing and bad UP messages.

An agent enrolls with a real tether-server, which is then stopped; on the same port a Python
TLS server takes its place with the real server's certificate and key (so the agent's pinned
trust accepts it) and requires the agent's client certificate. It speaks the upgrade, answers
hello, and then sends hand-made bad input, one case per connection (the Autobahn|Testsuite
groups that apply to a client: reserved bits and opcodes, control frames, fragmentation,
UTF-8, close codes, limits; plus UP messages that are framed but malformed).

For each case the test records what the agent did (its close code, as lws 4.1.6 sends it, or
its replies) and checks it against the expected outcome; the agent must never crash (same pid
throughout), must keep its memory bounded (VmRSS/VmHWM printed), must say why each channel
ended (its log), and must come back online when the real server returns.
"""

import base64
import hashlib
import json
import socket
import ssl
import time


from tether_harness import wait_until

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(opcode, payload=b"", fin=True, rsv=0, length=None):
    """A server-to-client frame (unmasked). `length` overrides the length field."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        head = bytes([first, n])
    elif n < 65536:
        head = bytes([first, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + n.to_bytes(8, "big")
    return head + payload


def up(msg_type, msg_id, body):
    return json.dumps({"v": 1, "type": msg_type, "id": msg_id, "body": body}).encode()


class AgentLink:
    """The server's end of one connection from the agent: TLS, upgrade, frames."""

    def __init__(self, tls):
        self.tls = tls
        self.buf = bytearray()
        self.eof = False
        self.answer_pings = True

    def _fill(self, timeout):
        if self.eof:
            return False
        self.tls.settimeout(max(timeout, 0.001))
        try:
            data = self.tls.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_upgrade(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline - time.monotonic()) and (
                    self.eof or time.monotonic() > deadline):
                raise AssertionError(f"no upgrade request: {bytes(self.buf)!r}")
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + GUID).digest())
        self.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                  b"\r\nSec-WebSocket-Protocol: " + headers[b"sec-websocket-protocol"] +
                  b"\r\n\r\n")
        return head

    def send(self, data):
        self.tls.settimeout(10)
        self.tls.sendall(data)

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        n = b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = int.from_bytes(b[2:10], "big"), 10
        masked = b[1] & 0x80
        if len(b) < pos + (4 if masked else 0) + n:
            return None
        payload = bytes(b[pos + 4:pos + 4 + n]) if masked else bytes(b[pos:pos + n])
        if masked:
            mask = b[pos:pos + 4]
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        opcode = b[0] & 0x0F
        del b[:pos + (4 if masked else 0) + n]
        return opcode, payload

    def next_frame(self, timeout):
        """(opcode, payload) of the agent's next frame; None on timeout or end of stream.
        Pings are answered (unless answer_pings is off) and not returned."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                opcode, payload = parsed
                if opcode == PING:
                    if self.answer_pings:
                        self.send(frame(PONG, payload))
                    continue
                return opcode, payload
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                return None
            self._fill(remaining)

    def next_message(self, timeout):
        """The agent's next text message as JSON, or ("close", code) / ("eof",) / None."""
        got = self.next_frame(timeout)
        if got is None:
            return ("eof",) if self.eof else None
        opcode, payload = got
        if opcode == CLOSE:
            return ("close", int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None,
                    payload[2:].decode(errors="replace"))
        if opcode == TEXT:
            return json.loads(payload)
        return ("opcode", opcode)

    def pump(self):
        """Reads what has arrived without waiting, answering pings; returns the other frames."""
        self._fill(0.001)
        frames = []
        while (got := self.next_frame(0)) is not None:
            frames.append(got)
        return frames

    def close(self):
        try:
            self.tls.close()
        except OSError:
            pass


class HostileServer:
    """A TLS listener on the real server's port with the real server's identity."""

    def __init__(self, state_dir, port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(state_dir / "server.crt"), str(state_dir / "server.key"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(str(state_dir / "ca.crt"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)

    def accept_raw(self, timeout=30):
        self.sock.settimeout(timeout)
        raw, _ = self.sock.accept()
        return raw

    def accept(self, timeout=30):
        """The next connection, upgraded, with hello answered: (link, hello)."""
        raw = self.accept_raw(timeout)
        raw.settimeout(10)
        tls = self.ctx.wrap_socket(raw, server_side=True)
        assert tls.getpeercert(), "the agent presented no client certificate"
        link = AgentLink(tls)
        link.read_upgrade()
        hello = link.next_message(10)
        assert isinstance(hello, dict) and hello["type"] == "hello", hello
        link.send(frame(TEXT, up("result", hello["id"], {
            "ok": True, "data": {"server_time": int(time.time()), "status_interval_s": 60}})))
        # The agent's first status follows the answer: the channel is up on its side.
        while True:
            m = link.next_message(10)
            assert isinstance(m, dict), f"no status after hello: {m}"
            if m["type"] == "status":
                return link, hello

    def close(self):
        self.sock.close()


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])  # kB
    return fields


def enrolled_agent(server, make_agent, **kwargs):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(**kwargs)
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    return agent, proc.stdout.strip()


def until_closed(link, timeout):
    """The agent's reaction: ("close", code, reason), ("eof",) or None; and UP messages seen."""
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = link.next_message(deadline - time.monotonic())
        if m is None or isinstance(m, tuple):
            return m, messages
        messages.append(m)
    return None, messages


def error_reply(link, msg_id, timeout=10):
    """The agent's error result for `msg_id` (status and the like are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = link.next_message(deadline - time.monotonic())
        assert isinstance(m, dict), f"channel ended instead of an answer to {msg_id}: {m}"
        if m["type"] == "result" and m["id"] == msg_id:
            return m["body"]
    raise AssertionError(f"no answer to {msg_id}")


# Framing cases: bytes sent after hello, and what lws 4.1.6 (the agent's WebSocket) does.
# ("close", code): a close frame with that code; ("eof",): the TCP connection just ends (lws
# fails the connection without a close frame for these parser errors).
FRAMING_CASES = [
    ("rsv1 set", frame(TEXT, b"{}", rsv=4), ("eof",)),
    ("rsv2+rsv3 set on a ping", frame(PING, b"x", rsv=3), ("eof",)),
    ("reserved data opcode 3", frame(0x3, b"x"), ("eof",)),
    ("reserved control opcode 0xB", frame(0xB, b"x"), ("eof",)),
    ("fragmented ping", frame(PING, b"x", fin=False), ("eof",)),
    ("ping of 126 bytes (extended length)", frame(PING, b"p" * 126), ("eof",)),
    ("continuation without a start", frame(CONT, b"x"), ("eof",)),
    ("new text while a message is open", frame(TEXT, b"{", fin=False) + frame(TEXT, b"}"),
     ("eof",)),
    ("invalid UTF-8 text", frame(TEXT, b'{"v":1,"x":"\xff\xfe"}'), ("close", 1007)),
    ("UTF-8 cut inside a character at the end", frame(TEXT, b'"\xe2\x82'), ("close", 1007)),
    ("length claiming 2^63 bytes", frame(TEXT, b"", length=1 << 63), ("eof",)),
    ("binary message", frame(BINARY, b"\x00\x01"), ("close", 1003)),
    ("close with code 999", frame(CLOSE, (999).to_bytes(2, "big") + b"bad"), ("close", 1002)),
    ("close with code 1005 (reserved)", frame(CLOSE, (1005).to_bytes(2, "big")),
     ("close", 1002)),
    ("close with code 5000", frame(CLOSE, (5000).to_bytes(2, "big")), ("close", 1002)),
    ("close with a 1-byte body", frame(CLOSE, b"\x03"), ("eof",)),
    ("close 1012 (lws 4.1.6 rewrites it)", frame(CLOSE, (1012).to_bytes(2, "big") +
                                                 b"server restarting"), ("close", 1002)),
    ("close 1000", frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"), ("close", 1000)),
    ("close with a reason that is not UTF-8", frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"),
     ("eof",)),
]


def test_agent_survives_a_hostile_server(make_server, make_agent):
    server = make_server().start()
    agent, device_id = enrolled_agent(server, make_agent, settings={
        "connection.backoff_base": "100ms", "connection.backoff_cap": "1s",
        "connection.restart_spread": "200ms",
        "connection.connect_timeout": "2s", "connection.ping_interval": "1s"})
    agent.start()
    agent.wait_connected()
    pid = agent.proc.pid
    before = memory(pid)
    port = server.port
    server.stop()
    hostile = HostileServer(server.state_dir, port)
    outcomes = []
    started = time.monotonic()

    def record(name, outcome, seconds):
        outcomes.append((name, outcome, seconds))
        print(f"  {name:45s} -> {outcome}  ({seconds:.2f} s)")
        assert agent.proc.poll() is None and agent.proc.pid == pid, (
            f"the agent died on {name!r}:\n{agent.log()}")

    try:
        print("\nframing (agent's reaction as lws 4.1.6 gives it):")
        for name, data, expected in FRAMING_CASES:
            link, _ = hostile.accept()
            t0 = time.monotonic()
            link.send(data)
            reaction, _ = until_closed(link, 10)
            record(name, reaction, time.monotonic() - t0)
            link.close()
            assert reaction is not None, f"{name}: the agent neither closed nor hung up"
            assert reaction[:len(expected)] == expected, f"{name}: {reaction}"

        print("UP messages that are framed but malformed (the channel stays up):")
        link, _ = hostile.accept()
        bad_messages = [
            ("unknown type", up("frobnicate", "s1", {}), "s1", "unknown_type"),
            ("command name of the wrong type", up("command", "s2", {"name": 42}), "s2", None),
            ("settings document not an object", up("settings", "s3", {"document": [1]}), "s3",
             None),
            ("duplicate keys",
             b'{"v":1,"type":"command","id":"s4","id":"s5","body":{}}', "0", None),
            ("100 000-deep nesting",
             b'{"v":1,"type":"command","id":"s6","body":{"a":' + b"[" * 100000 +
             b"]" * 100000 + b"}}", "0", None),
            ("a number too large to be finite", b'{"v":1e999,"type":"x","id":"s7","body":{}}',
             "0", None),
            ("not JSON at all", b"\x00garbage", "0", None),
            ("a JSON array", b"[1,2,3]", "0", None),
            ("version 2", up("command", "s8", {}).replace(b'"v": 1', b'"v": 2'), "0", None),
        ]
        for name, data, answer_id, code in bad_messages:
            t0 = time.monotonic()
            link.send(frame(TEXT, data))
            body = error_reply(link, answer_id)
            record(name, f"error result {answer_id}: {body['error']['code']}",
                   time.monotonic() - t0)
            assert body["ok"] is False and body["error"]["message"]
            if code:
                assert body["error"]["code"] == code
        # A result nobody asked for is dropped quietly (never answered: no error ping-pong).
        link.send(frame(TEXT, up("result", "s99", {"ok": True})))

        # 100 MB in 100 fragments: read to its end and dropped, never held whole. (Pongs to
        # the agent's 1 s pings go between fragments: inside a frame they would be payload.)
        size = 100 * 1024 * 1024
        head = b'{"v":1,"type":"command","id":"s10","body":{"x":"'
        tail = b'"}}'
        chunk = b"a" * (1 << 20)
        t0 = time.monotonic()
        link.send(frame(TEXT, head, fin=False))
        for _ in range(size // len(chunk)):
            link.send(frame(CONT, chunk, fin=False))
            assert not [f for f in link.pump() if f[0] == CLOSE]
        link.send(frame(CONT, tail))
        body = error_reply(link, "0", timeout=60)
        record("100 MB message in 100 fragments", f"error result 0: {body['error']['code']}",
               time.monotonic() - t0)
        assert body["error"]["code"] == "too_large"
        # 1 MB in one frame: the limit holds inside a frame too.
        t0 = time.monotonic()
        link.send(frame(TEXT, head + chunk + tail))
        body = error_reply(link, "0")
        record("1 MB message in one frame", f"error result 0: {body['error']['code']}",
               time.monotonic() - t0)
        assert body["error"]["code"] == "too_large"
        # Still the same channel, still answering.
        link.send(frame(TEXT, up("frobnicate", "s11", {})))
        assert error_reply(link, "s11")["error"]["code"] == "unknown_type"
        assert agent.connection_state() == "connected"
        during = memory(pid)
        link.close()

        print("stalls (the agent gives up and reconnects):")
        link, _ = hostile.accept()
        link.answer_pings = False
        t0 = time.monotonic()
        link.send(frame(TEXT, length=100) + b"{" * 10)  # a frame that never completes
        reaction, _ = until_closed(link, 20)
        record("frame never completed (pings unanswered)", reaction, time.monotonic() - t0)
        assert reaction is not None
        link.close()

        raw = hostile.accept_raw()
        t0 = time.monotonic()
        raw.settimeout(20)
        assert raw.recv(1) != b""  # the ClientHello arrives, is never answered
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass
        record("TCP accepted, TLS never answered", "hung up", time.monotonic() - t0)
        raw.close()

        raw = hostile.accept_raw()
        raw.settimeout(10)
        tls = hostile.ctx.wrap_socket(raw, server_side=True)
        t0 = time.monotonic()
        stalled = AgentLink(tls)
        stalled.answer_pings = False
        while not stalled.eof and time.monotonic() - t0 < 20:
            stalled._fill(20)
        record("TLS done, upgrade never answered", "hung up" if stalled.eof else "still open",
               time.monotonic() - t0)
        assert stalled.eof
        stalled.close()
    finally:
        hostile.close()

    after = memory(pid)
    print(f"agent memory (kB): before {before}, after the 100 MB message {during}, "
          f"at the end {after}; {len(outcomes)} cases in {time.monotonic() - started:.1f} s")
    # Bounded: a 100 MB message (and a frame claiming 2^63 bytes) never grew it by more than
    # a few times the 256 KiB limit.
    assert after["VmHWM"] - before["VmHWM"] < 16 * 1024, (before, after)

    log = agent.log()
    for why in ("refused a malformed message", "over the limit of 262144 bytes",
                "no answer to hello", "closed by the server (1002"):
        assert why in log, f"{why!r} not in the agent log:\n{log}"
    assert agent.status()["connection"]["last_error"]

    # The real server comes back on the same port: online again, same process.
    server.start()
    try:
        agent.wait_connected(timeout=30)
    except AssertionError:
        with open(f"/proc/{pid}/stat") as f:
            print("agent utime", f.read().split()[13], agent.status())
        raise
    wait_until(lambda: json.loads(server.ctl("device", "show", device_id, "--json",
                                             check=True).stdout)["online"],
               timeout=20, what="the device online again")
    assert agent.proc.poll() is None and agent.proc.pid == pid
