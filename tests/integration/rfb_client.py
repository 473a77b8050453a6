"""A small RFB (VNC) viewer for tests: enough protocol to check what a VNC server shows and to
send it input. Standard library only; runs with /usr/bin/python3.

API
---
    from rfb_client import RfbClient, connect_tcp

    client = RfbClient(sock)            # any connected stream socket (TCP, socketpair, ...)
    client = connect_tcp("127.0.0.1", port)
    info = client.handshake()           # RFB 3.8 (3.7/3.3 accepted), security type None;
                                        # sets 32-bit true colour and the Raw encoding.
                                        # -> ServerInit(width, height, name, pixel_format)
    frame = client.full_frame()         # requests a full update, reads until it is complete
                                        # -> Frame(width, height, pixels, seconds)
                                        # pixels: bytes, width*height*3, RGB, row-major;
                                        # seconds: from RfbClient() to this frame (the
                                        # "time to first full update" when called first)
    client.wait_until(pred, timeout)    # requests incremental updates until pred(client)
                                        # is true; raises TimeoutError otherwise
    client.pixel(x, y) -> (r, g, b)     # of the current framebuffer
    client.average(x, y, w, h) -> (r, g, b)
    client.key(keysym, down) / client.tap(keysym)    # KeyEvent(s)
    client.type_text("abc")             # taps the keysyms of Latin-1 text
    client.pointer(x, y, buttons=0)     # PointerEvent (buttons: bit 0 = button 1)
    client.cut_text("text")             # ClientCutText (Latin-1)
    client.cut_texts                    # ServerCutText strings received so far
    client.poll(seconds)                # reads whatever arrives within `seconds`
    client.close()

Encodings: Raw (plus the DesktopSize pseudo-encoding, so a resize is followed) by default;
pass `encodings=` to handshake() to offer others. Decoded: Raw, CopyRect, DesktopSize,
LastRect, RichCursor (client.cursor = Cursor(width, height, xhot, yhot, pixels BGRX, mask)),
XCursor (client.cursor with pixels None) and PointerPos (client.pointer_pos). Errors raise
RfbError (protocol) or TimeoutError / ConnectionError.
"""

import socket
import struct
import time
from collections import namedtuple

ENCODING_RAW = 0
ENCODING_COPYRECT = 1
ENCODING_DESKTOP_SIZE = -223
ENCODING_LAST_RECT = -224
ENCODING_POINTER_POS = -232
ENCODING_XCURSOR = -240
ENCODING_RICH_CURSOR = -239

ServerInit = namedtuple("ServerInit", "width height name pixel_format")
Frame = namedtuple("Frame", "width height pixels seconds")
Cursor = namedtuple("Cursor", "width height xhot yhot pixels mask")


class RfbError(Exception):
    pass


def connect_tcp(host, port, timeout=10.0):
    sock = socket.create_connection((host, port), timeout=timeout)
    return RfbClient(sock, timeout=timeout)


class RfbClient:
    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.started = time.monotonic()
        self.width = 0
        self.height = 0
        self.name = ""
        self.fb = bytearray()
        self.cut_texts = []
        self.bells = 0
        self.updates = 0
        self.cursor = None
        self.cursor_updates = 0
        self.pointer_pos = None
        self._buf = bytearray()

    # -- plumbing ------------------------------------------------------------------------

    def _recv_exact(self, n):
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("the RFB server closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- handshake -----------------------------------------------------------------------

    def handshake(self, shared=True, encodings=(ENCODING_RAW, ENCODING_DESKTOP_SIZE)):
        version = self._recv_exact(12)
        if not version.startswith(b"RFB "):
            raise RfbError(f"not an RFB server: {version!r}")
        major, minor = int(version[4:7]), int(version[8:11])
        minor = 8 if (major, minor) >= (3, 8) else (7 if minor >= 7 else 3)
        self._send(b"RFB 003.%03d\n" % minor)
        if minor >= 7:
            count = self._recv_exact(1)[0]
            if count == 0:
                raise RfbError("server refused: " + self._read_reason())
            types = self._recv_exact(count)
            if 1 not in types:
                raise RfbError(f"server offers no security type None: {list(types)}")
            self._send(b"\x01")
        else:
            (sec,) = struct.unpack(">I", self._recv_exact(4))
            if sec != 1:
                raise RfbError(f"server wants security type {sec}")
        if minor >= 8:
            (result,) = struct.unpack(">I", self._recv_exact(4))
            if result != 0:
                raise RfbError("security failed: " + self._read_reason())
        self._send(b"\x01" if shared else b"\x00")
        head = self._recv_exact(24)
        self.width, self.height = struct.unpack(">HH", head[:4])
        pixel_format = head[4:20]
        (name_len,) = struct.unpack(">I", head[20:24])
        self.name = self._recv_exact(name_len).decode("latin-1")
        self.fb = bytearray(self.width * self.height * 4)
        # 32 bpp, depth 24, little endian, true colour, R at 16, G at 8, B at 0: BGRX bytes.
        self._send(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        self._send(struct.pack(">BxH", 2, len(encodings)) +
                   b"".join(struct.pack(">i", e) for e in encodings))
        return ServerInit(self.width, self.height, self.name, pixel_format)

    def _read_reason(self):
        (n,) = struct.unpack(">I", self._recv_exact(4))
        return self._recv_exact(n).decode("latin-1", "replace")

    # -- client messages -----------------------------------------------------------------

    def request_update(self, incremental=True, x=0, y=0, w=None, h=None):
        w = self.width if w is None else w
        h = self.height if h is None else h
        self._send(struct.pack(">BBHHHH", 3, 1 if incremental else 0, x, y, w, h))

    def key(self, keysym, down):
        self._send(struct.pack(">BBxxI", 4, 1 if down else 0, keysym))

    def tap(self, keysym):
        self.key(keysym, True)
        self.key(keysym, False)

    def type_text(self, text):
        for ch in text:
            self.tap(ord(ch))  # Latin-1 characters are their own keysyms

    def pointer(self, x, y, buttons=0):
        self._send(struct.pack(">BBHH", 5, buttons, x, y))

    def cut_text(self, text):
        data = text.encode("latin-1")
        self._send(struct.pack(">BxxxI", 6, len(data)) + data)

    # -- server messages -----------------------------------------------------------------

    def read_message(self):
        """Reads one server message; returns its type (0 = FramebufferUpdate)."""
        kind = self._recv_exact(1)[0]
        if kind == 0:
            self._read_update()
        elif kind == 1:
            _, _, n = struct.unpack(">xHH", self._recv_exact(5))
            self._recv_exact(6 * n)
        elif kind == 2:
            self.bells += 1
        elif kind == 3:
            (n,) = struct.unpack(">xxxI", self._recv_exact(7))
            if n & 0x80000000:
                raise RfbError("extended clipboard message, which was never asked for")
            self.cut_texts.append(self._recv_exact(n).decode("latin-1"))
        else:
            raise RfbError(f"unknown server message type {kind}")
        return kind

    def _read_update(self):
        (count,) = struct.unpack(">xH", self._recv_exact(3))
        i = 0
        while count == 0xFFFF or i < count:
            x, y, w, h, enc = struct.unpack(">HHHHi", self._recv_exact(12))
            i += 1
            if enc == ENCODING_RAW:
                data = self._recv_exact(w * h * 4)
                if x + w > self.width or y + h > self.height:
                    raise RfbError(f"rectangle {w}x{h}+{x}+{y} outside {self.width}x{self.height}")
                for row in range(h):
                    start = ((y + row) * self.width + x) * 4
                    self.fb[start:start + w * 4] = data[row * w * 4:(row + 1) * w * 4]
            elif enc == ENCODING_COPYRECT:
                sx, sy = struct.unpack(">HH", self._recv_exact(4))
                rows = [bytes(self.fb[((sy + r) * self.width + sx) * 4:((sy + r) * self.width + sx + w) * 4])
                        for r in range(h)]
                for r, row in enumerate(rows):
                    start = ((y + r) * self.width + x) * 4
                    self.fb[start:start + w * 4] = row
            elif enc == ENCODING_DESKTOP_SIZE:
                self.width, self.height = w, h
                self.fb = bytearray(w * h * 4)
            elif enc == ENCODING_LAST_RECT:
                break
            elif enc == ENCODING_RICH_CURSOR:
                pixels = self._recv_exact(w * h * 4)
                mask = self._recv_exact((w + 7) // 8 * h)
                self.cursor = Cursor(w, h, x, y, pixels, mask)
                self.cursor_updates += 1
            elif enc == ENCODING_XCURSOR:
                if w * h:
                    self._recv_exact(6)
                    self._recv_exact((w + 7) // 8 * h)
                    mask = self._recv_exact((w + 7) // 8 * h)
                else:
                    mask = b""
                self.cursor = Cursor(w, h, x, y, None, mask)
                self.cursor_updates += 1
            elif enc == ENCODING_POINTER_POS:
                self.pointer_pos = (x, y)
            else:
                raise RfbError(f"cannot decode encoding {enc}")
        self.updates += 1

    def poll(self, seconds):
        """Reads messages arriving within `seconds`; returns how many."""
        n = 0
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and not self._buf:
                return n
            self.sock.settimeout(max(left, 0.001))
            try:
                self.read_message()
                n += 1
            except (TimeoutError, socket.timeout):
                return n
            finally:
                self.sock.settimeout(self.timeout)

    def full_frame(self):
        self.request_update(incremental=False)
        before = self.updates
        while self.updates == before:
            self.read_message()
        return Frame(self.width, self.height, self.rgb_bytes(), time.monotonic() - self.started)

    def wait_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the framebuffer never matched")
            self.request_update(incremental=True)
            before = self.updates
            self.sock.settimeout(left)
            try:
                while self.updates == before:
                    self.read_message()
            except (TimeoutError, socket.timeout):
                raise TimeoutError("the framebuffer never matched") from None
            finally:
                self.sock.settimeout(self.timeout)

    # -- pixels --------------------------------------------------------------------------

    def pixel(self, x, y):
        i = (y * self.width + x) * 4
        b, g, r = self.fb[i], self.fb[i + 1], self.fb[i + 2]
        return (r, g, b)

    def average(self, x, y, w, h):
        total = [0, 0, 0]
        for row in range(y, y + h):
            line = self.fb[(row * self.width + x) * 4:(row * self.width + x + w) * 4]
            total[0] += sum(line[2::4])
            total[1] += sum(line[1::4])
            total[2] += sum(line[0::4])
        n = w * h
        return tuple(round(t / n) for t in total)

    def rgb_bytes(self):
        out = bytearray(self.width * self.height * 3)
        out[0::3] = self.fb[2::4]
        out[1::3] = self.fb[1::4]
        out[2::3] = self.fb[0::4]
        return bytes(out)
