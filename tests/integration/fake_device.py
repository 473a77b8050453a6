"""A device on the UP channel played by python3-websockets, for tests of what the server asks
of devices (commands, settings) and how it takes their answers.

It is enrolled for real (a key and CSR made with openssl, a certificate issued by the server)
and speaks over mutual TLS like the agent; what it answers is up to the test.
"""

import asyncio

import websockets

from tether_harness import DeviceKey, hello_message, recv_json, send_json, up_connect

TUNNEL_SUBPROTOCOL = "tether.tunnel.v1"


def enroll(server, tmp_path, name="device", macs=("52:54:00:12:34:56",)):
    """A DeviceKey enrolled with `server` (hostname `name`)."""
    device = DeviceKey(tmp_path, name)
    status, _, body = device.enroll(server, server.create_token()["token"], hostname=name,
                                    macs=macs)
    assert status == 201, body
    return device


class FakeDevice:
    """One UP connection of an enrolled device."""

    def __init__(self, server, device):
        self.server = server
        self.device = device
        self.ws = None
        self.hello_ack = None
        self.trust_update = None
        self._next_id = 1

    @classmethod
    async def online(cls, server, device):
        """Connects, says hello, answers the trust_update: the device is online."""
        self = cls(server, device)
        self.ws = await up_connect(server, device)
        await send_json(self.ws, hello_message(device.device_id, self._id(),
                                               hostname=device.key.stem))
        self.hello_ack = await recv_json(self.ws)
        assert self.hello_ack["type"] == "result" and self.hello_ack["body"]["ok"], self.hello_ack
        self.trust_update = await recv_json(self.ws)
        assert self.trust_update["type"] == "trust_update", self.trust_update
        await self.answer(self.trust_update)
        return self

    def _id(self):
        msg_id = f"d{self._next_id}"
        self._next_id += 1
        return msg_id

    async def next_request(self, timeout=10):
        """The next message from the server."""
        return await recv_json(self.ws, timeout)

    async def expect_nothing(self, seconds):
        """Fails if the server sends anything within `seconds`."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"the server sent {message}")

    async def answer(self, request, data=None):
        body = {"ok": True}
        if data is not None:
            body["data"] = data
        await send_json(self.ws, {"v": 1, "type": "result", "id": request["id"], "body": body})

    async def refuse(self, request, code, message):
        await send_json(self.ws, {"v": 1, "type": "result", "id": request["id"],
                                  "body": {"ok": False,
                                           "error": {"code": code, "message": message}}})

    async def send(self, msg_type, body):
        await send_json(self.ws, {"v": 1, "type": msg_type, "id": self._id(), "body": body})

    async def close(self):
        await self.ws.close()

    # ---- shadowing (docs/protocol.md §5) ------------------------------------------------

    async def next_shadow_start(self, timeout=10):
        """The next shadow_start, skipping anything else the server sends first."""
        while True:
            message = await self.next_request(timeout)
            if message["type"] == "shadow_start":
                return message

    async def accept_shadow(self, request, view_only=False, consent="not_required"):
        await self.answer(request, {"view_only": view_only, "consent": consent})

    async def open_tunnel(self, request, device=None, token=None, **kwargs):
        """The device end of the session `request` (a shadow_start) asked for, with this
        device's certificate (or `device`'s)."""
        body = request["body"]
        return await tunnel_connect(self.server, body["tunnel_url"], token or body["token"],
                                    device or self.device, **kwargs)

    async def shadow_stop(self, session_id, reason, message=""):
        await self.send("shadow_stop", {"session_id": session_id, "reason": reason,
                                        "message": message})


async def tunnel_connect(server, url, token, device=None, subprotocol=TUNNEL_SUBPROTOCOL,
                         origin=None):
    """A WebSocket to a tunnel URL (device end with `device`'s certificate, else none)."""
    ctx = server.ssl_context(device.cert, device.key) if device else server.ssl_context()
    # The server names itself 127.0.0.1 in URLs built from --listen.
    return await websockets.connect(f"{url}?token={token}" if token is not None else url,
                                    ssl=ctx, subprotocols=[subprotocol], origin=origin,
                                    open_timeout=10, ping_interval=None, max_size=2 ** 20)


async def viewer_connect(server, viewer_url, subprotocol="binary", origin=None):
    """The viewer end, as a browser (with `origin`) or a tool would open it."""
    ctx = server.ssl_context()
    return await websockets.connect(viewer_url, ssl=ctx, subprotocols=[subprotocol],
                                    origin=origin, open_timeout=10, ping_interval=None,
                                    max_size=2 ** 20)


def run_ctl_async(server, *args):
    """tetherctl in a thread, so that the fake device's loop keeps answering meanwhile."""
    return asyncio.create_task(asyncio.to_thread(server.ctl, *args))


def request_async(server, method, path, body=None):
    """An admin REST call in a thread; gives (status, headers, body)."""
    return asyncio.create_task(asyncio.to_thread(server.admin, method, path, body))
