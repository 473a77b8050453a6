"""A raw WebSocket client over TLS that writes frames by hand, so that tests can send frames
no library would (reserved bits, bad opcodes, bad lengths, invalid UTF-8, broken fragments).
"""

import base64
import os
import socket
import ssl
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length_bits=None, length=None,
          key=None):
    """One frame. length_bits forces the length encoding: 7, 16 or 64 (else the shortest);
    length (with payload b"") makes only the header of a frame whose payload follows
    separately: with key=b"\0\0\0\0" (a legal mask that changes nothing) it can be
    streamed as is."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if length_bits is None:
        length_bits = 7 if n < 126 else 16 if n < 65536 else 64
    if length_bits == 7:
        head += bytes([m | n])
    elif length_bits == 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload, key):
    if not payload:
        return b""
    # Whole-buffer XOR through big integers: fast enough for megabytes in pure Python.
    k = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Closed(Exception):
    pass


class RawWebSocket:
    """A client end after a 101 answer; every read has a deadline."""

    def __init__(self, sock, rest=b""):
        self.sock = sock
        self.buf = rest

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            except socket.timeout as e:
                raise TimeoutError("no frame from the server in time") from e
            if not chunk:
                raise Closed("the server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=10.0):
        """(fin, opcode, payload) of the next frame; Closed when the connection ends."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n, deadline)

    def recv_message(self, timeout=10.0):
        """The next data message (opcode, bytes), answering nothing; skips pings."""
        deadline = time.monotonic() + timeout
        parts, first = [], None
        while True:
            fin, op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op in (OP_PING, OP_PONG):
                continue
            if op == OP_CLOSE:
                raise Closed(f"close frame {close_code(payload)}")
            first = first if first is not None else op
            parts.append(payload)
            if fin:
                return first, b"".join(parts)

    def ping_roundtrip(self, payload=b"rtt", timeout=10.0):
        """Sends a ping and reads until its pong (answering the server's pings, skipping
        other frames); returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        self.send_frame(OP_PING, payload)
        while True:
            _, op, data = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PONG and data == payload:
                return time.monotonic() - started
            if op == OP_PING:
                self.send_frame(OP_PONG, data)
            elif op == OP_CLOSE:
                raise Closed(f"close frame {close_code(data)}")

    def expect_close(self, timeout=10.0):
        """Reads until the server's close frame: (code, reason); (None, why) when the
        connection ended without one."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                _, op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
                if op == OP_CLOSE:
                    return close_code(payload), payload[2:]
        except Closed as e:
            return None, str(e)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def tls_connect(port, ssl_context, host="127.0.0.1", timeout=10.0):
    raw = socket.create_connection((host, port), timeout=timeout)
    return ssl_context.wrap_socket(raw, server_hostname=host)


def upgrade(port, ssl_context, path, subprotocol, headers=(), timeout=10.0):
    """Opens a WebSocket by hand; returns RawWebSocket, or raises with the HTTP answer."""
    sock = tls_connect(port, ssl_context, timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Protocol: {subprotocol}", *headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"upgrade refused: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"upgrade refused: {head[:200]!r}")
    return RawWebSocket(sock, rest)
