"""A device that can be shadowed, for tests of viewers (the web app's noVNC page).

FakeShadowDevice is an enrolled fake device on the UP channel (fake_device.py) that accepts
`shadow_start`, opens its end of the tunnel like the agent does (docs/protocol.md §5) and
serves RFB 3.8 on it from SolidRfbServer: a framebuffer of one known colour, which records
the KeyEvents and PointerEvents it receives.

The interface a test uses (so that the real chain — tether-agent + tether-vnc on Xvfb — can
stand in for it later): `device_id`, `hostname`, `colour` (the RGB the viewer should show),
`await set_colour(rgb)` (the picture changes), `new_session()` then `await wait_session()`,
`await wait_session_end()`, `key_events()` (the keysyms the desktop received, as (down, keysym) pairs), `pointer_events()`,
`last_request()` (the last shadow_start body: view_only, admin, viewer), `refuse_next =
(code, message)` (the next request is refused, as a user or policy would), `await
input_barrier()` (returns once every input the viewer sent before the call has arrived),
`await stop()`.
"""

import asyncio
import json
import struct

import websockets

from fake_device import FakeDevice, enroll

TUNNEL_SUBPROTOCOL = "tether.tunnel.v1"
MAX_MESSAGE = 64 * 1024


class SolidRfbServer:
    """RFB 3.8, security None, raw encoding, one colour over the whole framebuffer."""

    def __init__(self, ws, colour, width=320, height=200, name="fake desktop"):
        self.ws = ws
        self.colour = tuple(colour)
        self.width = width
        self.height = height
        self.name = name
        self.keys = []  # (down, keysym)
        self.pointer = []  # (mask, x, y)
        self.requests = 0  # FramebufferUpdateRequests seen
        self.updates_sent = 0
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._pending = False  # an incremental request waits for a change
        self._force = False  # answer the next request at once (input_barrier)
        self._requests_at_update = 0  # requests seen when the last update went out
        self._changed = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        # The client's pixel format: bpp, big endian, shifts (red, green, blue).
        self._format = (32, False, 16, 8, 0)

    async def _read(self, n):
        while len(self._buf) < n:
            message = await self.ws.recv()
            if isinstance(message, str):
                raise AssertionError("text message on the tunnel")
            self._buf += message
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _send(self, data):
        for i in range(0, len(data), MAX_MESSAGE):
            await self.ws.send(data[i:i + MAX_MESSAGE])

    def _pixels(self):
        bpp, big, rs, gs, bs = self._format
        r, g, b = self.colour
        value = (r << rs) | (g << gs) | (b << bs)
        if bpp == 32:
            # The unused byte set, not zero: noVNC 1.3.0's raw decoder makes pixels opaque at
            # the wrong offset (rQ start, not rQi), so a zero there shows as transparent.
            value |= 0xFFFFFFFF & ~((255 << rs) | (255 << gs) | (255 << bs))
        size = bpp // 8
        pixel = value.to_bytes(4, "big" if big else "little")
        pixel = pixel[4 - size:] if big else pixel[:size]
        return pixel * (self.width * self.height)

    async def _send_frame(self):
        header = struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, 0, self.width,
                                                         self.height, 0)
        async with self._send_lock:  # one frame's messages must not interleave with another's
            await self._send(header + self._pixels())
        async with self._changed:
            self.updates_sent += 1
            self._requests_at_update = self.requests
            self._changed.notify_all()

    async def set_colour(self, colour):
        self.colour = tuple(colour)
        if self._pending and not self.closed.is_set():
            self._pending = False
            try:
                await self._send_frame()
            except websockets.ConnectionClosed:
                pass  # the session ended meanwhile

    async def serve(self):
        try:
            await self._send(b"RFB 003.008\n")
            version = await self._read(12)
            assert version.startswith(b"RFB 003."), version
            await self._send(bytes([1, 1]))  # one security type: None
            assert (await self._read(1)) == b"\x01"
            await self._send(struct.pack(">I", 0))
            await self._read(1)  # shared flag
            name = self.name.encode()
            pixel_format = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
            await self._send(struct.pack(">HH", self.width, self.height) + pixel_format
                             + struct.pack(">I", len(name)) + name)
            self.connected.set()
            while True:
                kind = (await self._read(1))[0]
                if kind == 0:  # SetPixelFormat
                    data = await self._read(19)
                    bpp, _depth, big, _true, _rm, _gm, _bm, rs, gs, bs = struct.unpack(
                        ">BBBBHHHBBB", data[3:16])
                    self._format = (bpp, bool(big), rs, gs, bs)
                elif kind == 2:  # SetEncodings
                    _, count = struct.unpack(">BH", await self._read(3))
                    await self._read(4 * count)
                elif kind == 3:  # FramebufferUpdateRequest
                    incremental = (await self._read(9))[0]
                    async with self._changed:
                        self.requests += 1
                        self._changed.notify_all()
                    if incremental and self.updates_sent > 0 and not self._force:
                        self._pending = True
                    else:
                        self._force = False
                        self._pending = False
                        await self._send_frame()
                elif kind == 4:  # KeyEvent
                    down, key = struct.unpack(">Bxxi", await self._read(7))
                    self.keys.append((bool(down), key & 0xFFFFFFFF))
                elif kind == 5:  # PointerEvent
                    self.pointer.append(struct.unpack(">BHH", await self._read(5)))
                elif kind == 6:  # ClientCutText
                    (length,) = struct.unpack(">xxxi", await self._read(7))
                    await self._read(abs(length))
                else:
                    raise AssertionError(f"unexpected RFB client message {kind}")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def barrier(self, timeout=10):
        """Returns when the client has sent a request after receiving an update sent after
        this call: everything it sent before the call has arrived by then."""
        sent = self.updates_sent
        if self._pending:
            self._pending = False
            await self._send_frame()
        else:
            self._force = True
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(
                lambda: self.updates_sent > sent and self.requests > self._requests_at_update),
                timeout)


class FakeShadowDevice:
    """An enrolled, online fake device whose shadowing sessions show a solid colour."""

    def __init__(self, server, fake, colour, desktop_name, force_view_only=False):
        self.server = server
        self.fake = fake
        self.device_id = fake.device.device_id
        self.hostname = fake.device.key.stem
        self.colour = tuple(colour)
        self.desktop_name = desktop_name
        self.force_view_only = force_view_only
        self.starts = []  # shadow_start bodies
        self.stops = []  # shadow_stop bodies
        self.rfb = None
        self.refuse_next = None  # (code, message): the next shadow_start is refused so
        self._session_ready = asyncio.Event()
        self._tasks = []
        self._tunnels = []

    @classmethod
    async def online(cls, server, tmp_path, hostname="tc-shadow", colour=(0, 160, 80),
                     desktop_name="fake desktop"):
        fake = await FakeDevice.online(server, enroll(server, tmp_path, hostname))
        self = cls(server, fake, colour, desktop_name)
        self._tasks.append(asyncio.create_task(self._answer()))
        return self

    async def _answer(self):
        while True:
            try:
                request = await self.fake.ws.recv()
            except websockets.ConnectionClosed:
                return
            message = json.loads(request)
            kind, body = message.get("type"), message.get("body", {})
            if kind == "shadow_start":
                self.starts.append(body)
                if self.refuse_next:
                    code, text = self.refuse_next
                    self.refuse_next = None
                    await self.fake.refuse(message, code, text)
                    continue
                view_only = bool(body.get("view_only")) or self.force_view_only
                # Open the tunnel before answering, as the agent does once tether-vnc runs.
                url = body["tunnel_url"] + "?token=" + body["token"]
                await self.fake.answer(message, {"view_only": view_only,
                                                 "consent": "not_required"})
                self._tasks.append(asyncio.create_task(self._tunnel(url)))
            elif kind == "shadow_stop":
                self.stops.append(body)
                if "id" in message:
                    await self.fake.answer(message)
            elif kind in ("command", "settings", "trust_update"):
                await self.fake.answer(message)

    async def _tunnel(self, url):
        device = self.fake.device
        ctx = self.server.ssl_context(device.cert, device.key)
        ws = await websockets.connect(url, ssl=ctx, subprotocols=[TUNNEL_SUBPROTOCOL],
                                      open_timeout=10, ping_interval=None, max_size=None)
        self._tunnels.append(ws)
        self.rfb = SolidRfbServer(ws, self.colour, name=self.desktop_name)
        self._session_ready.set()
        await self.rfb.serve()

    async def wait_session(self, timeout=15):
        await asyncio.wait_for(self._session_ready.wait(), timeout)
        await asyncio.wait_for(self.rfb.connected.wait(), timeout)
        return self.rfb

    async def wait_session_end(self, timeout=15):
        await asyncio.wait_for(self.rfb.closed.wait(), timeout)

    def new_session(self):
        """Forget the last session: the next wait_session waits for a new one."""
        self._session_ready.clear()
        self.rfb = None

    async def set_colour(self, colour):
        self.colour = tuple(colour)
        if self.rfb is not None:
            await self.rfb.set_colour(colour)

    def key_events(self):
        return list(self.rfb.keys) if self.rfb else []

    def pointer_events(self):
        return list(self.rfb.pointer) if self.rfb else []

    def last_request(self):
        return self.starts[-1]

    async def input_barrier(self):
        """Changes nothing the viewer sees but makes it send one more request after the
        input sent so far: the same colour again, answered by a new update request."""
        await self.rfb.barrier()

    async def stop(self):
        for ws in self._tunnels:
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await self.fake.close()
